// Python's str methods over UTF-8 text, as chat templates use them: strip with Python's
// whitespace (Unicode included), split, replace, title, code-point length and indexing. Case
// mapping and character classes are Unicode's simple (one-to-one) ones, from utf8proc;
// Python's few one-to-many mappings (ß to SS) are not made.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cachet::chat {

// which: 1 = left, 2 = right, 3 = both.
std::string py_strip(std::string_view s, int which);
std::string py_strip_chars(std::string_view s, std::string_view chars, int which);
std::string to_upper(std::string_view s);
std::string to_lower(std::string_view s);
// str.title(): the first letter of every run of letters upper case, the rest lower case.
std::string py_title(std::string_view s);
// Jinja2's `title` filter: each word (after - whitespace ( { [ <) capitalized.
std::string jinja_title(std::string_view s);
std::string capitalize(std::string_view s);
// str.split() / str.rsplit() without a separator (runs of whitespace) and with one.
std::vector<std::string> py_split_whitespace(std::string_view s, std::int64_t max, bool right);
std::vector<std::string> py_split(std::string_view s, std::string_view sep, std::int64_t max,
                                  bool right);
std::string py_replace(std::string_view s, std::string_view from, std::string_view to,
                       std::int64_t count);
// isdigit, isspace, isalpha, isupper, islower.
bool py_is(std::string_view s, std::string_view what);
// Whether every code point of `s` is Python whitespace (true for "").
bool all_space(std::string_view s);
// Jinja2's wordcount: runs of word characters (letters, digits, _).
std::size_t word_count(std::string_view s);
// Python's repr() of a string.
std::string string_repr(std::string_view s);
std::size_t utf8_length(std::string_view s);
std::vector<std::string> utf8_chars(std::string_view s);

}  // namespace cachet::chat

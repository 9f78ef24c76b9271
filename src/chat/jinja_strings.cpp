#include "chat/jinja_strings.h"

#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <cctype>

#include "chat/jinja_value.h"

namespace cachet::chat {
namespace {

// The length of the UTF-8 sequence a lead byte starts (1 for a stray continuation byte).
std::size_t seq_len(unsigned char c) {
  if (c >= 0xf0) return 4;
  if (c >= 0xe0) return 3;
  if (c >= 0xc0) return 2;
  return 1;
}

std::uint32_t decode(std::string_view s, std::size_t at, std::size_t n) {
  auto c = static_cast<unsigned char>(s[at]);
  if (n == 1) return c;
  std::uint32_t cp = c & (0xff >> (n + 1));
  for (std::size_t i = 1; i < n && at + i < s.size(); ++i)
    cp = (cp << 6) | (static_cast<unsigned char>(s[at + i]) & 0x3f);
  return cp;
}

// str.isspace() of one code point.
bool is_py_space(std::uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

struct Char {
  std::size_t at, len;
  std::uint32_t cp;
};

std::vector<Char> decode_all(std::string_view s) {
  std::vector<Char> out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = std::min(seq_len(static_cast<unsigned char>(s[i])), s.size() - i);
    out.push_back({i, n, decode(s, i, n)});
    i += n;
  }
  return out;
}

template <class Pred>
std::string strip_if(std::string_view s, int which, Pred strip) {
  const std::vector<Char> chars = decode_all(s);
  std::size_t lo = 0, hi = chars.size();
  if (which & 1)
    while (lo < hi && strip(chars[lo])) ++lo;
  if (which & 2)
    while (hi > lo && strip(chars[hi - 1])) --hi;
  if (lo == hi) return {};
  return std::string(s.substr(chars[lo].at, chars[hi - 1].at + chars[hi - 1].len - chars[lo].at));
}

void put_utf8(std::uint32_t cp, std::string& out) {
  utf8proc_uint8_t buf[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

template <class F>
std::string map_chars(std::string_view s, F f) {
  std::string out;
  for (const Char& c : decode_all(s)) put_utf8(f(c.cp), out);
  return out;
}

std::uint32_t upper(std::uint32_t cp) {
  return static_cast<std::uint32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(cp)));
}
std::uint32_t lower(std::uint32_t cp) {
  return static_cast<std::uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
}
utf8proc_category_t category(std::uint32_t cp) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}
bool is_letter(std::uint32_t cp) {
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}
bool is_cased_upper(std::uint32_t cp) { return lower(cp) != cp; }
bool is_cased_lower(std::uint32_t cp) { return upper(cp) != cp; }
bool is_digit(std::uint32_t cp) { return category(cp) == UTF8PROC_CATEGORY_ND; }
// str.isprintable() of one code point: not a control, format, surrogate, private-use or
// unassigned character, nor a separator other than the space.
bool printable(std::uint32_t cp) {
  if (cp == ' ') return true;
  switch (category(cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return false;
    default:
      return true;
  }
}

}  // namespace

std::string py_strip(std::string_view s, int which) {
  return strip_if(s, which, [](const Char& c) { return is_py_space(c.cp); });
}

std::string py_strip_chars(std::string_view s, std::string_view chars, int which) {
  const std::vector<Char> set = decode_all(chars);
  return strip_if(s, which, [&](const Char& c) {
    return std::any_of(set.begin(), set.end(), [&](const Char& x) { return x.cp == c.cp; });
  });
}

std::string to_upper(std::string_view s) { return map_chars(s, upper); }

std::string to_lower(std::string_view s) { return map_chars(s, lower); }

std::string py_title(std::string_view s) {
  bool prev_letter = false;
  return map_chars(s, [&](std::uint32_t cp) {
    const bool letter = is_cased_upper(cp) || is_cased_lower(cp);
    const std::uint32_t out = letter ? (prev_letter ? lower(cp) : upper(cp)) : cp;
    prev_letter = letter;
    return out;
  });
}

std::string jinja_title(std::string_view s) {
  bool word_start = true;
  return map_chars(s, [&](std::uint32_t cp) {
    if (is_py_space(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<') {
      word_start = true;
      return cp;
    }
    const std::uint32_t out = word_start ? upper(cp) : lower(cp);
    word_start = false;
    return out;
  });
}

std::string capitalize(std::string_view s) {
  bool first = true;
  return map_chars(s, [&](std::uint32_t cp) {
    const std::uint32_t out = first ? upper(cp) : lower(cp);
    first = false;
    return out;
  });
}

std::vector<std::string> py_split_whitespace(std::string_view s, std::int64_t max, bool right) {
  const std::vector<Char> chars = decode_all(s);
  std::vector<std::pair<std::size_t, std::size_t>> words;  // byte ranges
  for (std::size_t i = 0; i < chars.size();) {
    if (is_py_space(chars[i].cp)) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < chars.size() && !is_py_space(chars[j].cp)) ++j;
    words.emplace_back(chars[i].at, chars[j - 1].at + chars[j - 1].len);
    i = j;
  }
  std::vector<std::string> out;
  if (max < 0 || static_cast<std::size_t>(max) + 1 >= words.size()) {
    for (auto [a, b] : words) out.emplace_back(s.substr(a, b - a));
    return out;
  }
  const auto m = static_cast<std::size_t>(max);
  if (!right) {
    for (std::size_t k = 0; k < m; ++k)
      out.emplace_back(s.substr(words[k].first, words[k].second - words[k].first));
    out.push_back(py_strip(s.substr(words[m].first), 2));
    return out;
  }
  const std::size_t rest = words.size() - m;
  out.push_back(py_strip(s.substr(0, words[rest - 1].second), 1));
  for (std::size_t k = rest; k < words.size(); ++k)
    out.emplace_back(s.substr(words[k].first, words[k].second - words[k].first));
  return out;
}

std::vector<std::string> py_split(std::string_view s, std::string_view sep, std::int64_t max,
                                  bool right) {
  std::vector<std::string> out;
  if (sep.empty()) return {std::string(s)};  // Python raises; a template never asks
  if (!right) {
    std::size_t from = 0;
    for (std::size_t at; (max < 0 || static_cast<std::int64_t>(out.size()) < max) &&
                         (at = s.find(sep, from)) != std::string_view::npos;
         from = at + sep.size())
      out.emplace_back(s.substr(from, at - from));
    out.emplace_back(s.substr(from));
    return out;
  }
  std::size_t end = s.size();
  std::vector<std::string> rev;
  while (max < 0 || static_cast<std::int64_t>(rev.size()) < max) {
    if (end < sep.size()) break;
    const std::size_t at = s.rfind(sep, end - sep.size());
    if (at == std::string_view::npos) break;
    rev.emplace_back(s.substr(at + sep.size(), end - at - sep.size()));
    end = at;
  }
  out.emplace_back(s.substr(0, end));
  out.insert(out.end(), rev.rbegin(), rev.rend());
  return out;
}

std::string py_replace(std::string_view s, std::string_view from, std::string_view to,
                       std::int64_t count) {
  std::string out;
  std::size_t pos = 0;
  std::int64_t done = 0;
  if (from.empty()) {
    // Python inserts `to` between every character (and at both ends).
    for (const Char& c : decode_all(s)) {
      if (count >= 0 && done >= count) {
        out += s.substr(c.at);
        return out;
      }
      check_size(out.size() + to.size());
      out += to;
      out += s.substr(c.at, c.len);
      ++done;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  for (std::size_t at;
       (count < 0 || done < count) && (at = s.find(from, pos)) != std::string_view::npos;
       pos = at + from.size(), ++done) {
    out += s.substr(pos, at - pos);
    check_size(out.size() + to.size());
    out += to;
  }
  out += s.substr(pos);
  return out;
}

bool py_is(std::string_view s, std::string_view what) {
  const std::vector<Char> chars = decode_all(s);
  if (chars.empty()) return false;
  auto all = [&](auto pred) {
    return std::all_of(chars.begin(), chars.end(), [&](const Char& c) { return pred(c.cp); });
  };
  auto any = [&](auto pred) {
    return std::any_of(chars.begin(), chars.end(), [&](const Char& c) { return pred(c.cp); });
  };
  if (what == "isspace") return all(is_py_space);
  if (what == "isdigit") return all(is_digit);
  if (what == "isalpha") return all(is_letter);
  // isupper / islower: some cased character, and none of the other case.
  if (what == "isupper") return any(is_cased_upper) && !any(is_cased_lower);
  return any(is_cased_lower) && !any(is_cased_upper);
}

bool all_space(std::string_view s) {
  const std::vector<Char> chars = decode_all(s);
  return std::all_of(chars.begin(), chars.end(), [](const Char& c) { return is_py_space(c.cp); });
}

std::size_t word_count(std::string_view s) {
  std::size_t n = 0;
  bool in_word = false;
  for (const Char& c : decode_all(s)) {
    const bool word =
        c.cp == '_' || is_letter(c.cp) || is_digit(c.cp) || category(c.cp) == UTF8PROC_CATEGORY_MN;
    if (word && !in_word) ++n;
    in_word = word;
  }
  return n;
}

std::string string_repr(std::string_view s) {
  const bool single =
      s.find('\'') == std::string_view::npos || s.find('"') != std::string_view::npos;
  const char quote = single ? '\'' : '"';
  std::string out(1, quote);
  for (const Char& c : decode_all(s)) {
    const std::uint32_t cp = c.cp;
    if (cp == '\\')
      out += "\\\\";
    else if (cp == static_cast<std::uint32_t>(quote))
      (out += '\\') += quote;
    else if (cp == '\n')
      out += "\\n";
    else if (cp == '\r')
      out += "\\r";
    else if (cp == '\t')
      out += "\\t";
    else if (!printable(cp))
      out += cp < 0x100     ? fmt::format("\\x{:02x}", cp)
             : cp < 0x10000 ? fmt::format("\\u{:04x}", cp)
                            : fmt::format("\\U{:08x}", cp);
    else
      out += s.substr(c.at, c.len);
  }
  return out + quote;
}

std::size_t utf8_length(std::string_view s) { return decode_all(s).size(); }

std::vector<std::string> utf8_chars(std::string_view s) {
  std::vector<std::string> out;
  for (const Char& c : decode_all(s)) out.emplace_back(s.substr(c.at, c.len));
  return out;
}

}  // namespace cachet::chat

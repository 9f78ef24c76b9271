// The Jinja lexer: template source to tokens, with Jinja2's whitespace control applied as it
// is configured for chat templates by Hugging Face transformers (trim_blocks and
// lstrip_blocks on): `{%-`/`-%}` (and the same for `{{ }}`, `{# #}`) strip all whitespace
// before/after the tag, a block or comment tag drops the first newline after it, and the
// spaces and tabs before a block or comment tag alone on its line are dropped; `{%+`/`+%}`
// turn those two off for the tag. Comments are dropped; `{% raw %}` text is kept as it is.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cachet::chat {

struct Token {
  enum class Type {
    kText,        // template text, whitespace control applied
    kVarBegin,    // {{
    kVarEnd,      // }}
    kBlockBegin,  // {%
    kBlockEnd,    // %}
    kName,
    kString,  // the value, escapes resolved
    kInt,
    kFloat,
    kOp,  // an operator or punctuation: + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { }
    kEof,
  };
  Type type;
  std::string text;
  int line = 1;
};

// Throws TemplateError naming the line for an unterminated tag, string or comment, or a
// character that starts no token.
std::vector<Token> lex(std::string_view source);

}  // namespace cachet::chat

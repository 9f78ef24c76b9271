#include "chat/jinja_lexer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "chat/jinja_strings.h"
#include "chat/jinja_value.h"

namespace cachet::chat {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Appends `code` as UTF-8.
void put_utf8(std::uint32_t code, std::string& out) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xc0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3f));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xe0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code & 0x3f));
  }
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> run() {
    bool line_starting = true;  // the text about to be read starts a line
    while (pos_ < src_.size()) {
      const std::size_t open = find_tag(pos_);
      std::string text(src_.substr(pos_, open - pos_));
      if (open == src_.size()) {
        emit_text(std::move(text));
        pos_ = open;
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const char sign = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (sign == '-') {
        text = py_strip(text, 2);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: a block or comment tag alone on its line takes its indent with it.
        const std::size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting) && all_space(std::string_view(text).substr(l_pos)))
          text.erase(l_pos);
      }
      line_ += count_lines(pos_, open);
      emit_text(std::move(text));
      pos_ = open + 2 + (sign == '-' || sign == '+' ? 1 : 0);
      if (kind == '#') {
        line_starting = skip_comment();
      } else {
        line_starting = tag(kind);
      }
    }
    out_.push_back({Token::Type::kEof, "", line_});
    return std::move(out_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw TemplateError(fmt::format("chat template line {}: {}", line_, what), line_);
  }

  int count_lines(std::size_t from, std::size_t to) const {
    return static_cast<int>(std::count(src_.begin() + static_cast<std::ptrdiff_t>(from),
                                       src_.begin() + static_cast<std::ptrdiff_t>(to), '\n'));
  }

  std::size_t find_tag(std::size_t from) const {
    for (std::size_t i = from; i + 1 < src_.size(); ++i)
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    return src_.size();
  }

  void emit_text(std::string text) {
    if (!text.empty()) out_.push_back({Token::Type::kText, std::move(text), line_});
  }

  // After a tag's closing `-X}`, `+X}` or `X}` at pos_ (already past it): what follows.
  // Returns whether the next text starts a line.
  bool after_close(char sign, bool trims) {
    const std::size_t start = pos_;
    if (sign == '-') {
      skip_space();
    } else if (sign != '+' && trims) {
      if (src_.compare(pos_, 2, "\r\n") == 0)
        pos_ += 2;
      else if (pos_ < src_.size() && src_[pos_] == '\n')
        ++pos_;
    }
    line_ += count_lines(start, pos_);
    return pos_ > start && src_[pos_ - 1] == '\n';
  }

  // Past Python whitespace (Unicode included), as Jinja2's `\s*` after `-%}`.
  void skip_space() {
    const std::string_view rest = src_.substr(pos_);
    pos_ += rest.size() - py_strip(rest, 1).size();
  }

  bool skip_comment() {
    const std::size_t end = src_.find("#}", pos_);
    if (end == std::string_view::npos) fail("unterminated comment");
    const char sign =
        end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : 0;
    line_ += count_lines(pos_, end);
    pos_ = end + 2;
    return after_close(sign, true);
  }

  // The tokens of a `{{ }}` or `{% %}` tag, pos_ just past its opener.
  bool tag(char kind) {
    const bool block = kind == '%';
    out_.push_back({block ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "", line_});
    const std::size_t first = out_.size();
    const char closer = block ? '%' : '}';
    int depth = 0;  // open ( [ {
    for (;;) {
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size()) fail(block ? "unterminated {% tag" : "unterminated {{ tag");
      // The end of the tag: [-+]X} with nothing open.
      char sign = 0;
      std::size_t at = pos_;
      if ((src_[at] == '-' || src_[at] == '+') && at + 1 < src_.size()) {
        sign = src_[at];
        ++at;
      }
      if (depth == 0 && src_.compare(at, 2, std::string{closer, '}'}) == 0 &&
          (sign != '+' || block)) {
        pos_ = at + 2;
        out_.push_back({block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", line_});
        if (block && out_.size() == first + 2 && out_[first].type == Token::Type::kName &&
            out_[first].text == "raw")
          return raw(sign);
        return after_close(sign, block);
      }
      next_token(depth);
    }
  }

  // {% raw %} ... {% endraw %}: the text between, as it is (`raw -%}` strips its start).
  bool raw(char sign) {
    out_.resize(out_.size() - 3);  // the raw tag itself
    if (sign == '-') {
      const std::size_t start = pos_;
      skip_space();
      line_ += count_lines(start, pos_);
    }
    for (std::size_t i = pos_; (i = src_.find("{%", i)) != std::string_view::npos; ++i) {
      std::size_t j = i + 2;
      const bool strip_before = j < src_.size() && src_[j] == '-';
      if (strip_before || (j < src_.size() && src_[j] == '+')) ++j;
      while (j < src_.size() && is_space(src_[j])) ++j;
      if (src_.compare(j, 6, "endraw") != 0) continue;
      j += 6;
      while (j < src_.size() && is_space(src_[j])) ++j;
      char sign = 0;
      if (j < src_.size() && (src_[j] == '-' || src_[j] == '+')) sign = src_[j++];
      if (src_.compare(j, 2, "%}") != 0) continue;
      std::string text(src_.substr(pos_, i - pos_));
      if (strip_before)
        text.erase(std::find_if_not(text.rbegin(), text.rend(), is_space).base(), text.end());
      emit_text(std::move(text));
      line_ += count_lines(pos_, j + 2);
      pos_ = j + 2;
      return after_close(sign, true);
    }
    fail("{% raw %} without {% endraw %}");
  }

  void next_token(int& depth) {
    const char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const std::size_t start = pos_;
      while (pos_ < src_.size() &&
             (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_'))
        ++pos_;
      out_.push_back({Token::Type::kName, std::string(src_.substr(start, pos_ - start)), line_});
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      number();
    } else if (c == '\'' || c == '"') {
      string(c);
    } else {
      op(depth);
    }
  }

  void number() {
    const std::size_t start = pos_;
    bool is_float = false;
    auto digits = [&] {
      while (pos_ < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_'))
        ++pos_;
    };
    digits();
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      std::size_t e = pos_ + 1;
      if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
      if (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) {
        is_float = true;
        pos_ = e;
        digits();
      }
    }
    std::string text(src_.substr(start, pos_ - start));
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    out_.push_back({is_float ? Token::Type::kFloat : Token::Type::kInt, text, line_});
  }

  void string(char quote) {
    std::string value;
    ++pos_;
    for (;;) {
      if (pos_ >= src_.size()) fail("unterminated string");
      const char c = src_[pos_++];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= src_.size()) fail("unterminated string");
      const char e = src_[pos_++];
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case '0':
          value += '\0';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'v':
          value += '\v';
          break;
        case 'a':
          value += '\a';
          break;
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case '\n':
          ++line_;
          break;  // a line continuation
        case 'x':
          value += static_cast<char>(hex(2));
          break;
        case 'u':
          put_utf8(hex(4), value);
          break;
        case 'U':
          put_utf8(hex(8), value);
          break;
        default:  // Python keeps an unknown escape as it is
          value += '\\';
          value += e;
      }
    }
    out_.push_back({Token::Type::kString, std::move(value), line_});
  }

  std::uint32_t hex(int n) {
    if (pos_ + static_cast<std::size_t>(n) > src_.size()) fail("truncated escape in a string");
    std::uint32_t v = 0;
    for (int i = 0; i < n; ++i) {
      const char c = src_[pos_++];
      if (!std::isxdigit(static_cast<unsigned char>(c))) fail("bad escape in a string");
      v = v * 16 + static_cast<std::uint32_t>(std::isdigit(static_cast<unsigned char>(c))
                                                  ? c - '0'
                                                  : (std::tolower(c) - 'a' + 10));
    }
    return v;
  }

  void op(int& depth) {
    static constexpr std::string_view kTwo[] = {"**", "//", "==", "!=", "<=", ">="};
    for (std::string_view two : kTwo) {
      if (src_.compare(pos_, 2, two) == 0) {
        out_.push_back({Token::Type::kOp, std::string(two), line_});
        pos_ += 2;
        return;
      }
    }
    const char c = src_[pos_];
    if (std::string_view("+-*/%~<>=.,:|()[]{}").find(c) == std::string_view::npos)
      fail(fmt::format("unexpected character '{}'", c));
    if (c == '(' || c == '[' || c == '{') ++depth;
    if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
    out_.push_back({Token::Type::kOp, std::string(1, c), line_});
    ++pos_;
  }

  std::string_view src_;
  std::size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> lex(std::string_view source) {
  // Jinja2 turns every line ending into "\n" and drops one newline at the very end
  // (keep_trailing_newline is off).
  std::string text;
  text.reserve(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      text += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      text += source[i];
    }
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return Lexer(text).run();
}

}  // namespace cachet::chat

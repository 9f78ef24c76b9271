#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "cachet/errors.h"
#include "tokenizer/unicode.h"

namespace cachet::tokenizer {

namespace {

// Oniguruma (the engine behind tokenizer.json patterns) and PCRE2 mostly agree; where they
// do not, the pattern is rewritten: Oniguruma's \w is Unicode's word class (letters, marks,
// decimal and letter numbers, connector punctuation, ZWJ/ZWNJ) while PCRE2's UCP \w is
// letters, numbers and '_'; Oniguruma reads \h as a hex digit, PCRE2 as horizontal space.
constexpr const char* kWordClass = "\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\x{200C}\\x{200D}";

std::string translate(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size());
  bool in_class = false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char n = pattern[++i];
      if (n == 'h') {
        out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
      } else if (n == 'H' && !in_class) {
        out += "[^0-9a-fA-F]";
      } else if (n == 'w') {
        out += in_class ? std::string(kWordClass) : "[" + std::string(kWordClass) + "]";
      } else if (n == 'W' && !in_class) {
        out += "[^" + std::string(kWordClass) + "]";
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

struct MatchState {
  pcre2_match_data* data = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* context = nullptr;
  MatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    // Long whitespace runs under `\s+(?!\S)` backtrack deeply; give the JIT room.
    stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchState() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

}  // namespace

std::string Regex::escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

Regex::Regex(std::string_view pattern, const std::string& where) : where_(where) {
  const std::string translated = translate(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  auto* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    throw Error(ErrorCode::kInvalidModel, where + ": regex does not compile at offset " +
                                              std::to_string(offset) + ": " +
                                              reinterpret_cast<const char*>(message));
  }
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool Regex::Cursor::next(std::size_t& start, std::size_t& end) {
  if (done_ || pos_ > subject_.size()) return false;
  auto* code = static_cast<pcre2_code*>(regex_.code_);
  MatchState& state = match_state();
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject_.data());
  const int rc =
      regex_.jit_ ? pcre2_jit_match(code, text, subject_.size(), pos_, 0, state.data, state.context)
                  : pcre2_match(code, text, subject_.size(), pos_, PCRE2_NO_UTF_CHECK, state.data,
                                state.context);
  if (rc == PCRE2_ERROR_NOMATCH) {
    done_ = true;
    return false;
  }
  if (rc < 0) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof(message));
    throw Error(ErrorCode::kInvalidArgument,
                regex_.where_ + ": regex gave up on the text (" +
                    reinterpret_cast<const char*>(message) +
                    "): the text is too long or too repetitive for this pattern");
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
  start = ovector[0];
  end = ovector[1];
  if (end > start) {
    pos_ = end;
  } else if (end >= subject_.size()) {
    done_ = true;
  } else {
    pos_ = end + utf8_length(static_cast<unsigned char>(subject_[end]));
  }
  return true;
}

void Regex::find_all(std::string_view subject,
                     std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  Cursor cursor(*this, subject);
  std::size_t start, end;
  while (cursor.next(start, end)) out.emplace_back(start, end);
}

}  // namespace cachet::tokenizer

// A compiled PCRE2 pattern (UTF + UCP, JIT when available) for the regexes of a
// tokenizer.json. Immutable and shareable across threads; the per-call match state lives in
// thread-local storage, so matching allocates nothing after a thread's first call.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cachet::tokenizer {

class Regex {
 public:
  // `pattern` uses the Oniguruma syntax of `tokenizers`; the few constructs whose meaning
  // differs in PCRE2 are translated. `where` names the pattern's place for error messages
  // (file and field). Throws Error(kInvalidModel) when the pattern does not compile.
  Regex(std::string_view pattern, const std::string& where);
  // The pattern that matches `literal` exactly.
  static std::string escape(std::string_view literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Byte ranges [start, end) of the successive non-overlapping matches in `subject` (valid
  // UTF-8), left to right. After an empty match the search resumes one character later.
  void find_all(std::string_view subject,
                std::vector<std::pair<std::size_t, std::size_t>>& out) const;

  // The same matches one at a time, without collecting them (texts can be megabytes).
  // Matching throws Error(kInvalidArgument), naming the pattern's place, when PCRE2 gives up
  // on the text: its match limit (ten million backtracking steps for one match) or its JIT
  // stack is exhausted, as a catastrophic pattern does on a short text, or a pattern like
  // `\s*[\r\n]+` on ten million spaces.
  class Cursor {
   public:
    Cursor(const Regex& regex, std::string_view subject) : regex_(regex), subject_(subject) {}
    // The next match, or false when there is none.
    bool next(std::size_t& start, std::size_t& end);

   private:
    const Regex& regex_;
    std::string_view subject_;
    std::size_t pos_ = 0;
    bool done_ = false;
  };

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
  std::string where_;
};

}  // namespace cachet::tokenizer

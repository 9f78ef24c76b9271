// The generated text of one request: incremental detokenization, stop strings matched
// across token boundaries, and what may be streamed so far.
//
//   text_: [0, streamed) handed to the callback   [streamed, ready) may be streamed now
//          [ready, size) held back: it could still be the start of a stop string
#pragma once

#include <string>
#include <vector>

#include "cachet/tokenizer.h"

namespace cachet::engine {

class OutputText {
 public:
  OutputText(const Tokenizer& tokenizer, bool skip_special_tokens, std::vector<std::string> stops);

  // Appends the text of a generated token. True when the text now contains a stop string;
  // the text is then cut before it and later calls change nothing. When decoding fails (a
  // tokenizer.json regex that gives up, see Regex) the text ends there and error() says why.
  bool push(TokenId id);
  // The text that can be streamed now and was not yet (whole UTF-8 characters only).
  std::string take_ready();
  // Ends the stream: flushes the decoder, applies the stop strings once more, and returns
  // everything not yet taken. text() is then final.
  std::string finish();
  const std::string& text() const { return text_; }
  // Why decoding failed; empty when it did not.
  const std::string& error() const { return error_; }

 private:
  bool cut_at_stop(std::size_t search_from);

  StreamDecoder decoder_;
  std::vector<std::string> stops_;
  std::size_t max_stop_ = 0;
  std::string text_;
  std::size_t streamed_ = 0;
  bool stopped_ = false;
  std::string error_;
};

}  // namespace cachet::engine

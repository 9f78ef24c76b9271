// Incremental decoding: decode a short window of ids again on every push and emit only
// what it adds, once it is final (see StreamDecoder in cachet/tokenizer.h).
#include "cachet/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

namespace cachet {

namespace {

// Text ending in U+FFFD may be an incomplete byte sequence that the next ids complete.
bool may_still_change(const std::string& text) {
  return text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}

// A byte-fallback token ("<0x41>"). ByteFallback decodes a whole run of them at once, and
// turns every byte of the run into U+FFFD when the run is not valid UTF-8, so text already
// decoded from the start of a run can still change until a token that is not a byte ends
// it: "<0x61>" alone is "a", but "<0x61><0xE4>the" is "\ufffd\ufffdthe" (found by
// fuzz_tokenizer_json). Such a token holds its run back.
bool is_byte_token(const std::string* token) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
  };
  return token != nullptr && token->size() == 6 && token->compare(0, 3, "<0x") == 0 &&
         hex((*token)[3]) && hex((*token)[4]) && (*token)[5] == '>';
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : impl_(tokenizer.impl_), skip_special_tokens_(skip_special_tokens) {}

std::string StreamDecoder::push(TokenId id) {
  ids_.push_back(id);
  if (in_byte_run()) return {};
  const std::span<const TokenId> all(ids_);
  // [0, prefix_) done and no longer needed; [prefix_, read_) emitted, kept as context;
  // [read_, size) not emitted yet.
  const std::string before =
      impl_->decode(all.subspan(prefix_, read_ - prefix_), skip_special_tokens_);
  const std::string after = impl_->decode(all.subspan(prefix_), skip_special_tokens_);
  if (after.size() <= before.size() || may_still_change(after) ||
      after.compare(0, before.size(), before) != 0) {
    return {};
  }
  prefix_ = read_;
  read_ = ids_.size();
  // Drop ids that no window will look at again, so a long stream stays cheap.
  if (prefix_ > 64) {
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_));
    read_ -= prefix_;
    prefix_ = 0;
  }
  return after.substr(before.size());
}

// Whether the last id that decodes to something (unknown ids and skipped special tokens do
// not) is a byte-fallback token.
bool StreamDecoder::in_byte_run() const {
  for (auto it = ids_.rbegin(); it != ids_.rend(); ++it) {
    const auto* added = impl_->added->by_id(*it);
    if (added != nullptr && skip_special_tokens_ && added->special) continue;
    const std::string* token = impl_->token_of(*it);
    if (token == nullptr) continue;
    return is_byte_token(token);
  }
  return false;
}

std::string StreamDecoder::flush() {
  const std::span<const TokenId> all(ids_);
  const std::string before =
      impl_->decode(all.subspan(prefix_, read_ - prefix_), skip_special_tokens_);
  const std::string after = impl_->decode(all.subspan(prefix_), skip_special_tokens_);
  std::string rest;
  if (after.size() > before.size() && after.compare(0, before.size(), before) == 0) {
    rest = after.substr(before.size());
  }
  ids_.clear();
  prefix_ = read_ = 0;
  return rest;
}

}  // namespace cachet

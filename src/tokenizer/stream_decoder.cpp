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

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : impl_(tokenizer.impl_), skip_special_tokens_(skip_special_tokens) {}

std::string StreamDecoder::push(TokenId id) {
  ids_.push_back(id);
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

#include "engine/output_text.h"

#include <algorithm>

namespace cachet::engine {

OutputText::OutputText(const Tokenizer& tokenizer, bool skip_special_tokens,
                       std::vector<std::string> stops)
    : decoder_(tokenizer, skip_special_tokens), stops_(std::move(stops)) {
  for (const auto& s : stops_) max_stop_ = std::max(max_stop_, s.size());
}

bool OutputText::cut_at_stop(std::size_t search_from) {
  std::size_t best = std::string::npos;
  for (const auto& stop : stops_) best = std::min(best, text_.find(stop, search_from));
  if (best == std::string::npos) return false;
  text_.resize(best);
  stopped_ = true;
  return true;
}

bool OutputText::push(TokenId id) {
  if (stopped_) return false;
  const std::size_t old_size = text_.size();
  try {
    text_ += decoder_.push(id);
  } catch (const std::exception& e) {
    error_ = e.what();
    stopped_ = true;
    return false;
  }
  if (stops_.empty() || text_.size() == old_size) return false;
  // A stop string completed by this token starts at most max_stop - 1 bytes before it.
  return cut_at_stop(old_size >= max_stop_ ? old_size - max_stop_ + 1 : 0);
}

std::string OutputText::take_ready() {
  std::size_t ready = text_.size();
  if (!stopped_ && max_stop_ > 0) ready = ready >= max_stop_ - 1 ? ready - (max_stop_ - 1) : 0;
  // Never split a UTF-8 character: back up to the start of one.
  while (ready > streamed_ && ready < text_.size() &&
         (static_cast<unsigned char>(text_[ready]) & 0xC0) == 0x80)
    --ready;
  if (ready <= streamed_) return {};
  std::string piece = text_.substr(streamed_, ready - streamed_);
  streamed_ = ready;
  return piece;
}

std::string OutputText::finish() {
  if (!stopped_) {
    const std::size_t old_size = text_.size();
    try {
      text_ += decoder_.flush();
    } catch (const std::exception& e) {
      error_ = e.what();
    }
    if (!stops_.empty() && text_.size() > old_size)
      cut_at_stop(old_size >= max_stop_ ? old_size - max_stop_ + 1 : 0);
  }
  stopped_ = true;
  std::string rest = streamed_ < text_.size() ? text_.substr(streamed_) : std::string();
  streamed_ = text_.size();
  return rest;
}

}  // namespace cachet::engine

#include "sampling/logits_processors.h"

#include <algorithm>
#include <unordered_map>

namespace cachet::sampling {
namespace {

// The edits of one request under construction, one per token id.
class EditSet {
 public:
  EditSet(std::int32_t vocab_size, std::vector<LogitEdit>& out)
      : vocab_(vocab_size), out_(out), first_(out.size()) {}

  // The edit of `id`, made on first use; nullptr for an id outside the vocabulary.
  LogitEdit* at(TokenId id) {
    if (id < 0 || id >= vocab_) return nullptr;
    const auto [it, fresh] = index_.try_emplace(id, out_.size());
    if (fresh) {
      LogitEdit e;
      e.id = id;
      out_.push_back(e);
    }
    return &out_[it->second];
  }

  void sort() {
    std::sort(out_.begin() + static_cast<std::ptrdiff_t>(first_), out_.end(),
              [](const LogitEdit& a, const LogitEdit& b) { return a.id < b.id; });
  }

 private:
  std::int32_t vocab_;
  std::vector<LogitEdit>& out_;
  std::size_t first_;
  std::unordered_map<TokenId, std::size_t> index_;
};

void mask_stops(EditSet& edits, const SamplingParams& p, const TokenHistory& h) {
  for (TokenId id : p.stop_token_ids)
    if (LogitEdit* e = edits.at(id)) e->mask = 1;
  if (p.ignore_eos) return;
  for (TokenId id : h.eos)
    if (LogitEdit* e = edits.at(id)) e->mask = 1;
}

void penalize_output(EditSet& edits, const SamplingParams& p, const TokenHistory& h) {
  std::unordered_map<TokenId, std::int32_t> counts;
  for (TokenId id : h.output) ++counts[id];
  for (const auto& [id, count] : counts)
    if (LogitEdit* e = edits.at(id))
      e->subtract = p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
}

}  // namespace

bool processes_logits(const SamplingParams& p, std::int32_t num_generated) {
  return num_generated < p.min_tokens || !p.logit_bias.empty() || p.repetition_penalty != 1.0f ||
         p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
}

void logit_edits(const SamplingParams& p, const TokenHistory& h, std::int32_t vocab_size,
                 std::vector<LogitEdit>& out) {
  EditSet edits(vocab_size, out);
  if (static_cast<std::int64_t>(h.output.size()) < p.min_tokens) mask_stops(edits, p, h);
  for (const auto& [id, bias] : p.logit_bias)
    if (LogitEdit* e = edits.at(id)) e->bias = bias;
  if (p.repetition_penalty != 1.0f) {
    for (std::span<const TokenId> part : {h.prompt, h.output})
      for (TokenId id : part)
        if (LogitEdit* e = edits.at(id)) e->penalty = p.repetition_penalty;
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) penalize_output(edits, p, h);
  edits.sort();
}

void process_logits(std::span<float> logits, const SamplingParams& p, const TokenHistory& h) {
  std::vector<LogitEdit> edits;
  logit_edits(p, h, static_cast<std::int32_t>(logits.size()), edits);
  for (const LogitEdit& e : edits) {
    float& x = logits[static_cast<std::size_t>(e.id)];
    x = apply_logit_edit(x, e);
  }
}

}  // namespace cachet::sampling

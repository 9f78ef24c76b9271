#include "sampling/logits_processors.h"

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <vector>

namespace cachet::sampling {
namespace {

bool in_range(std::span<float> logits, TokenId id) {
  return id >= 0 && static_cast<std::size_t>(id) < logits.size();
}

void mask_stops(std::span<float> logits, const SamplingParams& p, const TokenHistory& h) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (TokenId id : p.stop_token_ids)
    if (in_range(logits, id)) logits[static_cast<std::size_t>(id)] = kNegInf;
  if (p.ignore_eos) return;
  for (TokenId id : h.eos)
    if (in_range(logits, id)) logits[static_cast<std::size_t>(id)] = kNegInf;
}

void penalize_repetition(std::span<float> logits, float penalty, const TokenHistory& h) {
  std::vector<bool> seen(logits.size(), false);
  for (std::span<const TokenId> part : {h.prompt, h.output}) {
    for (TokenId id : part) {
      if (!in_range(logits, id) || seen[static_cast<std::size_t>(id)]) continue;
      seen[static_cast<std::size_t>(id)] = true;
      float& x = logits[static_cast<std::size_t>(id)];
      x = x > 0.0f ? x / penalty : x * penalty;
    }
  }
}

void penalize_output(std::span<float> logits, const SamplingParams& p, const TokenHistory& h) {
  std::unordered_map<TokenId, std::int32_t> counts;
  for (TokenId id : h.output) ++counts[id];
  for (const auto& [id, count] : counts)
    if (in_range(logits, id))
      logits[static_cast<std::size_t>(id)] -=
          p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
}

}  // namespace

bool processes_logits(const SamplingParams& p, std::int32_t num_generated) {
  return num_generated < p.min_tokens || !p.logit_bias.empty() || p.repetition_penalty != 1.0f ||
         p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
}

void process_logits(std::span<float> logits, const SamplingParams& p, const TokenHistory& h) {
  if (static_cast<std::int64_t>(h.output.size()) < p.min_tokens) mask_stops(logits, p, h);
  for (const auto& [id, bias] : p.logit_bias)
    if (in_range(logits, id)) logits[static_cast<std::size_t>(id)] += bias;
  if (p.repetition_penalty != 1.0f) penalize_repetition(logits, p.repetition_penalty, h);
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) penalize_output(logits, p, h);
}

}  // namespace cachet::sampling

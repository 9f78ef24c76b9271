// The reference the logits-processing tests compare with: vLLM's definitions of min_tokens,
// logit_bias and the repetition / frequency / presence penalties, step by step, in double.
// Written apart from src/sampling/logits_processors.cpp on purpose.
#pragma once

#include <limits>
#include <map>
#include <set>
#include <vector>

#include "cachet/sampling.h"

namespace cachet::testing {

inline void naive_process_logits(std::vector<double>& x, const SamplingParams& p,
                                 const std::vector<TokenId>& prompt,
                                 const std::vector<TokenId>& output,
                                 const std::vector<TokenId>& eos) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (static_cast<int>(output.size()) < p.min_tokens) {
    for (TokenId id : p.stop_token_ids) x[id] = -kInf;
    if (!p.ignore_eos)
      for (TokenId id : eos) x[id] = -kInf;
  }
  for (const auto& [id, bias] : p.logit_bias) x[id] += bias;
  std::set<TokenId> seen(prompt.begin(), prompt.end());
  seen.insert(output.begin(), output.end());
  for (TokenId id : seen)
    x[id] = x[id] > 0 ? x[id] / p.repetition_penalty : x[id] * p.repetition_penalty;
  std::map<TokenId, int> count;
  for (TokenId id : output) ++count[id];
  for (const auto& [id, c] : count) x[id] -= p.frequency_penalty * c + p.presence_penalty;
}

}  // namespace cachet::testing

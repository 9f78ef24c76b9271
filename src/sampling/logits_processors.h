// What changes a request's logits before temperature and the filters (sampler.h): min_tokens,
// logit_bias and the repetition, frequency and presence penalties, in vLLM's order. They
// depend on the request's tokens so far, which sampler.h's functions do not see.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cachet/sampling.h"
#include "sampling/logit_edit.h"

namespace cachet::sampling {

// The tokens a request has so far, and the ids that end it.
struct TokenHistory {
  std::span<const TokenId> prompt;
  std::span<const TokenId> output;  // generated so far
  std::span<const TokenId> eos;     // the model's EOS ids (masked by min_tokens unless
                                    // params.ignore_eos)
};

// Whether process_logits() changes anything for the next token of a request that has
// generated `num_generated` tokens.
bool processes_logits(const SamplingParams& params, std::int32_t num_generated);

// The edits process_logits() applies, one per token it touches, ascending by id (ids
// outside [0, vocab_size) are left out; validate() rejects them). Appended to `out`.
// Defines, in this order (vLLM's):
//  1. min_tokens: while output.size() < min_tokens, the logits of params.stop_token_ids and
//     (unless ignore_eos) of the EOS ids become -inf;
//  2. logit_bias: logits[id] += bias;
//  3. repetition_penalty r != 1: for every token in prompt or output (once per token),
//     logit / r when the logit is > 0, logit * r otherwise;
//  4. frequency_penalty f, presence_penalty p: for every token generated c > 0 times,
//     logit -= f * c + p (f * c + p in fp32).
// Costs O(prompt + output) per call.
void logit_edits(const SamplingParams& params, const TokenHistory& history, std::int32_t vocab_size,
                 std::vector<LogitEdit>& out);

// Applies logit_edits() to `logits` (a row of the model's vocabulary), in fp32 as the logits
// are: the host's half of the definition the CUDA sampler shares (logit_edit.h).
void process_logits(std::span<float> logits, const SamplingParams& params,
                    const TokenHistory& history);

}  // namespace cachet::sampling

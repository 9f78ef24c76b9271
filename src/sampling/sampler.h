// Logits processing and sampling on the host: the CPU reference, and the definition the
// CUDA sampler must match.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cachet/engine.h"
#include "cachet/sampling.h"

namespace cachet::sampling {

// The largest `logprobs` / `prompt_logprobs` validate() accepts (vLLM's default cap).
inline constexpr std::int32_t kMaxLogprobs = 20;

// A uniform double in [0, 1) that depends only on (seed, counter): a request's draw for its
// n-th generated token is uniform(seed, n), whatever else is in the batch. Counter-based
// (a stateless mix of both words), so it needs no per-request state. Precisely: one block
// of Philox-4x32-10 with key {seed low 32 bits, seed high 32 bits} and counter {counter low,
// counter high, 0, 0}; output words 0 (high) and 1 (low) form 64 bits whose top 53, times
// 2^-53, are the result (see rng.h, which the CUDA sampler can include as is).
double uniform(std::uint64_t seed, std::uint64_t counter);

// The tokens that survive temperature, top_k, top_p and min_p (in that order), with their
// renormalized probabilities, most likely first (ties: lower id first). With temperature 0
// it is the single argmax token with probability 1.
//
// Definition (the CUDA sampler must match it up to floating-point rounding):
//  - Rank order: higher logit first, equal logits lower id first. It is the probability
//    order at every temperature, and decides every tie at a filter boundary.
//  - Weights w_i = exp((x_i - max x) / temperature) in double (exactly 1 for the top token);
//    p_i = w_i / the sum of the current survivors' w. The sum is exact up to rounding each w
//    to a multiple of 2^-63 (128-bit fixed point), so it does not depend on summation order.
//  - top_k (0 < k < vocab): the first k tokens in rank order, exactly k.
//  - top_p (< 1): in rank order, token j stays iff the probability mass ranked before it
//    (renormalized over the top_k survivors) is < top_p; at least one token stays.
//  - min_p (> 0): tokens with p_i >= min_p * p_max, i.e. w_i >= min_p, stay.
//  - Tokens with probability 0 (-inf logits, exp underflow) are never candidates.
// Degenerate rows never fail: NaN logits are treated as -inf; if every logit is -inf/NaN the
// result is token 0 (the argmax of the raw logits) with probability 1; +inf logits share all
// of the probability equally. temperature <= 0 or NaN is treated as 0 (greedy); validate()
// rejects the invalid values. Throws cachet::Error for empty logits.
struct Candidates {
  std::vector<TokenId> ids;
  std::vector<float> probs;
};
Candidates candidates(std::span<const float> logits, const SamplingParams& params);

// Picks the token for the `counter`-th draw of the request seeded `seed`: argmax for
// temperature 0, else the inverse-CDF of `candidates` at uniform(seed, counter): the first
// candidate whose cumulative probability (double, in candidate order) exceeds u, the last one
// when rounding leaves u beyond the total. Sorts only as many candidates as it walks.
TokenId sample(std::span<const float> logits, const SamplingParams& params, std::uint64_t seed,
               std::uint64_t counter);

// log_softmax(logits): the k most likely tokens (descending logprob, ties lower id first),
// followed by `include` when it is given and not among them. Computed in double from the raw
// logits (no temperature or filters) as x_i - logsumexp(x). k is clamped to [0, vocab]; with
// k 0 the result is just `include` (or empty). NaN logits count as -inf; a row that is all
// -inf/NaN is a point mass on token 0, and +inf logits share the mass equally, as in
// candidates(). Throws cachet::Error for empty logits or an `include` outside the vocabulary.
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, std::int32_t k,
                                       std::optional<TokenId> include);

// Empty when `params` is valid for a model with `vocab_size` tokens; otherwise a message
// naming the field and the rule, e.g. "top_p must be in (0, 1], got nan". Rules:
// temperature finite and >= 0; top_k >= 0; top_p in (0, 1]; min_p in [0, 1] (NaN fails
// each of them); max_tokens >= 1; n in [1, kMaxSamples]; every stop_token_ids entry in [0,
// vocab_size); min_tokens in [0, max_tokens]; logit_bias ids in [0, vocab_size), biases in [-100,
// 100]; repetition_penalty finite and > 0; presence_penalty and frequency_penalty in [-2, 2];
// logprobs and prompt_logprobs, when set, in [0, kMaxLogprobs].
std::string validate(const SamplingParams& params, std::int32_t vocab_size);

}  // namespace cachet::sampling

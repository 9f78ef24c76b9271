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

// A uniform double in [0, 1) that depends only on (seed, counter): a request's draw for its
// n-th generated token is uniform(seed, n), whatever else is in the batch. Counter-based
// (a stateless mix of both words), so it needs no per-request state.
double uniform(std::uint64_t seed, std::uint64_t counter);

// The tokens that survive temperature, top_k, top_p and min_p (in that order), with their
// renormalized probabilities, most likely first (ties: lower id first). With temperature 0
// it is the single argmax token with probability 1.
struct Candidates {
  std::vector<TokenId> ids;
  std::vector<float> probs;
};
Candidates candidates(std::span<const float> logits, const SamplingParams& params);

// Picks the token for the `counter`-th draw of the request seeded `seed`: argmax for
// temperature 0, else the inverse-CDF of `candidates` at uniform(seed, counter).
TokenId sample(std::span<const float> logits, const SamplingParams& params, std::uint64_t seed,
               std::uint64_t counter);

// log_softmax(logits): the k most likely tokens (descending logprob, ties lower id first),
// followed by `include` when it is given and not among them.
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, std::int32_t k,
                                       std::optional<TokenId> include);

// Empty when `params` is valid for a model with `vocab_size` tokens; otherwise a message
// naming the field and the rule, e.g. "top_p must be in (0, 1], got nan".
std::string validate(const SamplingParams& params, std::int32_t vocab_size);

}  // namespace cachet::sampling

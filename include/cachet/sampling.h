// cachet — per-request sampling parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cachet/types.h"

namespace cachet {

// How one request picks its tokens and when it stops. Filters apply in this order to the
// logits divided by `temperature`: top_k, then top_p, then min_p (the order of Hugging
// Face's logits warpers); the token is drawn from what survives.
struct SamplingParams {
  // Softmax temperature, >= 0. 0 means greedy (argmax; ties go to the lowest id).
  float temperature = 1.0f;
  // Keep the k most likely tokens; 0 (or >= vocab size) keeps all. Must be >= 0.
  std::int32_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability mass reaches top_p;
  // in (0, 1], 1 keeps all.
  float top_p = 1.0f;
  // Drop tokens whose probability is below min_p times the top token's; in [0, 1], 0 off.
  float min_p = 0.0f;
  // Seed of this request's random stream. The same seed gives the same tokens whatever
  // else is in the batch. Unset: a seed is drawn at submission.
  std::optional<std::uint64_t> seed;
  // Maximum number of generated tokens, >= 1.
  std::int32_t max_tokens = 16;
  // Tokens that end the request (in addition to the model's EOS); the stop token is
  // included in the output ids.
  std::vector<TokenId> stop_token_ids;
  // Do not stop at the model's EOS tokens (stop_token_ids still stop).
  bool ignore_eos = false;
  // Strings that end the request when the generated text contains one, matched across
  // token boundaries; the text is cut before the stop string (as vLLM does), the token ids
  // keep the token that completed it. Needs the model's tokenizer. Each must be non-empty.
  std::vector<std::string> stop;
  // Leave special tokens (EOS, chat markers) out of RequestOutput::text and streamed text.
  bool skip_special_tokens = true;
  // Return the top-k log-probabilities of every generated token (from the model's raw
  // distribution, before temperature and filters); the sampled token is always included.
  // Unset: none. 0: only the sampled token.
  std::optional<std::int32_t> logprobs;
  // Return the top-k log-probabilities at every prompt position i (the distribution of
  // token i given tokens [0, i)); the prompt token itself is always included. Unset: none.
  std::optional<std::int32_t> prompt_logprobs;
};

}  // namespace cachet

// cachet — per-request sampling parameters.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cachet/types.h"

namespace cachet {

// How one request picks its tokens and when it stops. The model's logits go through, in
// vLLM's order: min_tokens (EOS and stop ids masked), logit_bias, then the repetition,
// frequency and presence penalties; then temperature and the filters top_k, top_p, min_p
// (the order of Hugging Face's logits warpers); the token is drawn from what survives.
// Logprobs are always those of the model's raw logits, before any of this.
// The largest SamplingParams::n (the OpenAI API's limit).
inline constexpr std::int32_t kMaxSamples = 128;

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
  // How many samples of the prompt to generate, in [1, kMaxSamples], as vLLM's and the
  // OpenAI API's n. Each sample is its own sequence with its own random stream: sample j
  // draws with seed + j when `seed` is set (so sample 0 is what n = 1 gives), else with a
  // seed drawn for it. The samples share the prompt's KV cache: its full blocks are computed
  // once (only the last, partly filled block is computed per sample). Every sample gets its
  // own final update and RequestOutput (RequestOutput::sample_index).
  std::int32_t n = 1;
  // The model's EOS tokens (unless ignore_eos) and stop_token_ids cannot be generated before
  // this many tokens are (their logits are -inf until then), as vLLM's min_tokens. In
  // [0, max_tokens]. Stop strings are not held back.
  std::int32_t min_tokens = 0;
  // Token id -> a bias added to its logit, as the OpenAI API's logit_bias: -100 all but
  // bans a token, +100 all but forces it. Ids in the vocabulary, biases in [-100, 100].
  std::map<TokenId, float> logit_bias;
  // Hugging Face's / vLLM's repetition penalty: the logit of every token that occurs in the
  // prompt or in the output so far is divided by it when positive and multiplied by it
  // when negative. > 0; 1 is off, > 1 discourages repetition.
  float repetition_penalty = 1.0f;
  // OpenAI's: subtracted once from the logit of every token generated so far (the prompt
  // does not count). In [-2, 2]; 0 is off.
  float presence_penalty = 0.0f;
  // OpenAI's: subtracted from a token's logit once per time it was generated so far. In
  // [-2, 2]; 0 is off.
  float frequency_penalty = 0.0f;
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

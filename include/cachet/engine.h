// cachet — the Engine: build it once from a model directory, then generate.
//
//   cachet::EngineConfig config;
//   config.model_dir = "models/qwen3-tiny";
//   cachet::Engine engine(config);              // throws cachet::Error naming the problem
//   cachet::SamplingParams params;
//   params.max_tokens = 32;
//   auto outputs = engine.generate({{1, 2, 3}, {1, 2, 4}}, params);
//
// generate() is thread-safe: concurrent calls are served one after another.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cachet/config.h"
#include "cachet/errors.h"
#include "cachet/sampling.h"
#include "cachet/types.h"

namespace cachet {

// One token with its log-probability.
struct TokenLogprob {
  TokenId id = 0;
  float logprob = 0.0f;
};

// One request: a prompt (token ids) and its sampling parameters.
struct Request {
  std::vector<TokenId> prompt_token_ids;
  SamplingParams params;
};

// What one request produced.
struct RequestOutput {
  std::vector<TokenId> prompt_token_ids;
  // Generated token ids (including a final EOS / stop token when one ended the request).
  std::vector<TokenId> token_ids;
  // One entry per generated token when SamplingParams::logprobs is set: the top-k
  // tokens by log-probability, descending, plus the sampled token if it is not among them.
  std::vector<std::vector<TokenLogprob>> logprobs;
  // One entry per prompt position when SamplingParams::prompt_logprobs is set; entry 0 is
  // empty (std::nullopt): nothing predicts the first token.
  std::vector<std::optional<std::vector<TokenLogprob>>> prompt_logprobs;
  FinishReason finish_reason = FinishReason::kLength;
  // Why the request failed (FinishReason::kError); empty otherwise.
  std::string error;
  // Prompt tokens whose K/V came from the prefix cache instead of being computed.
  std::int32_t num_cached_tokens = 0;
  // From submission to the first generated token, milliseconds.
  double ttft_ms = 0.0;
  // From the first to the last generated token, milliseconds.
  double decode_ms = 0.0;
};

// Facts about a built engine: the values actually chosen.
struct EngineInfo {
  std::string architecture;  // e.g. "Qwen3ForCausalLM"
  std::string backend;       // "cpu" or "cuda"
  std::int32_t vocab_size = 0;
  std::int32_t num_layers = 0;
  std::int32_t block_size = 0;
  std::int64_t num_kv_blocks = 0;
  std::int64_t kv_cache_bytes = 0;
  std::int32_t max_model_len = 0;
  std::int32_t max_num_seqs = 0;
  std::int32_t max_num_batched_tokens = 0;
  std::int32_t num_threads = 0;
  std::vector<TokenId> eos_token_ids;
};

class Engine {
 public:
  // Loads the model and allocates the KV cache. Throws cachet::Error.
  explicit Engine(const EngineConfig& config);
  ~Engine();
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs every request to completion, batched together, and returns one output per
  // request in input order. A bad request fails alone (FinishReason::kError).
  std::vector<RequestOutput> generate(const std::vector<Request>& requests);
  // The same sampling parameters for every prompt.
  std::vector<RequestOutput> generate(const std::vector<std::vector<TokenId>>& prompts,
                                      const SamplingParams& params);

  const EngineInfo& info() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cachet

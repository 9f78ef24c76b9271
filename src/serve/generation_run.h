// A validated generation request running on the engine: one RequestStream per prompt, their
// samples as the API's choices (index = prompt * n + sample), the pieces that came since the
// last pull (for streaming), and the usage. Uses only cachet's public API.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "serve/openai_protocol.h"
#include "serve/request_stream.h"

namespace cachet::serve {

// New output of one choice.
struct Delta {
  std::int32_t index = 0;
  std::string text;
  std::vector<TokenId> token_ids;
  std::vector<std::vector<TokenLogprob>> logprobs;
  std::optional<FinishReason> finish_reason;  // on its last delta
  std::optional<CacheMiss> cache_miss;        // on its last delta
  std::string error;                          // when it failed
};

class GenerationRun {
 public:
  // Submits every prompt (with `pin` on each, when given). Throws what Engine::submit throws.
  // `metrics`, when given, observes every request.
  GenerationRun(Engine& engine, const GenerationRequest& request,
                std::optional<CachePin> pin = std::nullopt,
                std::shared_ptr<ServerMetrics> metrics = nullptr);

  // What came since the last pull, waiting up to `timeout` for something.
  std::vector<Delta> pull(std::chrono::milliseconds timeout);
  // Pulls until every choice has finished (or `stop` is set: then the rest are aborted).
  void wait(const std::atomic<bool>& stop);
  bool done() const;
  void abort();

  const std::vector<Choice>& choices() const { return choices_; }
  Usage usage() const;
  // The first error a choice ended with, or "".
  const std::string& error() const { return error_; }

 private:
  std::int32_t n_ = 1;
  std::vector<std::unique_ptr<RequestStream>> streams_;
  std::vector<Choice> choices_;
  std::vector<std::int64_t> prompt_tokens_;
  std::vector<std::int64_t> cached_tokens_;  // per prompt: sample 0's
  std::string error_;
};

}  // namespace cachet::serve

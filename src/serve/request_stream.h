// One request submitted to the engine on behalf of an HTTP handler: its updates (all samples)
// queued from the engine's thread and taken by the handler's thread. Destroying it before
// the request finished aborts the request (a client that went away frees its KV blocks).
// Uses only cachet's public API.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "cachet/engine.h"
#include "serve/server_metrics.h"

namespace cachet::serve {

// One sample's update, owning everything.
struct SampleUpdate {
  std::int32_t sample = 0;
  std::vector<TokenId> token_ids;
  std::vector<std::vector<TokenLogprob>> logprobs;
  std::string text;
  std::int32_t num_cached_tokens = 0;
  std::optional<RequestOutput> output;  // set on the sample's final update
};

class RequestStream {
 public:
  // Submits `request`. Throws what Engine::submit throws (a failed or stopping engine).
  // `metrics`, when given, observes its tokens and outputs.
  RequestStream(Engine& engine, Request request, std::shared_ptr<ServerMetrics> metrics = nullptr);
  ~RequestStream();
  RequestStream(const RequestStream&) = delete;
  RequestStream& operator=(const RequestStream&) = delete;

  // The updates that came since the last call, waiting up to `timeout` for the first.
  std::vector<SampleUpdate> take(std::chrono::milliseconds timeout);
  // Whether every sample has had its final update (and take() has returned it).
  bool done() const;
  std::int32_t num_samples() const { return num_samples_; }
  void abort();

 private:
  struct Shared {
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<SampleUpdate> queue;
    std::int32_t finished = 0;
    // Used on the engine's thread only: when each sample's last tokens came.
    std::vector<std::optional<std::chrono::steady_clock::time_point>> last_token_at;
  };
  Engine& engine_;
  std::shared_ptr<Shared> shared_;  // the callback keeps it alive
  RequestId id_ = 0;
  std::int32_t num_samples_ = 1;
  std::int32_t taken_finals_ = 0;
};

}  // namespace cachet::serve

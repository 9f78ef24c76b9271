// The Prometheus metrics of `cachet serve` (GET /metrics), kept with prometheus-cpp (Debian's
// prometheus-cpp-dev) and written in its text exposition format. Two sources:
//  - the requests the server ran, observed as their updates arrive (on the engine's thread):
//    finished requests by reason, prompt and generated tokens, and the latency histograms
//    (queue time, time to first token, inter-token latency, end-to-end latency);
//  - Engine::stats(), read at each scrape: the prefix cache's queries and hits, prompt tokens
//    by where their K/V came from, KV blocks per tier and state, evictions, tier transfers,
//    preemptions and pins. The engine's counters only grow; each scrape adds what they grew
//    by since the last one.
// docs/serve.md lists every metric. Uses only cachet's public API.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cachet/engine.h"

namespace cachet::serve {

class ServerMetrics {
 public:
  explicit ServerMetrics(const EngineInfo& info);

  // A sample's new tokens came `gap_s` seconds after its previous ones (or after its first
  // token): one inter-token latency observation per token.
  void observe_token_gap(double gap_s, std::size_t num_tokens);
  // A sample ended; `first_sample`: it is sample 0, which counts the request and its prompt.
  void observe_finished(const RequestOutput& out, bool first_sample);
  // The metrics in the text exposition format, after reading `engine`'s stats.
  std::string scrape(const Engine& engine);

 private:
  void register_engine_metrics(const EngineInfo& info);
  void sync_engine(const EngineStats& s, bool healthy);

  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex scrape_mutex_;
  EngineStats last_{};  // what the engine counters were at the last scrape

  // Requests.
  std::array<prometheus::Counter*, 4> finished_{};  // by FinishReason
  prometheus::Counter* prompt_tokens_ = nullptr;
  prometheus::Counter* generation_tokens_ = nullptr;
  prometheus::Histogram* queue_time_ = nullptr;
  prometheus::Histogram* ttft_ = nullptr;
  prometheus::Histogram* itl_ = nullptr;
  prometheus::Histogram* e2e_ = nullptr;
  prometheus::Gauge* healthy_ = nullptr;

  // The prefix cache and its tiers: most series mirror one EngineStats field each.
  template <class Metric>
  struct FromEngine {
    Metric* metric;
    std::int64_t EngineStats::*field;
  };
  std::vector<FromEngine<prometheus::Counter>> engine_counters_;  // fed what the field grew by
  std::vector<FromEngine<prometheus::Gauge>> engine_gauges_;      // set to the field
  // The rest are computed from several fields.
  prometheus::Counter* src_computed_ = nullptr;
  prometheus::Counter* src_device_ = nullptr;
  prometheus::Gauge* usage_ = nullptr;
  std::array<prometheus::Counter*, kNumCacheMissReasons> misses_{};  // by CacheMissReason
  std::int64_t num_kv_blocks_ = 0;
};

}  // namespace cachet::serve

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
  prometheus::Gauge* running_ = nullptr;
  prometheus::Gauge* waiting_ = nullptr;
  prometheus::Gauge* healthy_ = nullptr;

  // The prefix cache and its tiers.
  prometheus::Counter* cache_queries_ = nullptr;
  prometheus::Counter* cache_hits_ = nullptr;
  prometheus::Counter* src_computed_ = nullptr;
  prometheus::Counter* src_device_ = nullptr;
  prometheus::Counter* src_host_ = nullptr;
  prometheus::Counter* src_disk_ = nullptr;
  prometheus::Counter* src_partial_ = nullptr;
  prometheus::Gauge* device_free_ = nullptr;
  prometheus::Gauge* device_cached_ = nullptr;
  prometheus::Gauge* device_in_use_ = nullptr;
  prometheus::Gauge* host_used_ = nullptr;
  prometheus::Gauge* disk_used_ = nullptr;
  prometheus::Gauge* disk_bytes_ = nullptr;
  prometheus::Gauge* usage_ = nullptr;
  prometheus::Gauge* device_pinned_ = nullptr;
  prometheus::Gauge* host_pinned_ = nullptr;
  prometheus::Counter* evict_device_ = nullptr;
  prometheus::Counter* evict_host_ = nullptr;
  prometheus::Counter* evict_disk_ = nullptr;
  prometheus::Counter* to_host_ = nullptr;
  prometheus::Counter* from_host_ = nullptr;
  prometheus::Counter* to_disk_ = nullptr;
  prometheus::Counter* from_disk_ = nullptr;
  prometheus::Counter* disk_read_failures_ = nullptr;
  prometheus::Counter* disk_write_failures_ = nullptr;
  prometheus::Counter* disk_writes_dropped_ = nullptr;
  prometheus::Counter* preemptions_ = nullptr;
  std::array<prometheus::Counter*, kNumCacheMissReasons> misses_{};  // by CacheMissReason
  std::int64_t num_kv_blocks_ = 0;
};

}  // namespace cachet::serve

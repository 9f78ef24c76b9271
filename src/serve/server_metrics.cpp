#include "serve/server_metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>

namespace cachet::serve {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;
using prometheus::Labels;
using prometheus::Registry;

// Seconds, from a millisecond to over a quarter of an hour (a long prompt on the CPU).
const Histogram::BucketBoundaries kLatencyBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 25.0,
                                                     50.0,  100.,   250.,  500., 1000.};
const Histogram::BucketBoundaries kTokenGapBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.075, 0.1,    0.15,  0.25, 0.5,
                                                      0.75,   1.0,   2.5,    5.0,   10.0};

prometheus::Counter* counter(Registry& r, const std::string& name, const std::string& help,
                             const Labels& labels = {}) {
  return &BuildCounter().Name(name).Help(help).Register(r).Add(labels);
}

prometheus::Gauge* gauge(Registry& r, const std::string& name, const std::string& help,
                         const Labels& labels = {}) {
  return &BuildGauge().Name(name).Help(help).Register(r).Add(labels);
}

prometheus::Histogram* histogram(Registry& r, const std::string& name, const std::string& help,
                                 const Histogram::BucketBoundaries& buckets) {
  return &BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
}

// Adds to `c` what an engine counter grew by.
void grow(prometheus::Counter* c, std::int64_t now, std::int64_t before) {
  if (now > before) c->Increment(static_cast<double>(now - before));
}

}  // namespace

ServerMetrics::ServerMetrics(const EngineInfo& info)
    : registry_(std::make_shared<Registry>()), num_kv_blocks_(info.num_kv_blocks) {
  Registry& r = *registry_;
  auto& finished = BuildCounter()
                       .Name("cachet:requests_finished_total")
                       .Help("Requests finished, by finish reason (stop, length, abort, error)")
                       .Register(r);
  for (FinishReason f :
       {FinishReason::kLength, FinishReason::kStop, FinishReason::kError, FinishReason::kAborted})
    finished_[static_cast<std::size_t>(f)] =
        &finished.Add({{"finished_reason", std::string(to_string(f))}});
  prompt_tokens_ = counter(r, "cachet:prompt_tokens_total", "Prompt tokens of finished requests");
  generation_tokens_ =
      counter(r, "cachet:generation_tokens_total", "Tokens generated, by finished samples");
  queue_time_ =
      histogram(r, "cachet:request_queue_time_seconds",
                "From submission to the first step that scheduled the request", kLatencyBuckets);
  ttft_ = histogram(r, "cachet:time_to_first_token_seconds",
                    "From submission to the first generated token", kLatencyBuckets);
  itl_ = histogram(r, "cachet:inter_token_latency_seconds",
                   "Between a sample's consecutive generated tokens", kTokenGapBuckets);
  e2e_ = histogram(r, "cachet:e2e_request_latency_seconds",
                   "From submission to the last generated token", kLatencyBuckets);
  register_engine_metrics(info);
}

void ServerMetrics::register_engine_metrics(const EngineInfo& info) {
  Registry& r = *registry_;
  // A family, and each of its series fed by one EngineStats field.
  using Field = std::int64_t EngineStats::*;
  const auto counters = [&](const std::string& name, const std::string& help,
                            std::vector<std::pair<Labels, Field>> series) {
    auto& family = BuildCounter().Name(name).Help(help).Register(r);
    for (auto& [labels, field] : series) engine_counters_.push_back({&family.Add(labels), field});
  };
  const auto gauges = [&](const std::string& name, const std::string& help,
                          std::vector<std::pair<Labels, Field>> series) {
    auto& family = BuildGauge().Name(name).Help(help).Register(r);
    for (auto& [labels, field] : series) engine_gauges_.push_back({&family.Add(labels), field});
  };
  gauges("cachet:num_requests_running", "Sequences the scheduler runs now",
         {{{}, &EngineStats::num_running}});
  gauges("cachet:num_requests_waiting", "Sequences waiting to be scheduled",
         {{{}, &EngineStats::num_waiting}});
  healthy_ = gauge(r, "cachet:engine_healthy", "1 while the engine can run requests, else 0");
  counters("cachet:prefix_cache_queries_total",
           "Prompt tokens looked up in the prefix cache (each request once)",
           {{{}, &EngineStats::prefix_cache_query_tokens}});
  counters("cachet:prefix_cache_hits_total",
           "Of the queried prompt tokens, those the prefix cache served",
           {{{}, &EngineStats::prefix_cache_hit_tokens}});
  // Computed and device-tier tokens are differences of engine fields: fed in sync_engine.
  auto& by_source =
      BuildCounter()
          .Name("cachet:prompt_tokens_by_source_total")
          .Help(
              "Prompt tokens by where their K/V came from: computed, or the cache's device, "
              "host or disk tier (each request once, at its first admission)")
          .Register(r);
  src_computed_ = &by_source.Add({{"source", "computed"}});
  src_device_ = &by_source.Add({{"source", "device"}});
  engine_counters_.push_back(
      {&by_source.Add({{"source", "host"}}), &EngineStats::prefix_cache_host_hit_tokens});
  engine_counters_.push_back(
      {&by_source.Add({{"source", "disk"}}), &EngineStats::prefix_cache_disk_hit_tokens});
  counters("cachet:prefix_cache_partial_hits_total",
           "Of the hit tokens, those copied from a block that matched only partly",
           {{{}, &EngineStats::prefix_cache_partial_hit_tokens}});
  gauges("cachet:kv_blocks",
         "KV blocks by tier and state (device: free, cached, in_use; host and disk: used)",
         {{{{"tier", "device"}, {"state", "free"}}, &EngineStats::blocks_free},
          {{{"tier", "device"}, {"state", "cached"}}, &EngineStats::blocks_cached},
          {{{"tier", "device"}, {"state", "in_use"}}, &EngineStats::blocks_in_use},
          {{{"tier", "host"}, {"state", "used"}}, &EngineStats::host_blocks_used},
          {{{"tier", "disk"}, {"state", "used"}}, &EngineStats::disk_blocks_used}});
  auto& capacity = BuildGauge()
                       .Name("cachet:kv_blocks_capacity")
                       .Help("KV blocks each memory tier can hold")
                       .Register(r);
  capacity.Add({{"tier", "device"}}).Set(static_cast<double>(info.num_kv_blocks));
  capacity.Add({{"tier", "host"}}).Set(static_cast<double>(info.num_host_kv_blocks));
  gauges("cachet:disk_kv_cache_bytes", "Bytes of the disk tier's records",
         {{{}, &EngineStats::disk_bytes_used}});
  usage_ = gauge(r, "cachet:kv_cache_usage_perc",
                 "Fraction of the device KV blocks referenced by running requests (0 to 1)");
  gauges("cachet:kv_blocks_pinned", "KV blocks held by prefix pins, by tier",
         {{{{"tier", "device"}}, &EngineStats::blocks_pinned},
          {{{"tier", "host"}}, &EngineStats::host_blocks_pinned}});
  counters("cachet:kv_evictions_total", "Cached KV blocks evicted, by tier",
           {{{{"tier", "device"}}, &EngineStats::evictions},
            {{{"tier", "host"}}, &EngineStats::host_evictions},
            {{{"tier", "disk"}}, &EngineStats::disk_evictions}});
  counters("cachet:kv_tier_transfers_total",
           "KV blocks copied between the cache's tiers, by direction",
           {{{{"direction", "device_to_host"}}, &EngineStats::host_blocks_stored},
            {{{"direction", "host_to_device"}}, &EngineStats::host_blocks_loaded},
            {{{"direction", "host_to_disk"}}, &EngineStats::disk_blocks_written},
            {{{"direction", "disk_to_host"}}, &EngineStats::disk_blocks_read}});
  counters("cachet:disk_tier_failures_total",
           "Disk tier records that failed: read (corrupt or unreadable), write (failed), "
           "dropped (never queued)",
           {{{{"op", "read"}}, &EngineStats::disk_read_failures},
            {{{"op", "write"}}, &EngineStats::disk_write_failures},
            {{{"op", "dropped"}}, &EngineStats::disk_writes_dropped}});
  auto& misses = BuildCounter()
                     .Name("cachet:prefix_cache_misses_total")
                     .Help(
                         "Requests by why their cached prefix ended where it did (a sample "
                         "each; reason none: it served all it could)")
                     .Register(r);
  for (std::size_t i = 0; i < kNumCacheMissReasons; ++i)
    misses_[i] = &misses.Add({{"reason", std::string(to_string(static_cast<CacheMissReason>(i)))}});
  counters("cachet:num_preemptions_total",
           "Running sequences preempted for KV blocks (recomputed later)",
           {{{}, &EngineStats::preemptions}});
}

void ServerMetrics::observe_token_gap(double gap_s, std::size_t num_tokens) {
  for (std::size_t i = 0; i < num_tokens; ++i)
    itl_->Observe(gap_s / static_cast<double>(num_tokens));
}

void ServerMetrics::observe_finished(const RequestOutput& out, bool first_sample) {
  finished_[static_cast<std::size_t>(out.finish_reason)]->Increment();
  if (first_sample) prompt_tokens_->Increment(static_cast<double>(out.prompt_token_ids.size()));
  generation_tokens_->Increment(static_cast<double>(out.token_ids.size()));
  if (out.queue_ms > 0.0 || !out.token_ids.empty()) queue_time_->Observe(out.queue_ms / 1e3);
  if (out.token_ids.empty()) return;  // never produced a token: no TTFT or latency
  ttft_->Observe(out.ttft_ms / 1e3);
  e2e_->Observe((out.ttft_ms + out.decode_ms) / 1e3);
}

void ServerMetrics::sync_engine(const EngineStats& s, bool healthy) {
  const EngineStats& b = last_;
  for (const auto& [counter, field] : engine_counters_) grow(counter, s.*field, b.*field);
  for (const auto& [gauge, field] : engine_gauges_) gauge->Set(static_cast<double>(s.*field));
  healthy_->Set(healthy ? 1.0 : 0.0);
  const auto device = [](const EngineStats& e) {
    return e.prefix_cache_hit_tokens - e.prefix_cache_host_hit_tokens -
           e.prefix_cache_disk_hit_tokens;
  };
  grow(src_computed_, s.prefix_cache_query_tokens - s.prefix_cache_hit_tokens,
       b.prefix_cache_query_tokens - b.prefix_cache_hit_tokens);
  grow(src_device_, device(s), device(b));
  usage_->Set(num_kv_blocks_ > 0
                  ? static_cast<double>(s.blocks_in_use) / static_cast<double>(num_kv_blocks_)
                  : 0.0);
  for (std::size_t i = 0; i < kNumCacheMissReasons; ++i)
    grow(misses_[i], s.prefix_cache_misses[i], b.prefix_cache_misses[i]);
  last_ = s;
}

std::string ServerMetrics::scrape(const Engine& engine) {
  std::lock_guard lock(scrape_mutex_);
  sync_engine(engine.stats(), engine.health().ok);
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace cachet::serve

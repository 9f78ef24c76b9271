// Builds each engine step: which sequences run and how many of their tokens, under a token
// budget and a sequence budget, with KV blocks for everything it schedules.
//
// Per step: running decodes first (one token each), then running prefills continue with
// their next chunk, then waiting sequences are admitted. Admission matches the longest
// cached prefix (full blocks, in the device pool and then the host tier; at least the last
// prompt token is always computed) and allocates the rest; a sequence whose match stops where
// the disk tier has the next blocks waits while they are read into the host tier (loading),
// then is admitted with them; a waiting sequence whose next uncached
// block is being computed by a running sequence waits a step and then hits it (in-batch
// deduplication). Out of blocks, cached blocks nobody references are evicted (least recently used
// first); still out, the latest-arrived running sequence is preempted by recompute: its blocks are
// released, the full ones stay cached, and it is admitted again later, usually as a cache hit.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "cachet/config.h"
#include "engine/sequence.h"
#include "kv/kv_cache_manager.h"

namespace cachet::engine {

struct SchedulerConfig {
  std::int32_t max_num_seqs = 64;
  std::int32_t max_num_batched_tokens = 2048;
  SchedulePolicy policy = SchedulePolicy::kFcfs;
  // cache-aware: how many of the longest-waiting requests compete on cached-prefix length.
  std::int32_t cache_aware_window = 64;
};

struct ScheduledSeq {
  Sequence* seq = nullptr;
  std::int32_t num_tokens = 0;  // tokens [seq->num_computed, + num_tokens) run this step
};

struct Step {
  std::vector<ScheduledSeq> seqs;
  // Sequences that cannot run even alone (they need more blocks than the pool has); the
  // caller fails them.
  std::vector<Sequence*> unservable;

  bool empty() const { return seqs.empty(); }
};

// Prefix-cache statistics. Each request's prompt counts once, at its first admission.
struct CacheCounters {
  std::int64_t query_tokens = 0, hit_tokens = 0;
  std::int64_t query_blocks = 0, hit_blocks = 0;
  std::int64_t host_hit_tokens = 0;     // of hit_tokens, those loaded from the host tier
  std::int64_t disk_hit_tokens = 0;     // of hit_tokens, those read from the disk tier
  std::int64_t partial_hit_tokens = 0;  // of hit_tokens, those copied from a partly matching block
  std::array<std::int64_t, kNumCacheMissReasons> misses{};  // by CacheMissReason
  std::int64_t preemptions = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, kv::KvCacheManager& kv);

  void add(Sequence* seq);
  Step schedule();
  // After the step ran: its tokens are computed and their full blocks become visible.
  void commit(const Step& step);
  // Releases the blocks of a sequence that finished, failed or was aborted and forgets it.
  void finish(Sequence* seq);

  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  std::size_t num_waiting() const { return waiting_.size(); }
  std::size_t num_running() const { return running_.size(); }
  const CacheCounters& counters() const { return counters_; }
  // Block tables of every sequence that holds blocks, for integrity checks.
  std::vector<const std::vector<kv::BlockId>*> block_tables() const;

 private:
  void schedule_running(Step& step, std::int32_t& budget);
  void admit_waiting(Step& step, std::int32_t& budget);
  void order_cache_aware();
  kv::PrefixMatch match_for(Sequence& seq);
  void preempt(Sequence& seq);

  SchedulerConfig config_;
  kv::KvCacheManager& kv_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // arrival order
  CacheCounters counters_;
};

}  // namespace cachet::engine

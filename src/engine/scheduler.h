// Builds each engine step: which sequences run and how many of their tokens, under a token
// budget and a sequence budget, with KV blocks allocated for everything it schedules.
//
// Per step: running sequences first (a decode is one token; an unfinished prefill continues
// with its next chunk), in arrival order; then waiting sequences are admitted in arrival
// order while the budgets and free blocks allow. When a running sequence needs a block and
// none is free, the latest-arrived running sequence is preempted by recompute: its blocks
// are released and it goes back to the front of the waiting queue, to be prefilled again
// (prompt and generated tokens) when there is room.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "engine/sequence.h"
#include "kv/block_pool.h"

namespace cachet::engine {

struct SchedulerConfig {
  std::int32_t block_size = 16;
  std::int32_t max_num_seqs = 64;
  std::int32_t max_num_batched_tokens = 2048;
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
  std::int64_t num_preempted = 0;

  bool empty() const { return seqs.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, kv::BlockPool& pool);

  void add(Sequence* seq);
  Step schedule();
  // Releases the blocks of a sequence that finished (or failed) and forgets it.
  void finish(Sequence* seq);

  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  std::size_t num_waiting() const { return waiting_.size(); }
  std::size_t num_running() const { return running_.size(); }
  std::int64_t num_preemptions() const { return num_preemptions_; }

 private:
  std::int64_t blocks_needed(const Sequence& seq, std::int32_t num_tokens) const;
  bool grow(Sequence& seq, std::int32_t num_tokens);
  void preempt(Sequence& seq);

  SchedulerConfig config_;
  kv::BlockPool& pool_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // arrival order
  std::int64_t num_preemptions_ = 0;
};

}  // namespace cachet::engine

#include "engine/scheduler.h"

#include <algorithm>

namespace cachet::engine {

Scheduler::Scheduler(const SchedulerConfig& config, kv::BlockPool& pool) : config_(config), pool_(pool) {}

void Scheduler::add(Sequence* seq) {
  seq->status = SeqStatus::kWaiting;
  waiting_.push_back(seq);
}

std::int64_t Scheduler::blocks_needed(const Sequence& seq, std::int32_t num_tokens) const {
  std::int64_t total = (static_cast<std::int64_t>(seq.num_computed) + num_tokens + config_.block_size - 1) /
                       config_.block_size;
  return std::max<std::int64_t>(0, total - static_cast<std::int64_t>(seq.blocks.size()));
}

bool Scheduler::grow(Sequence& seq, std::int32_t num_tokens) {
  auto fresh = pool_.allocate(blocks_needed(seq, num_tokens));
  if (!fresh) return false;
  seq.blocks.insert(seq.blocks.end(), fresh->begin(), fresh->end());
  return true;
}

void Scheduler::preempt(Sequence& seq) {
  pool_.release(seq.blocks);
  seq.blocks.clear();
  seq.num_computed = 0;
  seq.status = SeqStatus::kWaiting;
  waiting_.push_front(&seq);
  ++num_preemptions_;
}

Step Scheduler::schedule() {
  Step step;
  std::int32_t budget = config_.max_num_batched_tokens;

  // Running sequences: decodes (one token) first, then prefills that continue with their
  // next chunk. A sequence that needs a block when none is free takes it from the latest
  // arrival, preempting it (possibly itself); one that cannot fit even alone is unservable.
  for (bool decode_pass : {true, false}) {
    for (std::size_t i = 0; i < running_.size() && budget > 0;) {
      Sequence* seq = running_[i];
      std::int32_t remaining = seq->size() - seq->num_computed;
      bool is_decode = remaining == 1;
      bool already = std::any_of(step.seqs.begin(), step.seqs.end(), [&](const ScheduledSeq& s) { return s.seq == seq; });
      if (is_decode != decode_pass || already || remaining <= 0) {
        ++i;
        continue;
      }
      std::int32_t n = std::min(remaining, budget);
      bool scheduled = true;
      while (!grow(*seq, n)) {
        if (running_.size() == 1) {
          running_.clear();
          step.unservable.push_back(seq);
          scheduled = false;
          break;
        }
        Sequence* victim = running_.back();
        running_.pop_back();
        // A victim scheduled earlier in this step cannot exist: victims come from the back
        // and scheduled sequences sit before index i.
        preempt(*victim);
        ++step.num_preempted;
        if (victim == seq) {
          scheduled = false;
          break;
        }
      }
      if (!scheduled) continue;  // running_[i] is now the next sequence (or i is past the end)
      step.seqs.push_back({seq, n});
      budget -= n;
      ++i;
    }
  }

  // Waiting sequences, in order, while the budgets and the free blocks allow.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<std::int32_t>(running_.size()) < config_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    std::int32_t n = std::min(seq->size() - seq->num_computed, budget);
    if (!grow(*seq, n)) {
      if (running_.empty()) {
        // Every block is free and still not enough: this sequence can never run.
        waiting_.pop_front();
        step.unservable.push_back(seq);
        continue;
      }
      break;
    }
    waiting_.pop_front();
    seq->status = SeqStatus::kRunning;
    auto pos = std::upper_bound(running_.begin(), running_.end(), seq,
                                [](const Sequence* a, const Sequence* b) { return a->arrival < b->arrival; });
    running_.insert(pos, seq);
    step.seqs.push_back({seq, n});
    budget -= n;
  }
  return step;
}

void Scheduler::finish(Sequence* seq) {
  pool_.release(seq->blocks);
  seq->blocks.clear();
  seq->status = SeqStatus::kFinished;
  std::erase(running_, seq);
  std::erase(waiting_, seq);
}

}  // namespace cachet::engine

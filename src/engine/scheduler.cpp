#include "engine/scheduler.h"

#include <algorithm>
#include <unordered_set>

namespace cachet::engine {

Scheduler::Scheduler(const SchedulerConfig& config, kv::KvCacheManager& kv)
    : config_(config), kv_(kv) {}

void Scheduler::add(Sequence* seq) {
  seq->status = SeqStatus::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::preempt(Sequence& seq) {
  kv_.free(seq.kv);
  seq.num_computed = 0;
  seq.status = SeqStatus::kWaiting;
  waiting_.push_front(&seq);
  ++counters_.preemptions;
}

Step Scheduler::schedule() {
  Step step;
  std::int32_t budget = config_.max_num_batched_tokens;
  schedule_running(step, budget);
  admit_waiting(step, budget);
  return step;
}

void Scheduler::schedule_running(Step& step, std::int32_t& budget) {
  // Decodes first, then prefills that continue with their next chunk. A sequence that needs
  // a block when none is free or evictable takes it from the latest arrival, preempting it
  // (possibly itself); one that cannot fit even alone is unservable.
  for (bool decode_pass : {true, false}) {
    for (std::size_t i = 0; i < running_.size() && budget > 0;) {
      Sequence* seq = running_[i];
      const std::int32_t remaining = seq->size() - seq->num_computed;
      if ((remaining == 1) != decode_pass || remaining <= 0) {
        ++i;
        continue;
      }
      const std::int32_t n = std::min(remaining, budget);
      bool ok = true;
      while (!kv_.grow(seq->kv, seq->num_computed + n)) {
        if (running_.size() == 1) {
          // Released now, not when the caller finishes it: admission below must see the
          // pool as empty as it is.
          kv_.free(seq->kv);
          running_.clear();
          step.unservable.push_back(seq);
          ok = false;
          break;
        }
        // The latest arrival not yet scheduled in this step gives its blocks up (possibly
        // `seq` itself, which always qualifies). In the decode pass every sequence before
        // index i is scheduled or a prefill; in the prefill pass every scheduled decode may
        // sit anywhere, so the search must skip them. Either way the victim is at or
        // after index i, so removing it never shifts `seq`.
        auto victim_it = std::find_if(running_.rbegin(), running_.rend(), [&](const Sequence* s) {
          return std::none_of(step.seqs.begin(), step.seqs.end(),
                              [&](const ScheduledSeq& e) { return e.seq == s; });
        });
        Sequence* victim = *victim_it;
        running_.erase(std::next(victim_it).base());
        preempt(*victim);
        if (victim == seq) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;  // running_[i] is now the next sequence, or i is past the end
      step.seqs.push_back({seq, n});
      budget -= n;
      ++i;
    }
  }
}

namespace {

// Prompt logprobs need logits at every prompt position, which cached blocks do not hold:
// such a request computes its whole prompt (still filling the cache for others) until it
// has them all, which is once it has generated a token.
bool needs_whole_prompt(const Sequence& seq) {
  return seq.params.prompt_logprobs && seq.num_generated() == 0;
}

}  // namespace

kv::PrefixMatch Scheduler::match_for(Sequence& seq) {
  kv_.update_hashes(seq.kv, seq.tokens);
  if (needs_whole_prompt(seq)) return {};
  return kv_.match(seq.kv, seq.tokens, seq.size() - 1);
}

void Scheduler::order_cache_aware() {
  // SGLang's longest-prefix-match, within a window of the longest-waiting requests so that
  // nobody starves: among them, the ones with the most cached tokens go first.
  const std::size_t window =
      std::min<std::size_t>(waiting_.size(), static_cast<std::size_t>(config_.cache_aware_window));
  std::vector<std::pair<std::int32_t, Sequence*>> ranked;
  for (std::size_t i = 0; i < window; ++i)
    ranked.emplace_back(match_for(*waiting_[i]).num_tokens, waiting_[i]);
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t i = 0; i < window; ++i) waiting_[i] = ranked[i].second;
}

void Scheduler::admit_waiting(Step& step, std::int32_t& budget) {
  // Nothing can be admitted at max_num_seqs: skip the pending set and the cache-aware ranking.
  if (waiting_.empty() || budget <= 0 ||
      static_cast<std::int32_t>(running_.size()) >= config_.max_num_seqs)
    return;
  if (config_.policy == SchedulePolicy::kCacheAware) order_cache_aware();

  // Full blocks that running sequences are about to compute: a waiting sequence whose next
  // uncached block is among them waits for it instead of computing it a second time.
  std::unordered_set<kv::BlockHash, kv::BlockHashHasher> pending;
  auto add_pending = [&](Sequence& s) {
    if (!kv_.caching_enabled()) return;
    kv_.update_hashes(s.kv, s.tokens);
    for (std::size_t b = static_cast<std::size_t>(s.kv.num_registered); b < s.kv.hashes.size(); ++b)
      pending.insert(s.kv.hashes[b]);
  };
  for (Sequence* s : running_) add_pending(*s);

  for (std::size_t i = 0; i < waiting_.size() && budget > 0 &&
                          static_cast<std::int32_t>(running_.size()) < config_.max_num_seqs;) {
    Sequence* seq = waiting_[i];
    if (kv_.disk_read_pending(seq->kv)) {
      ++i;  // loading: its blocks are being read from the disk tier
      continue;
    }
    kv::PrefixMatch match = match_for(*seq);
    if (!needs_whole_prompt(*seq) &&
        kv_.start_disk_read(seq->kv, seq->tokens, match, seq->size() - 1)) {
      ++i;
      continue;
    }
    const std::size_t next_block = match.blocks.size() + match.host_slots.size();
    if (next_block < seq->kv.hashes.size() && pending.contains(seq->kv.hashes[next_block]) &&
        !needs_whole_prompt(*seq)) {
      ++i;  // deferred: a running sequence computes this block now
      continue;
    }
    const std::int32_t n = std::min(seq->size() - match.num_tokens, budget);
    if (!kv_.admit(seq->kv, match, match.num_tokens + n)) {
      if (running_.empty()) {
        // Every block is free or evictable and still not enough: it can never run.
        waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
        step.unservable.push_back(seq);
        continue;
      }
      break;
    }
    if (!seq->admitted_before) {
      seq->admitted_before = true;
      seq->output.num_cached_tokens = match.num_tokens;
      seq->output.cache_miss = needs_whole_prompt(*seq) && kv_.caching_enabled()
                                   ? CacheMiss{CacheMissReason::kBypassed, 0, false, {}}
                                   : kv_.explain_miss(seq->kv, seq->tokens, match, seq->size() - 1);
      ++counters_.misses[static_cast<std::size_t>(seq->output.cache_miss.reason)];
      seq->output.queue_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - seq->submitted).count();
      counters_.query_tokens += seq->num_prompt_tokens;
      counters_.hit_tokens += match.num_tokens;
      counters_.query_blocks += seq->num_prompt_tokens / kv_.block_size();
      counters_.hit_blocks += static_cast<std::int64_t>(next_block);
      const auto from_disk = static_cast<std::int64_t>(match.num_from_disk);
      counters_.host_hit_tokens +=
          (static_cast<std::int64_t>(match.host_slots.size()) - from_disk) * kv_.block_size();
      counters_.disk_hit_tokens += from_disk * kv_.block_size();
      counters_.partial_hit_tokens += match.partial_tokens;
    }
    seq->num_computed = match.num_tokens;
    seq->status = SeqStatus::kRunning;
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
    auto pos = std::upper_bound(
        running_.begin(), running_.end(), seq,
        [](const Sequence* a, const Sequence* b) { return a->arrival < b->arrival; });
    running_.insert(pos, seq);
    step.seqs.push_back({seq, n});
    budget -= n;
    add_pending(*seq);
  }
}

void Scheduler::commit(const Step& step) {
  for (const auto& s : step.seqs) {
    s.seq->num_computed += s.num_tokens;
    kv_.commit(s.seq->kv, s.seq->tokens, s.seq->num_computed);
  }
}

void Scheduler::finish(Sequence* seq) {
  kv_.free(seq->kv);
  seq->status = SeqStatus::kFinished;
  std::erase(running_, seq);
  std::erase(waiting_, seq);
}

std::vector<const std::vector<kv::BlockId>*> Scheduler::block_tables() const {
  std::vector<const std::vector<kv::BlockId>*> tables;
  for (const Sequence* s : running_) tables.push_back(&s->kv.blocks);
  return tables;
}

}  // namespace cachet::engine

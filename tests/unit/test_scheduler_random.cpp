// Property tests of the Scheduler over KvCacheManager: seeded random workloads (shared
// prefixes, prompts of 1-60 tokens, random output lengths, salts, prompt logprobs) in pools
// small enough that eviction and preemption happen all the time. After every schedule and
// every commit: block-pool integrity, no request holds a block with other content, the
// step is within its budgets and runs only requests with blocks for their tokens, and the
// prefix-cache counters count each prompt once. Every request must finish, or be reported
// unservable only when it cannot fit the pool alone. Two focused tests pin the bugs the
// random test found.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cachet/config.h"
#include "engine/scheduler.h"
#include "kv/kv_cache_manager.h"
#include "support/kv_fuzz.h"

namespace cachet {
namespace {

using engine::Scheduler;
using engine::SchedulerConfig;
using engine::SeqStatus;
using engine::Sequence;
using engine::Step;
using kv::BlockId;
using kv::KvCacheManager;
using testing::chain_hash;
using testing::chance;
using testing::counting;
using testing::Key;
using testing::key_of;
using testing::TokenSource;
using testing::uniform;

// ---------------------------------------------------------------------------------------
// The Scheduler under random workloads.

struct SchedStats {
  std::int64_t workloads = 0, requests = 0, steps = 0, preemptions = 0, hit_tokens = 0,
               unservable = 0, evictions = 0;
};

// The token a "model" emits next: a function of the sequence so far, so that requests with
// the same prompt generate the same text and share decode blocks too.
TokenId next_token(const std::vector<TokenId>& t) {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = t.size() > 8 ? t.size() - 8 : 0; i < t.size(); ++i)
    h = (h ^ static_cast<std::uint32_t>(t[i])) * 16777619u;
  return static_cast<TokenId>(h % 50);
}

class SchedulerFuzz {
 public:
  SchedulerFuzz(std::uint64_t seed, SchedStats& stats)
      : rng_(seed),
        bs_(std::vector<int>{1, 2, 4, 16}[static_cast<std::size_t>(uniform(rng_, 0, 3))]),
        num_blocks_(std::max(4, uniform(rng_, 24, 160) / bs_)),
        kv_(num_blocks_, bs_, /*enable_caching=*/!chance(rng_, 0.1)),
        config_{uniform(rng_, 1, 8), uniform(rng_, 4, 64),
                chance(rng_, 0.5) ? SchedulePolicy::kFcfs : SchedulePolicy::kCacheAware,
                uniform(rng_, 1, 8)},
        scheduler_(config_, kv_),
        stats_(stats) {
    TokenSource source(rng_, 3, 64);
    seqs_.resize(static_cast<std::size_t>(uniform(rng_, 4, 16)));
    max_len_.resize(seqs_.size());
    for (std::size_t i = 0; i < seqs_.size(); ++i) {
      Sequence& s = seqs_[i];
      s.id = i;
      s.arrival = i;
      s.tokens = source.make(uniform(rng_, 1, 60));
      s.num_prompt_tokens = s.size();
      if (chance(rng_, 0.2)) s.kv.salt = "s";
      if (chance(rng_, 0.1)) s.params.prompt_logprobs = 1;
      max_len_[i] = s.size() + uniform(rng_, 0, 30);
    }
  }

  void run() {
    const std::int64_t capacity = num_blocks_ * bs_;
    std::size_t added = 0;
    std::set<const Sequence*> finished, unservable, admitted;
    for (int step_no = 0; step_no < 20000; ++step_no) {
      SCOPED_TRACE("step " + std::to_string(step_no));
      // Requests arrive over time, a few at once.
      for (int n = added == 0 ? 3 : uniform(rng_, 0, 1); n > 0 && added < seqs_.size(); --n)
        scheduler_.add(&seqs_[added++]);
      if (!scheduler_.has_work()) {
        if (added == seqs_.size()) break;
        continue;
      }
      Step step = scheduler_.schedule();
      ASSERT_TRUE(!step.empty() || !step.unservable.empty()) << "no progress";
      for (Sequence* u : step.unservable) {
        // Only a request that cannot fit even alone: its tokens exceed the whole pool.
        ASSERT_GT(u->size(), capacity) << "request " << u->id << " reported unservable, with "
                                       << step.unservable.size() << " in the step";
        unservable.insert(u);
        scheduler_.finish(u);
      }
      check_step(step);
      if (::testing::Test::HasFatalFailure()) return;
      for (const auto& e : step.seqs) admitted.insert(e.seq);
      check_counters(admitted);
      sync_after_schedule();
      check_integrity();
      if (::testing::Test::HasFatalFailure()) return;

      scheduler_.commit(step);
      record_registrations(step);
      for (const auto& e : step.seqs) {
        Sequence* s = e.seq;
        if (s->num_computed != s->size()) continue;
        if (s->size() >= max_len_[s->id]) {
          scheduler_.finish(s);
          finished.insert(s);
        } else {
          s->tokens.push_back(next_token(s->tokens));
        }
      }
      check_integrity();
      if (::testing::Test::HasFatalFailure()) return;
      ++stats_.steps;
    }
    ASSERT_FALSE(scheduler_.has_work()) << "requests left after 20000 steps";
    // Every request ends: finished exactly when it fits the pool alone.
    for (std::size_t i = 0; i < seqs_.size(); ++i) {
      const bool fits = max_len_[i] <= capacity;
      EXPECT_EQ(finished.contains(&seqs_[i]), fits) << "request " << i;
      EXPECT_EQ(unservable.contains(&seqs_[i]), !fits) << "request " << i;
    }
    EXPECT_EQ(kv_.pool().num_in_use(), 0);
    ++stats_.workloads;
    stats_.requests += static_cast<std::int64_t>(seqs_.size());
    stats_.preemptions += scheduler_.counters().preemptions;
    stats_.hit_tokens += scheduler_.counters().hit_tokens;
    stats_.unservable += static_cast<std::int64_t>(unservable.size());
    stats_.evictions += kv_.pool().num_evictions();
  }

 private:
  void check_step(const Step& step) {
    std::int32_t tokens = 0;
    std::set<const Sequence*> seen;
    for (const auto& e : step.seqs) {
      const Sequence& s = *e.seq;
      ASSERT_TRUE(seen.insert(&s).second) << "request " << s.id << " scheduled twice";
      // A scheduled request runs now: it is running and its table covers what it computes.
      ASSERT_EQ(s.status, SeqStatus::kRunning)
          << "request " << s.id << " scheduled but not running";
      ASSERT_GE(e.num_tokens, 1);
      ASSERT_LE(s.num_computed + e.num_tokens, s.size());
      ASSERT_GE(static_cast<std::int64_t>(s.kv.blocks.size()) * bs_, s.num_computed + e.num_tokens)
          << "request " << s.id << " scheduled without blocks for its tokens";
      tokens += e.num_tokens;
    }
    ASSERT_LE(tokens, config_.max_num_batched_tokens);
    ASSERT_LE(static_cast<std::int32_t>(step.seqs.size()), config_.max_num_seqs);
  }

  // Each request's prompt is counted once, at its first admission, however often it is
  // preempted and recomputed.
  void check_counters(const std::set<const Sequence*>& admitted) {
    std::int64_t query = 0, query_blocks = 0, hits = 0;
    for (const Sequence* s : admitted) {
      query += s->num_prompt_tokens;
      query_blocks += s->num_prompt_tokens / bs_;
      hits += s->output.num_cached_tokens;
    }
    const auto& c = scheduler_.counters();
    EXPECT_EQ(c.query_tokens, query);
    EXPECT_EQ(c.query_blocks, query_blocks);
    EXPECT_EQ(c.hit_tokens, hits);
    EXPECT_EQ(c.hit_blocks * bs_, c.hit_tokens);
  }

  // schedule() evicts but never registers.
  void sync_after_schedule() {
    for (std::int32_t i = 0; i < num_blocks_; ++i) {
      const auto& h = kv_.pool().hash(BlockId{i});
      auto it = content_.find(i);
      if (!h) {
        if (it != content_.end()) content_.erase(it);
        continue;
      }
      ASSERT_TRUE(it != content_.end()) << "block " << i << " got a hash without a commit";
      ASSERT_EQ(*h, chain_hash(it->second, bs_));
    }
  }

  void record_registrations(const Step& step) {
    for (const auto& e : step.seqs) {
      const Sequence& s = *e.seq;
      for (std::size_t b = 0; b < s.kv.blocks.size(); ++b) {
        const BlockId id = s.kv.blocks[b];
        if (kv_.pool().hash(id) && !content_.contains(id.value))
          content_.emplace(id.value, key_of(s.kv.salt, s.tokens, b + 1, bs_));
      }
    }
  }

  void check_integrity() {
    kv_.check_integrity(scheduler_.block_tables());
    // Every registered block a running request holds (own or hit) holds its tokens.
    for (const auto* table : scheduler_.block_tables()) {
      const Sequence* s = nullptr;
      for (const auto& q : seqs_)
        if (&q.kv.blocks == table) s = &q;
      ASSERT_NE(s, nullptr);
      for (std::size_t b = 0; b < table->size(); ++b) {
        auto it = content_.find((*table)[b].value);
        if (it != content_.end()) {
          ASSERT_EQ(it->second, key_of(s->kv.salt, s->tokens, b + 1, bs_))
              << "request " << s->id << " holds a block with other content";
        }
      }
    }
  }

  std::mt19937_64 rng_;
  std::int32_t bs_;
  std::int32_t num_blocks_;
  KvCacheManager kv_;
  SchedulerConfig config_;
  Scheduler scheduler_;
  std::vector<Sequence> seqs_;
  std::vector<std::int32_t> max_len_;
  std::map<std::int32_t, Key> content_;  // registered block -> what it holds
  SchedStats& stats_;
};

TEST(SchedulerProperty, RandomWorkloadsFinishWithIntegrityAndHonestCounters) {
  constexpr int kWorkloads = 1000;
  SchedStats stats;
  for (int i = 0; i < kWorkloads; ++i) {
    const std::uint64_t seed = 0xc0ffee00u + static_cast<std::uint64_t>(i);
    SCOPED_TRACE("seed " + std::to_string(seed));
    SchedulerFuzz(seed, stats).run();
    if (HasFatalFailure() || HasFailure()) return;
  }
  EXPECT_EQ(stats.workloads, kWorkloads);
  EXPECT_GT(stats.preemptions, 1000);
  EXPECT_GT(stats.hit_tokens, 5000);
  EXPECT_GT(stats.evictions, 1000);
  EXPECT_GT(stats.unservable, 10);
  std::printf(
      "[ stats    ] %lld workloads, %lld requests, %lld steps, %lld preemptions, "
      "%lld hit tokens, %lld evictions, %lld unservable\n",
      static_cast<long long>(stats.workloads), static_cast<long long>(stats.requests),
      static_cast<long long>(stats.steps), static_cast<long long>(stats.preemptions),
      static_cast<long long>(stats.hit_tokens), static_cast<long long>(stats.evictions),
      static_cast<long long>(stats.unservable));
}

// Found by the random test. Decodes are scheduled in a first pass and prefills in a second;
// a prefill that needs a block preempts the latest arrival, which can be a decode the first
// pass already put in the step. The step then runs a request that holds no blocks (and is
// waiting again), and the engine would write its K/V through an empty block table.
TEST(SchedulerPreemption, DoesNotPreemptARequestAlreadyScheduledInTheStep) {
  constexpr std::int32_t kBs = 4;
  KvCacheManager kv(5, kBs, true);
  Scheduler s({/*max_num_seqs=*/8, /*max_num_batched_tokens=*/8}, kv);
  std::vector<Sequence> seqs(3);
  seqs[0].tokens = counting(4, 0);  // z: block X, then its own token
  seqs[0].tokens.push_back(100);
  seqs[1].tokens = counting(16, 0);  // a: block X, then 12 more prompt tokens
  seqs[2].tokens = {500, 501};       // d: short, unrelated
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].id = i;
    seqs[i].arrival = i;
    seqs[i].num_prompt_tokens = seqs[i].size();
    s.add(&seqs[i]);
  }
  auto run = [&](const Step& step) {
    s.commit(step);
    for (const auto& e : step.seqs)
      if (e.seq->num_computed == e.seq->size()) e.seq->tokens.push_back(1);
  };
  // Step 1: z computes X, a waits for it (in-batch dedup), d prefills. 3 blocks used.
  Step step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 2u);
  run(step);
  // Step 2: z and d decode; a hits X and prefills a 6-token chunk. 5 blocks used: full.
  step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 3u);
  ASSERT_EQ(step.seqs[2].seq, &seqs[1]);
  ASSERT_EQ(step.seqs[2].num_tokens, 6);
  run(step);
  ASSERT_EQ(kv.pool().num_allocatable(), 0);
  // Step 3: z and d decode (first pass); a's last chunk needs a fifth block, so the latest
  // arrival, d, is preempted. d must then not be in the step.
  step = s.schedule();
  EXPECT_EQ(s.counters().preemptions, 1);
  for (const auto& e : step.seqs) {
    EXPECT_EQ(e.seq->status, SeqStatus::kRunning) << "request " << e.seq->id;
    EXPECT_GE(static_cast<std::int32_t>(e.seq->kv.blocks.size()) * kBs,
              e.seq->num_computed + e.num_tokens)
        << "request " << e.seq->id << " runs without blocks";
  }
  kv.check_integrity(s.block_tables());
}

// Found by the random test. A running request that outgrows the pool is reported
// unservable and leaves running_, but keeps its blocks until the caller finishes it. The
// admission pass of the same step sees no running request, takes the pool for empty, and
// reports a waiting request that would fit on its own as unservable too.
TEST(SchedulerUnservable, AnOversizedRequestDoesNotMakeAFittingOneUnservable) {
  constexpr std::int32_t kBs = 4;
  KvCacheManager kv(4, kBs, true);  // 16 token slots
  Scheduler s({8, 64}, kv);
  std::vector<Sequence> seqs(2);
  seqs[0].tokens = counting(16, 0);  // fills the pool; its first decode token does not fit
  seqs[1].tokens = counting(4, 100);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].id = i;
    seqs[i].arrival = i;
    seqs[i].num_prompt_tokens = seqs[i].size();
  }
  s.add(&seqs[0]);
  Step step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 1u);
  s.commit(step);
  seqs[0].tokens.push_back(1);  // 17 tokens > 16 slots
  s.add(&seqs[1]);
  step = s.schedule();
  ASSERT_EQ(step.unservable.size(), 1u) << "only the 17-token request cannot fit";
  EXPECT_EQ(step.unservable[0], &seqs[0]);
  for (Sequence* u : step.unservable) s.finish(u);
  kv.check_integrity(s.block_tables());
  // The 4-token request runs, in this step or the next.
  if (step.seqs.empty()) step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 1u);
  EXPECT_EQ(step.seqs[0].seq, &seqs[1]);
}

}  // namespace
}  // namespace cachet

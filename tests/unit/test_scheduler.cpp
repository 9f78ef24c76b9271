#include <gtest/gtest.h>

#include <numeric>

#include "engine/scheduler.h"

namespace cachet::engine {
namespace {

// Sequences with `prompt` tokens each, in arrival order.
std::vector<Sequence> make_seqs(const std::vector<int>& prompt_lengths) {
  std::vector<Sequence> seqs(prompt_lengths.size());
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].id = i;
    seqs[i].arrival = i;
    seqs[i].tokens.assign(static_cast<std::size_t>(prompt_lengths[i]), 7);
    seqs[i].num_prompt_tokens = prompt_lengths[i];
  }
  return seqs;
}

// What the engine does after a step: the tokens are computed; a sequence whose last token
// was computed gets one more (a decode) unless it has `max_len` tokens, then it finishes.
int run_step(Scheduler& s, const Step& step, int max_len) {
  int finished = 0;
  s.commit(step);
  for (const auto& e : step.seqs) {
    if (e.seq->num_computed != e.seq->size()) continue;
    if (e.seq->size() >= max_len) {
      s.finish(e.seq);
      ++finished;
    } else {
      e.seq->tokens.push_back(1);
    }
  }
  return finished;
}

TEST(Scheduler, RespectsTokenAndSequenceBudgetsAndChunksLongPrompts) {
  kv::KvCacheManager kv(100, 4, /*enable_caching=*/false);
  Scheduler s({/*max_num_seqs=*/2, /*max_num_batched_tokens=*/10}, kv);
  auto seqs = make_seqs({25, 3, 3});
  for (auto& q : seqs) s.add(&q);
  Step step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 1u);  // the long prompt takes the whole budget
  EXPECT_EQ(step.seqs[0].num_tokens, 10);
  EXPECT_EQ(seqs[0].kv.blocks.size(), 3u);  // ceil(10 / 4)
  run_step(s, step, 100);
  step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 1u);  // second chunk; seq 1 cannot join (budget spent)
  EXPECT_EQ(step.seqs[0].num_tokens, 10);
  run_step(s, step, 100);
  step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 2u);  // last 5 tokens, then seq 1 (3 tokens); seq 2 over max_num_seqs
  EXPECT_EQ(step.seqs[0].num_tokens, 5);
  EXPECT_EQ(step.seqs[1].seq, &seqs[1]);
  EXPECT_EQ(s.num_waiting(), 1u);
  kv.check_integrity(s.block_tables());
}

TEST(Scheduler, DecodesComeBeforePrefills) {
  kv::KvCacheManager kv(100, 4, false);
  Scheduler s({8, 4}, kv);
  auto seqs = make_seqs({3, 20});
  s.add(&seqs[0]);
  run_step(s, s.schedule(), 100);  // seq 0 prefilled, now decoding
  s.add(&seqs[1]);
  Step step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 2u);
  EXPECT_EQ(step.seqs[0].seq, &seqs[0]);
  EXPECT_EQ(step.seqs[0].num_tokens, 1);
  EXPECT_EQ(step.seqs[1].num_tokens, 3);  // the rest of the budget
}

TEST(Scheduler, PreemptsLatestArrivalWhenOutOfBlocksAndEverythingCompletes) {
  kv::KvCacheManager kv(6, 4,
                        false);  // 24 token slots for three sequences that grow to 12 tokens each
  Scheduler s({8, 64}, kv);
  auto seqs = make_seqs({4, 4, 4});
  for (auto& q : seqs) s.add(&q);
  int finished = 0;
  for (int steps = 0; steps < 200 && s.has_work(); ++steps) {
    Step step = s.schedule();
    ASSERT_TRUE(step.unservable.empty());
    ASSERT_FALSE(step.empty());
    // Blocks held cover exactly what is scheduled or computed.
    for (const auto& e : step.seqs)
      EXPECT_EQ(static_cast<int>(e.seq->kv.blocks.size()),
                (e.seq->num_computed + e.num_tokens + 3) / 4);
    finished += run_step(s, step, 12);
    kv.check_integrity(s.block_tables());
  }
  EXPECT_EQ(finished, 3);
  EXPECT_GT(s.counters().preemptions, 0);
  EXPECT_EQ(kv.pool().num_free(), 6);
}

TEST(Scheduler, SequenceThatCannotFitAloneIsUnservable) {
  kv::KvCacheManager kv(2, 4, false);
  Scheduler s({8, 64}, kv);
  auto seqs = make_seqs({12, 3});
  for (auto& q : seqs) s.add(&q);
  Step step = s.schedule();
  ASSERT_EQ(step.unservable.size(), 1u);
  EXPECT_EQ(step.unservable[0], &seqs[0]);
  ASSERT_EQ(step.seqs.size(), 1u);  // the other one still runs
  EXPECT_EQ(step.seqs[0].seq, &seqs[1]);
  s.finish(step.unservable[0]);
  std::vector<const std::vector<kv::BlockId>*> tables = {&seqs[1].kv.blocks};
  kv.check_integrity(tables);
}

TEST(Scheduler, DecodeThatOutgrowsThePoolAloneIsUnservable) {
  kv::KvCacheManager kv(2, 4, false);
  Scheduler s({8, 64}, kv);
  auto seqs = make_seqs({8});
  s.add(&seqs[0]);
  run_step(s, s.schedule(), 100);  // 8 tokens in 2 blocks, a 9th appended
  Step step = s.schedule();
  ASSERT_EQ(step.unservable.size(), 1u);
  s.finish(step.unservable[0]);
  EXPECT_EQ(kv.pool().num_free(), 2);
  EXPECT_FALSE(s.has_work());
}

std::vector<TokenId> counting(int n, TokenId start = 0) {
  std::vector<TokenId> t(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = start + i;
  return t;
}

TEST(Scheduler, AdmissionHitsTheCachedPrefixAndAlwaysComputesTheLastToken) {
  kv::KvCacheManager kv(64, 4, true);
  Scheduler s({8, 64}, kv);
  std::vector<Sequence> seqs(3);
  seqs[0].tokens = counting(10);  // blocks [0..3] [4..7] full, [8, 9] partial
  seqs[1].tokens = counting(13);  // shares the two full blocks
  seqs[2].tokens = counting(8);   // exactly the two full blocks: the last one is recomputed
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].arrival = i;
    seqs[i].num_prompt_tokens = seqs[i].size();
  }
  s.add(&seqs[0]);
  Step step = s.schedule();
  s.commit(step);
  s.finish(&seqs[0]);
  EXPECT_EQ(kv.pool().num_cached(), 2);
  s.add(&seqs[1]);
  s.add(&seqs[2]);
  step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 2u);
  EXPECT_EQ(seqs[1].output.num_cached_tokens, 8);
  EXPECT_EQ(step.seqs[0].num_tokens, 5);
  EXPECT_EQ(seqs[2].output.num_cached_tokens, 4);
  EXPECT_EQ(step.seqs[1].num_tokens, 4);
  EXPECT_EQ(s.counters().query_tokens, 10 + 13 + 8);
  EXPECT_EQ(s.counters().hit_tokens, 12);
  EXPECT_EQ(s.counters().hit_blocks, 3);
  EXPECT_EQ(kv.pool().ref_count(seqs[1].kv.blocks[0]), 2);
  kv.check_integrity(s.block_tables());
}

TEST(Scheduler, RequestsAdmittedTogetherComputeASharedPrefixOnce) {
  kv::KvCacheManager kv(64, 4, true);
  Scheduler s({8, 64}, kv);
  std::vector<Sequence> seqs(3);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].arrival = i;
    seqs[i].tokens = counting(12);
    seqs[i].tokens.push_back(1000 +
                             static_cast<TokenId>(i));  // 3 shared full blocks, then its own token
    seqs[i].num_prompt_tokens = seqs[i].size();
    s.add(&seqs[i]);
  }
  Step step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 1u);  // the others wait for the shared blocks
  run_step(s, step, 100);
  step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 3u);  // seq 0 decodes; 1 and 2 hit all 12 shared tokens
  EXPECT_EQ(seqs[1].output.num_cached_tokens, 12);
  EXPECT_EQ(seqs[2].output.num_cached_tokens, 12);
  EXPECT_EQ(step.seqs[1].num_tokens, 1);
  kv.check_integrity(s.block_tables());
}

TEST(Scheduler, CacheAwarePolicyPrefersTheLongestCachedPrefix) {
  kv::KvCacheManager kv(64, 4, true);
  Scheduler s({1, 64, SchedulePolicy::kCacheAware}, kv);
  std::vector<Sequence> seqs(3);
  seqs[0].tokens = counting(9);
  seqs[1].tokens = counting(9, 500);  // nothing cached
  seqs[2].tokens = counting(9);
  seqs[2].tokens[8] = 77;  // shares 8 cached tokens with seq 0
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].arrival = i;
    seqs[i].num_prompt_tokens = 9;
  }
  s.add(&seqs[0]);
  Step step = s.schedule();
  s.commit(step);
  s.finish(&seqs[0]);
  s.add(&seqs[1]);
  s.add(&seqs[2]);
  step = s.schedule();  // max_num_seqs 1: only one is admitted
  ASSERT_EQ(step.seqs.size(), 1u);
  EXPECT_EQ(step.seqs[0].seq, &seqs[2]);
}

TEST(Scheduler, PreemptedSequenceKeepsItsFullBlocksCachedAndHitsThemOnReturn) {
  kv::KvCacheManager kv(4, 4, true);  // 16 slots
  Scheduler s({8, 64}, kv);
  std::vector<Sequence> seqs(2);
  seqs[0].tokens = counting(8);
  seqs[1].tokens = counting(7, 300);
  for (std::size_t i = 0; i < 2; ++i) {
    seqs[i].arrival = i;
    seqs[i].num_prompt_tokens = seqs[i].size();
    s.add(&seqs[i]);
  }
  int preempted_at = -1;
  for (int step_no = 0; step_no < 40 && s.has_work(); ++step_no) {
    Step step = s.schedule();
    ASSERT_TRUE(step.unservable.empty());
    if (s.counters().preemptions > 0 && preempted_at < 0) {
      preempted_at = step_no;
      EXPECT_GT(kv.pool().num_cached() + kv.pool().num_in_use(), 0);
    }
    run_step(s, step, 14);
    kv.check_integrity(s.block_tables());
  }
  EXPECT_GE(preempted_at, 0);
  EXPECT_FALSE(s.has_work());
  EXPECT_EQ(s.counters().query_tokens, 15);  // the recompute does not count again
}

}  // namespace
}  // namespace cachet::engine

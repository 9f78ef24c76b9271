#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <numeric>

namespace cachet::engine {
namespace {

// Sequences with `prompt` tokens each, in arrival order.
std::vector<Sequence> make_seqs(const std::vector<int>& prompt_lengths) {
  std::vector<Sequence> seqs(prompt_lengths.size());
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].index = i;
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
  for (const auto& e : step.seqs) e.seq->num_computed += e.num_tokens;
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
  kv::BlockPool pool(100);
  Scheduler s({/*block_size=*/4, /*max_num_seqs=*/2, /*max_num_batched_tokens=*/10}, pool);
  auto seqs = make_seqs({25, 3, 3});
  for (auto& q : seqs) s.add(&q);
  Step step = s.schedule();
  ASSERT_EQ(step.seqs.size(), 1u);  // the long prompt takes the whole budget
  EXPECT_EQ(step.seqs[0].num_tokens, 10);
  EXPECT_EQ(seqs[0].blocks.size(), 3u);  // ceil(10 / 4)
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
  pool.check_integrity();
}

TEST(Scheduler, DecodesComeBeforePrefills) {
  kv::BlockPool pool(100);
  Scheduler s({4, 8, 4}, pool);
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
  kv::BlockPool pool(6);  // 24 token slots for three sequences that grow to 12 tokens each
  Scheduler s({4, 8, 64}, pool);
  auto seqs = make_seqs({4, 4, 4});
  for (auto& q : seqs) s.add(&q);
  int finished = 0;
  for (int steps = 0; steps < 200 && s.has_work(); ++steps) {
    Step step = s.schedule();
    ASSERT_TRUE(step.unservable.empty());
    ASSERT_FALSE(step.empty());
    // Blocks held cover exactly what is scheduled or computed.
    for (const auto& e : step.seqs)
      EXPECT_EQ(static_cast<int>(e.seq->blocks.size()), (e.seq->num_computed + e.num_tokens + 3) / 4);
    finished += run_step(s, step, 12);
    pool.check_integrity();
  }
  EXPECT_EQ(finished, 3);
  EXPECT_GT(s.num_preemptions(), 0);
  EXPECT_EQ(pool.num_free(), 6);
}

TEST(Scheduler, SequenceThatCannotFitAloneIsUnservable) {
  kv::BlockPool pool(2);
  Scheduler s({4, 8, 64}, pool);
  auto seqs = make_seqs({12, 3});
  for (auto& q : seqs) s.add(&q);
  Step step = s.schedule();
  ASSERT_EQ(step.unservable.size(), 1u);
  EXPECT_EQ(step.unservable[0], &seqs[0]);
  ASSERT_EQ(step.seqs.size(), 1u);  // the other one still runs
  EXPECT_EQ(step.seqs[0].seq, &seqs[1]);
  s.finish(step.unservable[0]);
  pool.check_integrity();
}

TEST(Scheduler, DecodeThatOutgrowsThePoolAloneIsUnservable) {
  kv::BlockPool pool(2);
  Scheduler s({4, 8, 64}, pool);
  auto seqs = make_seqs({8});
  s.add(&seqs[0]);
  run_step(s, s.schedule(), 100);  // 8 tokens in 2 blocks, a 9th appended
  Step step = s.schedule();
  ASSERT_EQ(step.unservable.size(), 1u);
  s.finish(step.unservable[0]);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_FALSE(s.has_work());
}

}  // namespace
}  // namespace cachet::engine

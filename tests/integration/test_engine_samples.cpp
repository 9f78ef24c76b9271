// SamplingParams::n: several samples of one prompt. Each sample is checked against the
// independent way of getting it (a separate n = 1 request with seed + j), the prompt's KV
// blocks are computed once (the prefix-cache counters and num_cached_tokens say how many
// tokens each sample computed), and every sample gets its own stream and final update.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <vector>

#include "cachet/engine.h"
#include "support/signal.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using testing::greedy;
using ::testing::HasSubstr;
using testing::TinyModel;

std::vector<TokenId> prompt_of(int length, int vocab) {
  std::vector<TokenId> p;
  for (int i = 0; i < length; ++i) p.push_back((i * 13 + 5) % vocab);
  return p;
}

SamplingParams random_sampling(std::int32_t n, std::uint64_t seed) {
  SamplingParams p;
  p.temperature = 20.0f;  // the tiny random model is very sure of itself: flatten it
  p.max_tokens = 12;
  p.ignore_eos = true;
  p.n = n;
  p.seed = seed;
  return p;
}

TEST(EngineSamples, EachSampleIsTheSeparateRequestSeededSeedPlusIndex) {
  TinyModel m;
  const auto prompt = prompt_of(19, m.vocab());
  Engine engine(m.engine_config());
  const auto outs = engine.generate({Request{prompt, random_sampling(4, 77), {}, {}}});
  ASSERT_EQ(outs.size(), 4u);
  for (std::int32_t j = 0; j < 4; ++j) {
    SCOPED_TRACE(j);
    ASSERT_EQ(outs[j].finish_reason, FinishReason::kLength) << outs[j].error;
    EXPECT_EQ(outs[j].sample_index, j);
    EXPECT_EQ(outs[j].prompt_token_ids, prompt);
    // The reference: a fresh engine (nothing cached), one request, seed 77 + j.
    Engine alone(m.engine_config());
    const auto ref = alone.generate({Request{prompt, random_sampling(1, 77 + j), {}, {}}});
    EXPECT_EQ(outs[j].token_ids, ref[0].token_ids);
  }
  // Four streams of 12 draws from a random model: equal ones would mean a shared stream.
  EXPECT_NE(outs[0].token_ids, outs[1].token_ids);
  EXPECT_NE(outs[2].token_ids, outs[3].token_ids);
}

TEST(EngineSamples, ThePromptsFullBlocksAreComputedOnce) {
  TinyModel m;
  constexpr int kBlock = 4, kFull = 5, kTail = 3, kN = 6;
  const auto prompt = prompt_of(kFull * kBlock + kTail, m.vocab());
  Engine engine(m.engine_config(kBlock));
  SamplingParams p = greedy(3);
  p.n = kN;
  const auto outs = engine.generate({Request{prompt, p, {}, {}}});
  ASSERT_EQ(outs.size(), static_cast<std::size_t>(kN));
  // Sample 0 computes the whole prompt; every other waits for its blocks and then computes
  // only the partly filled last block.
  EXPECT_EQ(outs[0].num_cached_tokens, 0);
  for (int j = 1; j < kN; ++j) EXPECT_EQ(outs[j].num_cached_tokens, kFull * kBlock) << j;
  const EngineStats s = engine.stats();
  const std::int64_t len = static_cast<std::int64_t>(prompt.size());
  EXPECT_EQ(s.prefix_cache_query_tokens, kN * len);
  EXPECT_EQ(s.prefix_cache_hit_tokens, (kN - 1) * kFull * kBlock);
  // Computed prompt tokens: the prompt once, plus the tail once per further sample.
  EXPECT_EQ(s.prefix_cache_query_tokens - s.prefix_cache_hit_tokens, len + (kN - 1) * kTail);
  for (int j = 1; j < kN; ++j) EXPECT_EQ(outs[j].token_ids, outs[0].token_ids) << "greedy";
}

TEST(EngineSamples, EverySampleStreamsAndGetsOneFinalUpdate) {
  TinyModel m;
  Engine engine(m.engine_config());
  std::mutex mutex;
  std::map<std::int32_t, std::vector<TokenId>> streamed;
  std::map<std::int32_t, int> finals;
  std::map<std::int32_t, std::vector<TokenId>> final_ids;
  testing::Signal all_done;
  Request r{prompt_of(9, m.vocab()), random_sampling(3, 5), {}, {}};
  const RequestId id = engine.submit(r, [&](const RequestUpdate& u) {
    std::lock_guard lock(mutex);
    auto& ids = streamed[u.sample_index];
    ids.insert(ids.end(), u.new_token_ids.begin(), u.new_token_ids.end());
    if (!u.finished) return;
    ++finals[u.sample_index];
    EXPECT_EQ(u.output->sample_index, u.sample_index);
    final_ids[u.sample_index] = u.output->token_ids;
    if (finals.size() == 3) all_done.raise();
  });
  ASSERT_TRUE(all_done.wait());
  std::lock_guard lock(mutex);
  for (std::int32_t j = 0; j < 3; ++j) {
    EXPECT_EQ(finals[j], 1) << j;
    EXPECT_EQ(streamed[j], final_ids[j]) << j;
    EXPECT_EQ(final_ids[j].size(), 12u) << j;
  }
  EXPECT_FALSE(engine.abort(id)) << "every sample has finished";
}

TEST(EngineSamples, AbortEndsEverySample) {
  TinyModel m;
  Engine engine(m.engine_config());
  std::mutex mutex;
  std::map<std::int32_t, FinishReason> reasons;
  testing::Signal first_token, all_done;
  SamplingParams p = greedy(100000);
  p.n = 3;
  const RequestId id =
      engine.submit({prompt_of(9, m.vocab()), p, {}, {}}, [&](const RequestUpdate& u) {
        if (!u.new_token_ids.empty()) first_token.raise();
        if (!u.finished) return;
        std::lock_guard lock(mutex);
        reasons[u.sample_index] = u.output->finish_reason;
        if (reasons.size() == 3) all_done.raise();
      });
  ASSERT_TRUE(first_token.wait());
  EXPECT_TRUE(engine.abort(id));
  ASSERT_TRUE(all_done.wait());
  std::lock_guard lock(mutex);
  for (const auto& [j, reason] : reasons) EXPECT_EQ(reason, FinishReason::kAborted) << j;
}

TEST(EngineSamples, AnInvalidNFailsTheRequestOnceNamingTheField) {
  TinyModel m;
  Engine engine(m.engine_config());
  for (std::int32_t n : {0, -2, kMaxSamples + 1}) {
    SamplingParams p = greedy(2);
    p.n = n;
    const auto outs = engine.generate({Request{prompt_of(5, m.vocab()), p, {}, {}}});
    ASSERT_EQ(outs.size(), 1u) << n;
    EXPECT_EQ(outs[0].finish_reason, FinishReason::kError);
    EXPECT_THAT(outs[0].error, HasSubstr("n must be in [1, 128]"));
  }
}

TEST(EngineSamples, ABadRequestFailsEachOfItsSamples) {
  TinyModel m;
  Engine engine(m.engine_config());
  SamplingParams p = greedy(2);
  p.n = 3;
  p.top_p = 0.0f;
  SamplingParams ok = greedy(2);
  ok.n = 2;
  const auto outs = engine.generate(
      {Request{prompt_of(5, m.vocab()), p, {}, {}}, Request{prompt_of(6, m.vocab()), ok, {}, {}}});
  ASSERT_EQ(outs.size(), 5u);
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(outs[j].finish_reason, FinishReason::kError) << j;
    EXPECT_EQ(outs[j].sample_index, j);
    EXPECT_THAT(outs[j].error, HasSubstr("top_p"));
  }
  for (int j = 3; j < 5; ++j) {
    EXPECT_EQ(outs[j].finish_reason, FinishReason::kLength) << outs[j].error;
    EXPECT_EQ(outs[j].sample_index, j - 3);
  }
}

TEST(EngineSamples, OnlySampleZeroComputesPromptLogprobs) {
  TinyModel m;
  constexpr int kBlock = 4;
  const auto prompt = prompt_of(13, m.vocab());
  Engine engine(m.engine_config(kBlock));
  SamplingParams p = greedy(2);
  p.n = 2;
  p.prompt_logprobs = 2;
  const auto outs = engine.generate({Request{prompt, p, {}, {}}});
  ASSERT_EQ(outs.size(), 2u);
  EXPECT_EQ(outs[0].prompt_logprobs.size(), prompt.size());
  EXPECT_TRUE(outs[1].prompt_logprobs.empty());
  EXPECT_EQ(outs[1].num_cached_tokens, 12) << "sample 1 reuses the prompt's full blocks";
  // The same prompt logprobs as a request on its own.
  SamplingParams one = p;
  one.n = 1;
  Engine alone(m.engine_config(kBlock));
  const auto ref = alone.generate({Request{prompt, one, {}, {}}});
  ASSERT_EQ(ref[0].prompt_logprobs.size(), prompt.size());
  for (std::size_t i = 1; i < prompt.size(); ++i) {
    ASSERT_TRUE(outs[0].prompt_logprobs[i] && ref[0].prompt_logprobs[i]) << i;
    ASSERT_EQ(outs[0].prompt_logprobs[i]->size(), ref[0].prompt_logprobs[i]->size()) << i;
    for (std::size_t k = 0; k < ref[0].prompt_logprobs[i]->size(); ++k) {
      EXPECT_EQ((*outs[0].prompt_logprobs[i])[k].id, (*ref[0].prompt_logprobs[i])[k].id);
      EXPECT_EQ((*outs[0].prompt_logprobs[i])[k].logprob, (*ref[0].prompt_logprobs[i])[k].logprob);
    }
  }
}

}  // namespace
}  // namespace cachet

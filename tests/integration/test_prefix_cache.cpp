// Automatic prefix caching end to end on the CPU backend: the cache must never change what
// a request produces (bitwise, against an engine with caching off), and its accounting
// (num_cached_tokens, the prefix-cache counters, the block states) must be exact.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cachet/engine.h"
#include "model/make_model.h"
#include "model/model_config.h"
#include "support/prefix_cache_workload.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using testing::TempDir;
using testing::TinyModel;
using namespace testing::workload;

class PrefixCacheArchTest : public ::testing::TestWithParam<model::Arch> {};

// Item 1: caching on and off give bit-identical outputs (tokens, logprobs, prompt logprobs;
// greedy and seeded sampling) over random workloads with every kind of prefix sharing.
TEST_P(PrefixCacheArchTest, CacheOnAndOffGiveBitIdenticalOutputs) {
  TinyModel m(GetParam());
  for (std::int32_t block_size : {4, 16}) {
    SCOPED_TRACE("block_size " + std::to_string(block_size));
    auto waves = make_workload(7 + block_size, m.vocab(), block_size, {});
    Engine on(m.engine_config(block_size, true));
    Engine off(m.engine_config(block_size, false));
    auto with_cache = run_workload(on, waves);
    auto without = run_workload(off, waves);
    expect_same_outputs(with_cache, without);
    // The comparison means something only if the cache was really used.
    EXPECT_GT(total_hits(with_cache), 0);
    EXPECT_GT(on.stats().prefix_cache_hit_tokens, 0);
    EXPECT_EQ(total_hits(without), 0);
    EXPECT_EQ(off.stats().prefix_cache_hit_tokens, 0);
    EXPECT_EQ(off.stats().blocks_cached, 0);
    expect_blocks_released(on);
    expect_blocks_released(off);
  }
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, PrefixCacheArchTest,
                         ::testing::Values(model::Arch::kLlama, model::Arch::kQwen2,
                                           model::Arch::kQwen3),
                         [](const auto& info) {
                           return std::string(model::arch_model_type(info.param));
                         });

// Block size 1 caches every token: the finest granularity, where off-by-one errors in
// "the last prompt token is always computed" would show.
TEST(PrefixCache, BlockSizeOneIsBitIdenticalToNoCache) {
  TinyModel m(model::Arch::kQwen3);
  WorkloadOptions o;
  o.num_waves = 3;
  auto waves = make_workload(99, m.vocab(), 1, o);
  Engine on(m.engine_config(1, true));
  Engine off(m.engine_config(1, false));
  auto with_cache = run_workload(on, waves);
  expect_same_outputs(with_cache, run_workload(off, waves));
  EXPECT_GT(total_hits(with_cache), 0);
  expect_blocks_released(on);
  expect_blocks_released(off);
}

// Item 7: cache-aware admission order changes when requests run, never what they produce.
TEST(PrefixCache, CacheAwarePolicyGivesTheSameOutputsAsFcfs) {
  TinyModel m(model::Arch::kLlama);
  WorkloadOptions o;
  o.num_waves = 4;
  o.requests_per_wave = 8;
  auto waves = make_workload(1234, m.vocab(), 4, o);
  for (auto& w : waves) w.together = true;  // ordering only matters when requests wait together
  EngineConfig fcfs_config = m.engine_config();
  fcfs_config.max_num_batched_tokens = 24;  // requests queue up, so the policy has a choice
  EngineConfig aware_config = fcfs_config;
  aware_config.schedule_policy = SchedulePolicy::kCacheAware;
  Engine fcfs(fcfs_config);
  Engine aware(aware_config);
  auto a = run_workload(fcfs, waves);
  auto b = run_workload(aware, waves);
  expect_same_outputs(b, a);
  EXPECT_GT(aware.stats().prefix_cache_hit_tokens, 0);
  expect_blocks_released(fcfs);
  expect_blocks_released(aware);
}

// ----------------------------------------------------------------------------------------
// Item 3: exact accounting.

struct Counters {
  std::int64_t query_tokens = 0, hit_tokens = 0, query_blocks = 0, hit_blocks = 0;
};

void expect_counters(const Engine& engine, const Counters& want) {
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.prefix_cache_query_tokens, want.query_tokens);
  EXPECT_EQ(s.prefix_cache_hit_tokens, want.hit_tokens);
  EXPECT_EQ(s.prefix_cache_query_blocks, want.query_blocks);
  EXPECT_EQ(s.prefix_cache_hit_blocks, want.hit_blocks);
  if (want.query_tokens > 0) {
    EXPECT_DOUBLE_EQ(s.prefix_cache_hit_rate,
                     static_cast<double>(want.hit_tokens) / want.query_tokens);
  }
}

// A model of the cache with no eviction: the set of cached block-aligned prefixes per salt.
// A request hits the longest cached prefix of at most (L - 1) tokens (its last prompt token
// is always computed), none when it wants prompt logprobs; afterwards every full block of
// what it computed is cached: its prompt and generated tokens except the last generated
// token, whose K/V is never computed. With partial-block reuse the hit goes on after the
// whole blocks, by the longest run of the request's next tokens that a cached block at that
// position (after the same prefix, under the same salt) begins with.
class CacheOracle {
 public:
  explicit CacheOracle(int block_size, bool partial = true) : b_(block_size), partial_(partial) {}

  std::int32_t expected_hit(const Request& r) const {
    if (r.params.prompt_logprobs) return 0;
    const auto& p = r.prompt_token_ids;
    const int limit = (static_cast<int>(p.size()) - 1) / b_;
    int hit = 0;
    for (int k = 1; k <= limit; ++k) {
      if (!cached_.contains({r.cache_salt, std::vector<TokenId>(p.begin(), p.begin() + k * b_)}))
        break;
      hit = k;
    }
    return hit * b_ + (partial_ ? partial_hit(r, hit * b_) : 0);
  }

  void record(const Request& r, const RequestOutput& out) {
    auto seq = concat(r.prompt_token_ids, out.token_ids);
    const int computed = static_cast<int>(seq.size()) - 1;
    for (int k = 1; k <= computed / b_; ++k)
      cached_.insert({r.cache_salt, std::vector<TokenId>(seq.begin(), seq.begin() + k * b_)});
  }

  void count(const Request& r, std::int32_t hit, Counters& c) const {
    const auto len = static_cast<std::int64_t>(r.prompt_token_ids.size());
    c.query_tokens += len;
    c.hit_tokens += hit;
    c.query_blocks += len / b_;
    c.hit_blocks += hit / b_;
  }

 private:
  // The tokens after `start` (a block boundary) that a cached block there begins with.
  int partial_hit(const Request& r, int start) const {
    const auto& p = r.prompt_token_ids;
    const int want = std::min(b_, static_cast<int>(p.size()) - 1 - start);
    int best = 0;
    for (const auto& [salt, prefix] : cached_) {
      if (salt != r.cache_salt || static_cast<int>(prefix.size()) != start + b_ ||
          !std::equal(p.begin(), p.begin() + start, prefix.begin()))
        continue;
      int run = 0;
      while (run < want && prefix[static_cast<std::size_t>(start + run)] ==
                               p[static_cast<std::size_t>(start + run)])
        ++run;
      best = std::max(best, run);
    }
    return best;
  }

  int b_;
  bool partial_;
  std::set<std::pair<std::string, std::vector<TokenId>>> cached_;
};

// Whole blocks only (partial_block_reuse off): the block where the prompts diverge is
// recomputed.
TEST(PrefixCacheAccounting, SharedSystemPromptThenUniqueSuffixes) {
  TinyModel m(model::Arch::kQwen2);
  const int vocab = m.vocab();
  for (std::int32_t b : {1, 4, 16}) {
    SCOPED_TRACE("block_size " + std::to_string(b));
    EngineConfig config = m.engine_config(b);
    config.partial_block_reuse = false;
    Engine engine(config);
    const int system_len = 37;  // not a multiple of any block size but 1
    const auto system = prompt(500, system_len, vocab);
    Counters want;
    // Warm-up: computes and caches the system prompt's full blocks; nothing hits.
    auto warm_suffix = prompt(501, 5, vocab);
    warm_suffix[0] = 9;  // differs from every later suffix's first token
    auto warm = engine.generate({concat(system, warm_suffix)}, greedy(1))[0];
    EXPECT_EQ(warm.num_cached_tokens, 0);
    want.query_tokens += 42, want.query_blocks += 42 / b;
    expect_counters(engine, want);
    // Each suffix starts with a different token, so exactly floor(37 / b) blocks are shared.
    for (int i = 0; i < 6; ++i) {
      const int suffix_len = 1 + 3 * i;
      auto suffix = prompt(600 + i, suffix_len, vocab);
      suffix[0] = static_cast<TokenId>(10 + i);
      auto out = engine.generate({concat(system, suffix)}, greedy(1))[0];
      const int len = system_len + suffix_len;
      const int hit = system_len / b * b;
      EXPECT_EQ(out.num_cached_tokens, hit) << "suffix " << suffix_len;
      want.query_tokens += len, want.hit_tokens += hit;
      want.query_blocks += len / b, want.hit_blocks += hit / b;
      expect_counters(engine, want);
    }
    EXPECT_EQ(engine.stats().evictions, 0);
    expect_blocks_released(engine);
  }
}

TEST(PrefixCacheAccounting, SamePromptTwiceHitsAllButTheLastTokensBlock) {
  TinyModel m(model::Arch::kLlama);
  for (std::int32_t b : {1, 4, 16}) {
    EngineConfig config = m.engine_config(b);
    config.partial_block_reuse = false;  // whole blocks only; the next test reuses partly
    Engine engine(config);
    Counters want;
    // Lengths on, just past and just before block boundaries, and shorter than one block.
    for (int len : {1, 2, 3, 4, 5, 8, 15, 16, 17, 31, 32, 33, 48}) {
      SCOPED_TRACE("block_size " + std::to_string(b) + ", length " + std::to_string(len));
      auto p = prompt(700 + len, len, m.vocab());
      p[0] = static_cast<TokenId>(100 + len);  // no two lengths share a first block
      auto first = engine.generate({p}, greedy(2))[0];
      auto second = engine.generate({p}, greedy(2))[0];
      EXPECT_EQ(first.num_cached_tokens, 0);
      // The last prompt token is always computed: a whole-block prompt leaves its last block.
      const int hit = (len - 1) / b * b;
      EXPECT_EQ(second.num_cached_tokens, hit);
      EXPECT_EQ(diff(second, first), "");
      want.query_tokens += 2 * len, want.hit_tokens += hit;
      want.query_blocks += 2 * (len / b), want.hit_blocks += hit / b;
      expect_counters(engine, want);
    }
    expect_blocks_released(engine);
  }
}

// With partial-block reuse (the default) the same prompt twice hits all but its last token
// whenever the first run filled the block holding its second-to-last token (with prompt or
// generated tokens), and the shared system prompt hits to its last token whenever a block
// that straddles into another suffix is cached.
TEST(PrefixCacheAccounting, PartialBlockReuseHitsToTheToken) {
  TinyModel m(model::Arch::kLlama);
  const int vocab = m.vocab();
  for (std::int32_t b : {4, 16}) {
    SCOPED_TRACE("block_size " + std::to_string(b));
    Engine engine(m.engine_config(b));
    Engine off(m.engine_config(b, false));
    // 2b + 3 tokens, b generated: 3b + 2 computed, so the third block is full and cached.
    auto p = prompt(900 + b, 2 * b + 3, vocab);
    auto first = engine.generate({p}, greedy(b))[0];
    auto second = engine.generate({p}, greedy(b))[0];
    EXPECT_EQ(second.num_cached_tokens, 2 * b + 2);
    EXPECT_EQ(diff(second, first), "");
    // Another suffix after the same 2b + 1 tokens: the third block's first token is reused.
    auto other =
        concat(std::vector<TokenId>(p.begin(), p.begin() + 2 * b + 1), prompt(950 + b, 6, vocab));
    other[static_cast<std::size_t>(2 * b + 1)] = static_cast<TokenId>(
        (p[static_cast<std::size_t>(2 * b + 1)] + 1) % vocab);  // diverges right there
    auto third = engine.generate({other}, greedy(b))[0];
    EXPECT_EQ(third.num_cached_tokens, 2 * b + 1);
    EXPECT_EQ(diff(third, off.generate({other}, greedy(b))[0]), "");
    const EngineStats s = engine.stats();
    EXPECT_EQ(s.prefix_cache_partial_hit_tokens, 2 + 1);
    EXPECT_EQ(s.prefix_cache_hit_blocks, 2 + 2);  // whole blocks only
    expect_blocks_released(engine);
  }
}

// The workload in small: 16 requests, all at once, sharing a prompt of 100 tokens
// and each with 30 of its own, block size 16. Whole blocks compute 130 + 15 x 34 prompt
// tokens (the shared prompt's last 4 tokens again in each request's seventh block); token
// by token, 130 + 15 x 30 = 580, with outputs equal to cache-off.
TEST(PrefixCacheAccounting, SharedPrefixComputesEachTokenOnce) {
  TinyModel m(model::Arch::kQwen3);
  const int vocab = m.vocab();
  const auto shared = prompt(960, 100, vocab);
  std::vector<Request> requests;
  for (int i = 0; i < 16; ++i) {
    auto own = prompt(961 + i, 30, vocab);
    own[0] = static_cast<TokenId>(1 + i);  // the requests diverge at token 100
    requests.push_back({concat(shared, own), greedy(4), {}});
  }
  for (bool partial : {true, false}) {
    SCOPED_TRACE(partial ? "partial-block reuse" : "whole blocks");
    EngineConfig c = m.engine_config(16);
    c.partial_block_reuse = partial;
    Engine engine(c);
    auto got = generate_together(engine, requests);
    Engine off(m.engine_config(16, false));
    expect_same_outputs(got, generate_together(off, requests));
    const EngineStats s = engine.stats();
    // The gate request's one token is a query too (see generate_together).
    const std::int64_t computed = s.prefix_cache_query_tokens - 1 - s.prefix_cache_hit_tokens;
    EXPECT_EQ(computed, partial ? 130 + 15 * 30 : 130 + 15 * 34);
    EXPECT_EQ(s.prefix_cache_partial_hit_tokens, partial ? 15 * 4 : 0);
    expect_blocks_released(engine);
  }
}

// Random sequential workloads against the oracle: every request's num_cached_tokens and the
// cumulative counters are predicted exactly, for block sizes 1, 4 and 16.
TEST(PrefixCacheAccounting, RandomSequentialWorkloadsMatchTheOracle) {
  TinyModel m(model::Arch::kQwen3);
  for (std::int32_t b : {1, 4, 16}) {
    for (bool partial : {true, false}) {
      SCOPED_TRACE("block_size " + std::to_string(b) + (partial ? ", partial" : ", whole blocks"));
      WorkloadOptions o;
      o.sequential_only = true;
      o.num_waves = 3;
      o.requests_per_wave = 8;
      auto waves = make_workload(4242 + b, m.vocab(), b, o);
      EngineConfig config = m.engine_config(b);
      config.partial_block_reuse = partial;
      Engine engine(config);
      CacheOracle oracle(b, partial);
      Counters want;
      int index = 0;
      for (const auto& wave : waves) {
        for (const Request& r : wave.requests) {
          const std::int32_t hit = oracle.expected_hit(r);
          auto out = engine.generate({r})[0];
          ASSERT_NE(out.finish_reason, FinishReason::kError) << out.error;
          EXPECT_EQ(out.num_cached_tokens, hit)
              << "request " << index << ", length " << r.prompt_token_ids.size();
          oracle.count(r, hit, want);
          oracle.record(r, out);
          ++index;
        }
      }
      expect_counters(engine, want);
      EXPECT_GT(want.hit_tokens, 0);
      if (partial && b > 1) {
        EXPECT_GT(engine.stats().prefix_cache_partial_hit_tokens, 0);
      }
      EXPECT_EQ(engine.stats().evictions, 0);
      expect_blocks_released(engine);
    }
  }
}

// Prompt logprobs need the logits of every prompt position, so such a request computes its
// whole prompt (hits 0) yet still leaves its blocks for the next request; its outputs equal
// the cache-off ones.
TEST(PrefixCacheAccounting, PromptLogprobsComputeEverythingButStillFillTheCache) {
  TinyModel m(model::Arch::kQwen3);
  Engine on(m.engine_config(4, true));
  Engine off(m.engine_config(4, false));
  auto p = prompt(800, 22, m.vocab());
  SamplingParams with_plp = greedy(3);
  with_plp.prompt_logprobs = 2;
  auto warm = on.generate({p}, greedy(3))[0];  // caches the prompt's 5 full blocks
  auto a = on.generate({p}, with_plp)[0];
  EXPECT_EQ(a.num_cached_tokens, 0);  // everything cached, nothing used
  EXPECT_EQ(diff(a, off.generate({p}, with_plp)[0]), "");

  auto q = prompt(801, 30, m.vocab());
  auto b = on.generate({q}, with_plp)[0];
  EXPECT_EQ(b.num_cached_tokens, 0);
  auto c = on.generate({q}, greedy(3))[0];
  // Filled by the prompt-logprobs request: 7 whole blocks, and the 8th, which it filled with
  // generated tokens, for the one prompt token c leaves before its last.
  EXPECT_EQ(c.num_cached_tokens, 29);
  EXPECT_EQ(diff(b, off.generate({q}, with_plp)[0]), "");
  EXPECT_EQ(diff(c, off.generate({q}, greedy(3))[0]), "");
  // warm (22 tokens, no hit), a (22, none used), b (30, none), c (30, 29: 7 blocks + 1).
  Counters want{22 + 22 + 30 + 30, 29, 5 + 5 + 7 + 7, 7};
  expect_counters(on, want);
  expect_blocks_released(on);
  expect_blocks_released(off);
}

// ----------------------------------------------------------------------------------------
// Item 4: multi-turn chat. Turn 2 resends turn 1's prompt and output plus new user tokens;
// it hits every full block of turn 1's prompt + output except the block holding the last
// generated token, whose K/V was never computed: floor((p + g - 1) / b) blocks.

TEST(PrefixCacheChat, NextTurnHitsTheWholePreviousConversation) {
  TinyModel m(model::Arch::kQwen3);
  const int vocab = m.vocab();
  struct Case {
    std::int32_t b;
    int p, g, u;
  };
  // p + g - 1 on and off block boundaries; g = 1 (nothing generated is computed); p a
  // multiple of b.
  const Case cases[] = {{4, 10, 5, 3},   {4, 10, 7, 3},  {4, 12, 1, 2}, {4, 13, 4, 1},
                        {16, 20, 13, 4}, {16, 32, 1, 5}, {1, 7, 5, 2},  {1, 7, 1, 1}};
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE("block_size " + std::to_string(c.b) + " p " + std::to_string(c.p) + " g " +
                 std::to_string(c.g));
    Engine engine(m.engine_config(c.b));
    Engine off(m.engine_config(c.b, false));
    auto turn1_prompt = prompt(900 + n, c.p, vocab);
    auto turn1 = engine.generate({turn1_prompt}, greedy(c.g))[0];
    ASSERT_EQ(static_cast<int>(turn1.token_ids.size()), c.g);
    auto turn2_prompt = concat(concat(turn1_prompt, turn1.token_ids), prompt(950 + n, c.u, vocab));
    auto turn2 = engine.generate({turn2_prompt}, greedy(4))[0];
    const int expected = (c.p + c.g - 1) / c.b * c.b;
    EXPECT_EQ(turn2.num_cached_tokens, expected);
    EXPECT_EQ(diff(turn2, off.generate({turn2_prompt}, greedy(4))[0]), "");
    // Turn 3 again: the whole of turn 2's conversation.
    auto turn3_prompt = concat(concat(turn2_prompt, turn2.token_ids), prompt(970 + n, 2, vocab));
    auto turn3 = engine.generate({turn3_prompt}, greedy(2))[0];
    EXPECT_EQ(turn3.num_cached_tokens, (static_cast<int>(turn2_prompt.size()) + 4 - 1) / c.b * c.b);
    EXPECT_EQ(diff(turn3, off.generate({turn3_prompt}, greedy(2))[0]), "");
    expect_blocks_released(engine);
    ++n;
  }
}

// ----------------------------------------------------------------------------------------
// Item 5: in-batch dedup. Requests admitted together that share an uncached prefix: the
// first computes it, the others wait a step and hit its full blocks.

TEST(PrefixCacheDedup, RequestsAdmittedTogetherComputeASharedPrefixOnce) {
  TinyModel m(model::Arch::kLlama);
  const int vocab = m.vocab();
  // Budget 2048 (one step holds everything) and 16 (the prefix takes several chunks, so the
  // others wait several steps).
  for (std::int32_t budget : {2048, 16}) {
    SCOPED_TRACE("max_num_batched_tokens " + std::to_string(budget));
    EngineConfig c = m.engine_config(4);
    c.max_num_batched_tokens = budget;
    // Whole blocks: how much of the divergent block the later requests reuse partly depends
    // on whether its first request has filled it by their admission (SharedPrefixComputes-
    // EachTokenOnce covers that); this test is about the deferral.
    c.partial_block_reuse = false;
    Engine on(c);
    c.enable_prefix_caching = false;
    Engine off(c);
    const auto shared = prompt(1000, 50, vocab);  // 12 full blocks, then 2 tokens
    std::vector<Request> requests;
    for (int i = 0; i < 4; ++i) {
      auto suffix = prompt(1001 + i, 3 + i, vocab);
      suffix[0] = static_cast<TokenId>(20 + i);  // the requests differ from token 50 on
      requests.push_back({concat(shared, suffix), i == 2 ? seeded(5, 77) : greedy(5), {}});
    }
    requests.push_back({shared, greedy(5), {}});  // the shared part alone: 48 = 12 blocks hit
    requests.push_back({shared, greedy(5), {}});  // and again, identical
    auto got = generate_together(on, requests);
    ASSERT_EQ(got.size(), requests.size());
    EXPECT_EQ(got[0].num_cached_tokens, 0);
    for (std::size_t i = 1; i < got.size(); ++i)
      EXPECT_EQ(got[i].num_cached_tokens, 48) << "request " << i;
    expect_same_outputs(got, generate_together(off, requests));
    // Exactly one computed the shared 48 tokens: the gate's one token, then the prompts.
    Counters want{1, 0, 1 / 4, 0};
    for (const auto& r : requests) {
      want.query_tokens += static_cast<std::int64_t>(r.prompt_token_ids.size());
      want.query_blocks += static_cast<std::int64_t>(r.prompt_token_ids.size()) / 4;
    }
    want.hit_tokens = 48 * 5;
    want.hit_blocks = 12 * 5;
    expect_counters(on, want);
    expect_blocks_released(on);
    expect_blocks_released(off);
  }
}

// ----------------------------------------------------------------------------------------
// Item 6: cache salt isolates tenants, paired with a cache-off control.

TEST(PrefixCacheSalt, SameSaltHitsDifferentSaltMissesAndCacheOffNeverHits) {
  TinyModel m(model::Arch::kQwen2);
  const auto p = prompt(1100, 26, m.vocab());  // 6 full blocks of 4, then 2 tokens: 24 hit
  auto run = [&](bool caching) {
    Engine engine(m.engine_config(4, caching));
    std::vector<std::int32_t> hits;
    auto ask = [&](const std::string& salt) {
      auto out = engine.generate({{p, greedy(3), salt}})[0];
      hits.push_back(out.num_cached_tokens);
      return out;
    };
    auto a1 = ask("tenant-a");
    auto a2 = ask("tenant-a");  // same salt: hit
    auto b1 = ask("tenant-b");  // different salt: miss
    auto none = ask("");        // the empty salt is a salt like any other: miss
    auto b2 = ask("tenant-b");  // hit its own
    ask("");                    // the empty salt hits its own
    EXPECT_EQ(diff(a2, a1), "");
    EXPECT_EQ(diff(b1, a1), "");
    EXPECT_EQ(diff(none, a1), "");
    expect_blocks_released(engine);
    return hits;
  };
  // 6 whole blocks, then the first of the two tokens in the 7th (filled by generated tokens).
  EXPECT_EQ(run(true), (std::vector<std::int32_t>{0, 25, 0, 0, 25, 25}));
  EXPECT_EQ(run(false), (std::vector<std::int32_t>{0, 0, 0, 0, 0, 0}));
}

// In-batch dedup respects salts: a request admitted together with one computing the same
// prompt under another salt must not wait for (or hit) its blocks.
TEST(PrefixCacheSalt, InBatchDedupOnlyWithinASalt) {
  TinyModel m(model::Arch::kQwen2);
  Engine engine(m.engine_config(4));
  const auto p = prompt(1150, 26, m.vocab());
  auto mixed = generate_together(engine, {{p, greedy(2), "s1"}, {p, greedy(2), "s2"}});
  EXPECT_EQ(mixed[0].num_cached_tokens, 0);
  EXPECT_EQ(mixed[1].num_cached_tokens, 0);
  auto same = generate_together(engine, {{p, greedy(2), "s3"}, {p, greedy(2), "s3"}});
  EXPECT_EQ(same[0].num_cached_tokens, 0);
  EXPECT_EQ(same[1].num_cached_tokens, 24);
  EXPECT_EQ(diff(mixed[1], mixed[0]), "");
  EXPECT_EQ(diff(same[1], mixed[0]), "");
  expect_blocks_released(engine);
}

// A salt changes only the first block's hash; a prefix that agrees in everything but the salt
// must miss on every block, not just the first.
TEST(PrefixCacheSalt, SaltIsolatesEveryBlockNotOnlyTheFirst) {
  TinyModel m(model::Arch::kQwen2);
  Engine engine(m.engine_config(4));
  const auto p = prompt(1200, 40, m.vocab());
  engine.generate({{p, greedy(1), "x"}});
  auto other = engine.generate({{p, greedy(1), "y"}})[0];
  EXPECT_EQ(other.num_cached_tokens, 0);
  auto same = engine.generate({{p, greedy(1), "x"}})[0];
  EXPECT_EQ(same.num_cached_tokens, 39);  // 9 whole blocks and 3 tokens of the 10th
  expect_blocks_released(engine);
}

// ----------------------------------------------------------------------------------------
// Item 2: batching, preemption and eviction do not change outputs.

TEST(PrefixCacheBatching, ARequestAloneEqualsTheSameRequestInABusyBatch) {
  TinyModel m(model::Arch::kQwen3);
  const int vocab = m.vocab();
  const auto shared = prompt(1300, 30, vocab);
  Request target{concat(shared, prompt(1301, 9, vocab)), greedy(10), {}};
  RequestOutput alone;
  {
    Engine engine(m.engine_config(4));
    alone = engine.generate({target})[0];
  }
  EngineConfig busy_config = m.engine_config(4);
  busy_config.max_num_batched_tokens = 20;  // chunked prefills mixed with decodes
  Engine engine(busy_config);
  std::vector<Request> batch;
  for (int i = 0; i < 7; ++i) {
    Request r{concat(std::vector<TokenId>(shared.begin(), shared.begin() + 4 * i),
                     prompt(1310 + i, 5 + 3 * i, vocab)),
              i % 2 ? seeded(6 + i, i) : greedy(6 + i),
              {}};
    batch.push_back(r);
    if (i == 3) batch.push_back(target);  // in the middle of the batch
  }
  batch.push_back(target);  // and again at the end, where it hits the first copy's blocks
  auto outputs = generate_together(engine, batch);
  ASSERT_EQ(outputs.size(), batch.size());
  EXPECT_EQ(diff(outputs[4], alone), "");
  EXPECT_EQ(diff(outputs.back(), alone), "");
  EXPECT_GT(outputs.back().num_cached_tokens, 0);
  expect_blocks_released(engine);
}

// A KV budget far below what the batch needs: requests are preempted (their blocks go back,
// some to the cache, where others evict them), resumed, and still produce exactly what they
// produce alone.
TEST(PrefixCacheBatching, PreemptedAndResumedRequestsEqualUninterruptedOnes) {
  TinyModel m(model::Arch::kLlama);
  const int vocab = m.vocab();
  const auto shared = prompt(1400, 21, vocab);
  std::vector<Request> requests;
  for (int i = 0; i < 8; ++i) {
    Request r{concat(std::vector<TokenId>(shared.begin(), shared.begin() + (i % 3) * 8),
                     prompt(1410 + i, 4 + i, vocab)),
              i % 3 == 1 ? seeded(14, 50 + i) : greedy(14),
              {}};
    if (i == 5) r.params.prompt_logprobs = 2;
    requests.push_back(r);
  }
  const auto want = alone_outputs(m, 4, requests);
  for (auto policy : {SchedulePolicy::kFcfs, SchedulePolicy::kCacheAware}) {
    SCOPED_TRACE(policy == SchedulePolicy::kFcfs ? "fcfs" : "cache-aware");
    EngineConfig c = m.engine_config(4);
    c.num_kv_blocks = 16;  // 64 token slots; the requests reach 18 to 39 tokens each
    c.max_num_batched_tokens = 12;
    c.schedule_policy = policy;
    Engine engine(c);
    auto got = generate_together(engine, requests);
    expect_same_outputs(got, want);
    const EngineStats s = engine.stats();
    EXPECT_GT(s.preemptions, 0);
    EXPECT_GT(s.evictions, 0);
    EXPECT_LE(s.peak_blocks_in_use, 16);
    // A preempted request's recompute is not counted again: one query per request (plus
    // the gate's single token).
    std::int64_t query = 1;
    for (const auto& r : requests) query += static_cast<std::int64_t>(r.prompt_token_ids.size());
    EXPECT_EQ(s.prefix_cache_query_tokens, query);
    expect_blocks_released(engine);
  }
}

// Random workloads on a tiny cache with small chunks, for every policy: outputs must equal
// the requests run alone whatever preemption and eviction do.
TEST(PrefixCacheBatching, RandomWorkloadsUnderMemoryPressureEqualAloneRuns) {
  TinyModel m(model::Arch::kQwen2);
  for (std::uint64_t seed : {1, 2, 3}) {
    for (auto policy : {SchedulePolicy::kFcfs, SchedulePolicy::kCacheAware}) {
      SCOPED_TRACE("seed " + std::to_string(seed) +
                   (policy == SchedulePolicy::kFcfs ? " fcfs" : " cache-aware"));
      WorkloadOptions o;
      o.num_waves = 2;
      o.requests_per_wave = 10;
      auto waves = make_workload(3000 + seed, m.vocab(), 4, o);
      for (auto& w : waves) w.together = true;
      std::vector<Request> all;
      for (const auto& w : waves) all.insert(all.end(), w.requests.begin(), w.requests.end());
      EngineConfig c = m.engine_config(4);
      c.num_kv_blocks = 30;  // 120 slots; the longest request needs up to 28 blocks alone
      c.max_num_batched_tokens = 8 + 8 * static_cast<int>(seed);
      c.schedule_policy = policy;
      Engine engine(c);
      auto got = run_workload(engine, waves);
      expect_same_outputs(got, alone_outputs(m, 4, all));
      EXPECT_GT(engine.stats().preemptions + engine.stats().evictions, 0);
      expect_blocks_released(engine);
    }
  }
}

// A deterministic instance of a scheduling order the random test may or may not reach: an
// early-arriving request still prefilling (it was deferred behind a shared block another
// request was computing) while a later arrival already decodes, and the early one needs a
// block when none is left. The victim is then the later arrival, which was already scheduled
// for this step's decode; it must not run in this step any more (nor twice).
//
// Block size 4, budget 16, 9 blocks. Step 1: X (9 tokens) runs whole; A (S + 20 tokens,
// sharing X's first two blocks) is deferred; B (3 tokens) runs. Step 2: X and B decode, A
// is admitted with its 2 cached blocks and a 14-token chunk. Step 3: X and B decode (B takes
// its second block: 9 blocks in use), A's last chunk needs a 10th block: B is preempted.
TEST(PrefixCacheBatching, PreemptingADecodeAlreadyScheduledThisStepKeepsOutputsExact) {
  TinyModel m(model::Arch::kQwen3);
  const int vocab = m.vocab();
  const auto s = prompt(1500, 8, vocab);
  std::vector<Request> requests = {
      {concat(s, {static_cast<TokenId>(5)}), greedy(6), {}},  // X
      {concat(s, prompt(1501, 20, vocab)), greedy(6), {}},    // A
      {prompt(1502, 3, vocab), greedy(8), {}},                // B
  };
  const auto want = alone_outputs(m, 4, requests);
  EngineConfig c = m.engine_config(4);
  c.num_kv_blocks = 9;
  c.max_num_batched_tokens = 16;
  Engine engine(c);
  auto got = generate_together(engine, requests);
  expect_same_outputs(got, want);
  EXPECT_GT(engine.stats().preemptions, 0);
  expect_blocks_released(engine);
}

// ----------------------------------------------------------------------------------------
// The host tier: blocks the KV cache evicts are copied to host memory and loaded back for a
// later hit. Loaded blocks are the same bytes as computed ones, so outputs stay bit-identical
// to cache-off; debug_poison_kv (on in every test engine) turns any block whose load did not
// happen, or happened after a read, into a failed request.

TEST_P(PrefixCacheArchTest, HostTierUnderEvictionIsBitIdenticalToCacheOff) {
  TinyModel m(GetParam());
  for (std::int64_t host_blocks : {24, 400}) {
    SCOPED_TRACE("host tier of " + std::to_string(host_blocks) + " blocks");
    WorkloadOptions o;
    o.num_waves = 6;
    auto waves = make_workload(70 + host_blocks, m.vocab(), 4, o);
    EngineConfig c = m.engine_config(4, true);
    c.num_kv_blocks = 40;  // a wave's prompts together overflow it: evictions every wave
    c.host_kv_cache_bytes = host_tier_bytes(m, 4, host_blocks);
    Engine on(c);
    EXPECT_EQ(on.info().num_host_kv_blocks, host_blocks);
    Engine off(m.engine_config(4, false));
    auto with_tier = run_workload(on, waves);
    expect_same_outputs(with_tier, run_workload(off, waves));
    const EngineStats s = on.stats();
    EXPECT_GT(s.evictions, 0);
    EXPECT_GT(s.host_blocks_stored, 0);
    EXPECT_GT(s.host_blocks_loaded, 0) << "the tier must really have served hits";
    EXPECT_GT(s.prefix_cache_host_hit_tokens, 0);
    EXPECT_LE(s.prefix_cache_host_hit_tokens, s.prefix_cache_hit_tokens);
    EXPECT_LE(s.host_blocks_used, host_blocks);
    if (host_blocks == 24) {
      EXPECT_GT(s.host_evictions, 0);
    }
    expect_blocks_released(on);
  }
}

TEST(PrefixCacheHostTier, AnEvictedPrefixIsLoadedFromTheTierAndGivesTheSameOutput) {
  TinyModel m(model::Arch::kQwen3);
  const auto a = prompt(1600, 30, m.vocab());  // 7 full blocks of 4, then 2 tokens
  const auto b = prompt(1601, 30, m.vocab());
  EngineConfig c = m.engine_config(4);
  c.num_kv_blocks = 8;  // 30 + 3 tokens fill all 8 blocks: b evicts every block of a
  c.host_kv_cache_bytes = host_tier_bytes(m, 4, 32);
  Engine engine(c);
  const auto first = engine.generate({{a, greedy(3), {}}})[0];
  engine.generate({{b, greedy(3), {}}});
  EXPECT_EQ(engine.stats().prefix_cache_host_hit_tokens, 0);
  const auto again = engine.generate({{a, greedy(3), {}}})[0];
  EXPECT_EQ(diff(again, first), "");
  EXPECT_EQ(again.num_cached_tokens, 28);
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.prefix_cache_host_hit_tokens, 28) << "every hit came from the host tier";
  EXPECT_EQ(s.host_blocks_loaded, 7);
  // a's 8 full blocks (the last one ends in generated tokens), then b's when a came back.
  EXPECT_EQ(s.host_blocks_stored, 16);
  expect_blocks_released(engine);
}

TEST(PrefixCacheHostTier, ASaltIsolatesBlocksInTheTierToo) {
  TinyModel m(model::Arch::kQwen2);
  const auto a = prompt(1700, 26, m.vocab());  // 6 full blocks of 4
  EngineConfig c = m.engine_config(4);
  c.num_kv_blocks = 8;
  c.host_kv_cache_bytes = host_tier_bytes(m, 4, 64);
  Engine engine(c);
  auto ask = [&](const std::vector<TokenId>& p, const std::string& salt) {
    return engine.generate({{p, greedy(2), salt}})[0];
  };
  const auto a1 = ask(a, "tenant-a");
  ask(prompt(1701, 26, m.vocab()), "tenant-a");  // evicts a's blocks into the tier
  EXPECT_EQ(ask(a, "tenant-b").num_cached_tokens, 0) << "another salt misses in the tier";
  EXPECT_EQ(ask(a, "").num_cached_tokens, 0);
  ask(prompt(1702, 26, m.vocab()), "");  // the two misses' blocks go to the tier as well
  const auto a2 = ask(a, "tenant-a");
  EXPECT_EQ(a2.num_cached_tokens, 24);
  EXPECT_EQ(diff(a2, a1), "");
  EXPECT_GT(engine.stats().prefix_cache_host_hit_tokens, 0);
  expect_blocks_released(engine);
}

// Preemption, eviction and loads in the same steps: outputs equal the requests run alone.
TEST(PrefixCacheHostTier, RandomWorkloadsUnderMemoryPressureEqualAloneRuns) {
  TinyModel m(model::Arch::kLlama);
  for (std::uint64_t seed : {1, 2, 3}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    WorkloadOptions o;
    o.num_waves = 3;
    o.requests_per_wave = 10;
    auto waves = make_workload(4000 + seed, m.vocab(), 4, o);
    for (auto& w : waves) w.together = true;
    std::vector<Request> all;
    for (const auto& w : waves) all.insert(all.end(), w.requests.begin(), w.requests.end());
    EngineConfig c = m.engine_config(4);
    c.num_kv_blocks = 30;
    c.max_num_batched_tokens = 8 + 8 * static_cast<int>(seed);
    c.host_kv_cache_bytes = host_tier_bytes(m, 4, 10 + 40 * static_cast<std::int64_t>(seed));
    c.schedule_policy = seed == 2 ? SchedulePolicy::kCacheAware : SchedulePolicy::kFcfs;
    Engine engine(c);
    auto got = run_workload(engine, waves);
    expect_same_outputs(got, alone_outputs(m, 4, all));
    EXPECT_GT(engine.stats().host_blocks_loaded, 0);
    expect_blocks_released(engine);
  }
}

TEST(PrefixCacheHostTier, ATierThatHoldsNoBlockIsAClearError) {
  TinyModel m(model::Arch::kQwen2);
  EngineConfig c = m.engine_config(4);
  c.host_kv_cache_bytes = 1;
  try {
    Engine engine(c);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("host_kv_cache_bytes"));
  }
  c.host_kv_cache_bytes = -1;
  EXPECT_THROW(Engine{c}, Error);
  c.host_kv_cache_bytes = std::int64_t{1} << 20;
  c.enable_prefix_caching = false;
  EXPECT_EQ(Engine(c).info().num_host_kv_blocks, 0) << "no tier without prefix caching";
}

// ----------------------------------------------------------------------------------------
// Prefix pins (Request::cache_pin).

TEST(PrefixCachePins, APinnedPrefixSurvivesEvictionThatTakesAnUnpinnedOne) {
  TinyModel m(model::Arch::kQwen3);
  EngineConfig c = m.engine_config(4);
  c.num_kv_blocks = 20;
  Engine engine(c);
  const auto pinned = prompt(1800, 24, m.vocab()), plain = prompt(1801, 24, m.vocab());
  Request with_pin{pinned, greedy(2), {}};
  with_pin.cache_pin = CachePin{0, 60.0};
  const auto first = engine.generate({with_pin})[0];
  EXPECT_EQ(first.num_pinned_tokens, 24);
  EXPECT_EQ(first.pin_error, "");
  EXPECT_EQ(engine.stats().blocks_pinned, 6);
  engine.generate({{plain, greedy(2), {}}});
  // Pressure: three other prompts of 8 blocks each pass through the 20-block cache.
  for (int i = 0; i < 3; ++i) engine.generate({{prompt(1810 + i, 30, m.vocab()), greedy(2), {}}});
  EXPECT_GT(engine.stats().evictions, 0);
  const auto again = engine.generate({{pinned, greedy(2), {}}})[0];
  EXPECT_EQ(again.num_cached_tokens, 23) << "the pinned prompt is still cached";
  EXPECT_EQ(diff(again, first), "");
  EXPECT_EQ(engine.generate({{plain, greedy(2), {}}})[0].num_cached_tokens, 0)
      << "the unpinned one was evicted";
  expect_blocks_released(engine);
}

// With a host tier, a pinned prefix pushed out of the device pool keeps its pin in the tier:
// where unpinned prefixes come and go, it stays, and is loaded back.
TEST(PrefixCachePins, APinnedPrefixOutlivesUnpinnedOnesInTheHostTierToo) {
  TinyModel m(model::Arch::kQwen3);
  EngineConfig c = m.engine_config(4);
  c.num_kv_blocks = 14;                               // pins: at most 7 blocks
  c.host_kv_cache_bytes = host_tier_bytes(m, 4, 12);  // and 6 of its 12 entries
  Engine engine(c);
  const auto pinned = prompt(1900, 24, m.vocab()), plain = prompt(1901, 24, m.vocab());
  Request with_pin{pinned, greedy(2), {}};
  with_pin.cache_pin = CachePin{0, 60.0};
  const auto first = engine.generate({with_pin})[0];
  EXPECT_EQ(first.num_pinned_tokens, 24);
  engine.generate({{plain, greedy(2), {}}});
  // Four prompts of 14 blocks each: each takes the whole pool (pinned blocks too, the last
  // resort) and pushes 13 blocks through the 12-entry tier.
  for (int i = 0; i < 4; ++i) engine.generate({{prompt(1910 + i, 52, m.vocab()), greedy(2), {}}});
  EXPECT_EQ(engine.stats().blocks_pinned, 0) << "no pinned block left on the device";
  EXPECT_EQ(engine.stats().host_blocks_pinned, 6) << "all six kept their pins in the tier";
  EXPECT_GT(engine.stats().host_evictions, 0);
  const auto again = engine.generate({{pinned, greedy(2), {}}})[0];
  EXPECT_EQ(again.num_cached_tokens, 20) << "its 5 full blocks, from the tier";
  EXPECT_EQ(engine.stats().prefix_cache_host_hit_tokens, 20);
  EXPECT_EQ(diff(again, first), "");
  EXPECT_EQ(engine.generate({{plain, greedy(2), {}}})[0].num_cached_tokens, 0)
      << "the unpinned one was evicted from both";
  expect_blocks_released(engine);
}

TEST(PrefixCachePins, AfterItsTtlAPinIsAnOrdinaryCachedPrefix) {
  TinyModel m(model::Arch::kQwen3);
  EngineConfig c = m.engine_config(4);
  c.num_kv_blocks = 20;
  Engine engine(c);
  const auto pinned = prompt(1900, 24, m.vocab());
  Request with_pin{pinned, greedy(2), {}};
  with_pin.cache_pin = CachePin{16, 0.2};  // the first 4 blocks, for 0.2 s
  EXPECT_EQ(engine.generate({with_pin})[0].num_pinned_tokens, 16);
  EXPECT_EQ(engine.stats().blocks_pinned, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  for (int i = 0; i < 3; ++i) engine.generate({{prompt(1910 + i, 30, m.vocab()), greedy(2), {}}});
  EXPECT_EQ(engine.stats().blocks_pinned, 0);
  EXPECT_EQ(engine.generate({{pinned, greedy(2), {}}})[0].num_cached_tokens, 0)
      << "evicted like any other once the pin ended";
  // A TTL of 0 unpins at once.
  Request unpin{pinned, greedy(2), {}};
  with_pin.cache_pin = CachePin{0, 60.0};
  engine.generate({with_pin});
  EXPECT_EQ(engine.stats().blocks_pinned, 6);
  unpin.cache_pin = CachePin{0, 0.0};
  EXPECT_EQ(engine.generate({unpin})[0].num_pinned_tokens, 0);
  EXPECT_EQ(engine.stats().blocks_pinned, 0);
  expect_blocks_released(engine);
}

TEST(PrefixCachePins, APinOverTheBudgetIsRefusedWithItsReasonAndTheRequestRuns) {
  TinyModel m(model::Arch::kQwen2);
  EngineConfig c = m.engine_config(4);
  c.num_kv_blocks = 20;
  c.max_pinned_fraction = 0.25;  // 5 blocks
  Engine engine(c);
  Request a{prompt(2000, 16, m.vocab()), greedy(2), {}};
  a.cache_pin = CachePin{};
  EXPECT_EQ(engine.generate({a})[0].num_pinned_tokens, 16);
  Request b{prompt(2001, 16, m.vocab()), greedy(2), {}};
  b.cache_pin = CachePin{};
  const auto out = engine.generate({b})[0];
  EXPECT_EQ(out.finish_reason, FinishReason::kLength);
  EXPECT_EQ(out.num_pinned_tokens, 0);
  EXPECT_THAT(out.pin_error, ::testing::HasSubstr("pin budget of 5 blocks"));
  EXPECT_EQ(engine.stats().blocks_pinned, 4);
  Request bad{prompt(2002, 8, m.vocab()), greedy(2), {}};
  bad.cache_pin = CachePin{-1, 10.0};
  EXPECT_EQ(engine.generate({bad})[0].finish_reason, FinishReason::kError);
  expect_blocks_released(engine);
}

}  // namespace
}  // namespace cachet

// RequestOutput::cache_miss through the engine: each reason a request's cached prefix can
// end for, made on purpose with a tiny model on the CPU.
#include <gtest/gtest.h>

#include <vector>

#include "cachet/engine.h"
#include "support/kv_steps.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using testing::greedy;

using testing::concat;
constexpr auto run = testing::tokens_from;

CacheMiss miss_of(Engine& engine, const std::vector<TokenId>& prompt, std::string salt = "",
                  SamplingParams params = greedy(2)) {
  Request r;
  r.prompt_token_ids = prompt;
  r.params = params;
  r.cache_salt = std::move(salt);
  const RequestOutput out = engine.generate(std::vector<Request>{r})[0];
  EXPECT_EQ(out.error, "");
  return out.cache_miss;
}

TEST(CacheMiss, EachReasonIsReportedWhereThePrefixEnded) {
  testing::TinyModel m(model::Arch::kQwen3);
  EngineConfig c = m.engine_config(4, true, 1);
  c.partial_block_reuse = false;
  Engine engine(c);
  const auto doc = run(10, 16);  // four blocks of 4
  EXPECT_EQ(miss_of(engine, doc).reason, CacheMissReason::kCold);
  CacheMiss miss = miss_of(engine, doc);
  EXPECT_EQ(miss.reason, CacheMissReason::kNone);
  EXPECT_EQ(miss.at, 12);
  miss = miss_of(engine, concat(doc, run(200, 8)));
  EXPECT_EQ(miss.reason, CacheMissReason::kPrefixEnd) << "the first request's 16 + 2 tokens";
  EXPECT_EQ(miss.at, 16);
  miss = miss_of(engine, concat(run(10, 6), run(300, 10)));
  EXPECT_EQ(miss.reason, CacheMissReason::kDiverged);
  EXPECT_EQ(miss.at, 6);
  EXPECT_TRUE(miss.in_block);
  miss = miss_of(engine, concat(run(10, 8), run(400, 8)));
  EXPECT_EQ(miss.reason, CacheMissReason::kDiverged);
  EXPECT_EQ(miss.at, 8);
  EXPECT_FALSE(miss.in_block);
  EXPECT_EQ(miss_of(engine, doc, "tenant").reason, CacheMissReason::kOtherSalt);
  SamplingParams with_prompt_logprobs = greedy(2);
  with_prompt_logprobs.prompt_logprobs = 1;
  EXPECT_EQ(miss_of(engine, doc, "", with_prompt_logprobs).reason, CacheMissReason::kBypassed);
}

TEST(CacheMiss, EvictedBlocksAndCachingOff) {
  testing::TinyModel m(model::Arch::kQwen3);
  EngineConfig c = m.engine_config(4, true, 1);
  c.num_kv_blocks = 8;
  Engine engine(c);
  const auto a = run(10, 24);  // 6 blocks with its 2 generated tokens: most of the pool
  miss_of(engine, a);
  miss_of(engine, run(300, 24));  // evicts a's blocks
  const CacheMiss miss = miss_of(engine, a);
  EXPECT_EQ(miss.reason, CacheMissReason::kEvicted);
  EXPECT_EQ(miss.tier, "device");

  EngineConfig off = m.engine_config(4, false, 1);
  Engine uncached(off);
  miss_of(uncached, a);
  EXPECT_EQ(miss_of(uncached, a).reason, CacheMissReason::kCachingOff);
}

}  // namespace
}  // namespace cachet

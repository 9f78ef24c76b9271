// debug_poison_kv: poisoned blocks turn any read of K/V the block table does not vouch for
// into NaN logits (checked here by reading one on purpose), the block pool reports exactly
// the blocks that return to the free list, and the engine fails such a step loudly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "cachet/engine.h"
#include "kv/block_pool.h"
#include "model/weights.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

constexpr std::int32_t kBlock = 4;

// One sequence of `context` tokens whose last `query` are new, blocks 0, 1, 2, ... in order.
backend::ForwardBatch batch(std::int32_t context, std::int32_t query) {
  backend::ForwardBatch b;
  for (std::int32_t p = context - query; p < context; ++p) {
    b.token_ids.push_back(3 + p);
    b.positions.push_back(p);
    b.slot_mapping.push_back(p);  // block p / 4 at offset p % 4, as the table below says
  }
  b.query_start = {0, query};
  b.context_lens = {context};
  b.max_blocks_per_seq = (context + kBlock - 1) / kBlock;
  for (std::int32_t i = 0; i < b.max_blocks_per_seq; ++i) b.block_tables.push_back(i);
  b.logits_indices = {query - 1};
  return b;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

TEST(PoisonedKv, AReadOfAPoisonedBlockGivesNanLogits) {
  testing::TinyModel m(model::Arch::kLlama);
  backend::KvCacheSpec kv{m.config.num_layers, m.config.num_kv_heads, m.config.head_dim, kBlock, 8};
  auto be = backend::make_cpu_backend(m.config, model::load_weights(m.dir.path(), m.config), kv, 1);
  std::vector<std::int32_t> all = {0, 1, 2, 3, 4, 5, 6, 7};
  be->poison_blocks(all);
  std::vector<float> logits;
  be->forward(batch(8, 8), logits);  // prefill writes blocks 0 and 1 before reading them
  EXPECT_TRUE(all_finite(logits));
  be->forward(batch(9, 1), logits);  // decode reads blocks 0, 1 and its own slot in block 2
  EXPECT_TRUE(all_finite(logits));
  const std::vector<std::int32_t> one = {1};
  be->poison_blocks(one);  // as if block 1 had been freed while still in the table
  be->forward(batch(9, 1), logits);
  EXPECT_FALSE(all_finite(logits)) << "a read of a poisoned block went unnoticed";
}

TEST(PoisonedKv, BlockPoolReportsExactlyTheBlocksThatBecomeFree) {
  kv::BlockPool pool(4, kBlock);
  pool.set_track_freed(true);
  auto blocks = *pool.allocate(3);  // 0 .. 2 in some order
  const std::vector<TokenId> tokens = {1, 2, 3, 4};
  ASSERT_EQ(pool.register_block(blocks[0], kv::BlockHash{1, 2}, kv::ChainLink::first(""), tokens),
            blocks[0]);
  pool.release(blocks);  // blocks[0] is cached (not free), the other two are free
  auto freed = pool.take_freed();
  ASSERT_EQ(freed.size(), 2u);
  EXPECT_EQ(freed[0], blocks[2]);  // released from the chain's end
  EXPECT_EQ(freed[1], blocks[1]);
  EXPECT_TRUE(pool.take_freed().empty());
  auto all = *pool.allocate(4);  // takes the 3 free ones, then evicts the cached one
  freed = pool.take_freed();
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0], blocks[0]);
  EXPECT_EQ(pool.num_evictions(), 1);
}

TEST(PoisonedKv, EvictionAndPreemptionUnderPoisonStillMatchTheCacheOffRun) {
  testing::TinyModel m(model::Arch::kQwen3);
  EngineConfig tight = m.engine_config(kBlock);
  ASSERT_TRUE(tight.debug_poison_kv);
  tight.num_kv_blocks = 14;  // 56 slots for 6 requests of up to 50 tokens: evictions, preemption
  EngineConfig off = m.engine_config(kBlock, /*caching=*/false);
  std::vector<std::vector<TokenId>> prompts;
  for (int i = 0; i < 6; ++i) {
    std::vector<TokenId> p = {5, 6, 7, 8, 9, 10, 11, 12};  // a shared two-block prefix
    for (int j = 0; j < 10 + 3 * i; ++j) p.push_back(20 + (7 * i + 3 * j) % 400);
    prompts.push_back(p);
  }
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  greedy.max_tokens = 20;
  greedy.ignore_eos = true;
  Engine a(tight), b(off);
  const auto got = a.generate(prompts, greedy);
  const auto want = b.generate(prompts, greedy);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_TRUE(got[i].error.empty()) << got[i].error;
    EXPECT_EQ(got[i].token_ids, want[i].token_ids) << "request " << i;
  }
  const EngineStats s = a.stats();
  EXPECT_GT(s.evictions + s.preemptions, 0) << "the budget was meant to force eviction";
}

}  // namespace
}  // namespace cachet

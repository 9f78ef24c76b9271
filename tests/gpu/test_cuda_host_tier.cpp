// The CUDA backend's host tier: blocks evicted from the GPU's KV cache are copied to pinned
// host memory and copied back for a later hit; the disk tier below it writes and reads those
// pinned slots. A hit served from the tier must give the same
// bits as the same hit served from blocks that never left the GPU (the computation is the
// same; only where the K/V bytes spent the meantime differs). Also partial-block reuse's copy
// within the GPU's pools. Skips where no GPU can be used.
#include <gtest/gtest.h>

#include "support/gpu_test.h"

#if CACHET_WITH_CUDA

#include <cstdint>
#include <cstring>
#include <vector>

#include "cachet/engine.h"
#include "model/make_model.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

std::vector<TokenId> prompt(int seed, int length) {
  std::vector<TokenId> ids;
  for (int i = 0; i < length; ++i)
    ids.push_back(static_cast<TokenId>(3 + (seed * 131 + i * 7919) % 900));
  return ids;
}

SamplingParams greedy_with_logprobs(int max_tokens) {
  SamplingParams p = testing::greedy(max_tokens);
  p.logprobs = 2;
  return p;
}

bool same_bits(const RequestOutput& a, const RequestOutput& b) {
  if (a.token_ids != b.token_ids || a.logprobs.size() != b.logprobs.size()) return false;
  for (std::size_t t = 0; t < a.logprobs.size(); ++t) {
    if (a.logprobs[t].size() != b.logprobs[t].size()) return false;
    for (std::size_t k = 0; k < a.logprobs[t].size(); ++k)
      if (a.logprobs[t][k].id != b.logprobs[t][k].id ||
          std::memcmp(&a.logprobs[t][k].logprob, &b.logprobs[t][k].logprob, sizeof(float)) != 0)
        return false;
  }
  return true;
}

// A bf16 model of the "small" preset in `dir`, and an engine configuration for it on the GPU
// with every KV check on (a block whose copy did not land reads as NaN and fails the step).
EngineConfig small_gpu_model(const testing::TempDir& dir, std::uint64_t seed) {
  model::MakeModelOptions o;
  o.arch = model::Arch::kQwen3;
  o.preset = "small";
  o.dtype = model::DType::kBF16;
  o.seed = seed;
  o.out_dir = dir.path();
  model::make_model(o);
  EngineConfig c;
  c.model_dir = dir.path().string();
  c.device = Device::kCuda;
  c.block_size = 16;
  c.max_model_len = 512;
  c.max_num_seqs = 4;
  c.check_kv_integrity = true;
  c.debug_poison_kv = true;
  return c;
}

TEST(CudaHostTier, AHitLoadedFromPinnedHostMemoryEqualsOneKeptOnTheGpu) {
  CACHET_REQUIRE_GPU();
  testing::TempDir dir;
  EngineConfig c = small_gpu_model(dir, 11);

  const auto a = prompt(1, 150), b = prompt(2, 150);
  // Kept on the GPU: a roomy KV cache.
  c.num_kv_blocks = 64;
  Engine roomy(c);
  roomy.generate({{a, greedy_with_logprobs(4), {}}});
  const auto want = roomy.generate({{a, greedy_with_logprobs(4), {}}})[0];
  ASSERT_EQ(want.num_cached_tokens, 144);

  // Through the tier: 10 blocks hold one prompt, so b evicts a to host memory.
  c.num_kv_blocks = 10;
  c.host_kv_cache_bytes = std::int64_t{64} << 20;
  Engine tiered(c);
  ASSERT_GT(tiered.info().num_host_kv_blocks, 0);
  tiered.generate({{a, greedy_with_logprobs(4), {}}});
  tiered.generate({{b, greedy_with_logprobs(4), {}}});
  const auto got = tiered.generate({{a, greedy_with_logprobs(4), {}}})[0];
  ASSERT_NE(got.finish_reason, FinishReason::kError) << got.error;
  EXPECT_EQ(got.num_cached_tokens, 144);
  EXPECT_EQ(tiered.stats().prefix_cache_host_hit_tokens, 144);
  EXPECT_TRUE(same_bits(got, want));
  EXPECT_TRUE(tiered.health().ok) << tiered.health().error;
}

// The disk tier on a GPU: the blocks a first engine computed are saved from the device into
// pinned host slots, written from there by the tier's I/O thread once the copies have landed
// (Backend::wait_for_copies), and read by a second engine into its own pinned slots, then
// loaded to its device. The hit must give the bits of the same hit kept on the GPU.
TEST(CudaHostTier, AHitReadFromTheDiskTierByANewEngineEqualsOneKeptOnTheGpu) {
  CACHET_REQUIRE_GPU();
  testing::TempDir dir, cache;
  EngineConfig c = small_gpu_model(dir, 13);
  const auto a = prompt(5, 150);
  c.num_kv_blocks = 64;
  Engine roomy(c);
  roomy.generate({{a, greedy_with_logprobs(4), {}}});
  const auto want = roomy.generate({{a, greedy_with_logprobs(4), {}}})[0];
  ASSERT_EQ(want.num_cached_tokens, 144);

  c.host_kv_cache_bytes = std::int64_t{64} << 20;
  c.kv_cache_dir = cache.path().string();
  {
    Engine first(c);
    ASSERT_TRUE(first.info().disk_kv_cache_writable);
    EXPECT_NE(first.info().disk_kv_cache_dir.find("cachet-kv-"), std::string::npos);
    first.generate({{a, greedy_with_logprobs(4), {}}});
  }
  Engine second(c);
  const auto got = second.generate({{a, greedy_with_logprobs(4), {}}})[0];
  ASSERT_NE(got.finish_reason, FinishReason::kError) << got.error;
  EXPECT_EQ(got.num_cached_tokens, 144);
  EXPECT_EQ(second.stats().prefix_cache_disk_hit_tokens, 144);
  EXPECT_EQ(second.stats().disk_read_failures, 0);
  EXPECT_TRUE(same_bits(got, want));
  EXPECT_TRUE(second.health().ok) << second.health().error;
}

// Partial-block reuse on the GPU: the K/V of a block's first positions copied within the
// device pools. The request that diverges inside a block must reuse exactly the shared tokens
// and agree with an engine that computes them (same greedy tokens; logprobs within bf16
// rounding, since the two compute different numbers of rows).
TEST(CudaHostTier, APartlyMatchingBlockIsCopiedOnTheGpu) {
  CACHET_REQUIRE_GPU();
  testing::TempDir dir;
  EngineConfig c = small_gpu_model(dir, 12);
  c.num_kv_blocks = 64;
  const auto a = prompt(3, 120);
  auto b = std::vector<TokenId>(a.begin(), a.begin() + 100);  // diverges at token 100
  const auto tail = prompt(4, 20);
  b.insert(b.end(), tail.begin(), tail.end());
  Engine partial(c);
  partial.generate({{a, greedy_with_logprobs(4), {}}});
  const auto got = partial.generate({{b, greedy_with_logprobs(4), {}}})[0];
  ASSERT_NE(got.finish_reason, FinishReason::kError) << got.error;
  EXPECT_EQ(got.num_cached_tokens, 100);
  EXPECT_EQ(partial.stats().prefix_cache_partial_hit_tokens, 4);
  c.partial_block_reuse = false;
  Engine whole(c);
  whole.generate({{a, greedy_with_logprobs(4), {}}});
  const auto want = whole.generate({{b, greedy_with_logprobs(4), {}}})[0];
  EXPECT_EQ(want.num_cached_tokens, 96);
  EXPECT_EQ(got.token_ids, want.token_ids);
  for (std::size_t t = 0; t < got.logprobs.size() && t < want.logprobs.size(); ++t)
    EXPECT_NEAR(got.logprobs[t][0].logprob, want.logprobs[t][0].logprob, 0.2) << "token " << t;
}

}  // namespace
}  // namespace cachet

#else

TEST(CudaHostTier, NotBuilt) { GTEST_SKIP() << "built without CUDA"; }

#endif

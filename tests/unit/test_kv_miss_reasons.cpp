// Why a prompt's cached prefix ends where it does (KvCacheManager::explain_miss), each
// reason built on purpose, and the ghost records of evicted blocks it reads.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kv/ghost_index.h"
#include "kv/kv_cache_manager.h"
#include "support/kv_steps.h"

namespace cachet {
namespace {

using kv::CacheTier;
using kv::GhostIndex;
using kv::KvCacheManager;
using kv::SeqBlocks;
using testing::admit_all;
using testing::concat;
using testing::tokens_from;

constexpr std::int32_t kBs = 4;

// What the engine does at a request's first admission: match all but the last token, then
// explain the match.
CacheMiss explain(const KvCacheManager& kv, const std::vector<TokenId>& tokens,
                  const std::string& salt = "", std::int32_t* cached = nullptr) {
  SeqBlocks seq;
  seq.salt = salt;
  kv.update_hashes(seq, tokens);
  const auto max = static_cast<std::int32_t>(tokens.size()) - 1;
  const kv::PrefixMatch m = kv.match(seq, tokens, max);
  if (cached) *cached = m.num_tokens;
  return kv.explain_miss(seq, tokens, m, max);
}

// Caches `tokens` (admitted, computed, released: the blocks stay cached).
void cache(KvCacheManager& kv, const std::vector<TokenId>& tokens, const std::string& salt = "") {
  SeqBlocks s = admit_all(kv, tokens, salt);
  kv.free(s);
}

TEST(CacheMissReasons, ColdNoneAndPrefixEnd) {
  KvCacheManager kv(16, kBs, true);
  const auto a = tokens_from(100, 12);
  CacheMiss m = explain(kv, a);
  EXPECT_EQ(m.reason, CacheMissReason::kCold);
  EXPECT_EQ(m.at, 0);
  cache(kv, a);
  std::int32_t cached = 0;
  m = explain(kv, a, "", &cached);
  EXPECT_EQ(m.reason, CacheMissReason::kNone) << "all but the last block (it holds the last token)";
  EXPECT_EQ(m.at, 8);
  EXPECT_EQ(cached, 8);
  m = explain(kv, concat(a, tokens_from(900, 9)));
  EXPECT_EQ(m.reason, CacheMissReason::kPrefixEnd) << "the prompt goes on past all of a";
  EXPECT_EQ(m.at, 12);
}

TEST(CacheMissReasons, DivergedOnABlockBoundaryOrInsideABlock) {
  for (bool partial : {false, true}) {
    SCOPED_TRACE(partial ? "partial-block reuse" : "whole blocks");
    KvCacheManager kv(16, kBs, true, 0, partial);
    const auto a = tokens_from(100, 16);
    cache(kv, a);
    // Block 2 differs from its first token: diverged at 8, on the boundary.
    auto b = concat(tokens_from(100, 8), tokens_from(500, 8));
    CacheMiss m = explain(kv, b);
    EXPECT_EQ(m.reason, CacheMissReason::kDiverged);
    EXPECT_EQ(m.at, 8);
    EXPECT_FALSE(m.in_block);
    // Block 2 shares 3 tokens, then differs: diverged at 11, inside the block.
    auto c = concat(tokens_from(100, 11), tokens_from(700, 5));
    std::int32_t cached = 0;
    m = explain(kv, c, "", &cached);
    EXPECT_EQ(m.reason, CacheMissReason::kDiverged);
    EXPECT_EQ(m.at, 11);
    EXPECT_TRUE(m.in_block);
    EXPECT_EQ(cached, partial ? 11 : 8) << "partial reuse serves the 3 tokens before it";
    // The first block differs inside: diverged at 2 (same salt, no full block matched).
    auto d = concat(tokens_from(100, 2), tokens_from(800, 10));
    m = explain(kv, d);
    EXPECT_EQ(m.reason, CacheMissReason::kDiverged);
    EXPECT_EQ(m.at, 2);
    EXPECT_TRUE(m.in_block);
  }
}

TEST(CacheMissReasons, TheSameTokensUnderAnotherSalt) {
  KvCacheManager kv(16, kBs, true);
  const auto a = tokens_from(100, 12);
  cache(kv, a, "tenant-a");
  EXPECT_EQ(explain(kv, a, "tenant-b").reason, CacheMissReason::kOtherSalt);
  EXPECT_EQ(explain(kv, a, "").reason, CacheMissReason::kOtherSalt);
  EXPECT_EQ(explain(kv, a, "tenant-a").reason, CacheMissReason::kNone);
  // Another salt's first block with other tokens is not "the same tokens".
  EXPECT_EQ(explain(kv, tokens_from(300, 12), "tenant-b").reason, CacheMissReason::kCold);
}

TEST(CacheMissReasons, EvictedFromTheDeviceWithNoHostTier) {
  KvCacheManager kv(4, kBs, true);
  const auto a = tokens_from(100, 16);
  cache(kv, a);
  cache(kv, tokens_from(500, 16));  // the whole pool: evicts every block of a
  const CacheMiss m = explain(kv, a);
  EXPECT_EQ(m.reason, CacheMissReason::kEvicted);
  EXPECT_EQ(m.tier, "device");
  EXPECT_EQ(m.at, 0);
  EXPECT_EQ(kv.ghosts().size(), 4u);
}

TEST(CacheMissReasons, EvictedFromTheHostTier) {
  KvCacheManager kv(4, kBs, true, 4);
  const auto a = tokens_from(100, 16);
  cache(kv, a);
  cache(kv, tokens_from(500, 16));  // a's blocks go to the host tier
  EXPECT_EQ(explain(kv, a).reason, CacheMissReason::kNone) << "the host tier has them";
  EXPECT_EQ(kv.ghosts().size(), 0u) << "demoted blocks are not ghosts";
  cache(kv, tokens_from(900, 16));  // the second batch's blocks push a's out of the tier
  const CacheMiss m = explain(kv, a);
  EXPECT_EQ(m.reason, CacheMissReason::kEvicted);
  EXPECT_EQ(m.tier, "host");
}

TEST(CacheMissReasons, CachingOff) {
  KvCacheManager kv(16, kBs, false);
  const auto a = tokens_from(100, 12);
  cache(kv, a);
  EXPECT_EQ(explain(kv, a).reason, CacheMissReason::kCachingOff);
}

TEST(GhostIndex, ForgetsTheOldestRecordAndMovesARecordedOneBack) {
  GhostIndex g(2);
  const kv::BlockHash a{1, 1}, b{2, 2}, c{3, 3};
  g.record(a, CacheTier::kDevice);
  g.record(b, CacheTier::kDevice);
  g.record(a, CacheTier::kHost);  // a is newest now, its tier updated
  g.record(c, CacheTier::kDevice);
  EXPECT_EQ(g.size(), 2u);
  EXPECT_FALSE(g.find(b)) << "the oldest is forgotten";
  EXPECT_EQ(g.find(a), CacheTier::kHost);
  EXPECT_EQ(g.find(c), CacheTier::kDevice);
  GhostIndex none(0);
  none.record(a, CacheTier::kDevice);
  EXPECT_EQ(none.size(), 0u);
}

}  // namespace
}  // namespace cachet

// Prefix pins in the KV cache's bookkeeping: pinned cached blocks are evicted only after
// every unpinned one, a pin ends at its time (or when dropped) and the block is an ordinary
// cached block again, hits extend pins, and the budget is all or nothing. Times are plain
// seconds here; the engine passes its steady clock.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kv/kv_cache_manager.h"
#include "support/kv_steps.h"

namespace cachet {
namespace {

using kv::BlockId;
using kv::BlockPool;
using kv::KvCacheManager;
using kv::PrefixMatch;
using kv::SeqBlocks;
using Tables = std::vector<const std::vector<BlockId>*>;
using testing::admit_all;
using testing::tokens_from;

constexpr std::int32_t kBs = 4;

std::int32_t hit(KvCacheManager& kv, const std::vector<TokenId>& tokens) {
  SeqBlocks seq;
  kv.update_hashes(seq, tokens);
  return kv.match(seq, tokens, static_cast<std::int32_t>(tokens.size())).num_tokens;
}

TEST(KvPins, PinnedBlocksAreEvictedLastAndBecomeOrdinaryWhenThePinEnds) {
  KvCacheManager kv(6, kBs, true);
  kv.set_pin_budget(6);
  kv.set_time(100.0);
  const auto a = tokens_from(100, 8), b = tokens_from(200, 8);
  SeqBlocks sa = admit_all(kv, a);
  EXPECT_EQ(kv.pin_prefix(sa, 2, 10.0).num_blocks, 2);
  kv.free(sa);  // a is released first: the least recently used
  SeqBlocks sb = admit_all(kv, b);
  kv.free(sb);
  EXPECT_EQ(kv.pool().num_pinned(), 2);
  // 2 free blocks + 4 cached; taking 4 evicts b's two, then only then a's.
  SeqBlocks filler;
  ASSERT_TRUE(kv.grow(filler, 4 * kBs));
  EXPECT_EQ(hit(kv, a), 8) << "the pinned prefix survives";
  EXPECT_EQ(hit(kv, b), 0) << "the unpinned one does not";
  kv.check_integrity(Tables{&filler.blocks});
  // When nothing else is left, pinned blocks give way rather than starve a request.
  ASSERT_TRUE(kv.grow(filler, 5 * kBs));
  EXPECT_EQ(hit(kv, a), 4) << "the pinned chain gives up its tail first";
  EXPECT_EQ(kv.pool().num_pinned(), 1);
  kv.free(filler);
  kv.check_integrity(Tables{});

  // After the TTL: ordinary LRU again.
  SeqBlocks sa2 = admit_all(kv, a);
  kv.pin_prefix(sa2, 2, 10.0);
  kv.free(sa2);
  SeqBlocks sb2 = admit_all(kv, b);
  kv.free(sb2);
  kv.set_time(111.0);
  EXPECT_EQ(kv.pool().num_pinned(), 0);
  SeqBlocks filler2;
  ASSERT_TRUE(kv.grow(filler2, 4 * kBs));
  EXPECT_EQ(hit(kv, a), 0) << "a pin that ended goes first";
  EXPECT_EQ(hit(kv, b), 8);
  kv.check_integrity(Tables{&filler2.blocks});
}

TEST(KvPins, AHitExtendsThePinByItsTtl) {
  KvCacheManager kv(8, kBs, true);
  kv.set_pin_budget(8);
  kv.set_time(0.0);
  const auto a = tokens_from(100, 8);
  SeqBlocks sa = admit_all(kv, a);
  kv.pin_prefix(sa, 2, 5.0);
  kv.free(sa);
  kv.set_time(4.0);
  SeqBlocks again = admit_all(kv, a);  // a hit at t = 4: pinned until 9
  kv.free(again);
  kv.set_time(8.0);
  EXPECT_EQ(kv.pool().num_pinned(), 2);
  kv.set_time(9.0);
  EXPECT_EQ(kv.pool().num_pinned(), 0);
  kv.check_integrity(Tables{});
}

TEST(KvPins, TheBudgetIsAllOrNothingAndATtlOfZeroUnpins) {
  KvCacheManager kv(8, kBs, true);
  kv.set_pin_budget(3);
  kv.set_time(0.0);
  SeqBlocks sa = admit_all(kv, tokens_from(100, 8));
  SeqBlocks sb = admit_all(kv, tokens_from(200, 8));
  EXPECT_EQ(kv.pin_prefix(sa, 2, 60.0).num_blocks, 2);
  const kv::PinResult refused = kv.pin_prefix(sb, 2, 60.0);
  EXPECT_EQ(refused.num_blocks, 0);
  EXPECT_NE(refused.error.find("pin budget of 3 blocks"), std::string::npos) << refused.error;
  EXPECT_EQ(kv.pool().num_pinned(), 2) << "nothing of the refused pin";
  EXPECT_EQ(kv.pin_prefix(sa, 2, 60.0).num_blocks, 2) << "renewing costs no budget";
  EXPECT_EQ(kv.pin_prefix(sb, 1, 60.0).num_blocks, 1);
  EXPECT_EQ(kv.pin_prefix(sa, 2, 0.0).num_blocks, 0);
  EXPECT_EQ(kv.pool().num_pinned(), 1);
  EXPECT_EQ(kv.pin_prefix(sb, 9, 60.0).num_blocks, 2) << "at most the registered blocks";
  kv.check_integrity(Tables{&sa.blocks, &sb.blocks});
}

}  // namespace
}  // namespace cachet

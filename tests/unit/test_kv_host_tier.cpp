// The prefix cache's host tier: HostTier's own bookkeeping (exact lookups, LRU, holds) and
// KvCacheManager across the device pool and the tier (demotion on eviction, one match across
// both, loads that keep a block's identity, salts). The randomized test moves a stand-in for
// the K/V (the content each block should hold) exactly as the backend's copies would, and
// checks after every step that each sequence's table reads the right content from every
// block, whichever tier it came through.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cachet/errors.h"
#include "kv/host_tier.h"
#include "kv/kv_cache_manager.h"
#include "support/kv_fuzz.h"
#include "support/kv_steps.h"
#include "support/kv_tier_fuzz.h"

namespace cachet {
namespace {

using kv::BlockHash;
using kv::BlockId;
using kv::ChainLink;
using kv::ContentId;
using kv::EvictedBlock;
using kv::HostTier;
using kv::KvCacheManager;
using kv::PrefixMatch;
using kv::SeqBlocks;
using testing::admit_all;
using testing::run_fuzz;
using testing::TierStats;
using testing::tokens_from;
using Tables = std::vector<const std::vector<BlockId>*>;

constexpr std::int32_t kBs = 4;

std::vector<TokenId> block_tokens(TokenId first) {
  return {first, first + 1, first + 2, first + 3};
}

EvictedBlock evicted(std::uint64_t content, const std::vector<TokenId>& tokens,
                     ChainLink link = ChainLink::first("")) {
  const BlockHash h = link.parent ? kv::hash_next_block({link.parent->value, 0}, tokens)
                                  : kv::hash_first_block(tokens, link.salt);
  return {BlockId{0}, h, ContentId{content}, link, tokens};
}

// ---------------------------------------------------------------------------------------
// HostTier alone.

TEST(HostTier, FindsAnEntryOnlyByItsExactLinkSaltAndTokens) {
  HostTier tier(4, kBs);
  const auto a = block_tokens(10), b = block_tokens(20);
  const EvictedBlock first = evicted(1, a, ChainLink::first("tenant"));
  const EvictedBlock child = evicted(2, b, ChainLink::after(ContentId{1}));
  const auto s1 = tier.store(first), s2 = tier.store(child);
  ASSERT_TRUE(s1 && s2);
  tier.check_integrity();
  EXPECT_EQ(tier.lookup(first.hash, ChainLink::first("tenant"), a), s1);
  EXPECT_FALSE(tier.lookup(first.hash, ChainLink::first("other"), a)) << "another salt";
  EXPECT_FALSE(tier.lookup(first.hash, ChainLink::first("tenant"), b)) << "other tokens";
  EXPECT_EQ(tier.lookup(child.hash, ChainLink::after(ContentId{1}), b), s2);
  EXPECT_FALSE(tier.lookup(child.hash, ChainLink::after(ContentId{3}), b)) << "another parent";
  EXPECT_EQ(tier.content(*s2), ContentId{2});
  EXPECT_EQ(std::vector<TokenId>(tier.tokens(*s2).begin(), tier.tokens(*s2).end()), b);
}

TEST(HostTier, ContentsItHoldsAreNotCopiedAgain) {
  HostTier tier(4, kBs);
  const auto a = block_tokens(10);
  ASSERT_TRUE(tier.store(evicted(1, a)));
  EXPECT_FALSE(tier.store(evicted(1, a))) << "same identity";
  EXPECT_FALSE(tier.store(evicted(7, a))) << "same contents under a newer identity";
  EXPECT_EQ(tier.num_used(), 1);
  tier.check_integrity();
}

TEST(HostTier, EvictsTheLeastRecentlyUsedAndNeverAHeldEntry) {
  HostTier tier(2, kBs);
  const auto s1 = tier.store(evicted(1, block_tokens(10)));
  const auto s2 = tier.store(evicted(2, block_tokens(20)));
  tier.touch(*s1);  // 2 is now the least recently used
  const auto s3 = tier.store(evicted(3, block_tokens(30)));
  EXPECT_EQ(s3, s2);
  EXPECT_EQ(tier.num_evictions(), 1);
  EXPECT_FALSE(
      tier.lookup(evicted(2, block_tokens(20)).hash, ChainLink::first(""), block_tokens(20)));
  tier.hold(*s1);
  tier.hold(*s1);  // two requests take it
  const auto s4 = tier.store(evicted(4, block_tokens(40)));
  EXPECT_EQ(s4, s3) << "the held entry stays";
  tier.hold(*s4);
  EXPECT_FALSE(tier.store(evicted(5, block_tokens(50)))) << "every entry held: dropped";
  tier.check_integrity();
  tier.release_hold(*s1);
  EXPECT_FALSE(tier.store(evicted(6, block_tokens(60)))) << "still held once";
  tier.release_hold(*s1);
  EXPECT_EQ(tier.store(evicted(6, block_tokens(60))), s1);
  tier.release_hold(*s4);
  tier.check_integrity();
  EXPECT_THROW(tier.release_hold(*s4), Error);
}

TEST(HostTier, APinnedEntryGoesLastAndWhenItsPinEndsFirst) {
  HostTier tier(3, kBs);
  tier.set_pin_budget(1);
  // EvictedBlock views its tokens: they outlive it.
  const auto ta = block_tokens(10), tb = block_tokens(20);
  EvictedBlock a = evicted(1, ta);
  a.pin_until = 100;
  a.pin_ttl = 50;
  EvictedBlock b = evicted(2, tb);
  b.pin_until = 100;
  b.pin_ttl = 50;
  const auto sa = tier.store(a), sb = tier.store(b);
  ASSERT_TRUE(sa && sb);
  EXPECT_EQ(tier.pin(*sa), std::make_pair(100.0, 50.0));
  EXPECT_EQ(tier.pin(*sb).first, 0.0) << "over the budget of one: stored unpinned";
  EXPECT_EQ(tier.num_pinned(), 1);
  const auto sc = tier.store(evicted(3, block_tokens(30)));
  tier.touch(*sb);
  // Full: each store takes the least recently used unpinned entry, never the pinned one.
  EXPECT_EQ(tier.store(evicted(4, block_tokens(40))), sc);
  EXPECT_EQ(tier.store(evicted(5, block_tokens(50))), sb);
  tier.check_integrity();
  // Only the pinned entry unheld: then it goes.
  tier.hold(*sb);
  tier.hold(*sc);
  EXPECT_EQ(tier.store(evicted(6, block_tokens(60))), sa);
  EXPECT_EQ(tier.num_pinned(), 0);
  tier.release_hold(*sb);
  tier.release_hold(*sc);
  tier.check_integrity();
  // A pin that ends puts its entry first in line.
  const auto td = block_tokens(70), t_again = block_tokens(80);
  EvictedBlock d = evicted(7, td);
  d.pin_until = 200;
  d.pin_ttl = 10;
  ASSERT_TRUE(tier.store(d));  // evicts an unpinned entry
  const auto sd = tier.lookup(d.hash, d.link, d.tokens);
  tier.expire_pins(199);
  EXPECT_EQ(tier.num_pinned(), 1);
  tier.expire_pins(200);
  EXPECT_EQ(tier.num_pinned(), 0);
  tier.check_integrity();
  EXPECT_EQ(tier.store(evicted(8, block_tokens(80))), sd);
  // The pin of a block demoted again goes to the entry that holds its contents already.
  EvictedBlock again = evicted(8, t_again);
  again.pin_until = 300;
  again.pin_ttl = 5;
  EXPECT_FALSE(tier.store(again));
  EXPECT_EQ(tier.pin(*sd).first, 300.0);
  tier.check_integrity();
}

TEST(HostTier, NoSlotsStoresNothing) {
  HostTier tier(0, kBs);
  EXPECT_FALSE(tier.store(evicted(1, block_tokens(10))));
  EXPECT_EQ(tier.num_used(), 0);
  tier.check_integrity();
}

// ---------------------------------------------------------------------------------------
// KvCacheManager across the device pool and the host tier.

TEST(KvCacheManagerHostTier, EvictedBlocksAreDemotedAndLoadedBackUnderTheirIdentity) {
  KvCacheManager kv(4, kBs, true, 8);
  const auto a = tokens_from(100, 16);  // 4 blocks: the whole pool
  SeqBlocks sa = admit_all(kv, a);
  const std::vector<BlockId> a_blocks = sa.blocks;
  std::vector<ContentId> a_ids;
  for (BlockId id : a_blocks) a_ids.push_back(kv.pool().content_of(id));
  kv.free(sa);
  EXPECT_TRUE(kv.take_transfers().empty());

  SeqBlocks sb = admit_all(kv, tokens_from(500, 16));  // evicts all of a's blocks
  kv::Transfers t = kv.take_transfers();
  ASSERT_EQ(t.saves.size(), 4u);
  EXPECT_TRUE(t.loads.empty());
  // Deepest first (a chain is evicted from its tail), each into its own slot.
  for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(t.saves[k].device, a_blocks[3 - k]);
  EXPECT_EQ(kv.host_tier().num_used(), 4);
  kv.check_integrity(Tables{&sb.blocks});
  kv.free(sb);

  PrefixMatch m;
  SeqBlocks again = admit_all(kv, a, "", &m);
  EXPECT_TRUE(m.blocks.empty());
  EXPECT_EQ(m.host_slots.size(), 4u);
  EXPECT_EQ(m.num_tokens, 16);
  t = kv.take_transfers();
  ASSERT_EQ(t.loads.size(), 4u);
  EXPECT_EQ(t.saves.size(), 4u) << "b's blocks are demoted to make room";
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(t.loads[k].device, again.blocks[k]);
    EXPECT_EQ(t.loads[k].host_slot, m.host_slots[k]);
    EXPECT_EQ(kv.pool().content_of(again.blocks[k]), a_ids[k]) << "identity kept";
  }
  EXPECT_EQ(again.num_registered, 4);
  EXPECT_EQ(kv.host_counters().blocks_loaded, 4);
  EXPECT_EQ(kv.host_counters().hit_blocks, 4);
  kv.check_integrity(Tables{&again.blocks});
}

TEST(KvCacheManagerHostTier, OneMatchRunsFromTheDeviceIntoTheTierAndAcrossALoadedParent) {
  KvCacheManager kv(5, kBs, true, 8);
  const auto a = tokens_from(100, 16);
  SeqBlocks sa = admit_all(kv, a);
  kv.free(sa);
  // A prompt that shares a's first block only, on 4 blocks: a's last three are evicted (the
  // deepest first), its first stays on the device, referenced.
  auto shares_first = tokens_from(100, 4);
  const auto rest = tokens_from(900, 12);
  shares_first.insert(shares_first.end(), rest.begin(), rest.end());
  SeqBlocks sb = admit_all(kv, shares_first);
  kv.free(sb);
  kv.take_transfers();

  SeqBlocks seq;
  kv.update_hashes(seq, a);
  const PrefixMatch m = kv.match(seq, a, 16);
  EXPECT_EQ(m.blocks.size() + m.host_slots.size(), 4u);
  EXPECT_GE(m.blocks.size(), 1u);
  EXPECT_GE(m.host_slots.size(), 1u) << "the rest of a comes from the tier";
  EXPECT_EQ(m.num_tokens, 16);
  // With max_tokens short of the last block, the match stops there in either tier.
  EXPECT_EQ(kv.match(seq, a, 15).num_tokens, 12);
}

TEST(KvCacheManagerHostTier, AChildInTheTierIsFoundAfterItsParentWasLoaded) {
  KvCacheManager kv(4, kBs, true, 8);
  const auto a = tokens_from(100, 16);
  SeqBlocks sa = admit_all(kv, a);
  kv.free(sa);
  SeqBlocks sb = admit_all(kv, tokens_from(500, 16));  // a goes to the tier
  kv.free(sb);
  // Load a's first two blocks only, then free them: they live on the device again, a's last
  // two are still in the tier, and they still follow the loaded parent.
  const std::vector<TokenId> a_half(a.begin(), a.begin() + 8);
  PrefixMatch half;
  SeqBlocks h = admit_all(kv, a_half, "", &half);
  EXPECT_EQ(half.host_slots.size(), 2u);
  kv.free(h);
  kv.take_transfers();
  SeqBlocks seq;
  kv.update_hashes(seq, a);
  const PrefixMatch m = kv.match(seq, a, 16);
  EXPECT_EQ(m.blocks.size(), 2u);
  EXPECT_EQ(m.host_slots.size(), 2u);
}

TEST(KvCacheManagerHostTier, ASaltIsHonouredInTheTier) {
  KvCacheManager kv(4, kBs, true, 8);
  const auto a = tokens_from(100, 16);
  SeqBlocks sa = admit_all(kv, a, "tenant-a");
  kv.free(sa);
  SeqBlocks sb = admit_all(kv, tokens_from(500, 16));
  kv.free(sb);
  kv.take_transfers();
  for (const char* other : {"", "tenant-b"}) {
    SeqBlocks seq;
    seq.salt = other;
    kv.update_hashes(seq, a);
    EXPECT_EQ(kv.match(seq, a, 16).num_tokens, 0) << "salt '" << other << "'";
  }
  SeqBlocks seq;
  seq.salt = "tenant-a";
  kv.update_hashes(seq, a);
  EXPECT_EQ(kv.match(seq, a, 16).host_slots.size(), 4u);
}

TEST(KvCacheManagerHostTier, ContentsComputedAgainKeepTheTiersIdentityAndAreNotCopiedTwice) {
  KvCacheManager kv(4, kBs, true, 8);
  const auto a = tokens_from(100, 8);
  SeqBlocks sa = admit_all(kv, a);
  const ContentId first_id = kv.pool().content_of(sa.blocks[0]);
  kv.free(sa);
  SeqBlocks sb = admit_all(kv, tokens_from(500, 16));
  kv.free(sb);
  kv.take_transfers();
  // Computed again without looking in the cache (as a request wanting prompt logprobs does).
  SeqBlocks again;
  kv.update_hashes(again, a);
  ASSERT_TRUE(kv.admit(again, {}, 8));
  kv.commit(again, a, 8);
  EXPECT_EQ(kv.pool().content_of(again.blocks[0]), first_id);
  kv.free(again);
  kv.take_transfers();
  const std::int64_t stored = kv.host_counters().blocks_stored;
  SeqBlocks evictor = admit_all(kv, tokens_from(700, 16));
  const kv::Transfers t = kv.take_transfers();
  EXPECT_EQ(kv.host_counters().blocks_stored - stored, 2) << "only b's two blocks";
  EXPECT_EQ(t.saves.size(), 2u);
  kv.check_integrity(Tables{&evictor.blocks});
}

TEST(KvCacheManagerHostTier, EntriesBeingLoadedSurviveTheDemotionsOfTheirOwnAdmission) {
  // A tier of exactly a's size: admitting a again evicts b's blocks into it, which must not
  // evict the entries a is loading.
  KvCacheManager kv(4, kBs, true, 4);
  const auto a = tokens_from(100, 16);
  SeqBlocks sa = admit_all(kv, a);
  kv.free(sa);
  SeqBlocks sb = admit_all(kv, tokens_from(500, 16));
  kv.free(sb);
  kv.take_transfers();
  PrefixMatch m;
  SeqBlocks again = admit_all(kv, a, "", &m);
  EXPECT_EQ(m.host_slots.size(), 4u);
  const kv::Transfers t = kv.take_transfers();
  EXPECT_EQ(t.loads.size(), 4u);
  EXPECT_TRUE(t.saves.empty()) << "b is dropped: every slot is being loaded";
  kv.check_integrity(Tables{&again.blocks});
  kv.free(again);
  EXPECT_EQ(kv.host_tier().num_used(), 4);
}

// A pinned prefix leaves the device pool with its pin, outlives unpinned entries in the tier,
// and is pinned again on the device when it comes back.
TEST(KvCacheManagerHostTier, APinnedPrefixIsDemotedWithItsPinAndLoadedBackPinned) {
  KvCacheManager kv(4, kBs, true, 4);
  kv.set_pin_budget(4);
  kv.set_host_pin_budget(2);
  kv.set_time(1);
  const auto a = tokens_from(100, 8);  // 2 blocks
  SeqBlocks sa = admit_all(kv, a);
  ASSERT_EQ(kv.pin_prefix(sa, 2, 10).num_blocks, 2);
  kv.free(sa);
  // Two prompts of 4 blocks each: the first evicts a (pinned, the last resort) into the tier,
  // the second evicts the first, whose blocks churn the other two slots.
  for (TokenId first : {500, 900}) {
    SeqBlocks s = admit_all(kv, tokens_from(first, 16));
    kv.free(s);
    kv.take_transfers();
  }
  EXPECT_EQ(kv.host_tier().num_pinned(), 2);
  EXPECT_GT(kv.host_tier().num_evictions(), 0);
  kv.check_integrity(Tables{});
  kv.set_time(5);
  PrefixMatch m;
  SeqBlocks back = admit_all(kv, a, "", &m);
  ASSERT_EQ(m.host_slots.size(), 2u) << "a survived in the tier";
  EXPECT_TRUE(kv.pool().is_pinned(back.blocks[0]));
  EXPECT_TRUE(kv.pool().is_pinned(back.blocks[1]));
  kv.take_transfers();
  kv.check_integrity(Tables{&back.blocks});
  // After the TTL (a hit at 5 extended it to 15), the pins end in both tiers.
  kv.set_time(15);
  EXPECT_EQ(kv.pool().num_pinned(), 0);
  EXPECT_EQ(kv.host_tier().num_pinned(), 0);
}

TEST(KvCacheManagerHostTier, NoTierWithoutCaching) {
  KvCacheManager kv(4, kBs, false, 8);
  EXPECT_EQ(kv.host_tier().num_slots(), 0);
}

// ---------------------------------------------------------------------------------------
// Partial-block reuse.

TEST(KvCacheManagerPartialReuse, AMatchGoesOnInsideTheBlockWhereThePromptsDiverge) {
  KvCacheManager kv(8, kBs, true, 0, true);
  auto a = tokens_from(100, 12);  // 3 blocks
  SeqBlocks sa = admit_all(kv, a);
  kv.free(sa);
  kv.take_transfers();
  // Shares a's first 6 tokens, then differs: one whole block, then 2 tokens of the second.
  auto b = tokens_from(100, 6);
  b.push_back(999);
  b.push_back(998);
  b.push_back(997);
  SeqBlocks sb;
  kv.update_hashes(sb, b);
  const PrefixMatch m = kv.match(sb, b, static_cast<std::int32_t>(b.size()) - 1);
  EXPECT_EQ(m.blocks.size(), 1u);
  ASSERT_TRUE(m.partial.has_value());
  EXPECT_EQ(*m.partial, BlockId{1});  // a's second block
  EXPECT_EQ(m.partial_tokens, 2);
  EXPECT_EQ(m.num_tokens, 6);
  // The match never reaches the last prompt token, even inside a block.
  SeqBlocks same;
  kv.update_hashes(same, a);
  EXPECT_EQ(kv.match(same, a, 10).num_tokens, 10);
  EXPECT_EQ(kv.match(same, a, 10).partial_tokens, 2);
  ASSERT_TRUE(kv.admit(sb, m, static_cast<std::int32_t>(b.size())));
  EXPECT_EQ(sb.num_registered, 1);
  EXPECT_EQ(kv.pool().ref_count(*m.partial), 1) << "the source is held until its copy runs";
  // Evictions before the copy runs cannot take the source: 3 free blocks and a's third, not
  // the 5 there would be with the source.
  SeqBlocks filler;
  EXPECT_FALSE(kv.grow(filler, 5 * kBs));
  EXPECT_TRUE(kv.grow(filler, 4 * kBs));
  const kv::Transfers t = kv.take_transfers();
  ASSERT_EQ(t.prefix_copies.size(), 1u);
  EXPECT_EQ(t.prefix_copies[0].from, *m.partial);
  EXPECT_EQ(t.prefix_copies[0].to, sb.blocks[1]);
  EXPECT_EQ(t.prefix_copies[0].num_tokens, 2);
  EXPECT_EQ(kv.pool().ref_count(*m.partial), 0);
  kv.check_integrity(Tables{&sb.blocks, &filler.blocks});
  kv.free(filler);
}

TEST(KvCacheManagerPartialReuse, OnlyABlockAfterTheSameParentAndSaltQualifies) {
  KvCacheManager kv(8, kBs, true, 0, true);
  const auto a = tokens_from(100, 8);
  SeqBlocks sa = admit_all(kv, a, "tenant-a");
  kv.free(sa);
  auto first_diverges = tokens_from(100, 2);
  first_diverges.push_back(5);
  first_diverges.push_back(6);
  first_diverges.push_back(7);
  for (const char* salt : {"", "tenant-b"}) {
    SeqBlocks seq;
    seq.salt = salt;
    kv.update_hashes(seq, first_diverges);
    EXPECT_FALSE(kv.match(seq, first_diverges, 4).partial) << "salt '" << salt << "'";
  }
  SeqBlocks own;
  own.salt = "tenant-a";
  kv.update_hashes(own, first_diverges);
  EXPECT_EQ(kv.match(own, first_diverges, 4).partial_tokens, 2);
  // A prompt whose first block differs from the first token on finds nothing further: a's
  // second block follows a's first, not this one.
  auto other_parent = tokens_from(500, 4);
  const auto tail = tokens_from(104, 3);
  other_parent.insert(other_parent.end(), tail.begin(), tail.end());
  SeqBlocks seq;
  seq.salt = "tenant-a";
  kv.update_hashes(seq, other_parent);
  EXPECT_FALSE(kv.match(seq, other_parent, 6).partial);
  KvCacheManager whole(8, kBs, true);
  SeqBlocks sw = admit_all(whole, a);
  whole.free(sw);
  SeqBlocks w;
  whole.update_hashes(w, first_diverges);
  EXPECT_FALSE(whole.match(w, first_diverges, 4).partial) << "off unless asked for";
}

// ---------------------------------------------------------------------------------------
// Randomized (support/kv_tier_fuzz.h): the content of every position of every device block
// and host slot tracked through the copies (saves, loads and prefix copies).

TEST(KvCacheManagerHostTier, RandomStepsReadTheRightContentThroughEveryTier) {
  const TierStats stats = run_fuzz(0x71e40000u, false, -1);
  EXPECT_GT(stats.saves, 1000);
  EXPECT_GT(stats.loads, 1000);
  EXPECT_GT(stats.host_hit_blocks, 1000);
  EXPECT_GT(stats.device_hit_blocks, 1000);
  EXPECT_EQ(stats.prefix_copies, 0);
  EXPECT_GT(stats.pinned, 0);
  EXPECT_GT(stats.host_pinned, 0) << "pinned blocks demoted with their pins";
}

// Partial-block reuse with and without the host tier: every prefix copy lands before it is
// read, from a block that still holds what the match saw.
TEST(KvCacheManagerPartialReuse, RandomStepsReadTheRightContentFromPartlyMatchedBlocks) {
  for (std::int64_t host_slots : {0, -1}) {
    SCOPED_TRACE(host_slots == 0 ? "no host tier" : "host tier");
    const TierStats stats = run_fuzz(0x9a710000u, true, host_slots);
    EXPECT_GT(stats.prefix_copies, 500);
    EXPECT_GT(stats.partial_hit_tokens, 1000);
    EXPECT_GT(stats.device_hit_blocks, 1000);
    if (host_slots != 0) {
      EXPECT_GT(stats.loads, 1000);
    }
  }
}

}  // namespace
}  // namespace cachet

#include <gtest/gtest.h>

#include <set>

#include "kv/block_pool.h"

namespace cachet::kv {
namespace {

constexpr std::int32_t kBlockSize = 4;

std::vector<TokenId> block_tokens(TokenId first) {
  return {first, first + 1, first + 2, first + 3};
}

// Registers `chain` (in use) as a chain of blocks whose tokens start at 100*i.
std::vector<BlockHash> register_chain(BlockPool& pool, const std::vector<BlockId>& chain,
                                      TokenId base = 0) {
  std::vector<BlockHash> hashes;
  for (std::size_t i = 0; i < chain.size(); ++i) {
    auto tokens = block_tokens(base + 100 * static_cast<TokenId>(i));
    std::optional<BlockHash> parent;
    if (i > 0) parent = hashes.back();
    hashes.push_back(i == 0 ? hash_first_block(tokens, "") : hash_next_block(*parent, tokens));
    EXPECT_TRUE(pool.register_block(chain[i], hashes.back(), parent, tokens));
  }
  return hashes;
}

TEST(BlockPool, AllocatesDistinctBlocksAndFreesUnregisteredOnes) {
  BlockPool pool(8, kBlockSize);
  auto a = pool.allocate(3);
  auto b = pool.allocate(5);
  ASSERT_TRUE(a && b);
  std::set<BlockId> all(a->begin(), a->end());
  all.insert(b->begin(), b->end());
  EXPECT_EQ(all.size(), 8u);
  EXPECT_EQ(pool.num_free(), 0);
  std::vector<const std::vector<BlockId>*> tables = {&*a, &*b};
  pool.check_integrity(tables);
  pool.release(*a);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.num_cached(), 0);
  tables = {&*b};
  pool.check_integrity(tables);
}

TEST(BlockPool, FailedAllocationChangesNothing) {
  BlockPool pool(4, kBlockSize);
  auto a = pool.allocate(3);
  EXPECT_FALSE(pool.allocate(2).has_value());
  EXPECT_FALSE(pool.allocate(-1).has_value());
  EXPECT_EQ(pool.num_free(), 1);
  std::vector<const std::vector<BlockId>*> tables = {&*a};
  pool.check_integrity(tables);
}

TEST(BlockPool, RegisteredBlocksStayCachedAndAreFoundExactly) {
  BlockPool pool(4, kBlockSize);
  auto chain = *pool.allocate(2);
  auto hashes = register_chain(pool, chain);
  pool.release(chain);
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_EQ(pool.num_free(), 2);
  pool.check_integrity({});
  EXPECT_EQ(pool.lookup(hashes[0], std::nullopt, block_tokens(0)), chain[0]);
  EXPECT_EQ(pool.lookup(hashes[1], hashes[0], block_tokens(100)), chain[1]);
  // The right hash with other tokens or another parent is not a hit: a collision can never
  // serve wrong K/V.
  EXPECT_FALSE(pool.lookup(hashes[0], std::nullopt, block_tokens(1)).has_value());
  EXPECT_FALSE(pool.lookup(hashes[1], std::nullopt, block_tokens(100)).has_value());
  EXPECT_FALSE(pool.lookup(hashes[1], hashes[1], block_tokens(100)).has_value());
  // A hit takes the block out of the LRU.
  pool.ref(chain[0]);
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.num_in_use(), 1);
  std::vector<BlockId> table = {chain[0]};
  std::vector<const std::vector<BlockId>*> tables = {&table};
  pool.check_integrity(tables);
}

TEST(BlockPool, DuplicateContentIsNotRegisteredTwice) {
  BlockPool pool(4, kBlockSize);
  auto a = *pool.allocate(1);
  auto b = *pool.allocate(1);
  auto h = hash_first_block(block_tokens(0), "");
  EXPECT_TRUE(pool.register_block(a[0], h, std::nullopt, block_tokens(0)));
  EXPECT_FALSE(pool.register_block(b[0], h, std::nullopt, block_tokens(0)));
  pool.release(b);
  EXPECT_EQ(pool.num_free(), 3);  // the unregistered copy is simply freed
}

TEST(BlockPool, EvictsLeastRecentlyUsedFirstAndChainsFromTheTail) {
  BlockPool pool(6, kBlockSize);
  auto first = *pool.allocate(3);
  register_chain(pool, first, 0);
  auto second = *pool.allocate(3);
  register_chain(pool, second, 5000);
  pool.release(first);  // older: evicted first, deepest block first
  pool.release(second);
  EXPECT_EQ(pool.num_cached(), 6);
  auto one = *pool.allocate(1);
  EXPECT_EQ(one[0], first[2]);
  EXPECT_FALSE(pool.hash(first[2]).has_value());
  auto two = *pool.allocate(2);
  EXPECT_EQ(two[0], first[1]);
  EXPECT_EQ(two[1], first[0]);
  auto three = *pool.allocate(1);
  EXPECT_EQ(three[0], second[2]);
  EXPECT_EQ(pool.num_evictions(), 4);
  std::vector<const std::vector<BlockId>*> tables = {&one, &two, &three};
  pool.check_integrity(tables);
}

TEST(BlockPool, AHitRefreshesRecency) {
  BlockPool pool(4, kBlockSize);
  auto a = *pool.allocate(1);
  register_chain(pool, a, 0);
  auto b = *pool.allocate(1);
  register_chain(pool, b, 7000);
  pool.release(a);
  pool.release(b);
  pool.ref(a[0]);  // a is used again, so b is now the least recent
  pool.release(a);
  auto fresh = *pool.allocate(3);  // 2 free + 1 evicted
  EXPECT_EQ(fresh.back(), b[0]);
  EXPECT_TRUE(pool.hash(a[0]).has_value());
}

TEST(BlockPoolDeathTest, DoubleReleaseAborts) {
  BlockPool pool(2, kBlockSize);
  auto a = pool.allocate(1);
  pool.release(*a);
  EXPECT_DEATH(pool.release(*a), "integrity");
}

TEST(BlockPoolDeathTest, IntegrityCheckCatchesAMissingTableReference) {
  BlockPool pool(2, kBlockSize);
  auto a = pool.allocate(1);
  EXPECT_DEATH(pool.check_integrity({}), "ref count differs");
}

TEST(BlockHash, SaltAndContentsAreDomainSeparated) {
  auto tokens = block_tokens(1);
  EXPECT_EQ(hash_first_block(tokens, "a"), hash_first_block(tokens, "a"));
  EXPECT_NE(hash_first_block(tokens, "a"), hash_first_block(tokens, "b"));
  EXPECT_NE(hash_first_block(tokens, ""), hash_first_block(tokens, "a"));
  auto root = hash_first_block(tokens, "");
  EXPECT_NE(hash_next_block(root, tokens), hash_first_block(tokens, ""));
  // A salt whose bytes spell token ids does not collide with those tokens.
  std::vector<TokenId> one = {1};
  std::string salt(reinterpret_cast<const char*>(one.data()), sizeof(TokenId));
  EXPECT_NE(hash_first_block({}, salt), hash_first_block(one, ""));
}

}  // namespace
}  // namespace cachet::kv

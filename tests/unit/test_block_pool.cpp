#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>

#include "cachet/errors.h"
#include "kv/block_pool.h"

namespace cachet::kv {
namespace {

constexpr std::int32_t kBlockSize = 4;

std::vector<TokenId> block_tokens(TokenId first) {
  return {first, first + 1, first + 2, first + 3};
}

// What block i of `chain` follows: the salt "" for the first, else block i - 1.
ChainLink link_in(const BlockPool& pool, const std::vector<BlockId>& chain, std::size_t i) {
  return i == 0 ? ChainLink::first("") : ChainLink::after(pool.content_of(chain[i - 1]));
}

// Registers `chain` (in use) as a chain of blocks whose tokens start at 100*i.
std::vector<BlockHash> register_chain(BlockPool& pool, const std::vector<BlockId>& chain,
                                      TokenId base = 0) {
  std::vector<BlockHash> hashes;
  for (std::size_t i = 0; i < chain.size(); ++i) {
    auto tokens = block_tokens(base + 100 * static_cast<TokenId>(i));
    hashes.push_back(i == 0 ? hash_first_block(tokens, "")
                            : hash_next_block(hashes.back(), tokens));
    EXPECT_EQ(pool.register_block(chain[i], hashes.back(), link_in(pool, chain, i), tokens),
              chain[i]);
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
  const ChainLink after0 = ChainLink::after(pool.content_of(chain[0]));
  EXPECT_EQ(pool.lookup(hashes[0], ChainLink::first(""), block_tokens(0)), chain[0]);
  EXPECT_EQ(pool.lookup(hashes[1], after0, block_tokens(100)), chain[1]);
  // The right hash with other tokens, another parent or another salt is not a hit: a
  // collision can never serve wrong K/V.
  EXPECT_FALSE(pool.lookup(hashes[0], ChainLink::first(""), block_tokens(1)).has_value());
  EXPECT_FALSE(pool.lookup(hashes[0], ChainLink::first("s"), block_tokens(0)).has_value());
  EXPECT_FALSE(pool.lookup(hashes[1], ChainLink::first(""), block_tokens(100)).has_value());
  EXPECT_FALSE(
      pool.lookup(hashes[1], ChainLink::after(pool.content_of(chain[1])), block_tokens(100))
          .has_value());
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
  EXPECT_EQ(pool.register_block(a[0], h, ChainLink::first(""), block_tokens(0)), a[0]);
  // The same content again: the block registered first is the one that holds it.
  EXPECT_EQ(pool.register_block(b[0], h, ChainLink::first(""), block_tokens(0)), a[0]);
  EXPECT_FALSE(pool.hash(b[0]).has_value());
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

// A broken rule is an Error(kInternal) for the engine to report, never an abort of the
// process (it used to abort).
void expect_integrity_error(const std::function<void()>& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error; expected: " << what;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_THAT(e.what(), ::testing::HasSubstr(what));
  }
}

TEST(BlockPoolIntegrity, DoubleReleaseThrows) {
  BlockPool pool(2, kBlockSize);
  auto a = pool.allocate(1);
  pool.release(*a);
  expect_integrity_error([&] { pool.release(*a); }, "release of an unreferenced block");
}

TEST(BlockPoolIntegrity, CheckCatchesAMissingAndAnExtraTableReference) {
  BlockPool pool(4, kBlockSize);
  auto a = *pool.allocate(2);
  expect_integrity_error([&] { pool.check_integrity({}); }, "ref count differs");
  pool.ref(a[0]);  // a reference no block table holds
  expect_integrity_error(
      [&] { pool.check_integrity(std::vector<const std::vector<BlockId>*>{&a}); },
      "ref count differs from block-table references (block ");
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

namespace cachet::kv {
namespace {

// First blocks X and Y with the same hash H (a collision), Y registered first, then X's
// child Z: a request [Y, Z] must not get Z, whose K/V attended to X. Before the fix, Z was
// registered under its parent's hash and found after Y.
TEST(BlockPoolCollision, AChildIsFoundOnlyAfterTheVeryBlockItWasComputedAfter) {
  BlockPool pool(4, kBlockSize);
  auto ids = *pool.allocate(3);
  const BlockId y = ids[0], x = ids[1], z = ids[2];
  const BlockHash h{7, 7}, hz{9, 9};
  ASSERT_EQ(pool.register_block(y, h, ChainLink::first(""), block_tokens(10)), y);
  ASSERT_EQ(pool.register_block(x, h, ChainLink::first(""), block_tokens(20)), x);  // both held
  ASSERT_EQ(pool.register_block(z, hz, ChainLink::after(pool.content_of(x)), block_tokens(30)), z);
  pool.check_integrity(std::vector<const std::vector<BlockId>*>{&ids});
  EXPECT_EQ(pool.lookup(h, ChainLink::first(""), block_tokens(10)), y);
  EXPECT_EQ(pool.lookup(h, ChainLink::first(""), block_tokens(20)), x);
  EXPECT_FALSE(pool.lookup(hz, ChainLink::after(pool.content_of(y)), block_tokens(30)).has_value())
      << "Z attended to X, not Y";
  EXPECT_EQ(pool.lookup(hz, ChainLink::after(pool.content_of(x)), block_tokens(30)), z);
}

// A block's link names its parent's contents, not its slot: once the parent is evicted and
// the slot holds something else, the child no longer matches after it.
TEST(BlockPoolCollision, AChildOfAnEvictedParentNeverMatchesTheSlotsNextContents) {
  BlockPool pool(2, kBlockSize);
  auto chain = *pool.allocate(2);
  register_chain(pool, chain);
  const ContentId old_parent = pool.content_of(chain[0]);
  pool.release(std::vector<BlockId>{chain[0]});  // the parent alone becomes evictable
  auto reused = *pool.allocate(1);               // evicts it
  ASSERT_EQ(reused[0], chain[0]);
  const auto h0 = hash_first_block(block_tokens(0), "");
  ASSERT_EQ(pool.register_block(reused[0], h0, ChainLink::first(""), block_tokens(0)), reused[0]);
  EXPECT_NE(pool.content_of(reused[0]), old_parent);
  const auto h1 = hash_next_block(h0, block_tokens(100));
  EXPECT_FALSE(
      pool.lookup(h1, ChainLink::after(pool.content_of(reused[0])), block_tokens(100)).has_value());
}

// The salt is compared itself, not through the first block's hash.
TEST(BlockPoolCollision, AFirstBlockIsFoundOnlyUnderItsOwnSalt) {
  BlockPool pool(3, kBlockSize);
  auto ids = *pool.allocate(2);
  const BlockHash h{5, 5};  // the same hash under two salts: a forged collision
  ASSERT_EQ(pool.register_block(ids[0], h, ChainLink::first("tenant-a"), block_tokens(0)), ids[0]);
  EXPECT_EQ(pool.lookup(h, ChainLink::first("tenant-a"), block_tokens(0)), ids[0]);
  EXPECT_FALSE(pool.lookup(h, ChainLink::first("tenant-b"), block_tokens(0)).has_value());
  EXPECT_FALSE(pool.lookup(h, ChainLink::first(""), block_tokens(0)).has_value());
  ASSERT_EQ(pool.register_block(ids[1], h, ChainLink::first("tenant-b"), block_tokens(0)), ids[1]);
  EXPECT_EQ(pool.lookup(h, ChainLink::first("tenant-b"), block_tokens(0)), ids[1]);
  pool.release(ids);
  pool.check_integrity({});
  auto all = *pool.allocate(3);  // evicts both: their salts are forgotten with them
  pool.check_integrity(std::vector<const std::vector<BlockId>*>{&all});
  EXPECT_FALSE(pool.lookup(h, ChainLink::first("tenant-a"), block_tokens(0)).has_value());
}

}  // namespace
}  // namespace cachet::kv

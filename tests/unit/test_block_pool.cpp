#include "kv/block_pool.h"

#include <gtest/gtest.h>

#include <set>

namespace cachet::kv {
namespace {

TEST(BlockPool, AllocatesDistinctBlocksAndFreesAtZeroReferences) {
  BlockPool pool(8);
  auto a = pool.allocate(3);
  ASSERT_TRUE(a.has_value());
  auto b = pool.allocate(5);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(pool.num_free(), 0);
  std::set<BlockId> all(a->begin(), a->end());
  all.insert(b->begin(), b->end());
  EXPECT_EQ(all.size(), 8u);
  pool.check_integrity();
  pool.release(*a);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.num_in_use(), 5);
  for (BlockId id : *a) EXPECT_EQ(pool.ref_count(id), 0);
  pool.check_integrity();
}

TEST(BlockPool, FailedAllocationChangesNothing) {
  BlockPool pool(4);
  auto a = pool.allocate(3);
  ASSERT_TRUE(a.has_value());
  EXPECT_FALSE(pool.allocate(2).has_value());
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_FALSE(pool.allocate(-1).has_value());
  pool.check_integrity();
  auto b = pool.allocate(1);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(pool.num_free(), 0);
}

TEST(BlockPool, ZeroBlocksIsAnEmptySuccess) {
  BlockPool pool(2);
  auto none = pool.allocate(0);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(BlockPoolDeathTest, DoubleReleaseAborts) {
  BlockPool pool(2);
  auto a = pool.allocate(1);
  pool.release(*a);
  EXPECT_DEATH(pool.release(*a), "integrity");
}

}  // namespace
}  // namespace cachet::kv

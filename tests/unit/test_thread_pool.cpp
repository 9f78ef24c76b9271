#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cachet/errors.h"
#include "util/thread_pool.h"

namespace cachet::util {
namespace {

// Runs one parallel_for and checks every index of [begin, end) was visited exactly once,
// by chunks that are non-empty and inside the range.
void expect_each_index_once(ThreadPool& pool, std::int64_t begin, std::int64_t end,
                            std::int64_t grain) {
  const std::int64_t n = std::max<std::int64_t>(0, end - begin);
  std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
  std::atomic<bool> bad_chunk{false};
  pool.parallel_for(begin, end, grain, [&](std::int64_t b, std::int64_t e) {
    if (b >= e || b < begin || e > end) bad_chunk = true;
    for (std::int64_t i = b; i < e && i >= begin && i < end; ++i) hits[i - begin]++;
  });
  EXPECT_FALSE(bad_chunk) << "range [" << begin << ", " << end << ") grain " << grain;
  for (std::int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(hits[i].load(), 1) << "index " << begin + i << " of [" << begin << ", " << end
                                 << ") grain " << grain << " threads " << pool.num_threads();
  }
}

TEST(ThreadPool, RejectsZeroThreads) {
  EXPECT_THROW(ThreadPool(0), cachet::Error);
  EXPECT_THROW(ThreadPool(-3), cachet::Error);
}

TEST(ThreadPool, CoversEveryIndexOnceForAwkwardRanges) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (std::int64_t begin : {0, 7, -5}) {
      for (std::int64_t n : {0, 1, 2, 3, 7, 16, 17, 63, 64, 65, 1000, 4097}) {
        for (std::int64_t grain : {0, 1, 3, 8, 64, 5000}) {
          expect_each_index_once(pool, begin, begin + n, grain);
        }
      }
    }
  }
}

TEST(ThreadPool, EmptyAndReversedRangesCallNothing) {
  ThreadPool pool(3);
  int calls = 0;
  pool.parallel_for(5, 5, 1, [&](std::int64_t, std::int64_t) { ++calls; });
  pool.parallel_for(9, 2, 1, [&](std::int64_t, std::int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, ChunksRespectGrain) {
  ThreadPool pool(4);
  std::atomic<int> small_chunks{0};
  // 100 items, grain 30: every chunk but possibly the last has at least 30 items.
  pool.parallel_for(0, 100, 30, [&](std::int64_t b, std::int64_t e) {
    if (e - b < 30 && e != 100) small_chunks++;
  });
  EXPECT_EQ(small_chunks.load(), 0);
}

TEST(ThreadPool, UsesSeveralThreads) {
  ThreadPool pool(3);
  std::mutex mutex;
  std::vector<std::thread::id> seen;
  // Enough chunks that are slow enough for the workers to wake up and take some.
  pool.parallel_for(0, 64, 1, [&](std::int64_t, std::int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard lock(mutex);
    if (std::find(seen.begin(), seen.end(), std::this_thread::get_id()) == seen.end()) {
      seen.push_back(std::this_thread::get_id());
    }
  });
  EXPECT_GE(seen.size(), 2u);
}

TEST(ThreadPool, PropagatesTheFirstExceptionAndStaysUsable) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int round = 0; round < 20; ++round) {
      // Every chunk throws: exactly one exception reaches the caller, no deadlock.
      EXPECT_THROW(pool.parallel_for(
                       0, 1000, 1,
                       [](std::int64_t, std::int64_t) { throw std::runtime_error("every chunk"); }),
                   std::runtime_error);
      // One chunk throws a cachet::Error; its type and message survive.
      try {
        pool.parallel_for(0, 1000, 7, [](std::int64_t b, std::int64_t e) {
          if (b <= 500 && 500 < e) throw Error(ErrorCode::kInternal, "index 500");
        });
        ADD_FAILURE() << "no exception";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInternal);
        EXPECT_STREQ(e.what(), "index 500");
      }
      // The pool still works after a failure.
      expect_each_index_once(pool, 0, 333, 4);
    }
  }
}

TEST(ThreadPool, ManyRepeatedCalls) {
  ThreadPool pool(3);
  std::int64_t total = 0;
  for (int round = 0; round < 5000; ++round) {
    std::atomic<std::int64_t> sum{0};
    const std::int64_t n = 1 + round % 37;
    pool.parallel_for(0, n, 1, [&](std::int64_t b, std::int64_t e) {
      std::int64_t local = 0;
      for (std::int64_t i = b; i < e; ++i) local += i;
      sum += local;
    });
    ASSERT_EQ(sum.load(), n * (n - 1) / 2) << "round " << round;
    total += sum.load();
  }
  EXPECT_GT(total, 0);
}

TEST(ThreadPool, DestroysCleanlyWithoutWork) {
  for (int i = 0; i < 50; ++i) ThreadPool pool(1 + i % 4);
}

}  // namespace
}  // namespace cachet::util

#include "util/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <string>
#include <system_error>

#include "cachet/errors.h"

namespace cachet::util {

namespace {

// About this many chunks per thread, so a thread that was descheduled (the cores may be
// shared) or got the expensive end of a loop does not hold everyone up.
constexpr std::int64_t kChunksPerThread = 4;

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads < 1) {
    throw Error(ErrorCode::kInvalidArgument,
                "ThreadPool: num_threads must be >= 1, got " + std::to_string(num_threads));
  }
  workers_.reserve(static_cast<std::size_t>(num_threads - 1));
  try {
    for (int i = 0; i + 1 < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (const std::system_error& e) {
    // The destructor does not run for a constructor that throws, and destroying a joinable
    // std::thread terminates the process: stop and join the workers started so far.
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& worker : workers_) worker.join();
    throw Error(ErrorCode::kUnavailable, "ThreadPool: cannot start thread " +
                                             std::to_string(workers_.size() + 2) + " of " +
                                             std::to_string(num_threads) + ": " + e.what());
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain,
                              const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (end <= begin) return;
  const std::int64_t n = end - begin;
  const std::int64_t threads = num_threads();
  const std::int64_t balanced = (n + threads * kChunksPerThread - 1) / (threads * kChunksPerThread);
  const std::int64_t chunk = std::max({grain, balanced, std::int64_t{1}});
  const std::int64_t num_chunks = (n + chunk - 1) / chunk;
  // Nothing to share: run inline, and let exceptions take their natural path.
  if (num_chunks == 1 || workers_.empty()) {
    for (std::int64_t b = begin; b < end; b += chunk) fn(b, std::min(end, b + chunk));
    return;
  }

  // The first exception wins; once one is thrown the remaining chunks are skipped. The
  // wrapper captures one pointer, so std::function stores it without allocating.
  struct Failure {
    const std::function<void(std::int64_t, std::int64_t)>* fn;
    std::atomic<bool> failed{false};
    std::mutex mutex;
    std::exception_ptr error;
  } failure;
  failure.fn = &fn;
  const std::function<void(std::int64_t, std::int64_t)> guarded = [f = &failure](std::int64_t b,
                                                                                 std::int64_t e) {
    if (f->failed.load(std::memory_order_relaxed)) return;
    try {
      (*f->fn)(b, e);
    } catch (...) {
      std::lock_guard lock(f->mutex);
      if (!f->error) f->error = std::current_exception();
      f->failed.store(true, std::memory_order_relaxed);
    }
  };

  std::unique_lock lock(mutex_);
  job_ = &guarded;
  job_begin_ = begin;
  job_end_ = end;
  job_chunk_ = chunk;
  next_chunk_ = 0;
  num_chunks_ = num_chunks;
  chunks_done_ = 0;
  ++generation_;
  lock.unlock();
  work_cv_.notify_all();

  // The calling thread takes chunks like any worker.
  lock.lock();
  while (next_chunk_ < num_chunks_) {
    const std::int64_t c = next_chunk_++;
    lock.unlock();
    const std::int64_t b = job_begin_ + c * job_chunk_;
    guarded(b, std::min(job_end_, b + job_chunk_));
    lock.lock();
    ++chunks_done_;
  }
  done_cv_.wait(lock, [this] { return chunks_done_ == num_chunks_; });
  job_ = nullptr;
  lock.unlock();

  if (failure.error) std::rethrow_exception(failure.error);
}

void ThreadPool::worker_loop(int /*index*/) {
  std::uint64_t seen = 0;
  std::unique_lock lock(mutex_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    // A worker that wakes after the job is finished finds no chunk left and sleeps again.
    while (job_ != nullptr && next_chunk_ < num_chunks_) {
      const std::int64_t c = next_chunk_++;
      const auto* job = job_;
      const std::int64_t b = job_begin_ + c * job_chunk_;
      const std::int64_t e = std::min(job_end_, b + job_chunk_);
      lock.unlock();
      (*job)(b, e);  // the guarded wrapper: never throws
      lock.lock();
      if (++chunks_done_ == num_chunks_) done_cv_.notify_one();
    }
  }
}

}  // namespace cachet::util

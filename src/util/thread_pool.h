// A fixed pool of worker threads for data-parallel loops.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cachet::util {

class ThreadPool {
 public:
  // `num_threads` workers including the calling thread (>= 1).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [begin, end) into contiguous chunks of at least `grain` items and calls
  // fn(chunk_begin, chunk_end) for each, on the workers and the calling thread; returns
  // when all are done. Not reentrant: fn must not call parallel_for on the same pool.
  void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain,
                    const std::function<void(std::int64_t, std::int64_t)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(std::int64_t, std::int64_t)>* job_ = nullptr;
  std::int64_t job_begin_ = 0, job_end_ = 0, job_chunk_ = 0;
  std::int64_t next_chunk_ = 0, num_chunks_ = 0, chunks_done_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace cachet::util

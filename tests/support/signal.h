// A one-shot signal between a test thread and a callback on the engine's thread, with a
// bounded wait so that a hang fails the test instead of blocking the run.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace cachet::testing {

struct Signal {
  std::mutex mutex;
  std::condition_variable cv;
  bool set = false;
  void raise() {
    std::lock_guard lock(mutex);
    set = true;
    cv.notify_all();
  }
  // False when `limit` passed without raise().
  bool wait(std::chrono::seconds limit = std::chrono::seconds(60)) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, limit, [&] { return set; });
  }
};

}  // namespace cachet::testing

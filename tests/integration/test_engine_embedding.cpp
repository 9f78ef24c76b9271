// What an application embedding cachet relies on besides not being taken down
// (test_engine_failure.cpp): each engine logs through its own sink and level, never a
// process-wide logger; num_threads = 0 follows the CPUs the process may use; the device
// index is checked; the version macros and cachet::version() agree.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>

#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backend/device_probe.h"
#include "cachet/engine.h"
#include "cachet/version.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using ::testing::HasSubstr;
using testing::TinyModel;

// Collects what one engine logs.
struct Captured {
  std::mutex mutex;
  std::vector<std::pair<LogLevel, std::string>> lines;
  LogSink sink() {
    return [this](LogLevel level, std::string_view message) {
      std::lock_guard lock(mutex);
      lines.emplace_back(level, std::string(message));
    };
  }
  bool has(LogLevel level, const std::string& part) {
    std::lock_guard lock(mutex);
    for (const auto& [l, text] : lines)
      if (l == level && text.find(part) != std::string::npos) return true;
    return false;
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return lines.size();
  }
};

TEST(EngineLogging, EachEngineLogsToItsOwnSinkAtItsOwnLevel) {
  TinyModel m;
  Captured a, b;
  EngineConfig ca = m.engine_config();
  ca.log_level = LogLevel::kWarn;
  ca.log_sink = a.sink();
  EngineConfig cb = m.engine_config();
  cb.log_level = LogLevel::kError;
  cb.log_sink = b.sink();
  Engine ea(ca), eb(cb);
  const std::vector<TokenId> bad = {m.vocab() + 5};
  EXPECT_EQ(ea.generate({bad}, testing::greedy(2))[0].finish_reason, FinishReason::kError);
  EXPECT_EQ(eb.generate({bad}, testing::greedy(2))[0].finish_reason, FinishReason::kError);
  EXPECT_TRUE(a.has(LogLevel::kWarn, "outside the vocabulary"));
  EXPECT_EQ(b.size(), 0u) << "a warning got past engine b's level (error)";
  EXPECT_EQ(a.size(), 1u) << "engine a got another engine's messages";
}

TEST(EngineLogging, WhyDeviceAutoChoseTheCpuIsLogged) {
  TinyModel m;
  Captured log;
  EngineConfig c = m.engine_config();
  c.device = Device::kAuto;
  c.log_level = LogLevel::kInfo;
  c.log_sink = log.sink();
  const backend::CudaProbe probe = backend::probe_cuda();
  if (probe.problem.empty()) GTEST_SKIP() << "a GPU is usable: kAuto does not fall back";
  Engine engine(c);
  EXPECT_EQ(engine.info().backend, "cpu");
  // A warning (seen by default) where CUDA was built but no GPU is usable; where cachet was
  // built without CUDA there is nothing to fall back from, and it is information.
  const LogLevel expected = probe.built_with_cuda ? LogLevel::kWarn : LogLevel::kInfo;
  EXPECT_TRUE(log.has(expected, "device auto: using the CPU backend (" + probe.problem + ")"));
}

TEST(EngineLogging, ASinkThatThrowsChangesNothing) {
  TinyModel m;
  EngineConfig c = m.engine_config();
  c.log_sink = [](LogLevel, std::string_view) { throw std::runtime_error("sink"); };
  Engine engine(c);
  EXPECT_EQ(engine.generate({{m.vocab() + 1}}, testing::greedy(2))[0].finish_reason,
            FinishReason::kError);
  EXPECT_EQ(engine.generate({{1, 2}}, testing::greedy(2))[0].token_ids.size(), 2u);
}

TEST(EngineThreads, ZeroMeansTheCpusThisThreadMayUse) {
  TinyModel m;
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  EngineConfig c = m.engine_config(4, true, /*threads=*/0);
  {
    Engine engine(c);
    EXPECT_GE(engine.info().num_threads, 1);
    EXPECT_LE(engine.info().num_threads, CPU_COUNT(&all));
  }
  if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "one CPU: nothing to restrict";
  // An engine built on a thread pinned to one CPU (taskset, a cpuset) uses one thread.
  int threads = 0;
  std::thread([&] {
    if (!testing::pin_to_one_cpu()) return;
    Engine engine(c);
    threads = engine.info().num_threads;
  }).join();
  EXPECT_EQ(threads, 1);
}

TEST(EngineDevice, ABadCudaDeviceIsAClearError) {
  TinyModel m;
  EngineConfig c = m.engine_config();
  c.cuda_device = -1;
  EXPECT_THAT(testing::error_of([&] { Engine e(c); }, ErrorCode::kInvalidArgument),
              HasSubstr("cuda_device must be >= 0"));
  c.cuda_device = 1000;
  c.device = Device::kCuda;
  // No GPU here, or not a thousand: either way the message says why CUDA cannot be used.
  EXPECT_THAT(testing::error_of([&] { Engine e(c); }, ErrorCode::kUnavailable),
              HasSubstr("CUDA backend cannot be used"));
  c.device = Device::kCpu;  // the index matters only where CUDA runs
  Engine cpu(c);
  EXPECT_EQ(cpu.info().backend, "cpu");
}

TEST(Version, TheLibraryAndTheHeadersAgree) {
  const Version v = version();
  EXPECT_EQ(v.major, CACHET_VERSION_MAJOR);
  EXPECT_EQ(v.minor, CACHET_VERSION_MINOR);
  EXPECT_EQ(v.patch, CACHET_VERSION_PATCH);
  EXPECT_EQ(std::to_string(v.major) + "." + std::to_string(v.minor) + "." + std::to_string(v.patch),
            CACHET_VERSION_STRING);
}

}  // namespace
}  // namespace cachet

// The engine never takes its host process down: a broken KV invariant, an exception anywhere
// on the engine's thread or a device that is lost puts the engine in a failed state where
// every live request gets exactly one final update (kError, naming the cause), later
// submit()/generate() throw kEngineFailed and health() says why. Also: generate() from a
// callback throws instead of deadlocking, and destroying the engine from a callback works.
// Faults are injected with a backend wrapper (engine/engine_testing.h) or by corrupting the
// block pool from a callback (the engine's own thread). Every wait is bounded.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cachet/engine.h"
#include "engine/engine_testing.h"
#include "support/forwarding_backend.h"
#include "support/signal.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using ::testing::HasSubstr;
using testing::TinyModel;

constexpr auto kWaitLimit = std::chrono::seconds(60);

// Delegates to the real backend; its `forward_calls`-th forward (1-based) runs `fault`
// instead, and so does the `query_calls`-th samples_on_device() query.
class FaultyBackend : public testing::ForwardingBackend {
 public:
  FaultyBackend(std::unique_ptr<backend::Backend> inner, int forward_calls, int query_calls,
                std::function<void()> fault)
      : ForwardingBackend(std::move(inner)),
        forward_at_(forward_calls),
        query_at_(query_calls),
        fault_(std::move(fault)) {}

  void forward(const backend::ForwardBatch& batch, std::vector<float>& logits) override {
    if (++forwards_ == forward_at_) fault_();
    ForwardingBackend::forward(batch, logits);
  }
  bool samples_on_device() const override {
    if (++queries_ == query_at_) fault_();
    return ForwardingBackend::samples_on_device();
  }

 private:
  int forward_at_, query_at_;
  std::function<void()> fault_;
  int forwards_ = 0;
  mutable int queries_ = 0;
};

engine::BackendWrapper faulty(int forward_calls, int query_calls,
                              std::shared_ptr<testing::Signal> gate, std::function<void()> fault) {
  // The fault waits until the test has submitted every request, so that it hits a full
  // engine whatever the timing.
  auto gated = [gate, fault] {
    gate->wait();
    fault();
  };
  return [=](std::unique_ptr<backend::Backend> inner) {
    return std::make_unique<FaultyBackend>(std::move(inner), forward_calls, query_calls, gated);
  };
}

// Every update of every request, with bounded waits for the final ones.
class Updates {
 public:
  RequestCallback callback_for(int request) {
    return [this, request](const RequestUpdate& u) {
      std::lock_guard lock(mutex_);
      auto& r = requests_[request];
      if (u.finished) {
        ++r.finals;
        r.output = *u.output;
        done_.notify_all();
      } else {
        r.tokens += static_cast<int>(u.new_token_ids.size());
      }
    };
  }
  // Waits until `n` requests have had a final update; false on timeout.
  bool wait_for_finals(int n) {
    std::unique_lock lock(mutex_);
    return done_.wait_for(lock, kWaitLimit, [&] { return count_finished() >= n; });
  }
  struct Request {
    int finals = 0;
    int tokens = 0;
    RequestOutput output;
  };
  std::map<int, Request> snapshot() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  int count_finished() const {
    int n = 0;
    for (const auto& [id, r] : requests_) n += r.finals > 0;
    return n;
  }
  std::mutex mutex_;
  std::condition_variable done_;
  std::map<int, Request> requests_;
};

std::vector<TokenId> prompt(int seed, int length, int vocab) {
  std::vector<TokenId> ids;
  for (int i = 0; i < length; ++i) ids.push_back((seed * 131 + i * 17) % vocab);
  return ids;
}

// Submits `n` requests long enough to be live when the fault comes, waits for every final
// update and checks the failed state: exactly one final update each, kError naming `cause`,
// health() failed, submit() and generate() refused with kEngineFailed.
void expect_engine_fails(Engine& engine, testing::Signal& gate, int vocab, int n,
                         const std::string& cause) {
  Updates updates;
  for (int i = 0; i < n; ++i)
    engine.submit({prompt(i, 12 + i, vocab), testing::greedy(40), {}, {}}, updates.callback_for(i));
  gate.raise();
  ASSERT_TRUE(updates.wait_for_finals(n)) << "not every request got its final update";
  for (const auto& [i, r] : updates.snapshot()) {
    EXPECT_EQ(r.finals, 1) << "request " << i;
    EXPECT_EQ(r.output.finish_reason, FinishReason::kError) << "request " << i;
    EXPECT_THAT(r.output.error, HasSubstr(cause)) << "request " << i;
  }
  const EngineHealth health = engine.health();
  EXPECT_FALSE(health.ok);
  EXPECT_THAT(health.error, HasSubstr("engine failed"));
  EXPECT_THAT(health.error, HasSubstr(cause));
  const std::string refused = testing::error_of(
      [&] {
        engine.submit({prompt(99, 5, vocab), testing::greedy(2), {}, {}}, nullptr);
      },
      ErrorCode::kEngineFailed);
  EXPECT_THAT(refused, HasSubstr(cause));
  testing::error_of([&] { engine.generate({prompt(98, 5, vocab)}, testing::greedy(2)); },
                    ErrorCode::kEngineFailed);
  EXPECT_FALSE(engine.abort(1));
}

TEST(EngineFailure, ADeviceLostInTheForwardPassFailsTheEngine) {
  TinyModel m;
  auto gate = std::make_shared<testing::Signal>();
  Engine engine = engine::EngineTestAccess::make(
      m.engine_config(), faulty(2, 0, gate, [] {
        throw backend::FatalBackendError(
            ErrorCode::kInternal, "cuda backend: attention failed: an illegal memory access");
      }));
  EXPECT_TRUE(engine.health().ok);
  expect_engine_fails(engine, *gate, m.vocab(), 5, "an illegal memory access");
}

TEST(EngineFailure, AnExceptionOfAnyTypeOnTheEnginesThreadFailsTheEngine) {
  TinyModel m;
  // Thrown outside the forward pass's own error handling, and not a std::exception.
  auto gate = std::make_shared<testing::Signal>();
  Engine engine =
      engine::EngineTestAccess::make(m.engine_config(), faulty(0, 3, gate, [] { throw 42; }));
  expect_engine_fails(engine, *gate, m.vocab(), 4, "an exception of unknown type");
}

TEST(EngineFailure, AStdExceptionOutsideTheForwardPassFailsTheEngine) {
  TinyModel m;
  auto gate = std::make_shared<testing::Signal>();
  Engine engine = engine::EngineTestAccess::make(m.engine_config(), faulty(0, 2, gate, [] {
                                                   throw std::logic_error("scheduler bookkeeping");
                                                 }));
  expect_engine_fails(engine, *gate, m.vocab(), 3, "scheduler bookkeeping");
}

TEST(EngineFailure, ABrokenBlockInvariantFailsTheEngineInsteadOfAborting) {
  TinyModel m;
  std::unique_ptr<Engine> engine = std::make_unique<Engine>(
      engine::EngineTestAccess::make(m.engine_config(), engine::BackendWrapper{}));
  ASSERT_TRUE(m.engine_config().check_kv_integrity);
  Updates updates;
  // The engine's thread waits in a first request's final callback until all four are in, so
  // none can run to completion before the corruption.
  testing::Signal all_submitted;
  engine->submit({prompt(9, 2, m.vocab()), testing::greedy(1), {}, {}},
                 [&](const RequestUpdate& u) {
                   if (u.finished) all_submitted.wait();
                 });
  for (int i = 1; i < 4; ++i)
    engine->submit({prompt(i, 20, m.vocab()), testing::greedy(30), {}, {}},
                   updates.callback_for(i));
  // On its first token (the engine's thread), the request takes one more reference to a
  // block in use, which no block table holds; the check after that step finds it.
  bool corrupted = false;
  auto record = updates.callback_for(0);
  engine->submit(
      {prompt(0, 9, m.vocab()), testing::greedy(30), {}, {}}, [&](const RequestUpdate& u) {
        if (!corrupted && !u.finished) {
          corrupted = true;
          kv::BlockPool& pool = engine::EngineTestAccess::core(*engine).block_pool_for_testing();
          for (std::int32_t b = 0; b < pool.num_blocks(); ++b)
            if (pool.ref_count(kv::BlockId{b}) > 0) {
              pool.ref(kv::BlockId{b});
              break;
            }
        }
        record(u);
      });
  all_submitted.raise();
  ASSERT_TRUE(updates.wait_for_finals(4));
  for (const auto& [i, r] : updates.snapshot()) {
    EXPECT_EQ(r.finals, 1) << "request " << i;
    EXPECT_EQ(r.output.finish_reason, FinishReason::kError) << "request " << i;
    EXPECT_THAT(r.output.error, HasSubstr("ref count differs from block-table references"))
        << "request " << i;
  }
  EXPECT_THAT(engine->health().error, HasSubstr("KV block pool integrity violated"));
  engine.reset();  // a failed engine is destroyed like any other
}

TEST(EngineFailure, AForwardPassFailingForOneStepFailsOnlyItsRequests) {
  TinyModel m;
  auto gate = std::make_shared<testing::Signal>();
  gate->raise();
  Engine engine = engine::EngineTestAccess::make(m.engine_config(), faulty(1, 0, gate, [] {
                                                   throw std::runtime_error("workspace too small");
                                                 }));
  auto out = engine.generate({prompt(1, 8, m.vocab())}, testing::greedy(3));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kError);
  EXPECT_THAT(out[0].error, HasSubstr("forward pass failed: workspace too small"));
  EXPECT_TRUE(engine.health().ok);
  out = engine.generate({prompt(1, 8, m.vocab())}, testing::greedy(3));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(out[0].token_ids.size(), 3u);
}

// Delegates to the real backend, but its copies from the host tier fail.
class FailingLoads : public testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  void load_blocks(std::span<const backend::HostCopy>) override {
    throw std::runtime_error("pinned copy failed");
  }
};

// A load that fails leaves registered blocks without their K/V: the engine fails as a whole
// rather than serve them.
TEST(EngineFailure, AFailedCopyFromTheHostTierFailsTheEngine) {
  TinyModel m;
  EngineConfig c = m.engine_config(4);
  c.num_kv_blocks = 1;
  const std::int64_t block_bytes = Engine(c).info().kv_cache_bytes;
  c.num_kv_blocks = 8;
  c.host_kv_cache_bytes = 32 * block_bytes;
  Engine engine = engine::EngineTestAccess::make(c, [](std::unique_ptr<backend::Backend> inner) {
    return std::make_unique<FailingLoads>(std::move(inner));
  });
  const auto a = prompt(1, 28, m.vocab()), b = prompt(2, 28, m.vocab());
  EXPECT_EQ(engine.generate({a}, testing::greedy(3))[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(engine.generate({b}, testing::greedy(3))[0].finish_reason, FinishReason::kLength);
  const auto out = engine.generate({a}, testing::greedy(3));  // a's blocks are in the tier
  EXPECT_EQ(out[0].finish_reason, FinishReason::kError);
  EXPECT_THAT(out[0].error,
              HasSubstr("copying KV blocks (host tier or partial-block reuse) failed: pinned copy "
                        "failed"));
  EXPECT_FALSE(engine.health().ok);
  EXPECT_THROW(engine.generate({a}, testing::greedy(1)), Error);
}

TEST(EngineCallbacks, GenerateFromACallbackThrowsInsteadOfDeadlocking) {
  TinyModel m;
  Engine engine(m.engine_config());
  std::string error;
  ErrorCode code = ErrorCode::kInternal;
  Updates updates;
  auto record = updates.callback_for(0);
  engine.submit({prompt(0, 6, m.vocab()), testing::greedy(3), {}, {}}, [&](const RequestUpdate& u) {
    if (u.finished && error.empty()) {
      try {
        engine.generate({prompt(1, 6, m.vocab())}, testing::greedy(2));
      } catch (const Error& e) {
        error = e.what();
        code = e.code();
      }
    }
    record(u);
  });
  ASSERT_TRUE(updates.wait_for_finals(1));
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(error, HasSubstr("called from a request callback"));
  // The engine goes on.
  EXPECT_TRUE(engine.health().ok);
  EXPECT_EQ(engine.generate({prompt(2, 6, m.vocab())}, testing::greedy(2))[0].token_ids.size(), 2u);
}

TEST(EngineCallbacks, DestroyingTheEngineFromACallbackEndsEveryRequestOnce) {
  TinyModel m;
  auto engine = std::make_unique<Engine>(m.engine_config());
  Updates updates;
  for (int i = 1; i < 4; ++i)
    engine->submit({prompt(i, 30, m.vocab()), testing::greedy(20), {}, {}},
                   updates.callback_for(i));
  // The last use of `engine` on this thread: from here on its callback owns it.
  auto record = updates.callback_for(0);
  engine->submit({prompt(0, 6, m.vocab()), testing::greedy(20), {}, {}},
                 [&](const RequestUpdate& u) {
                   record(u);
                   if (!u.finished) engine.reset();  // on the engine's own thread
                 });
  ASSERT_TRUE(updates.wait_for_finals(4)) << "destroying from a callback deadlocked";
  for (const auto& [i, r] : updates.snapshot()) {
    EXPECT_EQ(r.finals, 1) << "request " << i;
    EXPECT_NE(r.output.finish_reason, FinishReason::kError) << r.output.error;
  }
  EXPECT_EQ(engine, nullptr);
}

}  // namespace
}  // namespace cachet

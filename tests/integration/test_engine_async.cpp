// The asynchronous API: submit() with a streaming callback, abort(), concurrent callers and
// engine destruction with requests in flight. Every wait is bounded (a hang fails the test
// instead of blocking the run), and ordering is forced with callbacks that park the engine's
// thread rather than with sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cachet/engine.h"
#include "model/make_model.h"
#include "model/model_config.h"
#include "support/signal.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using testing::TempDir;
using testing::TinyModel;

constexpr auto kWaitLimit = std::chrono::seconds(30);

std::vector<TokenId> prompt(std::uint64_t seed, int length, int vocab) {
  std::vector<TokenId> ids;
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < length; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ids.push_back(static_cast<TokenId>(x % static_cast<std::uint64_t>(vocab)));
  }
  return ids;
}

std::vector<TokenId> concat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.logprobs = 2;
  return p;
}

SamplingParams seeded(int max_tokens, std::uint64_t seed) {
  SamplingParams p = greedy(max_tokens);
  p.temperature = 1.0f;
  p.seed = seed;
  return p;
}

// Token ids and logprobs equal bit for bit.
bool same_output(const RequestOutput& a, const RequestOutput& b) {
  if (a.finish_reason != b.finish_reason || a.token_ids != b.token_ids ||
      a.logprobs.size() != b.logprobs.size())
    return false;
  for (std::size_t t = 0; t < a.logprobs.size(); ++t) {
    if (a.logprobs[t].size() != b.logprobs[t].size()) return false;
    for (std::size_t k = 0; k < a.logprobs[t].size(); ++k)
      if (a.logprobs[t][k].id != b.logprobs[t][k].id ||
          std::memcmp(&a.logprobs[t][k].logprob, &b.logprobs[t][k].logprob, sizeof(float)) != 0)
        return false;
  }
  return true;
}

void expect_blocks_released(const Engine& engine) {
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.blocks_in_use, 0);
  EXPECT_EQ(s.blocks_free + s.blocks_cached, engine.info().num_kv_blocks);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_waiting, 0);
}

// Everything one submitted request received, checked for the callback contract: non-final
// updates carry exactly one new token and no output; exactly one final update, last, with
// an output; all on one thread (the engine's).
struct Trace {
  std::mutex mutex;
  std::condition_variable cv;
  RequestId id = 0;
  std::vector<TokenId> streamed;
  std::vector<std::vector<TokenLogprob>> streamed_logprobs;
  std::vector<std::int32_t> cached_tokens;  // num_cached_tokens of every update
  int num_updates = 0;
  int num_finals = 0;
  bool update_after_final = false;
  bool bad_update = false;  // a non-final update without exactly one token, or with an output
  bool wrong_id = false;
  std::optional<RequestOutput> output;
  std::thread::id thread;
  bool mixed_threads = false;

  RequestCallback callback() {
    return [this](const RequestUpdate& u) { record(u); };
  }

  void record(const RequestUpdate& u) {
    std::lock_guard lock(mutex);
    if (thread == std::thread::id{}) thread = std::this_thread::get_id();
    mixed_threads |= thread != std::this_thread::get_id();
    if (id != 0 && u.id != id) wrong_id = true;
    if (num_finals > 0) update_after_final = true;
    ++num_updates;
    streamed.insert(streamed.end(), u.new_token_ids.begin(), u.new_token_ids.end());
    streamed_logprobs.insert(streamed_logprobs.end(), u.new_logprobs.begin(), u.new_logprobs.end());
    cached_tokens.push_back(u.num_cached_tokens);
    if (u.finished) {
      ++num_finals;
      if (u.output == nullptr) {
        bad_update = true;
      } else {
        output = *u.output;
      }
    } else if (u.new_token_ids.size() != 1 || u.output != nullptr) {
      bad_update = true;
    }
    cv.notify_all();
  }

  // Waits for the final update; false (and a test failure) after kWaitLimit.
  bool wait_final() {
    std::unique_lock lock(mutex);
    if (cv.wait_for(lock, kWaitLimit, [&] { return num_finals > 0; })) return true;
    ADD_FAILURE() << "request " << id << " got no final update within the time limit";
    return false;
  }

  // Waits until at least `n` tokens have streamed.
  bool wait_tokens(std::size_t n) {
    std::unique_lock lock(mutex);
    if (cv.wait_for(lock, kWaitLimit, [&] { return streamed.size() >= n || num_finals > 0; }) &&
        streamed.size() >= n)
      return true;
    ADD_FAILURE() << "request " << id << " did not stream " << n << " tokens";
    return false;
  }

  void expect_contract() {
    std::lock_guard lock(mutex);
    EXPECT_EQ(num_finals, 1) << "request " << id;
    EXPECT_FALSE(update_after_final) << "request " << id;
    EXPECT_FALSE(bad_update) << "request " << id;
    EXPECT_FALSE(wrong_id) << "request " << id;
    EXPECT_FALSE(mixed_threads) << "request " << id;
    EXPECT_NE(thread, std::this_thread::get_id()) << "callbacks run on the engine's thread";
    ASSERT_TRUE(output.has_value());
    EXPECT_EQ(streamed, output->token_ids) << "streamed tokens concatenate to the output";
  }
};

// Submits with a Trace; the id is stored before any update can be checked against it
// (updates may arrive before submit() returns, so the check tolerates id 0 until then).
RequestId submit_traced(Engine& engine, const Request& r, Trace& trace) {
  RequestId id = engine.submit(r, trace.callback());
  std::lock_guard lock(trace.mutex);
  trace.id = id;
  return id;
}

// Runs `fn` on another thread; fails and ends the process if it does not return within the
// limit (a hung join cannot be recovered from).
void run_bounded(const char* what, std::function<void()> fn) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  auto m = std::make_shared<std::mutex>();
  auto cv = std::make_shared<std::condition_variable>();
  std::thread t([=] {
    fn();
    std::lock_guard lock(*m);
    done->store(true);
    cv->notify_all();
  });
  std::unique_lock lock(*m);
  if (!cv->wait_for(lock, kWaitLimit, [&] { return done->load(); })) {
    std::fprintf(stderr, "FATAL: %s did not finish within the time limit\n", what);
    std::fflush(stderr);
    std::_Exit(1);
  }
  lock.unlock();
  t.join();
}

using testing::Signal;

TEST(EngineAsync, StreamedTokensConcatenateToTheFinalOutput) {
  TinyModel m;
  Engine engine(m.engine_config());
  std::vector<Request> requests = {{prompt(1, 7, m.vocab()), greedy(9), {}},
                                   {prompt(2, 1, m.vocab()), greedy(1), {}},  // final update only
                                   {prompt(3, 30, m.vocab()), seeded(12, 5), {}},
                                   {prompt(4, 12, m.vocab()), greedy(5), {}},
                                   {prompt(1, 9, m.vocab()), greedy(6), {}}};  // a cache hit
  requests[0].params.logprobs = 2;
  requests[2].params.logprobs = 0;
  auto reference = engine.generate(requests);
  std::vector<std::unique_ptr<Trace>> traces;
  std::vector<RequestId> ids;
  for (const auto& r : requests) {
    traces.push_back(std::make_unique<Trace>());
    ids.push_back(submit_traced(engine, r, *traces.back()));
  }
  for (std::size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(traces[i]->wait_final());
    traces[i]->expect_contract();
    const RequestOutput& out = *traces[i]->output;
    EXPECT_EQ(out.prompt_token_ids, requests[i].prompt_token_ids);
    EXPECT_EQ(out.finish_reason, FinishReason::kLength);
    EXPECT_EQ(out.token_ids.size(), static_cast<std::size_t>(requests[i].params.max_tokens));
    EXPECT_TRUE(same_output(out, reference[i]));
    // One update per generated token but the last, which comes with the final update.
    EXPECT_EQ(traces[i]->num_updates, requests[i].params.max_tokens);
    // The streamed logprobs are the final ones, and every update knows the cached tokens.
    ASSERT_EQ(traces[i]->streamed_logprobs.size(), out.logprobs.size());
    for (std::size_t t = 0; t < out.logprobs.size(); ++t) {
      ASSERT_EQ(traces[i]->streamed_logprobs[t].size(), out.logprobs[t].size());
      for (std::size_t k = 0; k < out.logprobs[t].size(); ++k) {
        EXPECT_EQ(traces[i]->streamed_logprobs[t][k].id, out.logprobs[t][k].id);
        EXPECT_EQ(traces[i]->streamed_logprobs[t][k].logprob, out.logprobs[t][k].logprob);
      }
    }
    for (std::int32_t c : traces[i]->cached_tokens) EXPECT_EQ(c, out.num_cached_tokens);
  }
  // Ids are unique.
  for (std::size_t i = 0; i < ids.size(); ++i)
    for (std::size_t j = i + 1; j < ids.size(); ++j) EXPECT_NE(ids[i], ids[j]);
  expect_blocks_released(engine);
}

TEST(EngineAsync, BadRequestGetsExactlyOneFinalErrorUpdate) {
  TinyModel m;
  Engine engine(m.engine_config());
  Trace trace;
  submit_traced(engine, {{}, greedy(3), {}}, trace);
  ASSERT_TRUE(trace.wait_final());
  trace.expect_contract();
  EXPECT_EQ(trace.output->finish_reason, FinishReason::kError);
  EXPECT_FALSE(trace.output->error.empty());
  EXPECT_EQ(trace.num_updates, 1);
  expect_blocks_released(engine);
}

TEST(EngineAsync, ManyThreadsSubmitConcurrentlyAndEachGetsItsOwnResults) {
  TinyModel m;
  constexpr int kThreads = 6, kPerThread = 4;
  auto request_for = [&](int t, int i) {
    const int k = t * kPerThread + i;
    // Some share a prefix so the cache and in-batch dedup are exercised across threads.
    auto p = concat(k % 2 ? prompt(500, 9, m.vocab()) : std::vector<TokenId>{},
                    prompt(600 + k, 2 + k % 7, m.vocab()));
    return Request{p, k % 3 == 0 ? seeded(4 + k % 5, k) : greedy(4 + k % 5), {}};
  };
  // Expected outputs: each request alone on its own engine run, one at a time.
  std::vector<std::vector<RequestOutput>> want(kThreads);
  {
    Engine engine(m.engine_config());
    for (int t = 0; t < kThreads; ++t)
      for (int i = 0; i < kPerThread; ++i)
        want[t].push_back(engine.generate({request_for(t, i)})[0]);
  }
  Engine engine(m.engine_config());
  std::vector<std::vector<RequestOutput>> got(kThreads);
  std::vector<std::string> problems(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();  // all threads submit at the same moment
      // Half through generate(), half through submit() and a private wait.
      got[t] = engine.generate({request_for(t, 0), request_for(t, 1)});
      Trace a, b;
      submit_traced(engine, request_for(t, 2), a);
      submit_traced(engine, request_for(t, 3), b);
      for (Trace* tr : {&a, &b}) {
        if (!tr->wait_final()) {
          problems[t] = "timeout";
          return;
        }
        std::lock_guard lock(tr->mutex);
        if (tr->num_finals != 1 || tr->bad_update || tr->streamed != tr->output->token_ids)
          problems[t] = "callback contract broken";
        got[t].push_back(*tr->output);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    SCOPED_TRACE("thread " + std::to_string(t));
    EXPECT_EQ(problems[t], "");
    ASSERT_EQ(got[t].size(), static_cast<std::size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i)
      EXPECT_TRUE(same_output(got[t][i], want[t][i])) << "request " << i;
  }
  expect_blocks_released(engine);
}

// Companion requests that must come out exactly as in a run without the aborts.
std::vector<Request> bystanders(int vocab) {
  return {{prompt(70, 6, vocab), greedy(12), {}}, {prompt(71, 3, vocab), seeded(12, 3), {}}};
}

std::vector<RequestOutput> bystanders_alone(const TinyModel& m) {
  Engine engine(m.engine_config());
  return engine.generate(bystanders(m.vocab()));
}

// Deterministic mid-prefill abort: everything is driven from callbacks on the engine's
// thread. S's first token submits L (1000 tokens, prefilled 16 tokens per step at most);
// S's third token aborts L, which then has computed a few chunks and no token.
TEST(EngineAsync, AbortMidPrefillEndsTheRequestOnceAndLeavesOthersAlone) {
  TinyModel m;
  const auto want = bystanders_alone(m);
  EngineConfig c = m.engine_config();
  c.max_num_batched_tokens = 16;
  Engine engine(c);
  Trace long_trace;
  std::atomic<RequestId> long_id{0};
  std::atomic<bool> abort_result{false};
  std::atomic<std::int64_t> running_at_abort{-1}, waiting_at_abort{-1};
  Request long_request{prompt(80, 1000, m.vocab()), greedy(5), {}};
  Trace s_trace;
  int s_tokens = 0;  // engine thread only
  auto s_callback = [&](const RequestUpdate& u) {
    s_trace.record(u);
    s_tokens += static_cast<int>(u.new_token_ids.size());
    if (u.finished) return;
    if (s_tokens == 1) long_id = engine.submit(long_request, long_trace.callback());
    if (s_tokens == 3) {
      const EngineStats st = engine.stats();  // the state after the step that made token 3
      running_at_abort = st.num_running;
      waiting_at_abort = st.num_waiting;
      abort_result = engine.abort(long_id);
    }
  };
  // The engine's thread is parked until all three are submitted, so they start together
  // (otherwise a bystander may run ahead and finish before S's third token).
  Signal all_submitted;
  engine.submit({prompt(91, 2, m.vocab()), greedy(1), {}}, [&](const RequestUpdate& u) {
    if (u.finished) all_submitted.wait();
  });
  std::vector<Trace> others(2);
  for (std::size_t i = 0; i < 2; ++i) submit_traced(engine, bystanders(m.vocab())[i], others[i]);
  engine.submit({prompt(90, 3, m.vocab()), greedy(20), {}}, s_callback);
  all_submitted.raise();

  ASSERT_TRUE(s_trace.wait_final());
  ASSERT_TRUE(long_trace.wait_final());
  EXPECT_TRUE(abort_result);
  // L was running (admitted, prefilling), not waiting, when it was aborted.
  EXPECT_EQ(waiting_at_abort, 0);
  EXPECT_EQ(running_at_abort, 4);
  long_trace.expect_contract();
  EXPECT_EQ(long_trace.output->finish_reason, FinishReason::kAborted);
  EXPECT_TRUE(long_trace.output->token_ids.empty());
  EXPECT_EQ(long_trace.num_updates, 1);
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(others[i].wait_final());
    others[i].expect_contract();
    EXPECT_TRUE(same_output(*others[i].output, want[i])) << "bystander " << i;
  }
  s_trace.expect_contract();
  EXPECT_EQ(s_trace.output->finish_reason, FinishReason::kLength);
  EXPECT_FALSE(engine.abort(long_id));  // long finished (aborted) and delivered
  expect_blocks_released(engine);
}

// In-batch dedup meets abort: A computes a long prefix that B shares, so B waits for A's
// blocks; A is aborted mid-prefill. B must then run on its own, hitting exactly the blocks A
// registered, and produce what it produces without a cache. Driven from C's callbacks:
// token 1 submits A and B (both join the next step), token 3 aborts A.
//   step 2: C decodes, A prefills 15 tokens, B waits on A's first block
//   step 3: C decodes, A prefills 15 more (30: 7 full blocks registered), B waits on block 8
//   step 4: A is aborted; B is admitted with A's 7 blocks: 28 cached tokens.
TEST(EngineAsync, AbortingTheRequestThatComputesASharedPrefixReleasesTheWaiters) {
  TinyModel m;
  EngineConfig c = m.engine_config();
  c.max_num_batched_tokens = 16;
  const auto shared = prompt(140, 300, m.vocab());
  const Request a{concat(shared, prompt(141, 5, m.vocab())), greedy(4), {}};
  const Request b{concat(shared, prompt(142, 6, m.vocab())), greedy(6), {}};
  RequestOutput want_b;
  {
    EngineConfig off = c;
    off.enable_prefix_caching = false;
    Engine ref(off);
    want_b = ref.generate({b})[0];
  }
  Engine engine(c);
  Trace a_trace, b_trace, c_trace;
  std::atomic<RequestId> a_id{0};
  std::atomic<bool> aborted{false};
  int c_tokens = 0;  // engine thread only
  engine.submit({prompt(143, 3, m.vocab()), greedy(10), {}}, [&](const RequestUpdate& u) {
    c_trace.record(u);
    c_tokens += static_cast<int>(u.new_token_ids.size());
    if (u.finished) return;
    if (c_tokens == 1) {
      a_id = engine.submit(a, a_trace.callback());
      engine.submit(b, b_trace.callback());
    } else if (c_tokens == 3) {
      aborted = engine.abort(a_id);
    }
  });
  ASSERT_TRUE(a_trace.wait_final());
  ASSERT_TRUE(b_trace.wait_final());
  ASSERT_TRUE(c_trace.wait_final());
  EXPECT_TRUE(aborted);
  EXPECT_EQ(a_trace.output->finish_reason, FinishReason::kAborted);
  EXPECT_TRUE(a_trace.output->token_ids.empty());
  b_trace.expect_contract();
  EXPECT_EQ(b_trace.output->num_cached_tokens, 28);
  EXPECT_TRUE(same_output(*b_trace.output, want_b));
  expect_blocks_released(engine);
}

// Mid-decode abort from another thread: D's third-token callback parks the engine's thread
// until the test thread has called abort(), so D ends with exactly three tokens.
TEST(EngineAsync, AbortMidDecodeFromAnotherThread) {
  TinyModel m;
  const auto want = bystanders_alone(m);
  Engine engine(m.engine_config());
  Signal at_three, aborted;
  Trace d_trace;
  auto d_callback = [&](const RequestUpdate& u) {
    d_trace.record(u);
    if (!u.finished && d_trace.streamed.size() == 3) {
      at_three.raise();
      aborted.wait();  // bounded
    }
  };
  std::vector<Trace> others(2);
  for (std::size_t i = 0; i < 2; ++i) submit_traced(engine, bystanders(m.vocab())[i], others[i]);
  const RequestId d = engine.submit({prompt(91, 5, m.vocab()), greedy(3000), {}}, d_callback);
  ASSERT_TRUE(at_three.wait());
  EXPECT_TRUE(engine.abort(d));
  EXPECT_TRUE(engine.abort(d));  // a second abort before the first is processed: still one final
  aborted.raise();
  ASSERT_TRUE(d_trace.wait_final());
  {
    std::lock_guard lock(d_trace.mutex);
    d_trace.id = d;
  }
  d_trace.expect_contract();
  EXPECT_EQ(d_trace.output->finish_reason, FinishReason::kAborted);
  EXPECT_EQ(d_trace.output->token_ids.size(), 3u);
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(others[i].wait_final());
    others[i].expect_contract();
    EXPECT_TRUE(same_output(*others[i].output, want[i])) << "bystander " << i;
  }
  expect_blocks_released(engine);
}

// A request that waits in the scheduler (max_num_seqs 1 keeps it out) is aborted before it
// ever runs. The running request's callback parks the engine twice: at its first token
// (the second request is submitted) and at its third (by then the second has been added and
// waits; it is aborted).
TEST(EngineAsync, AbortOfAWaitingRequest) {
  TinyModel m;
  EngineConfig c = m.engine_config();
  c.max_num_seqs = 1;
  Engine engine(c);
  Signal parked1, release1, parked3, release3;
  Trace first, second;
  std::atomic<std::int64_t> waiting_at_abort{-1};
  auto first_callback = [&](const RequestUpdate& u) {
    first.record(u);
    if (u.finished) return;
    std::size_t n;
    {
      std::lock_guard lock(first.mutex);
      n = first.streamed.size();
    }
    if (n == 1) {
      parked1.raise();
      release1.wait();
    } else if (n == 3) {
      waiting_at_abort = engine.stats().num_waiting;
      parked3.raise();
      release3.wait();
    }
  };
  engine.submit({prompt(92, 4, m.vocab()), greedy(30), {}}, first_callback);
  ASSERT_TRUE(parked1.wait());
  const RequestId second_id =
      submit_traced(engine, {prompt(93, 4, m.vocab()), greedy(30), {}}, second);
  release1.raise();
  ASSERT_TRUE(parked3.wait());
  EXPECT_EQ(waiting_at_abort, 1);
  EXPECT_TRUE(engine.abort(second_id));
  release3.raise();
  ASSERT_TRUE(second.wait_final());
  second.expect_contract();
  EXPECT_EQ(second.output->finish_reason, FinishReason::kAborted);
  EXPECT_TRUE(second.output->token_ids.empty());
  EXPECT_EQ(second.num_updates, 1);
  ASSERT_TRUE(first.wait_final());
  EXPECT_EQ(first.output->finish_reason, FinishReason::kLength);
  EXPECT_EQ(first.output->token_ids.size(), 30u);
  expect_blocks_released(engine);
}

TEST(EngineAsync, AbortOfAnUnknownOrFinishedIdReturnsFalse) {
  TinyModel m;
  Engine engine(m.engine_config());
  EXPECT_FALSE(engine.abort(0));
  EXPECT_FALSE(engine.abort(123456789));
  Trace a;
  const RequestId id = submit_traced(engine, {prompt(94, 4, m.vocab()), greedy(3), {}}, a);
  ASSERT_TRUE(a.wait_final());
  // The engine is done with `a` once a later request's final update has been delivered (a's
  // bookkeeping happens right after its own callback returns).
  Trace b;
  submit_traced(engine, {prompt(95, 4, m.vocab()), greedy(2), {}}, b);
  ASSERT_TRUE(b.wait_final());
  EXPECT_FALSE(engine.abort(id));
  EXPECT_EQ(a.output->finish_reason, FinishReason::kLength);
  EXPECT_FALSE(engine.abort(id + 1000));  // never issued
  expect_blocks_released(engine);
}

// Inside its own final update a request has finished: abort() must say so. (The engine
// forgets the id only after the callback returns, so abort() answers true here.)
TEST(EngineAsync, AbortFromTheFinalCallbackOfTheSameRequestReturnsFalse) {
  TinyModel m;
  Engine engine(m.engine_config());
  Signal done;
  std::atomic<int> result{-1};
  engine.submit({prompt(96, 4, m.vocab()), greedy(2), {}}, [&](const RequestUpdate& u) {
    if (!u.finished) return;
    result = engine.abort(u.id) ? 1 : 0;
    done.raise();
  });
  ASSERT_TRUE(done.wait());
  EXPECT_EQ(result, 0)
      << "abort() of a request whose final update is being delivered returned true";
  expect_blocks_released(engine);
}

// Destroying the engine with requests decoding, waiting and not yet picked up: every callback
// gets exactly one final update (kAborted) and the destructor returns.
TEST(EngineAsync, DestroyingTheEngineAbortsEveryRequestInFlight) {
  TinyModel m;
  EngineConfig c = m.engine_config();
  c.max_num_seqs = 2;  // the third and later requests wait
  auto engine = std::make_unique<Engine>(c);
  // Traces outlive the engine: callbacks may run until the destructor returns.
  std::vector<std::unique_ptr<Trace>> traces;
  for (int i = 0; i < 4; ++i) {
    traces.push_back(std::make_unique<Trace>());
    submit_traced(*engine, {prompt(100 + i, 5, m.vocab()), greedy(3000), {}}, *traces.back());
  }
  ASSERT_TRUE(traces[0]->wait_tokens(2));
  ASSERT_TRUE(traces[1]->wait_tokens(2));
  // More requests, and destruction right away: some may still be in the inbox.
  for (int i = 4; i < 7; ++i) {
    traces.push_back(std::make_unique<Trace>());
    submit_traced(*engine, {prompt(100 + i, 50, m.vocab()), greedy(3000), {}}, *traces.back());
  }
  run_bounded("~Engine", [&] { engine.reset(); });
  for (std::size_t i = 0; i < traces.size(); ++i) {
    SCOPED_TRACE(i);
    traces[i]->expect_contract();
    ASSERT_TRUE(traces[i]->output.has_value());
    EXPECT_EQ(traces[i]->output->finish_reason, FinishReason::kAborted);
    EXPECT_LT(traces[i]->output->token_ids.size(), 3000u);
  }
}

// submit() after the engine began shutting down (from a callback during the final aborts)
// throws inside the callback, which the engine catches; nothing hangs.
TEST(EngineAsync, DestroyingTheEngineWhileCallbacksSubmitMore) {
  TinyModel m;
  auto engine = std::make_unique<Engine>(m.engine_config());
  // The callback holds the Engine's address: while the destructor runs, `engine` itself may
  // already be null.
  Engine* raw = engine.get();
  std::atomic<int> finals{0}, submit_failures{0};
  std::function<void(const RequestUpdate&)> resubmit;
  resubmit = [&](const RequestUpdate& u) {
    if (!u.finished) return;
    ++finals;
    try {
      raw->submit({prompt(110, 3, m.vocab()), greedy(2), {}}, [&finals](const RequestUpdate& v) {
        if (v.finished) ++finals;
      });
    } catch (const Error&) {
      ++submit_failures;
    }
  };
  Trace t;
  submit_traced(*engine, {prompt(111, 3, m.vocab()), greedy(3000), {}}, t);
  engine->submit({prompt(112, 3, m.vocab()), greedy(3000), {}}, resubmit);
  ASSERT_TRUE(t.wait_tokens(1));
  run_bounded("~Engine", [&] { engine.reset(); });
  // The resubmitting callback ran once (its own final); its submit hit a stopping engine.
  EXPECT_EQ(finals, 1);
  EXPECT_EQ(submit_failures, 1);
  t.expect_contract();
  EXPECT_EQ(t.output->finish_reason, FinishReason::kAborted);
}

TEST(EngineAsync, ThrowingCallbacksDoNotBreakTheEngine) {
  TinyModel m;
  Engine engine(m.engine_config());
  std::vector<Request> normal = {{prompt(120, 6, m.vocab()), greedy(8), {}},
                                 {prompt(121, 9, m.vocab()), greedy(8), {}}};
  RequestOutput want_a, want_b;
  {
    Engine ref(m.engine_config());
    auto w = ref.generate(normal);
    want_a = w[0];
    want_b = w[1];
  }
  std::atomic<int> std_calls{0}, std_finals{0}, int_calls{0}, int_finals{0};
  engine.submit({prompt(122, 5, m.vocab()), greedy(6), {}}, [&](const RequestUpdate& u) {
    ++std_calls;
    if (u.finished) ++std_finals;
    throw std::runtime_error("callback failure (expected by the test)");
  });
  engine.submit({prompt(123, 5, m.vocab()), greedy(6), {}}, [&](const RequestUpdate& u) {
    ++int_calls;
    if (u.finished) ++int_finals;
    throw 42;  // not even a std::exception
  });
  Trace a, b;
  submit_traced(engine, normal[0], a);
  submit_traced(engine, normal[1], b);
  ASSERT_TRUE(a.wait_final());
  ASSERT_TRUE(b.wait_final());
  a.expect_contract();
  b.expect_contract();
  EXPECT_TRUE(same_output(*a.output, want_a));
  EXPECT_TRUE(same_output(*b.output, want_b));
  // The engine still serves new work, after which the throwing requests are surely done.
  auto after = engine.generate(normal);
  EXPECT_TRUE(same_output(after[0], want_a));
  EXPECT_EQ(std_calls, 6);  // a throw does not stop later updates
  EXPECT_EQ(std_finals, 1);
  EXPECT_EQ(int_calls, 6);
  EXPECT_EQ(int_finals, 1);
  expect_blocks_released(engine);
}

// A callback may submit: a three-turn chat where each turn's final update submits the next
// (prompt + answer + new user tokens). Turn outputs equal generate() of the same prompts, and
// later turns hit the cache.
TEST(EngineAsync, SubmitFromInsideACallback) {
  TinyModel m;
  Engine engine(m.engine_config());
  struct Turn {
    std::vector<TokenId> prompt;
    RequestOutput output;
  };
  std::mutex mutex;
  std::vector<Turn> turns;
  Signal all_done;
  std::function<void(std::vector<TokenId>)> ask;
  ask = [&](std::vector<TokenId> p) {
    engine.submit({p, greedy(5), {}}, [&, p](const RequestUpdate& u) {
      if (!u.finished) return;
      std::size_t n;
      {
        std::lock_guard lock(mutex);
        turns.push_back({p, *u.output});
        n = turns.size();
      }
      if (n == 3) {
        all_done.raise();
        return;
      }
      ask(concat(concat(p, u.output->token_ids),
                 prompt(130 + n, 3, m.vocab())));  // from the engine's thread
    });
  };
  ask(prompt(130, 10, m.vocab()));
  ASSERT_TRUE(all_done.wait());
  ASSERT_EQ(turns.size(), 3u);
  Engine ref(m.engine_config());
  for (std::size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(turns[i].output.finish_reason, FinishReason::kLength);
    EXPECT_TRUE(same_output(turns[i].output, ref.generate({turns[i].prompt}, greedy(5))[0]));
    if (i > 0) {
      EXPECT_EQ(turns[i].output.num_cached_tokens,
                (static_cast<int>(turns[i - 1].prompt.size()) + 4) / 4 * 4);
    }
  }
  expect_blocks_released(engine);
}

}  // namespace
}  // namespace cachet

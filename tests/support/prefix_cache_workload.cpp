#include "support/prefix_cache_workload.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>

namespace cachet::testing::workload {

std::vector<TokenId> prompt(std::uint64_t seed, int length, int vocab) {
  Rng rng(seed);
  std::vector<TokenId> ids;
  for (int i = 0; i < length; ++i) ids.push_back(static_cast<TokenId>(rng.uniform(1, vocab - 1)));
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
  p.logprobs = 3;
  return p;
}

SamplingParams seeded(int max_tokens, std::uint64_t seed) {
  SamplingParams p = greedy(max_tokens);
  p.temperature = 1.0f;
  p.seed = seed;
  return p;
}

namespace {

// Empty when both lists are bitwise equal, else the first difference.
std::string diff_logprobs(const std::vector<TokenLogprob>& got,
                          const std::vector<TokenLogprob>& want) {
  if (got.size() != want.size())
    return "size " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
  for (std::size_t k = 0; k < got.size(); ++k) {
    // Bitwise: the cache must not change a single bit of the computation.
    if (got[k].id != want[k].id ||
        std::memcmp(&got[k].logprob, &want[k].logprob, sizeof(float)) != 0) {
      std::ostringstream s;
      s.precision(9);
      s << "entry " << k << ": (" << got[k].id << ", " << got[k].logprob << ") vs (" << want[k].id
        << ", " << want[k].logprob << ")";
      return s.str();
    }
  }
  return {};
}

}  // namespace

std::string diff(const RequestOutput& got, const RequestOutput& want) {
  std::ostringstream s;
  if (got.finish_reason != want.finish_reason)
    return "finish reason differs; error: " + got.error + want.error;
  if (got.token_ids != want.token_ids) {
    s << "token ids differ:";
    for (TokenId t : got.token_ids) s << ' ' << t;
    s << " vs";
    for (TokenId t : want.token_ids) s << ' ' << t;
    return s.str();
  }
  if (got.logprobs.size() != want.logprobs.size()) return "logprobs count differs";
  for (std::size_t t = 0; t < got.logprobs.size(); ++t)
    if (auto d = diff_logprobs(got.logprobs[t], want.logprobs[t]); !d.empty())
      return "logprobs of token " + std::to_string(t) + ": " + d;
  if (got.prompt_logprobs.size() != want.prompt_logprobs.size())
    return "prompt logprobs count differs";
  for (std::size_t i = 0; i < got.prompt_logprobs.size(); ++i) {
    if (got.prompt_logprobs[i].has_value() != want.prompt_logprobs[i].has_value())
      return "prompt logprobs presence differs at " + std::to_string(i);
    if (got.prompt_logprobs[i])
      if (auto d = diff_logprobs(*got.prompt_logprobs[i], *want.prompt_logprobs[i]); !d.empty())
        return "prompt logprobs at " + std::to_string(i) + ": " + d;
  }
  return {};
}

void expect_same_outputs(const std::vector<RequestOutput>& got,
                         const std::vector<RequestOutput>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NE(got[i].finish_reason, FinishReason::kError)
        << "request " << i << ": " << got[i].error;
    EXPECT_EQ(diff(got[i], want[i]), "") << "request " << i;
  }
}

void expect_blocks_released(const Engine& engine) {
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.blocks_in_use, 0);
  EXPECT_EQ(s.blocks_free + s.blocks_cached, engine.info().num_kv_blocks);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_waiting, 0);
}

std::vector<RequestOutput> generate_together(Engine& engine, const std::vector<Request>& requests) {
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    bool gate_entered = false;
    bool released = false;
    std::vector<RequestOutput> outputs;
    std::size_t remaining = 0;
  };
  auto state = std::make_shared<State>();
  state->outputs.resize(requests.size());
  state->remaining = requests.size();
  SamplingParams one = greedy(1);
  one.logprobs.reset();
  engine.submit({{0}, one, {}}, [state](const RequestUpdate& u) {
    if (!u.finished) return;
    std::unique_lock lock(state->mutex);
    state->gate_entered = true;
    state->cv.notify_all();
    // Bounded so that a broken test cannot hang the engine forever.
    state->cv.wait_for(lock, kWaitLimit, [&] { return state->released; });
  });
  {
    std::unique_lock lock(state->mutex);
    if (!state->cv.wait_for(lock, kWaitLimit, [&] { return state->gate_entered; })) {
      ADD_FAILURE() << "the gate request never finished";
      return {};
    }
  }
  for (std::size_t i = 0; i < requests.size(); ++i) {
    engine.submit(requests[i], [state, i](const RequestUpdate& u) {
      if (!u.finished) return;
      std::lock_guard lock(state->mutex);
      state->outputs[i] = *u.output;
      --state->remaining;
      state->cv.notify_all();
    });
  }
  std::unique_lock lock(state->mutex);
  state->released = true;
  state->cv.notify_all();
  if (!state->cv.wait_for(lock, kWaitLimit, [&] { return state->remaining == 0; }))
    ADD_FAILURE() << "requests did not finish within the time limit";
  return state->outputs;
}

std::vector<Wave> make_workload(std::uint64_t seed, int vocab, int block_size,
                                const WorkloadOptions& o) {
  Rng rng(seed);
  std::vector<std::vector<TokenId>> docs;
  for (int d = 0; d < 3; ++d) docs.push_back(prompt(seed * 100 + d, 90, vocab));
  std::vector<std::vector<TokenId>> previous;
  std::vector<Wave> waves;
  for (int w = 0; w < o.num_waves; ++w) {
    Wave wave;
    wave.together = !o.sequential_only && w % 2 == 1;
    for (int r = 0; r < o.requests_per_wave; ++r) {
      std::vector<TokenId> p;
      const int kind = rng.uniform(0, 99);
      if (kind < 15 && !previous.empty()) {
        p = previous[static_cast<std::size_t>(
            rng.uniform(0, static_cast<int>(previous.size()) - 1))];
      } else if (kind < 25 && block_size > 1) {
        const auto& doc = docs[static_cast<std::size_t>(rng.uniform(0, 2))];
        p.assign(doc.begin(), doc.begin() + rng.uniform(1, block_size - 1));
      } else {
        const auto& doc = docs[static_cast<std::size_t>(rng.uniform(0, 2))];
        const int doc_len = rng.uniform(0, 80);
        const int shared = doc_len * rng.uniform(0, 100) / 100;
        p.assign(doc.begin(), doc.begin() + shared);
        p = concat(p, prompt(rng.next(), rng.uniform(0, 20), vocab));
        if (rng.chance(30) && static_cast<int>(p.size()) >= block_size)
          p.resize(p.size() / static_cast<std::size_t>(block_size) *
                   static_cast<std::size_t>(block_size));
        if (p.empty()) p = prompt(rng.next(), 1, vocab);
      }
      previous.push_back(p);
      const int max_tokens = rng.uniform(1, 9);
      Request req{p, greedy(max_tokens), {}};
      if (o.sampled && rng.chance(25)) req.params = seeded(max_tokens, rng.next());
      if (o.prompt_logprobs && rng.chance(15)) req.params.prompt_logprobs = 2;
      wave.requests.push_back(std::move(req));
    }
    waves.push_back(std::move(wave));
  }
  return waves;
}

std::vector<RequestOutput> run_workload(Engine& engine, const std::vector<Wave>& waves) {
  std::vector<RequestOutput> outputs;
  for (const Wave& wave : waves) {
    if (wave.together) {
      auto out = generate_together(engine, wave.requests);
      outputs.insert(outputs.end(), out.begin(), out.end());
    } else {
      for (const Request& r : wave.requests) outputs.push_back(engine.generate({r})[0]);
    }
  }
  return outputs;
}

std::int64_t total_hits(const std::vector<RequestOutput>& outputs) {
  std::int64_t n = 0;
  for (const auto& o : outputs) n += o.num_cached_tokens;
  return n;
}

std::vector<RequestOutput> alone_outputs(const TinyModel& m, std::int32_t block_size,
                                         const std::vector<Request>& rs) {
  Engine engine(m.engine_config(block_size, false));
  std::vector<RequestOutput> out;
  for (const auto& r : rs) out.push_back(engine.generate({r})[0]);
  return out;
}

std::int64_t host_tier_bytes(const TinyModel& m, std::int32_t block_size, std::int64_t blocks) {
  EngineConfig c = m.engine_config(block_size);
  c.num_kv_blocks = 1;
  const EngineInfo info = Engine(c).info();
  return blocks * info.kv_cache_bytes;
}

}  // namespace cachet::testing::workload

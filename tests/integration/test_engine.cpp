// The engine end to end on the CPU backend, against the independent fp64 reference forward
// and against itself under different batching, chunking and memory pressure.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cachet/engine.h"
#include "model/make_model.h"
#include "model/weights.h"
#include "support/reference_model.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

// A tiny model with its weights loaded, for the fp64 reference forward.
struct TinyModel : testing::TinyModel {
  model::ModelWeights weights;

  explicit TinyModel(model::Arch arch, std::uint64_t seed = 11)
      : testing::TinyModel(arch, seed), weights(model::load_weights(dir.path(), config)) {}

  EngineConfig engine_config() const { return testing::TinyModel::engine_config(4, true, 2); }
};

std::vector<TokenId> prompt(std::uint64_t seed, int length, int vocab) {
  std::vector<TokenId> ids;
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < length; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ids.push_back(static_cast<TokenId>(x % static_cast<std::uint64_t>(vocab)));
  }
  return ids;
}

std::vector<double> log_softmax(const std::vector<double>& logits) {
  double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (double l : logits) sum += std::exp(l - max);
  std::vector<double> out(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - max - std::log(sum);
  return out;
}

// Greedy continuation computed by full recomputation with the fp64 reference.
std::vector<TokenId> reference_greedy(const TinyModel& m, std::vector<TokenId> tokens, int steps) {
  std::vector<TokenId> out;
  for (int s = 0; s < steps; ++s) {
    auto logits = testing::reference_forward(m.config, m.weights, tokens).back();
    auto best =
        static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(best);
    tokens.push_back(best);
  }
  return out;
}

using testing::greedy;

class EngineArchTest : public ::testing::TestWithParam<model::Arch> {};

TEST_P(EngineArchTest, GreedyTokensAndLogprobsMatchTheFp64Reference) {
  TinyModel m(GetParam());
  Engine engine(m.engine_config());
  std::vector<std::vector<TokenId>> prompts = {prompt(1, 5, m.config.vocab_size),
                                               prompt(2, 23, m.config.vocab_size),
                                               prompt(3, 1, m.config.vocab_size)};
  SamplingParams p = greedy(16);
  p.logprobs = 3;
  auto outputs = engine.generate(prompts, p);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(i);
    const RequestOutput& out = outputs[i];
    ASSERT_EQ(out.finish_reason, FinishReason::kLength) << out.error;
    EXPECT_EQ(out.token_ids, reference_greedy(m, prompts[i], 16));
    ASSERT_EQ(out.logprobs.size(), 16u);
    std::vector<TokenId> context = prompts[i];
    for (std::size_t t = 0; t < out.token_ids.size(); ++t) {
      auto ref = log_softmax(testing::reference_forward(m.config, m.weights, context).back());
      ASSERT_EQ(out.logprobs[t].size(), 3u);
      EXPECT_EQ(out.logprobs[t][0].id,
                out.token_ids[t]);  // greedy: the sampled token is the top one
      for (const auto& e : out.logprobs[t])
        EXPECT_NEAR(e.logprob, ref[static_cast<std::size_t>(e.id)], 2e-4);
      context.push_back(out.token_ids[t]);
    }
  }
}

TEST_P(EngineArchTest, PromptLogprobsMatchTheFp64Reference) {
  TinyModel m(GetParam());
  EngineConfig c = m.engine_config();
  c.max_num_batched_tokens = 6;  // several prefill chunks
  Engine engine(c);
  auto tokens = prompt(9, 17, m.config.vocab_size);
  SamplingParams p = greedy(1);
  p.prompt_logprobs = 2;
  auto out = engine.generate({tokens}, p)[0];
  ASSERT_EQ(out.prompt_logprobs.size(), tokens.size());
  EXPECT_FALSE(out.prompt_logprobs[0].has_value());
  auto ref = testing::reference_forward(m.config, m.weights, tokens);
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    ASSERT_TRUE(out.prompt_logprobs[i].has_value()) << i;
    auto lp = log_softmax(ref[i - 1]);
    const auto& entry = *out.prompt_logprobs[i];
    ASSERT_GE(entry.size(), 2u);
    ASSERT_LE(entry.size(), 3u);
    bool has_prompt_token = false;
    for (const auto& e : entry) {
      EXPECT_NEAR(e.logprob, lp[static_cast<std::size_t>(e.id)], 2e-4);
      has_prompt_token |= e.id == tokens[i];
    }
    EXPECT_TRUE(has_prompt_token) << "position " << i;
    EXPECT_GE(entry[0].logprob, entry[1].logprob);
  }
}

TEST_P(EngineArchTest, RandomWeightsGiveAClearTopOneMargin) {
  TinyModel m(GetParam());
  auto logits = testing::reference_forward(m.config, m.weights, prompt(4, 32, m.config.vocab_size));
  std::vector<double> margins;
  for (const auto& row : logits) {
    std::vector<double> sorted = row;
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
    margins.push_back(sorted[0] - sorted[1]);
    double mean = 0, sq = 0;
    for (double l : row) mean += l, sq += l * l;
    mean /= row.size();
    EXPECT_GT(std::sqrt(sq / row.size() - mean * mean), 2.0);  // far from uniform
  }
  std::nth_element(margins.begin(), margins.begin() + margins.size() / 2, margins.end());
  EXPECT_GT(margins[margins.size() / 2], 0.3);  // median top-1 margin, in nats
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, EngineArchTest,
                         ::testing::Values(model::Arch::kLlama, model::Arch::kQwen2,
                                           model::Arch::kQwen3),
                         [](const auto& info) {
                           return std::string(model::arch_model_type(info.param));
                         });

TEST(Engine, OutputsDoNotDependOnBatchingChunkingOrPreemption) {
  TinyModel m(model::Arch::kQwen3);
  std::vector<Request> requests;
  for (int i = 0; i < 6; ++i) {
    Request r{prompt(20 + i, 3 + 7 * i, m.config.vocab_size), greedy(12)};
    r.params.logprobs = 2;
    if (i % 2 == 1) {  // sampled requests too: their seeds make them reproducible
      r.params.temperature = 0.9f;
      r.params.top_p = 0.95f;
      r.params.seed = 100 + i;
    }
    requests.push_back(r);
  }
  std::vector<RequestOutput> alone;
  {
    Engine engine(m.engine_config());
    for (const auto& r : requests) alone.push_back(engine.generate({r})[0]);
  }
  EngineConfig tight = m.engine_config();
  tight.max_num_batched_tokens = 5;  // chunked prefill, mixed with decodes
  tight.num_kv_blocks = 14;          // 56 token slots for 6 requests up to 50 tokens: preemption
  tight.num_threads = 1;
  Engine engine(tight);
  auto together = engine.generate(requests);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(together[i].finish_reason, FinishReason::kLength) << together[i].error;
    EXPECT_EQ(together[i].token_ids, alone[i].token_ids);
    ASSERT_EQ(together[i].logprobs.size(), alone[i].logprobs.size());
    for (std::size_t t = 0; t < alone[i].logprobs.size(); ++t) {
      ASSERT_EQ(together[i].logprobs[t].size(), alone[i].logprobs[t].size());
      for (std::size_t k = 0; k < alone[i].logprobs[t].size(); ++k) {
        EXPECT_EQ(together[i].logprobs[t][k].id, alone[i].logprobs[t][k].id);
        EXPECT_EQ(together[i].logprobs[t][k].logprob, alone[i].logprobs[t][k].logprob);  // bitwise
      }
    }
  }
}

TEST(Engine, SeedsMakeSamplingReproducibleAndDistinct) {
  TinyModel m(model::Arch::kLlama);
  Engine engine(m.engine_config());
  SamplingParams p;
  p.temperature = 1.5f;
  p.max_tokens = 24;
  p.ignore_eos = true;
  p.seed = 5;
  auto base = prompt(30, 8, m.config.vocab_size);
  auto a = engine.generate({base}, p)[0].token_ids;
  auto b = engine.generate({prompt(31, 19, m.config.vocab_size), base, base}, p);
  EXPECT_EQ(b[1].token_ids, a);
  EXPECT_EQ(b[2].token_ids, a);
  p.seed = 6;
  EXPECT_NE(engine.generate({base}, p)[0].token_ids, a);
}

TEST(Engine, StopTokensMaxTokensAndMaxModelLenEndRequests) {
  TinyModel m(model::Arch::kQwen2);
  EngineConfig c = m.engine_config();
  c.max_model_len = 20;
  Engine engine(c);
  auto tokens = prompt(40, 10, m.config.vocab_size);
  auto free_run = engine.generate({tokens}, greedy(6))[0];
  ASSERT_EQ(free_run.token_ids.size(), 6u);
  EXPECT_EQ(free_run.finish_reason, FinishReason::kLength);

  SamplingParams stop = greedy(6);
  stop.stop_token_ids = {free_run.token_ids[2]};
  auto stopped = engine.generate({tokens}, stop)[0];
  auto first =
      std::find(free_run.token_ids.begin(), free_run.token_ids.end(), free_run.token_ids[2]);
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.token_ids, std::vector<TokenId>(free_run.token_ids.begin(), first + 1));

  auto capped = engine.generate({tokens}, greedy(100))[0];  // max_model_len 20 leaves 10
  EXPECT_EQ(capped.finish_reason, FinishReason::kLength);
  EXPECT_EQ(capped.token_ids.size(), 10u);
  EXPECT_GT(capped.ttft_ms, 0.0);
  EXPECT_GE(capped.decode_ms, 0.0);
  // The same prompt of 10 ran before: all but its last token hit (two full blocks of 4, then
  // one token of the third block, which the earlier run filled with generated tokens).
  EXPECT_EQ(capped.num_cached_tokens, 9);
}

// queue_ms is the wait before a request's first step: with one sequence at a time, the second
// request waits at least while the first decodes.
TEST(Engine, QueueTimeIsTheWaitBeforeTheFirstStep) {
  TinyModel m(model::Arch::kQwen3);
  EngineConfig c = m.engine_config();
  c.max_num_seqs = 1;
  Engine engine(c);
  const auto out = engine.generate(
      {prompt(11, 6, m.config.vocab_size), prompt(12, 6, m.config.vocab_size)}, greedy(20));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_GE(out[0].queue_ms, 0.0);
  EXPECT_LE(out[0].queue_ms, out[0].ttft_ms);
  EXPECT_LE(out[1].queue_ms, out[1].ttft_ms);
  EXPECT_GE(out[1].queue_ms, out[0].decode_ms) << "scheduled only after the first request finished";
}

TEST(Engine, BadRequestsFailAloneWithClearMessages) {
  TinyModel m(model::Arch::kQwen3);
  EngineConfig c = m.engine_config();
  c.max_model_len = 64;
  Engine engine(c);
  const int vocab = m.config.vocab_size;
  SamplingParams ok = greedy(4);
  auto with = [&](auto change) {
    SamplingParams p = ok;
    change(p);
    return p;
  };
  std::vector<Request> requests = {
      {{1, 2, 3}, ok},
      {{}, ok},
      {{1, vocab, 3}, ok},
      {{1, -5}, ok},
      {std::vector<TokenId>(64, 1), ok},
      {{1, 2}, with([](SamplingParams& p) { p.top_p = std::numeric_limits<float>::quiet_NaN(); })},
      {{1, 2}, with([](SamplingParams& p) { p.max_tokens = 0; })},
      {{1, 2}, with([](SamplingParams& p) { p.temperature = -1.0f; })},
      {{1, 2}, with([](SamplingParams& p) { p.top_k = -3; })},
      {{1, 2}, with([vocab](SamplingParams& p) { p.stop_token_ids = {vocab + 1}; })},
      {{4, 5, 6}, ok},
  };
  auto outputs = engine.generate(requests);
  const std::vector<std::string> expected = {"",
                                             "empty",
                                             "outside the vocabulary",
                                             "outside the vocabulary",
                                             "max_model_len",
                                             "top_p",
                                             "max_tokens",
                                             "temperature",
                                             "top_k",
                                             "stop_token_ids",
                                             ""};
  for (std::size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(i);
    if (expected[i].empty()) {
      EXPECT_EQ(outputs[i].finish_reason, FinishReason::kLength) << outputs[i].error;
      EXPECT_EQ(outputs[i].token_ids.size(), 4u);
    } else {
      EXPECT_EQ(outputs[i].finish_reason, FinishReason::kError);
      EXPECT_THAT(outputs[i].error, HasSubstr(expected[i]));
      EXPECT_TRUE(outputs[i].token_ids.empty());
    }
  }
}

TEST(Engine, PromptThatCannotFitTheCacheFailsAlone) {
  TinyModel m(model::Arch::kLlama);
  EngineConfig c = m.engine_config();
  c.num_kv_blocks = 3;  // 12 token slots
  Engine engine(c);
  EXPECT_EQ(engine.info().num_kv_blocks, 3);
  auto outputs = engine.generate(
      {prompt(1, 30, m.config.vocab_size), prompt(2, 4, m.config.vocab_size)}, greedy(20));
  EXPECT_EQ(outputs[0].finish_reason, FinishReason::kError);
  EXPECT_THAT(outputs[0].error, HasSubstr("KV blocks"));
  // The other one runs until it outgrows the cache on its own, then fails clearly too.
  EXPECT_EQ(outputs[1].finish_reason, FinishReason::kError);
  EXPECT_THAT(outputs[1].error, HasSubstr("KV blocks"));
  EXPECT_EQ(engine.generate({prompt(2, 4, m.config.vocab_size)}, greedy(5))[0].finish_reason,
            FinishReason::kLength);
}

TEST(Engine, ConstructionErrorsNameTheProblem) {
  TinyModel m(model::Arch::kQwen3);
  auto expect_error = [](EngineConfig c, ErrorCode code, const std::string& fragment) {
    try {
      Engine engine(c);
      ADD_FAILURE() << "expected an error containing " << fragment;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_THAT(e.what(), HasSubstr(fragment));
    }
  };
  EngineConfig c = m.engine_config();
  c.model_dir = (m.dir.path() / "missing").string();
  expect_error(c, ErrorCode::kNotFound, "missing");
  c = m.engine_config();
  c.block_size = 12;
  expect_error(c, ErrorCode::kInvalidArgument, "block_size");
  c = m.engine_config();
  c.max_model_len = 1 << 30;
  expect_error(c, ErrorCode::kInvalidArgument, "max_position_embeddings");
  c = m.engine_config();
  c.kv_cache_bytes = 10;
  expect_error(c, ErrorCode::kOutOfMemory, "kv_cache_bytes");
  c = m.engine_config();
  c.device = Device::kCuda;  // no GPU here, or no CUDA backend in this build
  expect_error(c, ErrorCode::kUnavailable, "kCuda");
  c = m.engine_config();
  c.log_level = static_cast<LogLevel>(42);
  expect_error(c, ErrorCode::kInvalidArgument, "log_level");
}

TEST(Engine, InfoReportsWhatWasChosen) {
  TinyModel m(model::Arch::kQwen3);
  EngineConfig c = m.engine_config();
  c.device = Device::kAuto;
  Engine engine(c);
  const EngineInfo& info = engine.info();
  EXPECT_EQ(info.architecture, "Qwen3ForCausalLM");
  // The tiny model's head_dim (32) is outside the GPU kernels, so kAuto runs it on the CPU
  // even where a GPU is present.
  EXPECT_EQ(info.backend, "cpu");
  EXPECT_EQ(info.max_model_len, m.config.max_position_embeddings);
  EXPECT_GT(info.num_kv_blocks, 0);
  EXPECT_LE(info.kv_cache_bytes, c.kv_cache_bytes);
  EXPECT_EQ(info.eos_token_ids, std::vector<TokenId>{2});
}

}  // namespace
}  // namespace cachet

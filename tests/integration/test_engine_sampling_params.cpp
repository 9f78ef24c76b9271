// The engine with min_tokens, logit_bias and the repetition / frequency / presence penalties:
// greedy tokens against the independent fp64 reference forward (tests/support) with the
// processing written naively here, and the decisive cases (a +100 bias, EOS held back by
// min_tokens) exactly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include "cachet/engine.h"
#include "model/weights.h"
#include "support/naive_logits_processing.h"
#include "support/reference_model.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using testing::greedy;
using testing::TinyModel;

// The engine's greedy tokens equal the reference's up to the first step whose top-1 margin
// after processing is below 1e-3 (where fp32 and fp64 may pick differently). Returns how
// many steps were compared.
int expect_reference_greedy(const TinyModel& m, const std::vector<TokenId>& prompt,
                            const SamplingParams& p) {
  Engine engine(m.engine_config());
  const RequestOutput out = engine.generate({Request{prompt, p, {}, {}}})[0];
  EXPECT_NE(out.finish_reason, FinishReason::kError) << out.error;
  const model::ModelWeights weights = model::load_weights(m.dir.path(), m.config);
  std::vector<TokenId> tokens = prompt;
  int compared = 0;
  for (TokenId got : out.token_ids) {
    std::vector<double> x = testing::reference_forward(m.config, weights, tokens).back();
    const std::vector<TokenId> output(tokens.begin() + static_cast<long>(prompt.size()),
                                      tokens.end());
    testing::naive_process_logits(x, p, prompt, output, m.config.eos_token_ids);
    std::vector<double> sorted = x;
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
    const auto best = static_cast<TokenId>(std::max_element(x.begin(), x.end()) - x.begin());
    if (sorted[0] - sorted[1] < 1e-3) break;
    EXPECT_EQ(got, best) << "generated token " << compared;
    if (got != best) break;
    ++compared;
    tokens.push_back(got);
  }
  return compared;
}

std::vector<TokenId> repetitive_prompt(int vocab) {
  std::vector<TokenId> p;
  for (int i = 0; i < 24; ++i) p.push_back((i % 6) * 7 % vocab + 3);
  return p;
}

TEST(EngineSamplingParams, PenaltiesAndBiasMatchTheReference) {
  TinyModel m;
  const auto prompt = repetitive_prompt(m.vocab());
  struct Setting {
    const char* name;
    void (*apply)(SamplingParams&);
  };
  const Setting settings[] = {
      {"repetition 1.8", [](SamplingParams& p) { p.repetition_penalty = 1.8f; }},
      {"repetition 0.6", [](SamplingParams& p) { p.repetition_penalty = 0.6f; }},
      {"presence 1.5", [](SamplingParams& p) { p.presence_penalty = 1.5f; }},
      {"frequency 1.2", [](SamplingParams& p) { p.frequency_penalty = 1.2f; }},
      {"logit_bias",
       [](SamplingParams& p) {
         p.logit_bias = {{5, 3.0f}, {9, -4.0f}, {17, 2.5f}};
       }},
      {"all",
       [](SamplingParams& p) {
         p.repetition_penalty = 1.3f;
         p.presence_penalty = 0.5f;
         p.frequency_penalty = 0.4f;
         p.logit_bias = {{5, 1.0f}};
       }},
  };
  for (const Setting& s : settings) {
    SCOPED_TRACE(s.name);
    SamplingParams p = greedy(12);
    s.apply(p);
    const int compared = expect_reference_greedy(m, prompt, p);
    std::printf("[ info ] %s: %d of 12 greedy tokens compared\n", s.name, compared);
    EXPECT_GE(compared, 1);
  }
}

TEST(EngineSamplingParams, PenaltiesChangeWhatIsGenerated) {
  TinyModel m;
  Engine engine(m.engine_config());
  const auto prompt = repetitive_prompt(m.vocab());
  SamplingParams plain = greedy(16), penalized = greedy(16);
  plain.logprobs = penalized.logprobs = 5;
  penalized.frequency_penalty = 2.0f;
  penalized.repetition_penalty = 2.0f;
  const auto out =
      engine.generate({Request{prompt, plain, {}, {}}, Request{prompt, penalized, {}, {}}});
  EXPECT_NE(out[0].token_ids, out[1].token_ids);
  auto distinct = [](std::vector<TokenId> t) {
    std::sort(t.begin(), t.end());
    return std::unique(t.begin(), t.end()) - t.begin();
  };
  EXPECT_GE(distinct(out[1].token_ids), distinct(out[0].token_ids));
  // Logprobs stay those of the raw logits (as vLLM reports them): at the first position both
  // requests saw the same logits, so their top 5 are the same.
  ASSERT_FALSE(out[0].logprobs.empty() || out[1].logprobs.empty());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(out[0].logprobs[0][i].id, out[1].logprobs[0][i].id);
    EXPECT_EQ(out[0].logprobs[0][i].logprob, out[1].logprobs[0][i].logprob);
  }
}

TEST(EngineSamplingParams, ALargeBiasForcesAndBansTokens) {
  TinyModel m;
  Engine engine(m.engine_config());
  SamplingParams forced = greedy(6);
  forced.logit_bias = {{11, 100.0f}};
  SamplingParams seeded = forced;
  seeded.temperature = 1.0f;
  seeded.seed = 3;
  const auto out =
      engine.generate({Request{{1, 2, 3}, forced, {}, {}}, Request{{1, 2, 3}, seeded, {}, {}}});
  EXPECT_EQ(out[0].token_ids, std::vector<TokenId>(6, 11));
  EXPECT_EQ(out[1].token_ids, std::vector<TokenId>(6, 11));
  // Banning the plain greedy choice changes the first token.
  const TokenId first = engine.generate({{1, 2, 3}}, greedy(1))[0].token_ids[0];
  SamplingParams banned = greedy(1);
  banned.logit_bias = {{first, -100.0f}};
  EXPECT_NE(engine.generate({Request{{1, 2, 3}, banned, {}, {}}})[0].token_ids[0], first);
}

TEST(EngineSamplingParams, MinTokensHoldsBackEosAndStopTokens) {
  TinyModel m;
  ASSERT_FALSE(m.config.eos_token_ids.empty());
  const TokenId eos = m.config.eos_token_ids[0];
  Engine engine(m.engine_config());
  SamplingParams p;  // EOS forced by its bias, but not before 3 tokens
  p.temperature = 0.0f;
  p.max_tokens = 10;
  p.min_tokens = 3;
  p.logit_bias = {{eos, 100.0f}};
  SamplingParams stop = p;  // the same with a stop token instead of EOS
  stop.logit_bias = {{7, 100.0f}};
  stop.stop_token_ids = {7};
  const auto out =
      engine.generate({Request{{4, 5, 6}, p, {}, {}}, Request{{4, 5, 6}, stop, {}, {}}});
  ASSERT_EQ(out[0].token_ids.size(), 4u) << out[0].error;
  EXPECT_EQ(out[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(out[0].token_ids.back(), eos);
  for (int i = 0; i < 3; ++i) EXPECT_NE(out[0].token_ids[i], eos);
  ASSERT_EQ(out[1].token_ids.size(), 4u);
  EXPECT_EQ(out[1].token_ids.back(), 7);
  EXPECT_EQ(out[1].finish_reason, FinishReason::kStop);
}

TEST(EngineSamplingParams, BadValuesFailTheRequestNamingTheField) {
  TinyModel m;
  Engine engine(m.engine_config());
  SamplingParams p = greedy(4);
  p.logit_bias = {{m.vocab() + 3, 1.0f}};
  SamplingParams q = greedy(4);
  q.min_tokens = 5;
  const auto out = engine.generate({Request{{1, 2}, p, {}, {}}, Request{{1, 2}, q, {}, {}}});
  EXPECT_THAT(out[0].error, ::testing::HasSubstr("logit_bias: token id"));
  EXPECT_THAT(out[1].error, ::testing::HasSubstr("min_tokens must be in [0, max_tokens = 4]"));
}

}  // namespace
}  // namespace cachet

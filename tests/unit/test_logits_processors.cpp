// min_tokens, logit_bias and the repetition / frequency / presence penalties
// (sampling/logits_processors.h) against a naive fp64 reference written here, their order
// against a hand-computed case, and their validation messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "sampling/logits_processors.h"
#include "sampling/sampler.h"
#include "support/naive_logits_processing.h"

namespace cachet::sampling {
namespace {

using ::testing::HasSubstr;
constexpr double kInf = std::numeric_limits<double>::infinity();

// The reference, tests/support/naive_logits_processing.h.
std::vector<double> naive(std::vector<double> x, const SamplingParams& p,
                          const std::vector<TokenId>& prompt, const std::vector<TokenId>& output,
                          const std::vector<TokenId>& eos) {
  testing::naive_process_logits(x, p, prompt, output, eos);
  return x;
}

struct Case {
  std::vector<float> logits;
  std::vector<TokenId> prompt, output, eos;
  SamplingParams params;
};

Case random_case(std::mt19937_64& rng, int which) {
  const int vocab = 64;
  std::normal_distribution<float> logit(0.0f, 3.0f);
  std::uniform_int_distribution<TokenId> token(0, vocab - 1);
  Case c;
  for (int i = 0; i < vocab; ++i) c.logits.push_back(logit(rng));
  for (int i = 0; i < 20; ++i) c.prompt.push_back(token(rng) % 16);  // repeats
  for (int i = static_cast<int>(rng() % 12); i > 0; --i) c.output.push_back(token(rng) % 24);
  c.eos = {token(rng), token(rng)};
  SamplingParams& p = c.params;
  p.max_tokens = 32;
  const bool all = which == 5;
  if (which == 0 || all) p.min_tokens = static_cast<int>(rng() % 16);
  if (which == 0 || all) p.stop_token_ids = {token(rng)};
  if (which == 0) p.ignore_eos = rng() % 2;
  if (which == 1 || all)
    for (int i = 0; i < 5; ++i)
      p.logit_bias[token(rng)] = std::uniform_real_distribution<float>(-100, 100)(rng);
  if (which == 2 || all)
    p.repetition_penalty = std::uniform_real_distribution<float>(0.3f, 3.0f)(rng);
  if (which == 3 || all) p.presence_penalty = std::uniform_real_distribution<float>(-2, 2)(rng);
  if (which == 4 || all) p.frequency_penalty = std::uniform_real_distribution<float>(-2, 2)(rng);
  return c;
}

// One parameter at a time (0..4), then all together (5), against the reference: equal up to
// fp32 rounding of the logits, and -inf exactly where the reference has it.
TEST(LogitsProcessors, EachParameterMatchesTheNaiveReference) {
  std::mt19937_64 rng(7);
  for (int which = 0; which <= 5; ++which) {
    for (int trial = 0; trial < 200; ++trial) {
      SCOPED_TRACE(::testing::Message() << "parameter set " << which << " trial " << trial);
      Case c = random_case(rng, which);
      const std::vector<double> want =
          naive({c.logits.begin(), c.logits.end()}, c.params, c.prompt, c.output, c.eos);
      std::vector<float> got = c.logits;
      process_logits(got, c.params, {c.prompt, c.output, c.eos});
      for (std::size_t i = 0; i < got.size(); ++i) {
        if (std::isinf(want[i])) {
          ASSERT_EQ(got[i], static_cast<float>(want[i])) << "token " << i;
        } else {
          ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::abs(want[i]))) << "token " << i;
        }
      }
    }
  }
}

// The order is vLLM's: min_tokens, logit_bias, repetition, then frequency and presence.
TEST(LogitsProcessors, OrderOfOperationsOnAHandComputedCase) {
  SamplingParams p;
  p.max_tokens = 8;
  p.min_tokens = 5;
  p.logit_bias = {{0, 1.0f}, {2, -0.5f}};
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  std::vector<float> x = {2.0f, -1.0f, 0.5f, 3.0f};
  const std::vector<TokenId> prompt = {0}, output = {1, 1, 3}, eos = {3};
  process_logits(x, p, {prompt, output, eos});
  // x3: EOS before min_tokens -> -inf. x0: (2 + 1) / 2 (the bias before the penalty;
  // the other way round would give 2). x1: -1 * 2 - (0.5 * 2 + 0.25). x2: 0.5 - 0.5, not seen.
  EXPECT_EQ(x, (std::vector<float>{1.5f, -3.25f, 0.0f, -std::numeric_limits<float>::infinity()}));
}

TEST(LogitsProcessors, MinTokensMasksOnlyUntilReached) {
  SamplingParams p;
  p.min_tokens = 2;
  p.stop_token_ids = {1};
  std::vector<TokenId> output = {5};
  EXPECT_TRUE(processes_logits(p, 1));
  std::vector<float> x(8, 0.0f);
  process_logits(x, p, {{}, output, std::vector<TokenId>{2}});
  EXPECT_TRUE(std::isinf(x[1]) && std::isinf(x[2]));
  output.push_back(6);
  EXPECT_FALSE(processes_logits(p, 2));
  std::vector<float> y(8, 0.0f);
  process_logits(y, p, {{}, output, std::vector<TokenId>{2}});
  EXPECT_EQ(y, std::vector<float>(8, 0.0f));
  p.ignore_eos = true;  // then only the stop ids are masked
  std::vector<float> z(8, 0.0f);
  process_logits(z, p, {{}, std::vector<TokenId>{5}, std::vector<TokenId>{2}});
  EXPECT_TRUE(std::isinf(z[1]));
  EXPECT_EQ(z[2], 0.0f);
}

TEST(LogitsProcessors, NeutralParametersProcessNothing) {
  SamplingParams p;
  EXPECT_FALSE(processes_logits(p, 0));
  p.repetition_penalty = 1.1f;
  EXPECT_TRUE(processes_logits(p, 0));
}

TEST(LogitsProcessors, ValidationNamesTheField) {
  const auto problem = [](auto set) {
    SamplingParams p;
    p.max_tokens = 10;
    set(p);
    return validate(p, 100);
  };
  EXPECT_THAT(problem([](SamplingParams& p) { p.min_tokens = 11; }),
              HasSubstr("min_tokens must be in [0, max_tokens = 10], got 11"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.min_tokens = -1; }), HasSubstr("min_tokens"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.logit_bias[100] = 1; }),
              HasSubstr("logit_bias: token id 100 is not in [0, 100)"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.logit_bias[-1] = 1; }), HasSubstr("token id -1"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.logit_bias[3] = 101; }),
              HasSubstr("logit_bias[3] must be in [-100, 100], got 101"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.logit_bias[3] = NAN; }),
              HasSubstr("logit_bias[3]"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.repetition_penalty = 0; }),
              HasSubstr("repetition_penalty must be finite and > 0"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.repetition_penalty = INFINITY; }),
              HasSubstr("repetition_penalty"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.presence_penalty = 2.5f; }),
              HasSubstr("presence_penalty must be in [-2, 2], got 2.5"));
  EXPECT_THAT(problem([](SamplingParams& p) { p.frequency_penalty = NAN; }),
              HasSubstr("frequency_penalty must be in [-2, 2]"));
  EXPECT_EQ(problem([](SamplingParams& p) {
              p.min_tokens = 10;
              p.logit_bias = {{0, -100.0f}, {99, 100.0f}};
              p.repetition_penalty = 1.3f;
              p.presence_penalty = -2;
              p.frequency_penalty = 2;
            }),
            "");
}

}  // namespace
}  // namespace cachet::sampling

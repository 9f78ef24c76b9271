// The CPU sampler against a naive, independently written reference (full stable sort, plain
// loops, HF's formulation of each warper), hand-computed cases, the RNG, and validate().
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cachet/errors.h"
#include "sampling/rng.h"
#include "sampling/sampler.h"

namespace cachet::sampling {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

SamplingParams make_params(float temperature, std::int32_t top_k = 0, float top_p = 1.0f,
                           float min_p = 0.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

// Deterministic test data: mt19937_64's output sequence is fixed by the standard, unlike the
// std:: distributions, so the vectors are the same on every platform.
class TestRng {
 public:
  explicit TestRng(std::uint64_t seed) : engine_(seed) {}
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Roughly normal (Irwin-Hall of 4), mean 0 and standard deviation `scale`.
  float normal(double scale) {
    double s = 0.0;
    for (int i = 0; i < 4; ++i) s += uniform();
    return static_cast<float>((s - 2.0) * std::sqrt(3.0) * scale);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(engine_() % n); }

 private:
  std::mt19937_64 engine_;
};

// ---------------------------------------------------------------------------------------
// Naive reference.

float naive_clean(float x) { return std::isnan(x) ? -kInf : x; }

// id -> probability. Written the slow, obvious way, following HF's warpers one after another
// with explicit renormalization in between.
std::map<TokenId, double> naive_candidates(const std::vector<float>& logits,
                                           const SamplingParams& params) {
  const int n = static_cast<int>(logits.size());
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = naive_clean(logits[i]);
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  if (params.temperature == 0.0f || x[best] == -kInf) return {{best, 1.0}};

  // Full stable sort by logit, descending: equal logits stay in id order.
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return x[a] > x[b]; });

  std::vector<std::pair<int, double>> kept;  // (id, weight), in rank order
  for (int i : order) {
    const double w =
        x[i] == -kInf ? 0.0 : std::exp((double(x[i]) - double(x[best])) / params.temperature);
    if (w > 0.0) kept.push_back({i, w});
  }
  const auto renormalize = [&]() {
    double sum = 0.0;
    for (const auto& [id, w] : kept) sum += w;
    for (auto& [id, w] : kept) w /= sum;
  };
  renormalize();
  if (params.top_k > 0 && params.top_k < static_cast<int>(kept.size())) {
    kept.resize(params.top_k);
    renormalize();
  }
  if (params.top_p < 1.0f) {
    std::vector<std::pair<int, double>> prefix;
    double cum = 0.0;
    for (const auto& entry : kept) {
      if (!prefix.empty() && cum >= params.top_p) break;
      prefix.push_back(entry);
      cum += entry.second;
    }
    kept = prefix;
    renormalize();
  }
  if (params.min_p > 0.0f) {
    double max_p = 0.0;
    for (const auto& [id, p] : kept) max_p = std::max(max_p, p);
    std::vector<std::pair<int, double>> above;
    for (const auto& entry : kept) {
      if (entry.second >= params.min_p * max_p) above.push_back(entry);
    }
    kept = above;
    renormalize();
  }
  return {kept.begin(), kept.end()};
}

std::vector<double> naive_log_softmax(const std::vector<float>& logits) {
  double max = -kInf;
  for (float x : logits) max = std::max(max, double(naive_clean(x)));
  double sum = 0.0;
  for (float x : logits) sum += std::exp(double(naive_clean(x)) - max);
  std::vector<double> out;
  for (float x : logits) out.push_back(double(naive_clean(x)) - max - std::log(sum));
  return out;
}

// Checks candidates() against the naive reference: same ids, probabilities within 1e-6,
// and the documented order (probability descending, ties lower id first).
void expect_matches_naive(const std::vector<float>& logits, const SamplingParams& params,
                          const std::string& context) {
  SCOPED_TRACE(context);
  const Candidates got = candidates(logits, params);
  const std::map<TokenId, double> want = naive_candidates(logits, params);
  ASSERT_EQ(got.ids.size(), got.probs.size());
  ASSERT_EQ(got.ids.size(), want.size());
  double sum = 0.0;
  for (std::size_t j = 0; j < got.ids.size(); ++j) {
    const auto it = want.find(got.ids[j]);
    ASSERT_NE(it, want.end()) << "unexpected candidate " << got.ids[j];
    EXPECT_NEAR(got.probs[j], it->second, 1e-6) << "token " << got.ids[j];
    sum += got.probs[j];
    if (j > 0) {
      const float prev = naive_clean(logits[got.ids[j - 1]]);
      const float cur = naive_clean(logits[got.ids[j]]);
      EXPECT_TRUE(prev > cur || (prev == cur && got.ids[j - 1] < got.ids[j]))
          << "order at position " << j;
      EXPECT_GE(got.probs[j - 1], got.probs[j]);
    }
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
}

std::string describe(const SamplingParams& p, std::size_t n, int vector_index) {
  return "vocab " + std::to_string(n) + " vector " + std::to_string(vector_index) +
         " temperature " + std::to_string(p.temperature) + " top_k " + std::to_string(p.top_k) +
         " top_p " + std::to_string(p.top_p) + " min_p " + std::to_string(p.min_p);
}

// Logit rows of several shapes: smooth, heavily tied (integers), with -inf and NaN holes,
// and sharply peaked.
std::vector<std::vector<float>> random_rows(std::uint64_t seed) {
  TestRng rng(seed);
  std::vector<std::vector<float>> rows;
  for (std::size_t n : {1u, 2u, 3u, 7u, 16u, 50u, 257u}) {
    for (int shape = 0; shape < 4; ++shape) {
      std::vector<float> row(n);
      for (auto& x : row) x = rng.normal(2.0);
      if (shape == 1) {
        for (auto& x : row) x = std::round(x);
      } else if (shape == 2) {
        for (auto& x : row) {
          const double r = rng.uniform();
          if (r < 0.1) x = -kInf;
          if (r > 0.95) x = kNaN;
        }
      } else if (shape == 3) {
        row[rng.below(n)] += 8.0f;
      }
      rows.push_back(row);
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------
// candidates()

TEST(SamplerCandidates, MatchesNaiveReferenceOverManyRowsAndParams) {
  const auto rows = random_rows(20240601);
  int checked = 0;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    const int n = static_cast<int>(row.size());
    for (float temperature : {0.0f, 0.3f, 1.0f, 2.0f}) {
      for (int top_k : {0, 1, 2, 5, n - 1, n, n + 3}) {
        if (top_k < 0) continue;
        for (float top_p : {1e-6f, 0.3f, 0.7f, 0.9f, 0.999f, 1.0f}) {
          for (float min_p : {0.0f, 0.05f, 0.3f, 1.0f}) {
            const SamplingParams p = make_params(temperature, top_k, top_p, min_p);
            expect_matches_naive(row, p, describe(p, row.size(), static_cast<int>(r)));
            if (::testing::Test::HasFatalFailure()) return;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 10000);
}

TEST(SamplerCandidates, MatchesNaiveReferenceAtFullVocabularySize) {
  // Qwen-sized vocabulary: exercises the selection paths (nth_element for top_k, the
  // incrementally sorted prefix for top_p) on realistic sizes.
  constexpr std::size_t kVocab = 151936;
  TestRng rng(7);
  std::vector<float> peaked(kVocab);
  for (auto& x : peaked) x = rng.normal(3.0);
  // Nearly flat: top_p 0.95 must walk through ~144k tokens, many sorted chunks deep.
  std::vector<float> flat(kVocab);
  for (auto& x : flat) x = static_cast<float>(rng.uniform() * 0.01);
  // Coarse ties all over the vocabulary.
  std::vector<float> tied(kVocab);
  for (auto& x : tied) x = std::round(rng.normal(1.5));

  const std::vector<SamplingParams> params = {
      make_params(1.0f),
      make_params(1.0f, 50),
      make_params(0.7f, 0, 0.9f),
      make_params(1.0f, 0, 0.95f, 0.01f),
      make_params(2.0f, 1000, 0.8f),
      make_params(1.0f, 0, 1.0f, 0.2f),
  };
  for (const auto& p : params) {
    expect_matches_naive(peaked, p, "peaked " + describe(p, kVocab, 0));
    expect_matches_naive(flat, p, "flat " + describe(p, kVocab, 1));
    expect_matches_naive(tied, p, "tied " + describe(p, kVocab, 2));
  }
}

TEST(SamplerCandidates, HandComputedTopP) {
  // softmax([2, 1, 0, -1]) = [e^2, e^1, e^0, e^-1] / 11.4752 = [0.6439, 0.2369, 0.0871, 0.0321].
  // top_p 0.7: token 0 always stays; the mass before token 1 is 0.6439 < 0.7, so it stays;
  // the mass before token 2 is 0.8808 >= 0.7, so it goes. Renormalized: e/(e+1) = 0.7311 and
  // 1/(e+1) = 0.2689.
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  const double e = std::exp(1.0);
  Candidates c = candidates(logits, make_params(1.0f, 0, 0.7f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0, 1}));
  ASSERT_EQ(c.probs.size(), 2u);
  EXPECT_NEAR(c.probs[0], e / (e + 1.0), 1e-6);
  EXPECT_NEAR(c.probs[1], 1.0 / (e + 1.0), 1e-6);

  // top_p 0.6 < 0.6439: the top token alone reaches it.
  c = candidates(logits, make_params(1.0f, 0, 0.6f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0}));
  EXPECT_FLOAT_EQ(c.probs[0], 1.0f);

  // top_p 0.9: masses before tokens 1, 2, 3 are 0.6439, 0.8808, 0.9679: keeps {0, 1, 2}.
  c = candidates(logits, make_params(1.0f, 0, 0.9f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0, 1, 2}));
}

TEST(SamplerCandidates, HandComputedTopPAppliesAfterTopKRenormalization) {
  // top_k 2 leaves [e^2, e^1] renormalized to [0.7311, 0.2689]. top_p 0.7 then sees 0.7311
  // >= 0.7 before token 1 and keeps only token 0 (on the full softmax, 0.6439 < 0.7 would
  // have kept token 1 too, see above).
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  Candidates c = candidates(logits, make_params(1.0f, 2, 0.7f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0}));
  // top_p 0.75 > 0.7311 keeps both.
  c = candidates(logits, make_params(1.0f, 2, 0.75f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0, 1}));
}

TEST(SamplerCandidates, HandComputedMinPAndTemperature) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  // p_i / p_max = e^(x_i - 2) = [1, 0.368, 0.135, 0.0498].
  EXPECT_EQ(candidates(logits, make_params(1.0f, 0, 1.0f, 0.3f)).ids, (std::vector<TokenId>{0, 1}));
  EXPECT_EQ(candidates(logits, make_params(1.0f, 0, 1.0f, 0.1f)).ids,
            (std::vector<TokenId>{0, 1, 2}));
  EXPECT_EQ(candidates(logits, make_params(1.0f, 0, 1.0f, 1.0f)).ids, (std::vector<TokenId>{0}));

  // Temperature 2: softmax([1, 0.5, 0, -0.5]) = [2.7183, 1.6487, 1, 0.6065] / 5.9735
  //   = [0.4551, 0.2760, 0.1674, 0.1015].
  const Candidates c = candidates(logits, make_params(2.0f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0, 1, 2, 3}));
  const double sum = std::exp(1.0) + std::exp(0.5) + 1.0 + std::exp(-0.5);
  EXPECT_NEAR(c.probs[0], std::exp(1.0) / sum, 1e-6);
  EXPECT_NEAR(c.probs[1], std::exp(0.5) / sum, 1e-6);
  EXPECT_NEAR(c.probs[2], 1.0 / sum, 1e-6);
  EXPECT_NEAR(c.probs[3], std::exp(-0.5) / sum, 1e-6);
}

TEST(SamplerCandidates, TiesAtFilterBoundariesKeepLowerIds) {
  const std::vector<float> flat = {1.0f, 1.0f, 1.0f, 1.0f};
  Candidates c = candidates(flat, make_params(1.0f, 2));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0, 1}));
  EXPECT_EQ(c.probs, (std::vector<float>{0.5f, 0.5f}));
  // Masses before tokens 1, 2 are 0.25 and 0.5: top_p 0.5 keeps two, 0.51 three.
  EXPECT_EQ(candidates(flat, make_params(1.0f, 0, 0.5f)).ids, (std::vector<TokenId>{0, 1}));
  EXPECT_EQ(candidates(flat, make_params(1.0f, 0, 0.51f)).ids, (std::vector<TokenId>{0, 1, 2}));
  // min_p 1 keeps every token tied with the maximum.
  EXPECT_EQ(candidates(flat, make_params(1.0f, 0, 1.0f, 1.0f)).ids,
            (std::vector<TokenId>{0, 1, 2, 3}));
  // Ties in the middle of the ranking: ids 1 and 3 tie for second place.
  const std::vector<float> mixed = {0.0f, 2.0f, 3.0f, 2.0f, 2.0f};
  EXPECT_EQ(candidates(mixed, make_params(1.0f, 3)).ids, (std::vector<TokenId>{2, 1, 3}));
  EXPECT_EQ(candidates(mixed, make_params(1.0f)).ids, (std::vector<TokenId>{2, 1, 3, 4, 0}));
}

TEST(SamplerCandidates, TopKBounds) {
  const std::vector<float> logits = {0.5f, -1.0f, 3.0f, 2.0f};
  EXPECT_EQ(candidates(logits, make_params(1.0f, 1)).ids, (std::vector<TokenId>{2}));
  EXPECT_EQ(candidates(logits, make_params(1.0f, 3)).ids, (std::vector<TokenId>{2, 3, 0}));
  // k >= vocab and k == 0 keep everything.
  for (int k : {0, 4, 5, 1000}) {
    EXPECT_EQ(candidates(logits, make_params(1.0f, k)).ids, (std::vector<TokenId>{2, 3, 0, 1}))
        << "k " << k;
  }
}

TEST(SamplerCandidates, GreedyIsArgmaxWithLowestIdOnTies) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 2.0f};
  const Candidates c = candidates(logits, make_params(0.0f, 2, 0.5f, 0.5f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{1}));
  EXPECT_EQ(c.probs, (std::vector<float>{1.0f}));
  EXPECT_EQ(sample(logits, make_params(0.0f), 1, 0), 1);
  for (std::uint64_t counter = 0; counter < 50; ++counter) {
    EXPECT_EQ(sample(logits, make_params(0.0f), counter * 977, counter), 1);
  }
  const std::vector<float> with_nan = {kNaN, 1.0f, 2.0f, kNaN};
  EXPECT_EQ(sample(with_nan, make_params(0.0f), 0, 0), 2);
}

TEST(SamplerCandidates, NonFiniteLogits) {
  // -inf never survives; NaN counts as -inf.
  const std::vector<float> holes = {-kInf, 0.0f, kNaN, 0.0f};
  Candidates c = candidates(holes, make_params(1.0f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{1, 3}));
  EXPECT_EQ(c.probs, (std::vector<float>{0.5f, 0.5f}));
  for (std::uint64_t counter = 0; counter < 200; ++counter) {
    const TokenId t = sample(holes, make_params(1.0f), 3, counter);
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
  // Nothing has any probability: token 0 (the argmax of the raw logits), probability 1.
  for (const auto& dead : {std::vector<float>{-kInf, -kInf, -kInf}, std::vector<float>{kNaN, kNaN},
                           std::vector<float>{kNaN, -kInf}}) {
    c = candidates(dead, make_params(0.8f, 1, 0.5f, 0.1f));
    EXPECT_EQ(c.ids, (std::vector<TokenId>{0}));
    EXPECT_EQ(c.probs, (std::vector<float>{1.0f}));
    EXPECT_EQ(sample(dead, make_params(0.8f), 5, 9), 0);
    EXPECT_EQ(sample(dead, make_params(0.0f), 5, 9), 0);
  }
  // The same with a small top_k, which selects straight from the logits.
  const std::vector<float> many_dead(64, -kInf);
  c = candidates(many_dead, make_params(1.0f, 2));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0}));
  EXPECT_EQ(sample(many_dead, make_params(1.0f, 2, 0.5f), 5, 9), 0);
  // A single-token vocabulary.
  EXPECT_EQ(candidates(std::vector<float>{-3.0f}, make_params(1.0f, 0, 0.1f, 0.5f)).ids,
            (std::vector<TokenId>{0}));
  EXPECT_EQ(sample(std::vector<float>{-3.0f}, make_params(1.5f), 1, 1), 0);
  // +inf logits share all the mass (the limit of the softmax).
  const std::vector<float> pos_inf = {0.0f, kInf, 5.0f, kInf};
  c = candidates(pos_inf, make_params(1.0f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{1, 3}));
  EXPECT_EQ(c.probs, (std::vector<float>{0.5f, 0.5f}));
  // Huge logit gaps underflow to probability 0 rather than producing NaN.
  const std::vector<float> wide = {3e38f, -3e38f, 0.0f};
  c = candidates(wide, make_params(0.01f));
  EXPECT_EQ(c.ids, (std::vector<TokenId>{0}));
  EXPECT_EQ(c.probs, (std::vector<float>{1.0f}));
}

TEST(SamplerCandidates, InvalidParamsDoNotCrash) {
  const std::vector<float> logits = {0.1f, 0.4f, -0.3f};
  // Rejected by validate(), but the sampler itself stays well defined.
  for (const auto& p :
       {make_params(kNaN), make_params(-1.0f), make_params(kInf), make_params(1.0f, -3),
        make_params(1.0f, 0, kNaN), make_params(1.0f, 0, 0.0f), make_params(1.0f, 0, 2.0f),
        make_params(1.0f, 0, 1.0f, kNaN), make_params(1.0f, 0, 1.0f, 3.0f)}) {
    const Candidates c = candidates(logits, p);
    ASSERT_FALSE(c.ids.empty());
    float sum = 0.0f;
    for (float q : c.probs) {
      EXPECT_TRUE(std::isfinite(q));
      sum += q;
    }
    EXPECT_NEAR(sum, 1.0f, 1e-5f);
    const TokenId t = sample(logits, p, 1, 2);
    EXPECT_TRUE(t >= 0 && t < 3);
  }
}

TEST(SamplerCandidates, EmptyLogitsThrow) {
  const std::vector<float> empty;
  EXPECT_THROW(candidates(empty, make_params(1.0f)), Error);
  EXPECT_THROW(sample(empty, make_params(1.0f), 0, 0), Error);
  EXPECT_THROW(top_logprobs(empty, 3, std::nullopt), Error);
}

// ---------------------------------------------------------------------------------------
// uniform() and sample()

TEST(SamplerRng, PhiloxKnownAnswers) {
  // Random123's kat_vectors for philox4x32_10.
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (PhiloxCounter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          {0xffffffffu, 0xffffffffu}),
            (PhiloxCounter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          {0xa4093822u, 0x299f31d0u}),
            (PhiloxCounter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
  // The documented mapping to a double: words 0 and 1, top 53 bits.
  EXPECT_EQ(uniform(0, 0), static_cast<double>(0x6627e8d5e169c58dull >> 11) * 0x1.0p-53);
  // constexpr, so the CUDA sampler can share the definition.
  static_assert(philox_uniform(0, 0) ==
                static_cast<double>(0x6627e8d5e169c58dull >> 11) * 0x1.0p-53);
}

TEST(SamplerRng, UniformIsStatelessAndWellSpread) {
  EXPECT_EQ(uniform(42, 7), uniform(42, 7));
  EXPECT_NE(uniform(1, 0), uniform(0, 1));
  EXPECT_NE(uniform(5, 9), uniform(9, 5));
  EXPECT_NE(uniform(1, 0), uniform(1ull << 32, 0));  // the seed's high word matters
  EXPECT_NE(uniform(0, 1), uniform(0, 1ull << 32));  // and so does the counter's
  std::set<double> seen;
  double sum = 0.0;
  int below_tenth = 0;
  constexpr int kDraws = 100000;
  for (int c = 0; c < kDraws; ++c) {
    const double u = uniform(123456789, static_cast<std::uint64_t>(c));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    seen.insert(u);
    sum += u;
    below_tenth += u < 0.1;
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kDraws));
  EXPECT_NEAR(sum / kDraws, 0.5, 0.005);       // sd of the mean ~0.0009
  EXPECT_NEAR(below_tenth, kDraws / 10, 600);  // sd ~95
  // Neighbouring seeds are unrelated streams.
  int equal = 0;
  for (std::uint64_t c = 0; c < 1000; ++c) equal += uniform(1000, c) == uniform(1001, c);
  EXPECT_EQ(equal, 0);
}

TEST(SamplerSample, SameSeedAndCounterSameToken) {
  TestRng rng(99);
  std::vector<float> logits(1000);
  for (auto& x : logits) x = rng.normal(1.0);
  const SamplingParams p = make_params(1.0f, 0, 0.95f);
  std::set<TokenId> distinct;
  for (std::uint64_t c = 0; c < 300; ++c) {
    const TokenId t = sample(logits, p, 2024, c);
    EXPECT_EQ(t, sample(logits, p, 2024, c));
    distinct.insert(t);
  }
  // A broad distribution: different counters must give many different draws.
  EXPECT_GT(distinct.size(), 100u);
  // A different seed gives a different sequence.
  int same = 0;
  for (std::uint64_t c = 0; c < 300; ++c)
    same += sample(logits, p, 2024, c) == sample(logits, p, 2025, c);
  EXPECT_LT(same, 30);
}

// The draw is exactly the inverse CDF of candidates() at uniform(seed, counter), except
// within float rounding of a bucket boundary.
TEST(SamplerSample, IsInverseCdfOfCandidates) {
  TestRng rng(5);
  for (int trial = 0; trial < 8; ++trial) {
    std::vector<float> logits(300 + 500 * trial);
    for (auto& x : logits) x = rng.normal(1.0 + trial * 0.5);
    const SamplingParams p = make_params(0.5f + 0.25f * trial, trial % 3 == 0 ? 0 : 40 * trial,
                                         trial % 2 == 0 ? 1.0f : 0.9f, trial == 5 ? 0.02f : 0.0f);
    const Candidates c = candidates(logits, p);
    for (std::uint64_t counter = 0; counter < 500; ++counter) {
      const double u = uniform(77, counter);
      double cum = 0.0;
      std::size_t j = 0;
      bool near_boundary = false;
      for (; j < c.ids.size(); ++j) {
        cum += c.probs[j];
        if (std::abs(u - cum) < 1e-5) near_boundary = true;
        if (u < cum) break;
      }
      j = std::min(j, c.ids.size() - 1);
      if (!near_boundary) {
        EXPECT_EQ(sample(logits, p, 77, counter), c.ids[j]) << "trial " << trial;
      }
    }
  }
}

TEST(SamplerSample, FrequenciesMatchCandidateProbabilities) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f, 0.5f, 1.5f, -0.5f, -3.0f, 0.25f};
  const std::vector<SamplingParams> configs = {
      make_params(1.0f), make_params(0.7f, 4), make_params(1.3f, 0, 0.8f),
      make_params(1.0f, 0, 1.0f, 0.1f), make_params(2.0f, 6, 0.9f, 0.05f)};
  constexpr int kDraws = 20000;
  std::uint64_t seed = 31337;
  for (const auto& p : configs) {
    SCOPED_TRACE(describe(p, logits.size(), 0));
    const Candidates c = candidates(logits, p);
    std::map<TokenId, int> counts;
    for (int d = 0; d < kDraws; ++d)
      ++counts[sample(logits, p, seed, static_cast<std::uint64_t>(d))];
    ++seed;
    double chi2 = 0.0;
    int drawn = 0;
    for (std::size_t j = 0; j < c.ids.size(); ++j) {
      const double expected = c.probs[j] * kDraws;
      const double observed = counts.count(c.ids[j]) ? counts[c.ids[j]] : 0;
      chi2 += (observed - expected) * (observed - expected) / expected;
      drawn += static_cast<int>(observed);
    }
    // Nothing outside the candidate set is ever drawn.
    EXPECT_EQ(drawn, kDraws);
    // Chi-square with df = |candidates| - 1: mean df, sd sqrt(2 df). The bound sits about
    // 7 sd out, yet a sampler that is off by a few percent on any bucket fails it; the seeds
    // are fixed, so the test cannot flake.
    const double df = static_cast<double>(c.ids.size()) - 1.0;
    EXPECT_LT(chi2, df + 7.0 * std::sqrt(2.0 * std::max(df, 1.0)) + 5.0) << "chi2 " << chi2;
  }
}

TEST(SamplerSample, DrawsStayInsideCandidatesAtFullVocabulary) {
  constexpr std::size_t kVocab = 151936;
  TestRng rng(11);
  std::vector<float> logits(kVocab);
  for (auto& x : logits) x = rng.normal(2.0);
  for (const auto& p : {make_params(1.0f), make_params(0.8f, 20), make_params(1.0f, 0, 0.9f)}) {
    const Candidates c = candidates(logits, p);
    const std::set<TokenId> allowed(c.ids.begin(), c.ids.end());
    for (std::uint64_t counter = 0; counter < 40; ++counter) {
      EXPECT_TRUE(allowed.count(sample(logits, p, 8, counter)));
    }
  }
}

// ---------------------------------------------------------------------------------------
// top_logprobs()

TEST(SamplerLogprobs, MatchesNaiveLogSoftmax) {
  TestRng rng(2718);
  for (std::size_t n : {1u, 2u, 5u, 64u, 1000u}) {
    std::vector<float> logits(n);
    for (auto& x : logits) x = std::round(rng.normal(3.0) * 4.0f) / 4.0f;  // some ties
    const std::vector<double> want = naive_log_softmax(logits);
    std::vector<int> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return logits[a] > logits[b]; });
    for (int k : {0, 1, 3, 20}) {
      const auto got = top_logprobs(logits, k, std::nullopt);
      ASSERT_EQ(got.size(), std::min<std::size_t>(k, n));
      for (std::size_t j = 0; j < got.size(); ++j) {
        EXPECT_EQ(got[j].id, order[j]) << "n " << n << " k " << k << " j " << j;
        EXPECT_NEAR(got[j].logprob, want[got[j].id], 1e-5);
      }
    }
    // All of them: a distribution.
    const auto all = top_logprobs(logits, static_cast<std::int32_t>(n), std::nullopt);
    double total = 0.0;
    for (const auto& t : all) total += std::exp(static_cast<double>(t.logprob));
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

TEST(SamplerLogprobs, IncludeAndClamping) {
  // log_softmax([2, 1, 0, -1]) = x - log(11.4752) = x - 2.44019.
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  const double lse = std::log(std::exp(2.0) + std::exp(1.0) + 1.0 + std::exp(-1.0));

  auto got = top_logprobs(logits, 2, 3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].id, 0);
  EXPECT_EQ(got[1].id, 1);
  EXPECT_EQ(got[2].id, 3);  // appended last
  EXPECT_NEAR(got[2].logprob, -1.0 - lse, 1e-6);

  got = top_logprobs(logits, 2, 1);  // already in the top 2: not repeated
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].id, 1);

  got = top_logprobs(logits, 0, 2);  // k 0: just the included token
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, 2);
  EXPECT_NEAR(got[0].logprob, -lse, 1e-6);

  EXPECT_TRUE(top_logprobs(logits, 0, std::nullopt).empty());
  EXPECT_TRUE(top_logprobs(logits, -5, std::nullopt).empty());
  EXPECT_EQ(top_logprobs(logits, 100, std::nullopt).size(), 4u);  // clamped to the vocab
  EXPECT_EQ(top_logprobs(logits, 100, 3).size(), 4u);
  EXPECT_THROW(top_logprobs(logits, 2, 4), Error);
  EXPECT_THROW(top_logprobs(logits, 2, -1), Error);
}

TEST(SamplerLogprobs, RawLogitsAndNonFiniteValues) {
  // Logprobs ignore temperature and filters by construction (no params); NaN is -inf.
  const std::vector<float> logits = {0.0f, kNaN, -kInf, 0.0f};
  const auto got = top_logprobs(logits, 4, std::nullopt);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].id, 0);
  EXPECT_EQ(got[1].id, 3);
  EXPECT_NEAR(got[0].logprob, std::log(0.5), 1e-6);
  EXPECT_EQ(got[2].id, 1);  // both -inf: lower id first
  EXPECT_EQ(got[2].logprob, -kInf);
  EXPECT_EQ(got[3].logprob, -kInf);

  const auto dead = top_logprobs(std::vector<float>{kNaN, -kInf}, 2, std::nullopt);
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_EQ(dead[0].id, 0);
  EXPECT_EQ(dead[0].logprob, 0.0f);  // the point mass candidates() falls back to
  EXPECT_EQ(dead[1].logprob, -kInf);

  const auto inf = top_logprobs(std::vector<float>{1.0f, kInf, kInf}, 3, std::nullopt);
  EXPECT_EQ(inf[0].id, 1);
  EXPECT_NEAR(inf[0].logprob, std::log(0.5), 1e-6);
  EXPECT_EQ(inf[2].logprob, -kInf);

  // Large logits stay finite thanks to the max subtraction.
  const auto big = top_logprobs(std::vector<float>{1e4f, 1e4f - 1.0f}, 1, 1);
  EXPECT_NEAR(big[0].logprob, -std::log1p(std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(big[1].logprob, -1.0 - std::log1p(std::exp(-1.0)), 1e-6);
}

// ---------------------------------------------------------------------------------------
// validate()

void expect_rejected(const SamplingParams& p, const std::string& field,
                     const std::string& also = "") {
  const std::string message = validate(p, 1000);
  EXPECT_NE(message.find(field), std::string::npos) << "message: '" << message << "'";
  if (!also.empty()) {
    EXPECT_NE(message.find(also), std::string::npos) << "message: '" << message << "'";
  }
}

TEST(SamplerValidate, AcceptsValidParams) {
  EXPECT_EQ(validate(SamplingParams{}, 1000), "");
  SamplingParams p = make_params(0.0f, 1000000, 1.0f, 1.0f);
  p.max_tokens = 1;
  p.stop_token_ids = {0, 999};
  p.logprobs = 0;
  p.prompt_logprobs = kMaxLogprobs;
  EXPECT_EQ(validate(p, 1000), "");
  p = make_params(2.5f, 0, 1e-6f, 0.0f);
  p.logprobs = 20;
  EXPECT_EQ(validate(p, 1000), "");
}

TEST(SamplerValidate, NamesTheFieldOfEveryRule) {
  expect_rejected(make_params(-0.5f), "temperature");
  expect_rejected(make_params(kNaN), "temperature", "nan");
  expect_rejected(make_params(kInf), "temperature", "inf");
  expect_rejected(make_params(1.0f, -1), "top_k", "-1");
  expect_rejected(make_params(1.0f, 0, 0.0f), "top_p");
  expect_rejected(make_params(1.0f, 0, -0.1f), "top_p");
  expect_rejected(make_params(1.0f, 0, 1.5f), "top_p", "1.5");
  expect_rejected(make_params(1.0f, 0, kInf), "top_p");
  expect_rejected(make_params(1.0f, 0, kNaN), "top_p", "nan");
  EXPECT_EQ(validate(make_params(1.0f, 0, kNaN), 1000), "top_p must be in (0, 1], got nan");
  expect_rejected(make_params(1.0f, 0, 1.0f, -0.01f), "min_p");
  expect_rejected(make_params(1.0f, 0, 1.0f, 1.01f), "min_p");
  expect_rejected(make_params(1.0f, 0, 1.0f, kNaN), "min_p", "nan");

  SamplingParams p;
  p.max_tokens = 0;
  expect_rejected(p, "max_tokens");
  p = SamplingParams{};
  p.n = 0;
  expect_rejected(p, "n must be in [1, 128]", "0");
  p.n = 129;
  expect_rejected(p, "n must be in [1, 128]", "129");
  p.n = 128;
  EXPECT_EQ(validate(p, 1000), "");
  p = SamplingParams{};
  p.stop_token_ids = {3, 1000};
  expect_rejected(p, "stop_token_ids", "1000");
  p.stop_token_ids = {-1};
  expect_rejected(p, "stop_token_ids", "-1");
  p = SamplingParams{};
  p.logprobs = 21;
  expect_rejected(p, "logprobs", "20");
  p.logprobs = -1;
  expect_rejected(p, "logprobs");
  p = SamplingParams{};
  p.prompt_logprobs = 21;
  expect_rejected(p, "prompt_logprobs");
  p.prompt_logprobs = -2;
  expect_rejected(p, "prompt_logprobs");
}

}  // namespace
}  // namespace cachet::sampling

// The CUDA sampler (kernels/sampling.h) against the host definition, cachet::sampling::sample
// and top_logprobs, on the same logits: random rows of several shapes (gaussian, ties, -inf,
// NaN, all -inf, +inf) under many parameter combinations. The two may differ only where u
// lands within floating-point rounding of a boundary between tokens, so tokens must agree in
// >= 99.9% of the draws (in practice all of them) and in every greedy row.
//
// With logits processing (kernels/logits_processing.h), the device's processed rows must equal
// the host's process_logits() bit for bit, the tokens must follow sample() of the processed
// row, and the log-probabilities must still be top_logprobs() of the raw row.
#include <gtest/gtest.h>

#include "support/gpu_test.h"

#if CACHET_WITH_CUDA

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cachet/sampling.h"
#include "logits_processing.h"
#include "sampling.h"
#include "sampling/logits_processors.h"
#include "sampling/sampler.h"
#include "support/cuda_test_util.h"

namespace cachet::kernels {
namespace {

using cachet::testing::DeviceBuffer;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

enum class RowKind { kGaussian, kTies, kNegInf, kNaN, kAllNegInf, kPosInf, kFlat, kCount };

const char* kind_name(RowKind k) {
  static const char* names[] = {"gaussian",    "ties",    "neg_inf", "nan",
                                "all_neg_inf", "pos_inf", "flat"};
  return names[static_cast<int>(k)];
}

std::vector<float> make_logits(RowKind kind, std::int32_t vocab, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const float scale = 1.0f + 7.0f * unit(rng);
  std::vector<float> x(vocab);
  for (float& v : x) v = scale * normal(rng);
  switch (kind) {
    case RowKind::kGaussian:
      break;
    case RowKind::kTies:  // few distinct values, -0 and +0 among them
      for (float& v : x) v = std::round(v / scale * 2.0f) * 0.5f;
      for (std::int32_t i = 0; i < vocab; i += 7) x[i] = (i / 7) % 2 ? 0.0f : -0.0f;
      break;
    case RowKind::kNegInf:
      for (float& v : x) {
        if (unit(rng) < 0.5f) v = -kInf;
      }
      break;
    case RowKind::kNaN:
      for (float& v : x) {
        if (unit(rng) < 0.2f) v = kNaN;
      }
      break;
    case RowKind::kAllNegInf:
      for (std::int32_t i = 0; i < vocab; ++i) x[i] = i % 3 ? -kInf : kNaN;
      break;
    case RowKind::kPosInf:
      for (std::int32_t i = 0; i < vocab; ++i) {
        if (unit(rng) < 0.01f || i == vocab - 1) x[i] = kInf;
      }
      break;
    case RowKind::kFlat:  // every logit equal: the rank order is the id order
      std::fill(x.begin(), x.end(), 1.25f);
      break;
    default:
      break;
  }
  return x;
}

struct Draw {
  std::vector<float> logits;
  SamplingRow row;
  // Logits processing, when `processed` is not empty: the edits the device applies and the
  // host's processed row (sampling::process_logits), which the token is drawn from.
  std::vector<sampling::LogitEdit> edits = {};
  std::vector<float> processed = {};
};

struct Outputs {
  std::vector<std::int32_t> tokens;
  std::vector<float> token_logprob;
  std::vector<std::int32_t> top_ids;
  std::vector<float> top_logprobs;
  std::vector<std::int32_t> nonfinite;
  std::vector<std::int32_t> processed_row;  // per draw: its row of `processed`, or -1
  std::vector<float> processed;             // [processed rows, vocab]
};

// The processed rows of a launch, in reverse draw order (so that a draw's processed row and
// its logits row differ), and their edits.
struct Processing {
  std::vector<ProcessedRow> rows;
  std::vector<sampling::LogitEdit> edits;
  std::vector<std::int32_t> row_of;  // per draw: its processed row, or -1
};

Processing plan_processing(const std::vector<Draw>& draws) {
  Processing pr;
  pr.row_of.assign(draws.size(), -1);
  for (std::size_t i = draws.size(); i-- > 0;) {
    const Draw& d = draws[i];
    if (d.processed.empty()) continue;
    pr.row_of[i] = static_cast<std::int32_t>(pr.rows.size());
    pr.rows.push_back({static_cast<std::int32_t>(i), static_cast<std::int32_t>(pr.edits.size()),
                       static_cast<std::int32_t>(d.edits.size())});
    pr.edits.insert(pr.edits.end(), d.edits.begin(), d.edits.end());
  }
  return pr;
}

// A Processing on the device, with its output rows (filled with a value no row has).
struct DeviceProcessing {
  DeviceProcessing(const Processing& h, std::int32_t vocab)
      : rows(h.rows),
        edits(h.edits),
        processed(std::vector<float>(h.rows.size() * std::size_t(vocab), 123.0f)),
        num_processed(static_cast<std::int32_t>(h.rows.size())) {}

  cudaError_t launch(const float* logits, std::int64_t stride, std::int32_t vocab) const {
    ProcessLogitsParams p;
    p.logits = logits;
    p.row_stride = stride;
    p.processed = processed.get();
    p.rows = rows.get();
    p.edits = edits.get();
    p.num_processed = num_processed;
    p.vocab = vocab;
    return launch_process_logits(p, nullptr);
  }

  DeviceBuffer<ProcessedRow> rows;
  DeviceBuffer<sampling::LogitEdit> edits;
  DeviceBuffer<float> processed;
  std::int32_t num_processed;
};

// Runs the sampler over `draws` (one logits row each, rows padded to `stride`), after the
// logits processing of the draws that have some.
void run_gpu(const std::vector<Draw>& draws, std::int32_t vocab, std::int64_t stride,
             std::int32_t max_logprobs, Outputs& out) {
  const std::int32_t n = static_cast<std::int32_t>(draws.size());
  const Processing proc = plan_processing(draws);
  std::vector<float> logits(std::size_t(n) * stride, kNaN);
  std::vector<SamplingRow> rows(n);
  for (std::int32_t i = 0; i < n; ++i) {
    std::copy(draws[i].logits.begin(), draws[i].logits.end(), logits.begin() + i * stride);
    rows[i] = draws[i].row;
    rows[i].processed_row = proc.row_of[i];
  }
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<SamplingRow> d_rows(rows);
  DeviceBuffer<std::int32_t> d_tokens(std::vector<std::int32_t>(n, -7));
  DeviceBuffer<float> d_token_lp(std::vector<float>(n, 123.0f));
  const std::size_t top_size = std::size_t(n) * std::max(max_logprobs, 1);
  DeviceBuffer<std::int32_t> d_top_ids(std::vector<std::int32_t>(top_size, -7));
  DeviceBuffer<float> d_top_lp(std::vector<float>(top_size, 123.0f));
  DeviceBuffer<std::int32_t> d_nonfinite(std::vector<std::int32_t>(n, -7));
  SampleParams p;
  p.logits = d_logits.get();
  p.row_stride = stride;
  p.rows = d_rows.get();
  p.tokens = d_tokens.get();
  p.token_logprob = d_token_lp.get();
  p.top_ids = d_top_ids.get();
  p.top_logprobs = d_top_lp.get();
  p.nonfinite = d_nonfinite.get();
  p.num_rows = n;
  p.vocab = vocab;
  p.max_logprobs = max_logprobs;
  std::optional<DeviceProcessing> d_proc;
  if (!proc.rows.empty()) {
    d_proc.emplace(proc, vocab);
    CUDA_OK(d_proc->launch(d_logits.get(), stride, vocab));
    p.processed = d_proc->processed.get();
  }
  CUDA_OK(launch_sample(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  out.tokens = d_tokens.download();
  out.token_logprob = d_token_lp.download();
  out.top_ids = d_top_ids.download();
  out.top_logprobs = d_top_lp.download();
  out.nonfinite = d_nonfinite.download();
  out.processed_row = proc.row_of;
  if (d_proc) out.processed = d_proc->processed.download();
}

SamplingParams host_params(const SamplingRow& r) {
  SamplingParams p;
  p.temperature = r.temperature;
  p.top_k = r.top_k;
  p.top_p = r.top_p;
  p.min_p = r.min_p;
  return p;
}

bool same_logprob(float a, float b) {
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::abs(a - b) <= 1e-4f;
}

// Checks the logprob outputs of draw i against top_logprobs().
void check_logprobs(const Draw& d, std::int32_t i, std::int32_t max_logprobs, const Outputs& out) {
  const std::span<const float> logits(d.logits);
  const std::int32_t token = out.tokens[i];
  if (d.row.num_logprobs < 0) {
    EXPECT_TRUE(std::isnan(out.token_logprob[i])) << "draw " << i;
  } else {
    const auto with_token = sampling::top_logprobs(logits, 0, token);
    ASSERT_EQ(with_token.size(), 1u);
    EXPECT_TRUE(same_logprob(out.token_logprob[i], with_token[0].logprob))
        << "draw " << i << " token " << token << ": " << out.token_logprob[i] << " vs "
        << with_token[0].logprob;
  }
  const std::int32_t k = std::max(0, std::min(d.row.num_logprobs, max_logprobs));
  const auto want = sampling::top_logprobs(logits, k, std::nullopt);
  const std::int32_t* ids = out.top_ids.data() + std::size_t(i) * max_logprobs;
  const float* values = out.top_logprobs.data() + std::size_t(i) * max_logprobs;
  for (std::int32_t j = 0; j < max_logprobs; ++j) {
    if (j >= std::ssize(want)) {
      EXPECT_EQ(ids[j], -1) << "draw " << i << " entry " << j;
      EXPECT_TRUE(std::isnan(values[j])) << "draw " << i << " entry " << j;
      continue;
    }
    EXPECT_TRUE(same_logprob(values[j], want[j].logprob))
        << "draw " << i << " entry " << j << ": " << values[j] << " vs " << want[j].logprob;
    if (ids[j] != want[j].id) {
      // Only a swap between (nearly) equal log-probabilities is acceptable.
      const auto it = std::find_if(want.begin(), want.end(),
                                   [&](const TokenLogprob& t) { return t.id == ids[j]; });
      EXPECT_TRUE(it != want.end() && std::abs(it->logprob - want[j].logprob) < 1e-6f)
          << "draw " << i << " entry " << j << ": id " << ids[j] << " vs " << want[j].id;
    }
  }
}

// Checks draw i's processed row on the device against the host's, bit for bit (-0 is not
// +0), except that a NaN may come back with another payload (GPU arithmetic on a NaN returns
// its canonical NaN; every NaN is -inf to the sampler).
void check_processed(const Draw& d, std::int32_t i, const Outputs& out) {
  const std::size_t vocab = d.processed.size();
  const float* got = out.processed.data() + std::size_t(out.processed_row[i]) * vocab;
  int bad = 0;
  for (std::size_t j = 0; j < vocab; ++j) {
    const float a = got[j], b = d.processed[j];
    if (std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b)) continue;
    if (std::isnan(a) && std::isnan(b)) continue;
    if (++bad <= 5) {
      ADD_FAILURE() << "draw " << i << " processed logit " << j << ": gpu " << a << " (0x"
                    << std::hex << std::bit_cast<std::uint32_t>(a) << "), host " << b << " (0x"
                    << std::bit_cast<std::uint32_t>(b) << std::dec << ")";
    }
  }
  EXPECT_EQ(bad, 0) << "draw " << i << ": processed logits that differ";
}

struct Tally {
  std::int64_t draws = 0, mismatches = 0, greedy = 0;
};

// Samples every draw on the device and on the host and compares.
void compare(const std::vector<Draw>& draws, std::int32_t vocab, std::int32_t max_logprobs,
             Tally& tally) {
  Outputs out;
  run_gpu(draws, vocab, vocab + (vocab % 4 == 0 ? 4 : 1), max_logprobs, out);
  if (::testing::Test::HasFatalFailure()) return;
  for (std::size_t i = 0; i < draws.size(); ++i) {
    const Draw& d = draws[i];
    const bool processed = !d.processed.empty();
    if (processed) check_processed(d, static_cast<std::int32_t>(i), out);
    const TokenId want = sampling::sample(processed ? d.processed : d.logits, host_params(d.row),
                                          d.row.seed, d.row.counter);
    const bool greedy = !(d.row.temperature > 0.0f);
    ++tally.draws;
    tally.greedy += greedy;
    if (out.tokens[i] != want) {
      ++tally.mismatches;
      const std::string what =
          std::string(greedy ? "greedy " : "") + (processed ? "processed " : "") + "draw " +
          std::to_string(i) + " (vocab " + std::to_string(vocab) + ", T " +
          std::to_string(d.row.temperature) + ", top_k " + std::to_string(d.row.top_k) +
          ", top_p " + std::to_string(d.row.top_p) + ", min_p " + std::to_string(d.row.min_p) +
          ", seed " + std::to_string(d.row.seed) + ", counter " + std::to_string(d.row.counter) +
          "): gpu " + std::to_string(out.tokens[i]) + ", host " + std::to_string(want);
      // Greedy has no rounding to hide behind; a sampled draw may differ only when u falls
      // within rounding of a boundary (counted, and bounded by expect_rate).
      if (greedy) {
        ADD_FAILURE() << what;
      } else {
        std::cout << "note: " << what << "\n";
      }
    }
    check_logprobs(d, static_cast<std::int32_t>(i), max_logprobs, out);
  }
}

const float kTemperatures[] = {0.0f, 0.5f, 1.0f, 1.7f};
const std::int32_t kTopK[] = {0, 1, 5, 50};
const float kTopP[] = {1.0f, 0.9f, 0.5f, 0.01f};
const float kMinP[] = {0.0f, 0.05f, 0.3f};

// Filters and logprobs drawn from the tables above; the draw at a counter below max_counter.
SamplingRow random_row(std::mt19937_64& rng, std::uint64_t max_counter) {
  return SamplingRow{kTemperatures[rng() % 4],
                     kTopK[rng() % 4],
                     kTopP[rng() % 4],
                     kMinP[rng() % 3],
                     rng(),
                     rng() % max_counter,
                     static_cast<std::int32_t>(rng() % 22) - 1};
}

// Up to max_n token ids, half of them from the first 8 ids so that tokens repeat.
std::vector<TokenId> random_ids(std::int32_t vocab, std::size_t max_n, std::mt19937_64& rng) {
  std::vector<TokenId> ids(rng() % (max_n + 1));
  for (TokenId& id : ids) {
    const std::uint64_t pool = rng() % 2 ? std::min(vocab, 8) : vocab;
    id = static_cast<TokenId>(rng() % pool);
  }
  return ids;
}

// The request's prompt, output so far and the model's EOS ids.
struct History {
  std::vector<TokenId> prompt, output, eos;
  sampling::TokenHistory view() const { return {prompt, output, eos}; }
};

// Random logits processing within validate()'s ranges: min_tokens (active or not, masking the
// raw argmax half of the time), logit_bias, repetition, presence and frequency penalties.
SamplingParams random_processing(const Draw& d, const History& h, std::mt19937_64& rng) {
  const std::int32_t vocab = static_cast<std::int32_t>(d.logits.size());
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  SamplingParams p = host_params(d.row);
  const std::int32_t done = static_cast<std::int32_t>(h.output.size());
  p.min_tokens = rng() % 2 ? done + 1 + static_cast<std::int32_t>(rng() % 4)
                           : static_cast<std::int32_t>(rng() % (done + 1));
  p.stop_token_ids = random_ids(vocab, 3, rng);
  if (rng() % 2) {
    SamplingParams greedy;
    greedy.temperature = 0.0f;
    p.stop_token_ids.push_back(sampling::sample(d.logits, greedy, 0, 0));  // the raw argmax
  }
  p.ignore_eos = rng() % 4 == 0;
  for (TokenId id : random_ids(vocab, 6, rng)) {
    p.logit_bias[id] =
        rng() % 8 == 0 ? (rng() % 2 ? 100.0f : -100.0f) : 200.0f * unit(rng) - 100.0f;
  }
  const float penalties[] = {1.0f, 1.0f, 1.2f, 0.7f, 0.25f + 1.75f * unit(rng)};
  p.repetition_penalty = penalties[rng() % 5];
  p.presence_penalty = rng() % 2 ? 4.0f * unit(rng) - 2.0f : 0.0f;
  p.frequency_penalty = rng() % 2 ? 4.0f * unit(rng) - 2.0f : 0.0f;
  return p;
}

// Gives `d` random logits processing over a random history: the host's edits and processed
// row. Now and then an edit outside the vocabulary is added, which the device must skip.
void add_processing(Draw& d, std::mt19937_64& rng) {
  const std::int32_t vocab = static_cast<std::int32_t>(d.logits.size());
  History h{random_ids(vocab, 48, rng), random_ids(vocab, 24, rng), random_ids(vocab, 2, rng)};
  const SamplingParams p = random_processing(d, h, rng);
  sampling::logit_edits(p, h.view(), vocab, d.edits);
  d.processed = d.logits;
  sampling::process_logits(d.processed, p, h.view());
  if (rng() % 4 == 0) d.edits.insert(d.edits.begin(), sampling::LogitEdit{-1, 1});
  if (rng() % 4 == 0) d.edits.push_back(sampling::LogitEdit{vocab, 1});
}

// The only legitimate difference is u within ~1e-15 of a boundary, so in practice every
// draw agrees; the contract is >= 99.9%.
void expect_rate(const Tally& t) {
  EXPECT_LE(static_cast<double>(t.mismatches), 0.001 * static_cast<double>(t.draws))
      << t.mismatches << " of " << t.draws << " draws differ";
}

TEST(CudaSampling, SmallVocabulariesEveryParameterCombination) {
  CACHET_REQUIRE_GPU();
  std::mt19937_64 rng(11);
  Tally tally;
  for (std::int32_t vocab : {1, 2, 17, 1000}) {
    for (int kind = 0; kind < static_cast<int>(RowKind::kCount); ++kind) {
      const auto logits = make_logits(static_cast<RowKind>(kind), vocab, rng);
      std::vector<Draw> draws;
      for (float t : kTemperatures) {
        for (std::int32_t k : kTopK) {
          for (float tp : kTopP) {
            for (float mp : kMinP) {
              for (int rep = 0; rep < 2; ++rep) {
                SamplingRow r{
                    t, k, tp, mp, rng(), rng() % 1000, static_cast<std::int32_t>(rng() % 22) - 1};
                draws.push_back({logits, r});
              }
            }
          }
        }
      }
      SCOPED_TRACE(std::string("vocab ") + std::to_string(vocab) + " " +
                   kind_name(static_cast<RowKind>(kind)));
      compare(draws, vocab, kMaxSampleLogprobs, tally);
      if (HasFatalFailure()) return;
    }
  }
  expect_rate(tally);
}

TEST(CudaSampling, LargeVocabularyRandomCombinations) {
  CACHET_REQUIRE_GPU();
  std::mt19937_64 rng(12);
  Tally tally;
  const std::int32_t vocab = 151936;
  for (int kind = 0; kind < static_cast<int>(RowKind::kCount); ++kind) {
    const auto logits = make_logits(static_cast<RowKind>(kind), vocab, rng);
    std::vector<Draw> draws;
    for (int i = 0; i < 24; ++i) draws.push_back({logits, random_row(rng, 100000)});
    // The paths past the shared-memory capacity: a top_k of thousands, a wide nucleus.
    draws.push_back({logits, SamplingRow{1.0f, 3000, 1.0f, 0.0f, rng(), 1, 5}});
    draws.push_back({logits, SamplingRow{1.0f, 3000, 0.99f, 0.0f, rng(), 2, -1}});
    draws.push_back({logits, SamplingRow{1.7f, 0, 0.995f, 0.001f, rng(), 3, 20}});
    draws.push_back({logits, SamplingRow{1.0f, 0, 1.0f, 0.0f, rng(), 4, 0}});
    draws.push_back({logits, SamplingRow{0.0f, 0, 1.0f, 0.0f, rng(), 5, -1}});
    SCOPED_TRACE(std::string("vocab 151936 ") + kind_name(static_cast<RowKind>(kind)));
    compare(draws, vocab, 8, tally);
    if (HasFatalFailure()) return;
  }
  expect_rate(tally);
}

TEST(CudaSampling, ManyCountersOfOneRowFollowTheHost) {
  CACHET_REQUIRE_GPU();
  // One realistic row, many draws: exercises the inverse CDF across the whole distribution.
  std::mt19937_64 rng(13);
  Tally tally;
  const std::int32_t vocab = 32000;
  const auto logits = make_logits(RowKind::kGaussian, vocab, rng);
  std::vector<Draw> draws;
  for (std::uint64_t c = 0; c < 512; ++c) {
    draws.push_back({logits, SamplingRow{1.0f, 0, c % 2 ? 0.9f : 1.0f, 0.0f, 42, c, -1}});
  }
  compare(draws, vocab, 0, tally);
  expect_rate(tally);
}

TEST(CudaSampling, IsDeterministic) {
  CACHET_REQUIRE_GPU();
  std::mt19937_64 rng(14);
  const std::int32_t vocab = 50000;
  std::vector<Draw> draws;
  for (int i = 0; i < 16; ++i) {
    draws.push_back({make_logits(RowKind::kGaussian, vocab, rng),
                     SamplingRow{1.0f, 0, 0.9f, 0.0f, rng(), rng(), 5}});
  }
  Outputs a, b;
  run_gpu(draws, vocab, vocab, 5, a);
  run_gpu(draws, vocab, vocab, 5, b);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.top_ids, b.top_ids);
  for (std::size_t i = 0; i < a.token_logprob.size(); ++i) {
    EXPECT_EQ(a.token_logprob[i], b.token_logprob[i]);
  }
}

// debug_poison_kv relies on it: the device sampler turns NaN into -inf (an all-NaN row
// samples token 0), so it must say how many logits of each row were not finite.
TEST(CudaSampling, CountsTheNonFiniteLogitsOfEachRow) {
  CACHET_REQUIRE_GPU();
  std::mt19937_64 rng(15);
  const std::int32_t vocab = 3001;
  std::vector<Draw> draws;
  for (int i = 0; i < 12; ++i) {
    std::vector<float> x = make_logits(RowKind::kGaussian, vocab, rng);
    const int bad = i < 3 ? 0 : i < 9 ? i : vocab;  // none, a few, every one
    for (int k = 0; k < bad; ++k)
      x[static_cast<std::size_t>(rng() % vocab)] = k % 3 == 0 ? kNaN : k % 3 == 1 ? kInf : -kInf;
    const bool greedy = i % 2 == 0;
    draws.push_back({std::move(x), SamplingRow{greedy ? 0.0f : 1.0f, 0, 1.0f, 0.0f, rng(), 0, 2}});
  }
  Outputs out;
  run_gpu(draws, vocab, vocab + 3, 2, out);
  for (std::size_t i = 0; i < draws.size(); ++i) {
    const auto expected = std::count_if(draws[i].logits.begin(), draws[i].logits.end(),
                                        [](float v) { return !std::isfinite(v); });
    EXPECT_EQ(out.nonfinite[i], expected) << "row " << i;
  }
}

TEST(CudaSampling, ProcessedRowsSmallVocabularies) {
  CACHET_REQUIRE_GPU();
  std::mt19937_64 rng(16);
  Tally tally;
  for (std::int32_t vocab : {1, 2, 17, 1000, 1024}) {
    for (int kind = 0; kind < static_cast<int>(RowKind::kCount); ++kind) {
      const auto logits = make_logits(static_cast<RowKind>(kind), vocab, rng);
      std::vector<Draw> draws;
      for (int i = 0; i < 64; ++i) {
        draws.push_back({logits, random_row(rng, 1000)});
        add_processing(draws.back(), rng);
      }
      SCOPED_TRACE(std::string("vocab ") + std::to_string(vocab) + " " +
                   kind_name(static_cast<RowKind>(kind)));
      compare(draws, vocab, kMaxSampleLogprobs, tally);
      if (HasFatalFailure()) return;
    }
  }
  expect_rate(tally);
}

TEST(CudaSampling, ProcessedRowsLargeVocabulary) {
  CACHET_REQUIRE_GPU();
  std::mt19937_64 rng(17);
  Tally tally;
  const std::int32_t vocab = 151936;
  for (int kind = 0; kind < static_cast<int>(RowKind::kCount); ++kind) {
    const auto logits = make_logits(static_cast<RowKind>(kind), vocab, rng);
    std::vector<Draw> draws;
    for (int i = 0; i < 12; ++i) draws.push_back({logits, random_row(rng, 100000)});
    // Past the shared-memory capacity: a top_k of thousands, a wide nucleus.
    draws.push_back({logits, SamplingRow{1.0f, 3000, 1.0f, 0.0f, rng(), 1, 5}});
    draws.push_back({logits, SamplingRow{1.0f, 0, 0.99f, 0.0f, rng(), 2, -1}});
    for (Draw& d : draws) add_processing(d, rng);
    SCOPED_TRACE(std::string("vocab 151936 ") + kind_name(static_cast<RowKind>(kind)));
    compare(draws, vocab, 8, tally);
    if (HasFatalFailure()) return;
  }
  expect_rate(tally);
}

// Processed and raw rows in one launch; among the processed ones, rows whose every logit is
// masked (min_tokens over every id), which must fall back to token 0 whatever the raw row.
TEST(CudaSampling, MixesProcessedAndRawRows) {
  CACHET_REQUIRE_GPU();
  std::mt19937_64 rng(18);
  Tally tally;
  for (std::int32_t vocab : {1001, 32000}) {
    std::vector<Draw> draws;
    for (int i = 0; i < 48; ++i) {
      const auto kind = static_cast<RowKind>(rng() % static_cast<int>(RowKind::kCount));
      draws.push_back({make_logits(kind, vocab, rng), random_row(rng, 1000)});
      if (rng() % 2) add_processing(draws.back(), rng);
    }
    for (float t : {0.0f, 1.0f}) {
      Draw d{make_logits(RowKind::kGaussian, vocab, rng), SamplingRow{t, 0, 1.0f, 0.0f, 7, 0, 3}};
      SamplingParams masked = host_params(d.row);
      masked.min_tokens = 1;
      for (TokenId id = 0; id < vocab; ++id) masked.stop_token_ids.push_back(id);
      const History h{{1, 2, 3}, {}, {}};
      sampling::logit_edits(masked, h.view(), vocab, d.edits);
      d.processed = d.logits;
      sampling::process_logits(d.processed, masked, h.view());
      draws.push_back(std::move(d));
    }
    SCOPED_TRACE(std::string("vocab ") + std::to_string(vocab));
    compare(draws, vocab, 4, tally);
    if (HasFatalFailure()) return;
  }
  expect_rate(tally);
}

TEST(CudaSampling, ProcessLogitsRejectsInvalidParams) {
  CACHET_REQUIRE_GPU();
  ProcessLogitsParams p;
  p.num_processed = 1;
  p.vocab = 0;
  EXPECT_EQ(launch_process_logits(p, nullptr), cudaErrorInvalidValue);
  p.vocab = 10;
  p.row_stride = 9;
  EXPECT_EQ(launch_process_logits(p, nullptr), cudaErrorInvalidValue);
  p.row_stride = 10;
  p.num_processed = -1;
  EXPECT_EQ(launch_process_logits(p, nullptr), cudaErrorInvalidValue);
  p.num_processed = 1;
  EXPECT_EQ(launch_process_logits(p, nullptr), cudaErrorInvalidValue);  // null pointers
  // Each pointer missing on its own (the others are never dereferenced: nothing launches).
  const auto fake = [](auto* ptr) { return reinterpret_cast<decltype(ptr)>(std::uintptr_t{256}); };
  for (int missing = 0; missing < 4; ++missing) {
    p.logits = missing == 0 ? nullptr : fake(p.logits);
    p.processed = missing == 1 ? nullptr : fake(p.processed);
    p.rows = missing == 2 ? nullptr : fake(p.rows);
    p.edits = missing == 3 ? nullptr : fake(p.edits);
    EXPECT_EQ(launch_process_logits(p, nullptr), cudaErrorInvalidValue) << "pointer " << missing;
  }
  p.num_processed = 0;
  EXPECT_EQ(launch_process_logits(p, nullptr), cudaSuccess);  // nothing to do
  CUDA_OK(cudaDeviceSynchronize());
}

TEST(CudaSampling, RejectsInvalidParams) {
  CACHET_REQUIRE_GPU();
  SampleParams p;
  p.num_rows = 1;
  p.vocab = 0;
  EXPECT_EQ(launch_sample(p, nullptr), cudaErrorInvalidValue);
  p.vocab = 10;
  p.row_stride = 10;
  p.max_logprobs = kMaxSampleLogprobs + 1;
  EXPECT_EQ(launch_sample(p, nullptr), cudaErrorInvalidValue);
  p.max_logprobs = 0;
  EXPECT_EQ(launch_sample(p, nullptr), cudaErrorInvalidValue);  // null pointers
  p.num_rows = 0;
  EXPECT_EQ(launch_sample(p, nullptr), cudaSuccess);  // nothing to do
}

}  // namespace
}  // namespace cachet::kernels

#else  // !CACHET_WITH_CUDA

TEST(CudaSampling, Skipped) { GTEST_SKIP() << "built without CUDA"; }

#endif

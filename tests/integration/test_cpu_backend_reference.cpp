// The CPU backend against the independent fp64 reference forward, on random-weight models
// of every supported architecture built in memory; plus batch invariance (bit-identical
// logits however a sequence is chunked, batched or threaded), greedy decoding through the
// paged cache, and rejection of malformed batches.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "cachet/errors.h"
#include "support/reference_model.h"
#include "support/test_support.h"

namespace cachet::backend {
namespace {

using model::Arch;
using model::HostTensor;
using model::ModelConfig;
using model::ModelWeights;
using Logits = std::vector<std::vector<float>>;  // [positions][vocab]

// splitmix64.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform with standard deviation `std`.
  float uniform(double std) {
    const double u = static_cast<double>(next() >> 11) / 9007199254740992.0;  // [0, 1)
    return static_cast<float>((2.0 * u - 1.0) * std * std::sqrt(3.0));
  }
  std::int32_t below(std::int32_t n) { return static_cast<std::int32_t>(next() % n); }

 private:
  std::uint64_t state_;
};

struct ModelCase {
  std::string name;
  ModelConfig config;
  std::uint64_t seed;
};

// gtest prints a parameter with this instead of its bytes.
void PrintTo(const ModelCase& mc, std::ostream* os) { *os << mc.name; }

ModelConfig make_config(Arch arch, std::int32_t vocab, std::int32_t hidden, std::int32_t inter,
                        std::int32_t layers, std::int32_t heads, std::int32_t kv_heads,
                        std::int32_t head_dim, bool tied) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.max_position_embeddings = 4096;
  c.tie_word_embeddings = tied;
  c.rms_norm_eps = arch == Arch::kLlama ? 1e-5 : 1e-6;
  c.rope_theta = arch == Arch::kLlama ? 10000.0 : 1000000.0;
  c.attention_bias = arch == Arch::kQwen2;
  c.qk_norm = arch == Arch::kQwen3;
  return c;
}

std::vector<ModelCase> model_cases() {
  std::vector<ModelCase> cases;
  // MHA (GQA ratio 1), untied, an intermediate size that is no multiple of 16.
  cases.push_back(
      {"LlamaMhaUntied", make_config(Arch::kLlama, 128, 32, 80, 2, 4, 4, 8, false), 11});
  // GQA 2 with llama3 rope_scaling; with head_dim 16 and theta 5e5 the three wavelength
  // bands (kept, interpolated, divided by factor) all occur for original_max 64.
  ModelCase llama3{"Llama3ScaledGqa2Tied",
                   make_config(Arch::kLlama, 256, 64, 128, 2, 4, 2, 16, true), 12};
  llama3.config.rope_theta = 500000.0;
  llama3.config.rope_scaling = model::Llama3RopeScaling{8.0, 1.0, 4.0, 64};
  cases.push_back(llama3);
  // GQA 4, head_dim 6 (no multiple of anything), three layers.
  cases.push_back({"LlamaGqa4", make_config(Arch::kLlama, 150, 48, 96, 3, 8, 2, 6, false), 13});
  // Qwen2: q/k/v biases, GQA 4, tied.
  cases.push_back({"Qwen2BiasTied", make_config(Arch::kQwen2, 300, 64, 136, 2, 8, 2, 8, true), 14});
  // Qwen3: q/k norm, head_dim 16 != hidden / heads = 8, GQA 2, tied.
  cases.push_back(
      {"Qwen3QkNormTied", make_config(Arch::kQwen3, 200, 32, 64, 3, 4, 2, 16, true), 15});
  // Qwen3 untied, MHA, head_dim 24 != 16.
  cases.push_back({"Qwen3Untied", make_config(Arch::kQwen3, 160, 32, 72, 2, 2, 2, 24, false), 16});
  return cases;
}

// Scales chosen so logits are far from uniform (std ~4, a clear top-1): projections
// 1/sqrt(fan_in), norm weights 1 +- 0.1, the output embedding 4/sqrt(hidden).
ModelWeights random_weights(const ModelConfig& c, std::uint64_t seed) {
  Rng rng(seed);
  const auto values = [&](const std::vector<std::int64_t>& shape, double std) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = rng.uniform(std);
    return v;
  };
  const auto tensor = [&](std::vector<std::int64_t> shape, double std) {
    std::vector<float> v = values(shape, std);
    return HostTensor::from_f32(std::move(shape), std::move(v));
  };
  const auto norm = [&](std::int64_t n) {
    std::vector<float> v = values({n}, 0.1);
    for (float& x : v) x += 1.0f;
    return HostTensor::from_f32({n}, std::move(v));
  };
  const std::int64_t h = c.hidden_size, q = std::int64_t{c.num_heads} * c.head_dim;
  const std::int64_t kv = std::int64_t{c.num_kv_heads} * c.head_dim, inter = c.intermediate_size;
  const double out_std = 4.0 / std::sqrt(static_cast<double>(h));
  ModelWeights w;
  w.embed_tokens = tensor({c.vocab_size, h}, c.tie_word_embeddings ? out_std : 1.0);
  for (std::int32_t l = 0; l < c.num_layers; ++l) {
    model::LayerWeights lw;
    lw.input_norm = norm(h);
    lw.q_proj = tensor({q, h}, 1.0 / std::sqrt(double(h)));
    lw.k_proj = tensor({kv, h}, 1.0 / std::sqrt(double(h)));
    lw.v_proj = tensor({kv, h}, 1.0 / std::sqrt(double(h)));
    if (c.attention_bias) {
      lw.q_bias = tensor({q}, 0.5);
      lw.k_bias = tensor({kv}, 0.5);
      lw.v_bias = tensor({kv}, 0.5);
    }
    if (c.qk_norm) {
      lw.q_norm = norm(c.head_dim);
      lw.k_norm = norm(c.head_dim);
    }
    lw.o_proj = tensor({h, q}, 1.0 / std::sqrt(double(q)));
    lw.post_attention_norm = norm(h);
    lw.gate_proj = tensor({inter, h}, 1.0 / std::sqrt(double(h)));
    lw.up_proj = tensor({inter, h}, 1.0 / std::sqrt(double(h)));
    lw.down_proj = tensor({h, inter}, 1.0 / std::sqrt(double(inter)));
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = norm(h);
  if (!c.tie_word_embeddings) w.lm_head = tensor({c.vocab_size, h}, out_std);
  return w;
}

std::unique_ptr<Backend> make_backend(const ModelCase& mc, int threads, std::int32_t block_size,
                                      std::int64_t num_blocks = 160) {
  const KvCacheSpec kv{mc.config.num_layers, mc.config.num_kv_heads, mc.config.head_dim, block_size,
                       num_blocks};
  return make_cpu_backend(mc.config, random_weights(mc.config, mc.seed), kv, threads);
}

std::vector<TokenId> random_tokens(std::int32_t n, std::int32_t vocab, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<TokenId> tokens(static_cast<std::size_t>(n));
  for (auto& t : tokens) t = rng.below(vocab);
  return tokens;
}

// Hands out block ids in a shuffled order, so block tables are neither contiguous nor
// monotonic.
class BlockAllocator {
 public:
  BlockAllocator(std::int64_t num_blocks, std::uint64_t seed) : ids_(num_blocks) {
    std::iota(ids_.begin(), ids_.end(), 0);
    Rng rng(seed);
    for (std::size_t i = ids_.size(); i > 1; --i) std::swap(ids_[i - 1], ids_[rng.next() % i]);
  }
  std::int32_t take() {
    if (ids_.empty()) throw std::runtime_error("test ran out of KV blocks");
    const std::int32_t id = ids_.back();
    ids_.pop_back();
    return id;
  }

 private:
  std::vector<std::int32_t> ids_;
};

struct Sequence {
  std::vector<TokenId> tokens;
  std::vector<std::int32_t> blocks;  // its block table
  std::int32_t computed = 0;         // positions whose K/V are in the cache
  Logits logits;                     // one row per computed position
};

// One engine step: each entry computes the next `count` tokens of its sequence, asking for
// the logits of all of them.
struct Work {
  Sequence* seq;
  std::int32_t count;
};

void run_step(Backend& backend, BlockAllocator& blocks, const std::vector<Work>& work) {
  const std::int32_t bs = backend.kv_spec().block_size;
  ForwardBatch b;
  b.query_start.push_back(0);
  std::size_t max_blocks = 0;
  for (const auto& [seq, count] : work) {
    const std::int32_t context = seq->computed + count;
    while (std::ssize(seq->blocks) * bs < context) seq->blocks.push_back(blocks.take());
    max_blocks = std::max(max_blocks, seq->blocks.size());
  }
  // One spare column of junk: entries past a sequence's blocks must be ignored.
  b.max_blocks_per_seq = static_cast<std::int32_t>(max_blocks) + 1;
  for (const auto& [seq, count] : work) {
    for (std::int32_t p = seq->computed; p < seq->computed + count; ++p) {
      b.logits_indices.push_back(b.num_tokens());
      b.token_ids.push_back(seq->tokens[p]);
      b.positions.push_back(p);
      b.slot_mapping.push_back(std::int64_t{seq->blocks[p / bs]} * bs + p % bs);
    }
    b.query_start.push_back(b.num_tokens());
    b.context_lens.push_back(seq->computed + count);
    std::vector<std::int32_t> row = seq->blocks;
    row.resize(b.max_blocks_per_seq, -12345);
    b.block_tables.insert(b.block_tables.end(), row.begin(), row.end());
  }
  std::vector<float> logits;
  backend.forward(b, logits);
  const std::int32_t vocab = backend.vocab_size();
  ASSERT_EQ(logits.size(), b.logits_indices.size() * vocab);
  std::size_t row = 0;
  for (const auto& [seq, count] : work) {
    for (std::int32_t i = 0; i < count; ++i, ++row) {
      seq->logits.emplace_back(logits.begin() + row * vocab, logits.begin() + (row + 1) * vocab);
    }
    seq->computed += count;
  }
}

// Computes every prompt through one backend. Sequence i joins at step starts[i] and then
// advances chunks[i] tokens per step; all sequences due in a step share its batch.
std::vector<Logits> run_schedule(Backend& backend, const std::vector<std::vector<TokenId>>& prompts,
                                 const std::vector<std::int32_t>& chunks,
                                 const std::vector<std::int32_t>& starts, std::uint64_t seed) {
  BlockAllocator blocks(backend.kv_spec().num_blocks, seed);
  std::vector<Sequence> seqs(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) seqs[i].tokens = prompts[i];
  for (std::int32_t step = 0;; ++step) {
    std::vector<Work> work;
    bool pending = false;
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      const std::int32_t left = std::ssize(seqs[i].tokens) - seqs[i].computed;
      pending = pending || left > 0;
      if (step >= starts[i] && left > 0) work.push_back({&seqs[i], std::min(chunks[i], left)});
    }
    if (!pending) break;
    if (!work.empty()) run_step(backend, blocks, work);
  }
  std::vector<Logits> out;
  for (auto& s : seqs) out.push_back(std::move(s.logits));
  return out;
}

Logits run_alone(Backend& backend, const std::vector<TokenId>& prompt, std::int32_t chunk,
                 std::uint64_t seed = 7) {
  return run_schedule(backend, {prompt}, {chunk}, {0}, seed)[0];
}

void expect_bitwise_equal(const Logits& a, const Logits& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (std::size_t p = 0; p < a.size(); ++p) {
    ASSERT_EQ(a[p].size(), b[p].size()) << what;
    ASSERT_EQ(0, std::memcmp(a[p].data(), b[p].data(), a[p].size() * sizeof(float)))
        << what << ": logits of position " << p << " differ";
  }
}

void expect_finite(const Logits& logits) {
  for (const auto& row : logits) {
    for (float v : row) ASSERT_TRUE(std::isfinite(v));
  }
}

std::int32_t argmax(const auto& row) {
  return static_cast<std::int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

class CpuBackendReference : public ::testing::TestWithParam<ModelCase> {};

// (a) Every position of a 40-token prompt against the fp64 reference.
TEST_P(CpuBackendReference, LogitsMatchReference) {
  const ModelCase& mc = GetParam();
  const auto prompt = random_tokens(40, mc.config.vocab_size, mc.seed + 100);
  const auto weights = random_weights(mc.config, mc.seed);
  const auto ref = testing::reference_forward(mc.config, weights, prompt);
  ASSERT_EQ(ref.size(), prompt.size());
  double worst = 0.0, min_margin = INFINITY;
  for (std::int32_t bs : {4, 16}) {
    auto backend = make_backend(mc, 2, bs);
    const Logits got = run_alone(*backend, prompt, 40, mc.seed + bs);
    expect_finite(got);
    ASSERT_EQ(got.size(), prompt.size());
    for (std::size_t p = 0; p < prompt.size(); ++p) {
      double max_ref = 0.0, max_err = 0.0;
      for (std::size_t v = 0; v < ref[p].size(); ++v) {
        max_ref = std::max(max_ref, std::abs(ref[p][v]));
        max_err = std::max(max_err, std::abs(got[p][v] - ref[p][v]));
      }
      ASSERT_GT(max_ref, 1.0);
      // fp32 against fp64: about 1e-6 is typical; a real bug is far larger.
      ASSERT_LE(max_err / max_ref, 2e-5) << "block size " << bs << ", position " << p;
      worst = std::max(worst, max_err / max_ref);
      auto sorted = ref[p];
      std::sort(sorted.rbegin(), sorted.rend());
      min_margin = std::min(min_margin, sorted[0] - sorted[1]);
    }
  }
  RecordProperty("worst_relative_error", ::testing::PrintToString(worst));
  // The logits are far from uniform, so a wrong model cannot pass by accident.
  EXPECT_GT(min_margin, 1e-3);
}

// (b) The logits of a position are bit-identical whatever the chunking, the other sequences
// in the batch, the thread count and the block size.
TEST_P(CpuBackendReference, BatchInvariance) {
  const ModelCase& mc = GetParam();
  const std::int32_t vocab = mc.config.vocab_size;
  const std::vector<std::vector<TokenId>> prompts = {random_tokens(40, vocab, mc.seed + 1),
                                                     random_tokens(23, vocab, mc.seed + 2),
                                                     random_tokens(31, vocab, mc.seed + 3)};
  auto one_thread = make_backend(mc, 1, 4);
  std::vector<Logits> expected;
  for (const auto& p : prompts) expected.push_back(run_alone(*one_thread, p, 1000));
  for (const auto& e : expected) expect_finite(e);

  for (int threads : {1, 3}) {
    for (std::int32_t bs : {4, 16}) {
      auto backend = make_backend(mc, threads, bs);
      const std::string where = "threads " + std::to_string(threads) + " bs " + std::to_string(bs);
      for (std::int32_t chunk : {1, 5, 7, 1000}) {
        for (std::size_t i = 0; i < prompts.size(); ++i) {
          expect_bitwise_equal(run_alone(*backend, prompts[i], chunk, chunk + i), expected[i],
                               where + " chunk " + std::to_string(chunk));
        }
      }
      // Mixed batches: prefill chunks beside decodes beside a whole prefill, joining late.
      const auto mixed = run_schedule(*backend, prompts, {7, 1, 1000}, {0, 2, 5}, 99);
      const auto mixed2 = run_schedule(*backend, prompts, {1, 5, 3}, {3, 0, 0}, 98);
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        expect_bitwise_equal(mixed[i], expected[i],
                             where + " mixed, sequence " + std::to_string(i));
        expect_bitwise_equal(mixed2[i], expected[i],
                             where + " mixed2, sequence " + std::to_string(i));
      }
    }
  }
}

// (c) Greedy decoding through the paged cache equals greedy decoding by full recompute.
TEST_P(CpuBackendReference, GreedyDecodeMatchesReference) {
  const ModelCase& mc = GetParam();
  const auto weights = random_weights(mc.config, mc.seed);
  auto backend = make_backend(mc, 3, 4);
  BlockAllocator blocks(backend->kv_spec().num_blocks, 5);
  Sequence seq;
  seq.tokens = random_tokens(8, mc.config.vocab_size, mc.seed + 200);
  std::vector<TokenId> ref_tokens = seq.tokens;
  run_step(*backend, blocks, {{&seq, 8}});
  for (int step = 0; step < 16; ++step) {
    seq.tokens.push_back(argmax(seq.logits.back()));
    const auto ref = testing::reference_forward(mc.config, weights, ref_tokens);
    ref_tokens.push_back(argmax(ref.back()));
    ASSERT_EQ(seq.tokens.back(), ref_tokens.back()) << "generated token " << step;
    run_step(*backend, blocks, {{&seq, 1}});
  }
  expect_finite(seq.logits);
}

// Every tensor of `w` stored as `dtype` (rounded to nearest even), or, with `widen`, those
// rounded values stored back as fp32: the same numbers, twice the bytes.
ModelWeights stored_as(const ModelWeights& w, model::DType dtype, bool widen) {
  const auto convert = [&](const HostTensor& t) {
    if (t.empty()) return t;
    const HostTensor rounded = HostTensor::from_f32(t.shape, t.to_f32(), dtype);
    return widen ? HostTensor::from_f32(t.shape, rounded.to_f32()) : rounded;
  };
  ModelWeights out;
  out.embed_tokens = convert(w.embed_tokens);
  out.final_norm = convert(w.final_norm);
  out.lm_head = convert(w.lm_head);
  for (const auto& l : w.layers) {
    out.layers.push_back({convert(l.input_norm), convert(l.q_proj), convert(l.k_proj),
                          convert(l.v_proj), convert(l.q_bias), convert(l.k_bias),
                          convert(l.v_bias), convert(l.q_norm), convert(l.k_norm),
                          convert(l.o_proj), convert(l.post_attention_norm), convert(l.gate_proj),
                          convert(l.up_proj), convert(l.down_proj)});
  }
  return out;
}

// (d) Weights kept in bf16 or f16 are read in place and widened exactly, so they give bit
// for bit the logits of the same values stored as fp32, in prefill and decode steps alike.
TEST_P(CpuBackendReference, SixteenBitWeightsGiveTheBitsOfTheirFp32Widening) {
  const ModelCase& mc = GetParam();
  const auto prompt = random_tokens(23, mc.config.vocab_size, mc.seed + 300);
  const KvCacheSpec kv{mc.config.num_layers, mc.config.num_kv_heads, mc.config.head_dim, 4, 64};
  const ModelWeights weights = random_weights(mc.config, mc.seed);
  for (const model::DType dtype : {model::DType::kBF16, model::DType::kF16}) {
    auto stored = make_cpu_backend(mc.config, stored_as(weights, dtype, false), kv, 2);
    auto widened = make_cpu_backend(mc.config, stored_as(weights, dtype, true), kv, 2);
    for (std::int32_t chunk : {23, 1}) {
      const Logits a = run_alone(*stored, prompt, chunk);
      expect_finite(a);
      expect_bitwise_equal(
          a, run_alone(*widened, prompt, chunk),
          std::string(model::dtype_name(dtype)) + " chunk " + std::to_string(chunk));
    }
  }
  // A checkpoint mixing dtypes inside a fused projection (q in bf16, k and v in fp32).
  ModelWeights mixed = stored_as(weights, model::DType::kBF16, true);
  const ModelWeights bf16 = stored_as(weights, model::DType::kBF16, false);
  for (std::size_t l = 0; l < mixed.layers.size(); ++l)
    mixed.layers[l].q_proj = bf16.layers[l].q_proj;
  auto reference =
      make_cpu_backend(mc.config, stored_as(weights, model::DType::kBF16, true), kv, 2);
  auto mixed_backend = make_cpu_backend(mc.config, std::move(mixed), kv, 2);
  expect_bitwise_equal(run_alone(*mixed_backend, prompt, 23), run_alone(*reference, prompt, 23),
                       "mixed dtypes");
}

INSTANTIATE_TEST_SUITE_P(Models, CpuBackendReference, ::testing::ValuesIn(model_cases()),
                         [](const auto& info) { return info.param.name; });

// The cache holds the same bits after a whole prefill as after token-by-token decode, and
// blocks nobody was given stay untouched.
TEST(CpuBackendCache, PrefillAndDecodeWriteTheSameKv) {
  const ModelCase mc = model_cases()[4];
  const auto prompt = random_tokens(37, mc.config.vocab_size, 3);
  auto a = make_backend(mc, 2, 4, 40);
  auto b = make_backend(mc, 1, 4, 40);
  run_alone(*a, prompt, 1000, 21);
  run_alone(*b, prompt, 1, 21);  // same seed: same block table
  for (std::int32_t l = 0; l < mc.config.num_layers; ++l) {
    for (bool value : {false, true}) {
      const auto pa = cpu_kv_pool(*a, l, value), pb = cpu_kv_pool(*b, l, value);
      ASSERT_EQ(pa.size(), std::size_t{40} * 2 * 4 * 16);
      ASSERT_EQ(0, std::memcmp(pa.data(), pb.data(), pa.size_bytes())) << "layer " << l;
      // 37 tokens fill 10 blocks of 4; 30 blocks stay zero.
      std::int64_t zero_blocks = 0;
      for (std::size_t blk = 0; blk < 40; ++blk) {
        const auto tile = pa.subspan(blk * 2 * 4 * 16, 2 * 4 * 16);
        zero_blocks += std::all_of(tile.begin(), tile.end(), [](float v) { return v == 0.0f; });
      }
      EXPECT_EQ(zero_blocks, 30);
    }
  }
  EXPECT_THROW(cpu_kv_pool(*a, mc.config.num_layers, false), Error);
}

// (d) Malformed batches are rejected with cachet::Error before anything is written.
TEST(CpuBackendValidation, RejectsBadBatches) {
  const ModelCase mc = model_cases()[0];
  auto backend = make_backend(mc, 2, 4, 8);
  // A valid batch: one sequence, 6 new tokens after a 2-token cached prefix, blocks 5 and 2.
  ForwardBatch good;
  good.token_ids = {1, 2, 3, 4, 5, 6};
  good.positions = {2, 3, 4, 5, 6, 7};
  good.slot_mapping = {22, 23, 8, 9, 10, 11};
  good.query_start = {0, 6};
  good.context_lens = {8};
  good.block_tables = {5, 2, 7};
  good.max_blocks_per_seq = 3;
  good.logits_indices = {5};

  struct Bad {
    std::string what;
    void (*mutate)(ForwardBatch&);
  };
  const Bad bad[] = {
      {"slot out of range", [](ForwardBatch& b) { b.slot_mapping[0] = 32; }},
      {"negative slot", [](ForwardBatch& b) { b.slot_mapping[0] = -1; }},
      {"slot off its block table", [](ForwardBatch& b) { b.slot_mapping[1] = 21; }},
      {"token id = vocab", [](ForwardBatch& b) { b.token_ids[2] = 128; }},
      {"negative token id", [](ForwardBatch& b) { b.token_ids[2] = -1; }},
      {"short positions", [](ForwardBatch& b) { b.positions.pop_back(); }},
      {"long slot_mapping", [](ForwardBatch& b) { b.slot_mapping.push_back(12); }},
      {"wrong position", [](ForwardBatch& b) { b.positions[3] = 4; }},
      {"query_start size",
       [](ForwardBatch& b) {
         b.query_start = {0, 3, 6};
       }},
      {"query_start end",
       [](ForwardBatch& b) {
         b.query_start = {0, 5};
       }},
      {"query_start begin",
       [](ForwardBatch& b) {
         b.query_start = {1, 6};
       }},
      {"empty query_start", [](ForwardBatch& b) { b.query_start.clear(); }},
      {"query_start past the tokens",
       [](ForwardBatch& b) {
         b.query_start = {0, 9, 6};
         b.context_lens = {9, 1};
         b.block_tables = {5, 2, 7, 1, 1, 1};
       }},
      {"context shorter than query", [](ForwardBatch& b) { b.context_lens = {5}; }},
      {"context beyond block table",
       [](ForwardBatch& b) { b.max_blocks_per_seq = 1, b.block_tables = {5}; }},
      {"block table size", [](ForwardBatch& b) { b.block_tables.pop_back(); }},
      {"block id out of range", [](ForwardBatch& b) { b.block_tables[1] = 8; }},
      {"negative block id", [](ForwardBatch& b) { b.block_tables[0] = -1; }},
      {"logits index out of range", [](ForwardBatch& b) { b.logits_indices = {6}; }},
      {"negative logits index", [](ForwardBatch& b) { b.logits_indices = {-1}; }},
      {"no context_lens", [](ForwardBatch& b) { b.context_lens.clear(); }},
      {"beyond max_position_embeddings",
       [](ForwardBatch& b) {
         b.context_lens = {4097};
         b.positions = {4091, 4092, 4093, 4094, 4095, 4096};
       }},
  };
  std::vector<float> logits;
  for (const auto& [what, mutate] : bad) {
    ForwardBatch b = good;
    mutate(b);
    try {
      backend->forward(b, logits);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << what;
    }
  }
  for (std::int32_t l = 0; l < mc.config.num_layers; ++l) {
    for (bool value : {false, true}) {
      const auto pool = cpu_kv_pool(*backend, l, value);
      EXPECT_TRUE(std::all_of(pool.begin(), pool.end(), [](float v) { return v == 0.0f; }))
          << "a rejected batch wrote to the cache";
    }
  }
  // The junk entry past the blocks the sequence needs is ignored; the good batch runs.
  good.block_tables[2] = -99;
  backend->forward(good, logits);
  ASSERT_EQ(logits.size(), std::size_t{128});
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  // An empty batch is valid and returns no logits.
  backend->forward(ForwardBatch{{}, {}, {}, {0}, {}, {}, 0, {}}, logits);
  EXPECT_TRUE(logits.empty());
}

// Random corruptions of a valid batch either run or throw cachet::Error; none reads out of
// bounds (the asan preset checks that).
TEST(CpuBackendValidation, CorruptedBatchesNeverCrash) {
  const ModelCase mc = model_cases()[1];
  auto backend = make_backend(mc, 2, 4, 8);
  ForwardBatch good;
  good.token_ids = {1, 2, 3, 4, 5, 6, 7};
  good.positions = {2, 3, 4, 5, 6, 7, 0};
  good.slot_mapping = {22, 23, 8, 9, 10, 11, 4};
  good.query_start = {0, 6, 7};
  good.context_lens = {8, 1};
  good.block_tables = {5, 2, 7, 1, 0, 0};
  good.max_blocks_per_seq = 3;
  good.logits_indices = {5, 6};
  Rng rng(77);
  std::vector<float> logits;
  int accepted = 0;
  for (int round = 0; round < 400; ++round) {
    ForwardBatch b = good;
    for (int m = 0, n = 1 + rng.below(3); m < n; ++m) {
      const auto value = [&] { return rng.below(44) - 4; };
      const auto mutate = [&](auto& v) {
        const int kind = rng.below(3);
        if (kind == 0 && !v.empty()) v[rng.below(static_cast<std::int32_t>(v.size()))] = value();
        if (kind == 1) v.push_back(value());
        if (kind == 2 && !v.empty()) v.pop_back();
      };
      switch (rng.below(8)) {
        case 0:
          mutate(b.token_ids);
          break;
        case 1:
          mutate(b.positions);
          break;
        case 2:
          mutate(b.slot_mapping);
          break;
        case 3:
          mutate(b.query_start);
          break;
        case 4:
          mutate(b.context_lens);
          break;
        case 5:
          mutate(b.block_tables);
          break;
        case 6:
          mutate(b.logits_indices);
          break;
        case 7:
          b.max_blocks_per_seq = rng.below(6) - 1;
          break;
      }
    }
    try {
      backend->forward(b, logits);
      ++accepted;
      ASSERT_EQ(logits.size(), b.logits_indices.size() * mc.config.vocab_size);
      for (float v : logits) ASSERT_TRUE(std::isfinite(v));
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
  }
  EXPECT_GT(accepted, 0);  // some corruptions are harmless (another valid token id)
  EXPECT_LT(accepted, 400);
}

TEST(CpuBackendValidation, RejectsInconsistentSetup) {
  const ModelCase mc = model_cases()[3];
  const KvCacheSpec good{mc.config.num_layers, mc.config.num_kv_heads, mc.config.head_dim, 16, 4};
  auto spec = good;
  spec.head_dim = 4;
  EXPECT_THROW(make_cpu_backend(mc.config, random_weights(mc.config, 1), spec, 1), Error);
  spec = good;
  spec.block_size = 0;
  EXPECT_THROW(make_cpu_backend(mc.config, random_weights(mc.config, 1), spec, 1), Error);
  EXPECT_THROW(make_cpu_backend(mc.config, random_weights(mc.config, 1), good, 0), Error);
  auto weights = random_weights(mc.config, 1);
  weights.layers[1].k_bias = HostTensor::from_f32({7}, std::vector<float>(7, 0.5f));
  EXPECT_THROW(make_cpu_backend(mc.config, std::move(weights), good, 1), Error);
  weights = random_weights(mc.config, 1);
  weights.layers.pop_back();
  EXPECT_THROW(make_cpu_backend(mc.config, std::move(weights), good, 1), Error);
  EXPECT_EQ(cpu_kv_block_bytes(mc.config, 16), 2 * 2 * 2 * 16 * 8 * 4);
}

}  // namespace
}  // namespace cachet::backend

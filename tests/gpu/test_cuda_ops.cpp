// The elementwise / normalization kernels (kernels/ops.h) against the CPU backend's ops on the
// same inputs: the kernels do the CPU's fp32 operations in the same order, so each output
// must be the CPU value rounded to the activation dtype, give or take 2 ulps of that dtype
// (the sum of squares is reduced in another order). Outputs are poisoned with NaN first and
// every element is checked; NaN never passes.
#include <gtest/gtest.h>

#include "support/gpu_test.h"

#if CACHET_WITH_CUDA

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "gemv.h"
#include "model/dtype.h"
#include "ops.h"
#include "support/cuda_test_util.h"

namespace cachet::kernels {
namespace {

using cachet::testing::DeviceBuffer;

constexpr DType kDTypes[] = {DType::kBF16, DType::kFP16};

std::uint16_t to_bits(DType d, float f) {
  return d == DType::kBF16 ? model::f32_to_bf16(f) : model::f32_to_f16(f);
}
float from_bits(DType d, std::uint16_t b) {
  return d == DType::kBF16 ? model::bf16_to_f32(b) : model::f16_to_f32(b);
}
// A NaN in either format.
std::uint16_t nan_bits(DType d) { return d == DType::kBF16 ? 0x7fc1 : 0x7e01; }

// Position of a 16-bit float on the number line, in ulps (both zeros at 0).
std::int32_t ordinal(std::uint16_t b) {
  return (b & 0x8000) ? -static_cast<std::int32_t>(b & 0x7fff) : static_cast<std::int32_t>(b);
}

// got (T bits) is the reference rounded to T within 2 ulps, or within abs_tol of it.
::testing::AssertionResult close_to(DType d, std::uint16_t got, float ref, float abs_tol) {
  const float g = from_bits(d, got);
  if (std::isnan(g) || std::isnan(ref)) {
    return ::testing::AssertionFailure() << "got " << g << ", expected " << ref;
  }
  const std::uint16_t want = to_bits(d, ref);
  if (std::abs(ordinal(got) - ordinal(want)) <= 2) return ::testing::AssertionSuccess();
  if (std::abs(double{g} - ref) <= abs_tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << g << ", expected " << ref << " ("
                                       << from_bits(d, want) << " in " << dtype_name(d) << ")";
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(static_cast<double>(engine_() >> 11) * 0x1.0p-53);
  }
  std::int64_t below(std::int64_t n) { return static_cast<std::int64_t>(engine_() % n); }
  std::vector<float> vec(std::size_t n, float lo, float hi) {
    std::vector<float> v(n);
    for (float& x : v) x = uniform(lo, hi);
    return v;
  }
  // Values exactly representable in T (weights, tables), as their T bits.
  std::vector<std::uint16_t> vec_t(DType d, std::size_t n, float lo, float hi) {
    std::vector<std::uint16_t> v(n);
    for (auto& b : v) b = to_bits(d, uniform(lo, hi));
    return v;
  }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

std::vector<float> widen(DType d, const std::vector<std::uint16_t>& bits) {
  std::vector<float> f(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) f[i] = from_bits(d, bits[i]);
  return f;
}

const std::int32_t kHidden[] = {1, 7, 896, 4096 + 3};
const std::int32_t kTokens[] = {1, 37, 300};

TEST(CudaOps, EmbeddingCopiesRows) {
  CACHET_REQUIRE_GPU();
  Rng rng(1);
  for (DType d : kDTypes) {
    for (std::int32_t hidden : kHidden) {
      for (std::int32_t tokens : kTokens) {
        SCOPED_TRACE(std::string(dtype_name(d)) + " hidden " + std::to_string(hidden) + " tokens " +
                     std::to_string(tokens));
        const std::int32_t vocab = 51;
        const auto table = rng.vec_t(d, std::size_t(vocab) * hidden, -3.0f, 3.0f);
        std::vector<std::int32_t> ids(tokens);
        for (auto& id : ids) id = static_cast<std::int32_t>(rng.below(vocab));
        ids[tokens / 2] = vocab - 1;
        DeviceBuffer<std::uint16_t> d_table(table);
        DeviceBuffer<std::int32_t> d_ids(ids);
        DeviceBuffer<float> d_out(std::vector<float>(std::size_t(tokens) * hidden,
                                                     std::numeric_limits<float>::quiet_NaN()));
        EmbeddingParams p;
        p.table = d_table.get();
        p.ids = d_ids.get();
        p.out = d_out.get();
        p.num_tokens = tokens;
        p.hidden = hidden;
        p.vocab = vocab;
        p.dtype = d;
        CUDA_OK(launch_embedding(p, nullptr));
        CUDA_OK(cudaDeviceSynchronize());
        const auto out = d_out.download();
        for (std::int32_t t = 0; t < tokens; ++t) {
          for (std::int32_t i = 0; i < hidden; ++i) {
            const float want = from_bits(d, table[std::size_t(ids[t]) * hidden + i]);
            ASSERT_EQ(out[std::size_t(t) * hidden + i], want) << "token " << t << " elem " << i;
          }
        }
      }
    }
  }
}

TEST(CudaOps, EmbeddingOutOfRangeIdGivesNaNInsteadOfFaulting) {
  CACHET_REQUIRE_GPU();
  const std::int32_t hidden = 16, vocab = 4;
  DeviceBuffer<std::uint16_t> d_table(std::vector<std::uint16_t>(vocab * hidden, 0x3f80));
  DeviceBuffer<std::int32_t> d_ids(std::vector<std::int32_t>{1, -1, vocab});
  DeviceBuffer<float> d_out(std::vector<float>(3 * hidden, 0.0f));
  EmbeddingParams p{d_table.get(), d_ids.get(), d_out.get(), 3, hidden, vocab, DType::kBF16};
  CUDA_OK(launch_embedding(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto out = d_out.download();
  for (std::int32_t i = 0; i < hidden; ++i) {
    EXPECT_EQ(out[i], 1.0f);
    EXPECT_TRUE(std::isnan(out[hidden + i]));
    EXPECT_TRUE(std::isnan(out[2 * hidden + i]));
  }
}

TEST(CudaOps, RmsNormMatchesCpu) {
  CACHET_REQUIRE_GPU();
  Rng rng(2);
  for (DType d : kDTypes) {
    for (std::int32_t hidden : kHidden) {
      for (std::int32_t tokens : kTokens) {
        for (int mode = 0; mode < 3; ++mode) {  // contiguous, padded stride, gathered rows
          SCOPED_TRACE(std::string(dtype_name(d)) + " hidden " + std::to_string(hidden) +
                       " tokens " + std::to_string(tokens) + " mode " + std::to_string(mode));
          const std::int64_t stride = mode == 0 ? hidden : hidden + 5;
          const float scale = 0.1f + 4.0f * static_cast<float>(mode);
          const auto x = rng.vec(std::size_t(tokens) * stride, -scale, scale);
          const auto w_bits = rng.vec_t(d, hidden, -2.0f, 2.0f);
          const auto w = widen(d, w_bits);
          std::vector<std::int32_t> rows;
          if (mode == 2) {
            for (std::int32_t t = 0; t < tokens; t += 3) rows.push_back(tokens - 1 - t);
          }
          const std::int32_t num_rows = mode == 2 ? std::ssize(rows) : tokens;
          const float eps = 1e-6f;
          DeviceBuffer<float> d_x(x);
          DeviceBuffer<std::uint16_t> d_w(w_bits);
          DeviceBuffer<std::int32_t> d_rows(rows);
          DeviceBuffer<std::uint16_t> d_out(
              std::vector<std::uint16_t>(std::size_t(num_rows) * hidden, nan_bits(d)));
          RmsNormParams p;
          p.in = d_x.get();
          p.in_stride = stride;
          p.rows = mode == 2 ? d_rows.get() : nullptr;
          p.weight = d_w.get();
          p.out = d_out.get();
          p.num_rows = num_rows;
          p.hidden = hidden;
          p.eps = eps;
          p.dtype = d;
          CUDA_OK(launch_rmsnorm(p, nullptr));
          CUDA_OK(cudaDeviceSynchronize());
          const auto out = d_out.download();
          std::vector<float> ref(hidden);
          for (std::int32_t r = 0; r < num_rows; ++r) {
            const std::int64_t src = mode == 2 ? rows[r] : r;
            backend::cpu::rmsnorm_row(x.data() + src * stride, w.data(), hidden, eps, ref.data());
            for (std::int32_t i = 0; i < hidden; ++i) {
              ASSERT_TRUE(close_to(d, out[std::size_t(r) * hidden + i], ref[i], 0.0f))
                  << "row " << r << " elem " << i;
            }
          }
        }
      }
    }
  }
}

TEST(CudaOps, SiluMulMatchesCpu) {
  CACHET_REQUIRE_GPU();
  Rng rng(3);
  for (DType d : kDTypes) {
    for (std::int32_t inter : kHidden) {
      for (std::int32_t tokens : kTokens) {
        SCOPED_TRACE(std::string(dtype_name(d)) + " inter " + std::to_string(inter) + " tokens " +
                     std::to_string(tokens));
        const auto in = rng.vec(std::size_t(tokens) * 2 * inter, -12.0f, 12.0f);
        DeviceBuffer<float> d_in(in);
        DeviceBuffer<std::uint16_t> d_out(
            std::vector<std::uint16_t>(std::size_t(tokens) * inter, nan_bits(d)));
        SiluMulParams p{d_in.get(), d_out.get(), tokens, inter, d};
        CUDA_OK(launch_silu_mul(p, nullptr));
        CUDA_OK(cudaDeviceSynchronize());
        const auto out = d_out.download();
        std::vector<float> ref(inter);
        for (std::int32_t t = 0; t < tokens; ++t) {
          const float* gate = in.data() + std::size_t(t) * 2 * inter;
          backend::cpu::silu_mul(gate, gate + inter, inter, ref.data());
          for (std::int32_t i = 0; i < inter; ++i) {
            ASSERT_TRUE(close_to(d, out[std::size_t(t) * inter + i], ref[i], 0.0f))
                << "token " << t << " elem " << i;
          }
        }
      }
    }
  }
}

struct QkvCase {
  DType dtype;
  std::int32_t head_dim, num_heads, num_kv_heads, tokens;
  bool bias, qk_norm;
};

void run_qkv_case(const QkvCase& c, Rng& rng) {
  const std::int32_t hd = c.head_dim, half = hd / 2;
  const std::int64_t q_dim = std::int64_t{c.num_heads} * hd;
  const std::int64_t kv_dim = std::int64_t{c.num_kv_heads} * hd;
  const std::int64_t qkv_dim = q_dim + 2 * kv_dim;
  const std::int32_t block_size = 16;
  const std::int64_t num_blocks = (c.tokens + block_size - 1) / block_size + 3;
  const std::int64_t num_slots = num_blocks * block_size;
  const float eps = 1e-6f;
  const DType d = c.dtype;

  const auto qkv = rng.vec(std::size_t(c.tokens) * qkv_dim, -4.0f, 4.0f);
  const auto bias_bits = rng.vec_t(d, qkv_dim, -1.0f, 1.0f);
  const auto qn_bits = rng.vec_t(d, hd, 0.5f, 1.5f);
  const auto kn_bits = rng.vec_t(d, hd, 0.5f, 1.5f);
  const auto bias = widen(d, bias_bits), q_norm = widen(d, qn_bits), k_norm = widen(d, kn_bits);

  std::vector<std::int32_t> positions(c.tokens);
  for (auto& pos : positions) pos = static_cast<std::int32_t>(rng.below(5000));
  // Distinct slots in shuffled order; about one token in eight is padding (-1).
  std::vector<std::int64_t> slots(num_slots);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng.engine());
  slots.resize(c.tokens);
  for (auto& s : slots) {
    if (rng.below(8) == 0) s = -1;
  }
  const std::int32_t max_pos = *std::max_element(positions.begin(), positions.end());
  backend::cpu::RopeTable rope(hd, backend::cpu::rope_inv_freq(hd, 1e6, std::nullopt));
  rope.ensure(max_pos + 1);
  const std::int32_t rope_positions = max_pos + 1;
  const std::vector<float> cos(rope.cos(0), rope.cos(0) + std::size_t(rope_positions) * half);
  const std::vector<float> sin(rope.sin(0), rope.sin(0) + std::size_t(rope_positions) * half);

  DeviceBuffer<float> d_qkv(qkv);
  DeviceBuffer<std::uint16_t> d_bias(bias_bits), d_qn(qn_bits), d_kn(kn_bits);
  DeviceBuffer<float> d_cos(cos), d_sin(sin);
  DeviceBuffer<std::int32_t> d_pos(positions);
  DeviceBuffer<std::int64_t> d_slots(slots);
  const std::size_t cache_size = std::size_t(num_slots) * kv_dim;
  DeviceBuffer<std::uint16_t> d_q(
      std::vector<std::uint16_t>(std::size_t(c.tokens) * q_dim, nan_bits(d)));
  DeviceBuffer<std::uint16_t> d_k(std::vector<std::uint16_t>(cache_size, nan_bits(d)));
  DeviceBuffer<std::uint16_t> d_v(std::vector<std::uint16_t>(cache_size, nan_bits(d)));

  QkvPostParams p;
  p.qkv = d_qkv.get();
  p.bias = c.bias ? d_bias.get() : nullptr;
  p.q_norm = c.qk_norm ? d_qn.get() : nullptr;
  p.k_norm = c.qk_norm ? d_kn.get() : nullptr;
  p.rope_cos = d_cos.get();
  p.rope_sin = d_sin.get();
  p.positions = d_pos.get();
  p.slot_mapping = d_slots.get();
  p.q_out = d_q.get();
  p.k_cache = d_k.get();
  p.v_cache = d_v.get();
  p.num_tokens = c.tokens;
  p.num_heads = c.num_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = hd;
  p.block_size = block_size;
  p.num_blocks = num_blocks;
  p.rope_positions = rope_positions;
  p.eps = eps;
  p.dtype = d;
  CUDA_OK(launch_qkv_post(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto q_out = d_q.download(), k_cache = d_k.download(), v_cache = d_v.download();

  // The CPU backend's prepare_qkv on the same values: bias (matmul's "+ bias"), norm, rope.
  std::vector<bool> written(std::size_t(num_slots), false);
  std::vector<float> row(qkv_dim);
  for (std::int32_t t = 0; t < c.tokens; ++t) {
    for (std::int64_t i = 0; i < qkv_dim; ++i) {
      row[i] = qkv[t * qkv_dim + i] + (c.bias ? bias[i] : 0.0f);
    }
    const float* cs = rope.cos(positions[t]);
    const float* sn = rope.sin(positions[t]);
    for (std::int32_t h = 0; h < c.num_heads + c.num_kv_heads; ++h) {
      const bool is_q = h < c.num_heads;
      float* x = row.data() + (is_q ? h * hd : q_dim + (h - c.num_heads) * hd);
      float mag = 0.0f;
      if (c.qk_norm) {
        backend::cpu::rmsnorm_row(x, is_q ? q_norm.data() : k_norm.data(), hd, eps, x);
      }
      for (std::int32_t i = 0; i < hd; ++i) mag = std::max(mag, std::abs(x[i]));
      backend::cpu::rope_apply(x, cs, sn, half);
      // a cos - b sin cancels: allow the fp32 rounding of the inputs (norm order) there.
      const float tol = mag * 0x1.0p-18f;
      if (is_q) {
        for (std::int32_t i = 0; i < hd; ++i) {
          ASSERT_TRUE(close_to(d, q_out[(std::size_t(t) * c.num_heads + h) * hd + i], x[i], tol))
              << "q token " << t << " head " << h << " elem " << i;
        }
      }
    }
    if (slots[t] < 0) continue;
    written[slots[t]] = true;
    const std::int64_t block = slots[t] / block_size, off = slots[t] % block_size;
    for (std::int32_t h = 0; h < c.num_kv_heads; ++h) {
      const std::size_t at = std::size_t(((block * c.num_kv_heads + h) * block_size + off) * hd);
      const float* k = row.data() + q_dim + h * hd;
      const float* v = row.data() + q_dim + kv_dim + h * hd;
      float mag = 0.0f;
      for (std::int32_t i = 0; i < hd; ++i) mag = std::max(mag, std::abs(k[i]));
      for (std::int32_t i = 0; i < hd; ++i) {
        ASSERT_TRUE(close_to(d, k_cache[at + i], k[i], mag * 0x1.0p-18f))
            << "k token " << t << " head " << h << " elem " << i;
        ASSERT_TRUE(close_to(d, v_cache[at + i], v[i], 0.0f))
            << "v token " << t << " head " << h << " elem " << i;
      }
    }
  }
  // Every slot no token maps to is untouched, bit for bit.
  for (std::int64_t s = 0; s < num_slots; ++s) {
    if (written[s]) continue;
    const std::int64_t block = s / block_size, off = s % block_size;
    for (std::int32_t h = 0; h < c.num_kv_heads; ++h) {
      const std::size_t at = std::size_t(((block * c.num_kv_heads + h) * block_size + off) * hd);
      for (std::int32_t i = 0; i < hd; ++i) {
        ASSERT_EQ(k_cache[at + i], nan_bits(d)) << "slot " << s << " head " << h;
        ASSERT_EQ(v_cache[at + i], nan_bits(d)) << "slot " << s << " head " << h;
      }
    }
  }
}

TEST(CudaOps, QkvPostMatchesCpuPrepareQkv) {
  CACHET_REQUIRE_GPU();
  Rng rng(4);
  const std::int32_t kGroups[][2] = {{8, 8}, {8, 2}, {16, 2}};  // GQA 1, 4, 8
  for (DType d : kDTypes) {
    for (std::int32_t hd : {64, 128}) {
      for (const auto& g : kGroups) {
        for (std::int32_t tokens : kTokens) {
          for (int variant = 0; variant < 4; ++variant) {
            const QkvCase c{d, hd, g[0], g[1], tokens, (variant & 1) != 0, (variant & 2) != 0};
            SCOPED_TRACE(std::string(dtype_name(d)) + " head_dim " + std::to_string(hd) +
                         " heads " + std::to_string(g[0]) + "/" + std::to_string(g[1]) +
                         " tokens " + std::to_string(tokens) + " bias " + std::to_string(c.bias) +
                         " qk_norm " + std::to_string(c.qk_norm));
            run_qkv_case(c, rng);
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

TEST(CudaOps, QkvPostOddHalfHeadDimTakesTheScalarPath) {
  CACHET_REQUIRE_GPU();
  Rng rng(5);
  for (DType d : kDTypes) {
    run_qkv_case(QkvCase{d, 6, 3, 1, 37, true, true}, rng);  // half = 3
    if (HasFatalFailure()) return;
  }
}

TEST(CudaOps, LaunchersRejectInvalidParams) {
  CACHET_REQUIRE_GPU();
  RmsNormParams r;
  r.num_rows = 1;
  r.hidden = 0;
  EXPECT_EQ(launch_rmsnorm(r, nullptr), cudaErrorInvalidValue);
  QkvPostParams q;
  q.num_tokens = 1;
  q.num_heads = q.num_kv_heads = 1;
  q.head_dim = 7;  // odd
  q.block_size = 16;
  EXPECT_EQ(launch_qkv_post(q, nullptr), cudaErrorInvalidValue);
  SiluMulParams s;
  s.num_tokens = 0;
  s.inter = 8;
  EXPECT_EQ(launch_silu_mul(s, nullptr), cudaSuccess);  // nothing to do
}

// The decode GEMV against a double-precision product of the same 16-bit values, on awkward
// shapes (a single row; k of one 16-byte chunk; rows not a multiple of the block's 8 warps;
// k not a multiple of a warp's 256-element round), with and without accumulating into Y.
// Every output is checked (Y starts as NaN when not accumulating); NaN never passes.
TEST(CudaOps, GemvMatchesADoubleReference) {
  CACHET_REQUIRE_GPU();
  Rng rng(77);
  struct Shape {
    std::int32_t n, k;
  };
  const Shape shapes[] = {{1, 8}, {7, 24}, {300, 2056}, {37, 8192}, {1001, 264}};
  for (DType d : kDTypes) {
    for (std::int32_t m = 1; m <= kGemvMaxRows; ++m) {
      for (const Shape& sh : shapes) {
        for (bool accumulate : {false, true}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(d) << " m " << m << " n " << sh.n << " k "
                                            << sh.k << " accumulate " << accumulate);
          const auto x = rng.vec_t(d, std::size_t(m) * sh.k, -1.0f, 1.0f);
          const auto w = rng.vec_t(d, std::size_t(sh.n) * sh.k, -1.0f, 1.0f);
          std::vector<float> y0 = accumulate ? rng.vec(std::size_t(m) * sh.n, -4.0f, 4.0f)
                                             : std::vector<float>(std::size_t(m) * sh.n, NAN);
          DeviceBuffer<std::uint16_t> dx(x), dw(w);
          DeviceBuffer<float> dy(y0);
          GemvParams g;
          g.x = dx.get();
          g.w = dw.get();
          g.y = dy.get();
          g.m = m;
          g.n = sh.n;
          g.k = sh.k;
          g.accumulate = accumulate;
          g.dtype = d;
          ASSERT_TRUE(gemv_supported(g));
          CUDA_OK(launch_gemv(g, nullptr));
          CUDA_OK(cudaDeviceSynchronize());
          const auto y = dy.download();
          const auto xf = widen(d, x), wf = widen(d, w);
          int bad = 0;
          for (std::int32_t i = 0; i < m && bad < 5; ++i) {
            for (std::int32_t r = 0; r < sh.n && bad < 5; ++r) {
              double ref = accumulate ? y0[std::size_t(i) * sh.n + r] : 0.0, mag = std::abs(ref);
              for (std::int32_t c = 0; c < sh.k; ++c) {
                const double t =
                    double(xf[std::size_t(i) * sh.k + c]) * wf[std::size_t(r) * sh.k + c];
                ref += t;
                mag += std::abs(t);
              }
              const float got = y[std::size_t(i) * sh.n + r];
              // fp32 sums of up to k / 32 products per lane, then 5 shuffle levels: well
              // under 2e-5 of the magnitude, while one lost product of k = 8192 is ~1e-4.
              if (!(std::abs(got - ref) <= 2e-5 * mag + 1e-6)) {
                ++bad;
                ADD_FAILURE() << "row " << i << " col " << r << ": got " << got << ", expected "
                              << ref << " (sum of |terms| " << mag << ")";
              }
            }
          }
        }
      }
    }
  }
  GemvParams g;
  g.m = 5;  // more rows than the kernel takes
  g.n = g.k = 8;
  EXPECT_FALSE(gemv_supported(g));
  EXPECT_EQ(launch_gemv(g, nullptr), cudaErrorInvalidValue);
}

// The L2 flush only reads: the buffer it streams is unchanged afterwards, and so is the sink
// (the XOR of this data is not the constant that would write it).
TEST(CudaOps, L2FlushReadsWithoutWriting) {
  CACHET_REQUIRE_GPU();
  std::vector<std::uint32_t> host(3 * (1 << 20) + 5);  // 12 MiB and a tail under 16 bytes
  for (std::size_t i = 0; i < host.size(); ++i)
    host[i] = static_cast<std::uint32_t>(i * 2654435761u);
  testing::DeviceBuffer<std::uint32_t> data(host), sink(std::vector<std::uint32_t>{7});
  L2FlushParams f;
  f.data = data.get();
  f.bytes = host.size() * 4;
  f.sink = sink.get();
  CUDA_OK(launch_l2_flush(f, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(data.download(), host);
  EXPECT_EQ(sink.download()[0], 7u);
  f.data = reinterpret_cast<const char*>(data.get()) + 4;  // not 16-byte aligned
  EXPECT_EQ(launch_l2_flush(f, nullptr), cudaErrorInvalidValue);
  f.data = nullptr;
  EXPECT_EQ(launch_l2_flush(f, nullptr), cudaErrorInvalidValue);
  f.bytes = 15;  // nothing to read
  EXPECT_EQ(launch_l2_flush(f, nullptr), cudaSuccess);
}

}  // namespace
}  // namespace cachet::kernels

#else  // !CACHET_WITH_CUDA

TEST(CudaOps, Skipped) { GTEST_SKIP() << "built without CUDA"; }

#endif

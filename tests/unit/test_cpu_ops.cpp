#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_ops.h"

namespace cachet::backend::cpu {
namespace {

// splitmix64, uniform in [-scale, scale).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform(float scale) {
    return scale * (static_cast<float>(next() >> 40) / static_cast<float>(1 << 23) * 2.0f - 1.0f);
  }
  std::vector<float> vec(std::size_t n, float scale) {
    std::vector<float> v(n);
    for (float& x : v) x = uniform(scale);
    return v;
  }

 private:
  std::uint64_t state_;
};

const std::int64_t kAwkward[] = {1, 3, 7, 17, 64, 129};

// An fp32 matrix [rows, k] as matmul reads it.
WeightRows f32_rows(const std::vector<float>& w, std::int64_t rows, std::int64_t k) {
  WeightRows r(model::DType::kF32, k);
  r.append(reinterpret_cast<const std::byte*>(w.data()), rows);
  return r;
}

TEST(CpuOps, MatmulMatchesNaive) {
  util::ThreadPool pool(3);
  Rng rng(1);
  for (std::int64_t t : kAwkward) {
    for (std::int64_t n : kAwkward) {
      for (std::int64_t k : kAwkward) {
        const auto x = rng.vec(t * k, 1.0f);
        const auto w = rng.vec(n * k, 1.0f);
        const auto bias = rng.vec(n, 1.0f);
        const auto init = rng.vec(t * n, 1.0f);
        for (int mode = 0; mode < 3; ++mode) {  // plain, + bias, accumulate + bias
          std::vector<float> y = init;
          const float* b = mode == 0 ? nullptr : bias.data();
          matmul(pool, x.data(), t, f32_rows(w, n, k), b, y.data(), mode == 2);
          for (std::int64_t i = 0; i < t; ++i) {
            for (std::int64_t o = 0; o < n; ++o) {
              double ref = 0.0, mag = 0.0;
              for (std::int64_t j = 0; j < k; ++j) {
                ref += double{x[i * k + j]} * w[o * k + j];
                mag += std::abs(double{x[i * k + j]} * w[o * k + j]);
              }
              if (b != nullptr) ref += b[o];
              if (mode == 2) ref += init[i * n + o];
              ASSERT_NEAR(y[i * n + o], ref, 1e-6 * (mag + 2.0) + 1e-6)
                  << "t " << t << " n " << n << " k " << k << " mode " << mode << " at (" << i
                  << ", " << o << ")";
            }
          }
        }
      }
    }
  }
}

// A row's results must not depend on the other rows of the call, where the row falls in a
// tile, or the thread count; and each element must equal dot().
TEST(CpuOps, MatmulIsBatchInvariant) {
  util::ThreadPool pool1(1), pool3(3);
  Rng rng(2);
  for (std::int64_t k : {5, 16, 64, 129, 300}) {
    const std::int64_t t = 37, n = 23;
    const auto x = rng.vec(t * k, 1.0f);
    const auto w = rng.vec(n * k, 1.0f);
    const auto bias = rng.vec(n, 0.5f);
    std::vector<float> all1(t * n), all3(t * n);
    matmul(pool1, x.data(), t, f32_rows(w, n, k), bias.data(), all1.data(), false);
    matmul(pool3, x.data(), t, f32_rows(w, n, k), bias.data(), all3.data(), false);
    ASSERT_EQ(0, std::memcmp(all1.data(), all3.data(), all1.size() * sizeof(float)));
    for (std::int64_t first = 0; first < t; first += 5) {
      for (std::int64_t count : {1, 2, 3, 5}) {
        const std::int64_t c = std::min(count, t - first);
        std::vector<float> part(c * n);
        matmul(pool3, x.data() + first * k, c, f32_rows(w, n, k), bias.data(), part.data(), false);
        ASSERT_EQ(0, std::memcmp(part.data(), all1.data() + first * n, part.size() * sizeof(float)))
            << "k " << k << " rows [" << first << ", " << first + c << ")";
      }
    }
    // Output rows taken alone (a weight slice), and the plain dot product.
    for (std::int64_t o = 0; o < n; ++o) {
      std::vector<float> col(t);
      const std::vector<float> row(w.begin() + o * k, w.begin() + (o + 1) * k);
      matmul(pool3, x.data(), t, f32_rows(row, 1, k), bias.data() + o, col.data(), false);
      for (std::int64_t i = 0; i < t; ++i) {
        ASSERT_EQ(col[i], all1[i * n + o]);
        ASSERT_EQ(dot(x.data() + i * k, w.data() + o * k, k) + bias[o], all1[i * n + o]);
      }
    }
  }
}

// 16-bit weights are widened exactly, so a bf16 or f16 matrix gives bit for bit what its fp32
// widening gives, also when its rows come from three stacked parts at odd byte offsets.
TEST(CpuOps, MatmulReadsStoredDtypesExactlyFromStackedParts) {
  util::ThreadPool pool(3);
  Rng rng(7);
  for (const model::DType dtype : {model::DType::kBF16, model::DType::kF16, model::DType::kF32}) {
    for (std::int64_t k : {5, 16, 64, 129}) {
      const std::int64_t t = 11, rows[3] = {9, 2, 6}, n = 17;
      const auto x = rng.vec(t * k, 1.0f);
      const auto w = rng.vec(n * k, 1.0f);
      const std::size_t size = model::dtype_size(dtype);
      // Stored values (one byte off any alignment) and their exact fp32 widening.
      std::vector<std::byte> stored(n * k * size + 1);
      std::vector<float> widened(n * k);
      for (std::int64_t i = 0; i < n * k; ++i) {
        std::uint16_t h = 0;
        if (dtype == model::DType::kBF16) h = model::f32_to_bf16(w[i]);
        if (dtype == model::DType::kF16) h = model::f32_to_f16(w[i]);
        if (dtype == model::DType::kF32) {
          std::memcpy(stored.data() + 1 + i * size, &w[i], size);
        } else {
          std::memcpy(stored.data() + 1 + i * size, &h, size);
        }
        model::convert_to_f32(dtype, stored.data() + 1 + i * size, 1, &widened[i]);
      }
      WeightRows parts(dtype, k);
      std::int64_t first = 0;
      for (std::int64_t r : rows) {
        parts.append(stored.data() + 1 + first * k * static_cast<std::int64_t>(size), r);
        first += r;
      }
      ASSERT_EQ(parts.rows(), n);
      std::vector<float> got(t * n), want(t * n);
      matmul(pool, x.data(), t, parts, nullptr, got.data(), false);
      matmul(pool, x.data(), t, f32_rows(widened, n, k), nullptr, want.data(), false);
      ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
          << model::dtype_name(dtype) << " k " << k;
    }
  }
}

TEST(CpuOps, RmsNorm) {
  util::ThreadPool pool(2);
  Rng rng(3);
  for (std::int64_t n : kAwkward) {
    const std::int64_t rows = 5;
    const auto x = rng.vec(rows * n, 3.0f);
    const auto w = rng.vec(n, 1.0f);
    std::vector<float> y(rows * n);
    rmsnorm(pool, x.data(), rows, n, w.data(), 1e-5f, y.data());
    for (std::int64_t r = 0; r < rows; ++r) {
      double ms = 0.0;
      for (std::int64_t i = 0; i < n; ++i) ms += double{x[r * n + i]} * x[r * n + i];
      const double inv = 1.0 / std::sqrt(ms / n + 1e-5);
      for (std::int64_t i = 0; i < n; ++i) {
        const double ref = x[r * n + i] * inv * w[i];
        ASSERT_NEAR(y[r * n + i], ref, 1e-5 * std::abs(ref) + 1e-6) << "n " << n;
      }
    }
    // In place gives the same bits.
    std::vector<float> z = x;
    for (std::int64_t r = 0; r < rows; ++r) {
      rmsnorm_row(z.data() + r * n, w.data(), n, 1e-5f, z.data() + r * n);
    }
    ASSERT_EQ(0, std::memcmp(z.data(), y.data(), y.size() * sizeof(float)));
  }
}

TEST(CpuOps, SiluMul) {
  const std::vector<float> gate = {-100.0f, -20.0f, -1.5f, -0.1f, 0.0f, 0.3f, 2.0f, 30.0f, 100.0f};
  std::vector<float> up(gate.size());
  std::iota(up.begin(), up.end(), 1.0f);
  std::vector<float> out(gate.size());
  silu_mul(gate.data(), up.data(), std::ssize(gate), out.data());
  for (std::size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    const double ref = g / (1.0 + std::exp(-g)) * up[i];
    EXPECT_FALSE(std::isnan(out[i]));
    EXPECT_NEAR(out[i], ref, 1e-6 * std::abs(ref) + 1e-30) << "gate " << g;
  }
}

TEST(CpuOps, RopeInvFreqDefault) {
  const auto f = rope_inv_freq(64, 500000.0, std::nullopt);
  ASSERT_EQ(f.size(), 32u);
  for (int i = 0; i < 32; ++i) EXPECT_DOUBLE_EQ(f[i], std::pow(500000.0, -2.0 * i / 64));
}

// The llama3 rule written out per band, as the Llama 3.1 reference code states it.
TEST(CpuOps, RopeInvFreqLlama3) {
  const model::Llama3RopeScaling s{8.0, 1.0, 4.0, 8192};
  const int head_dim = 128;
  const auto f = rope_inv_freq(head_dim, 500000.0, s);
  int low = 0, mid = 0, high = 0;
  for (int i = 0; i < head_dim / 2; ++i) {
    const double base = std::pow(500000.0, -2.0 * i / head_dim);
    const double wavelen = 2 * std::numbers::pi / base;
    double expected;
    if (wavelen < 8192.0 / 4.0) {
      expected = base, ++high;
    } else if (wavelen > 8192.0 / 1.0) {
      expected = base / 8.0, ++low;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      expected = (1 - smooth) * base / 8.0 + smooth * base, ++mid;
    }
    EXPECT_NEAR(f[i], expected, 1e-15 * expected) << "i " << i;
  }
  // All three bands are exercised.
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
  EXPECT_GT(high, 0);
}

TEST(CpuOps, RopeTableAndApply) {
  const int head_dim = 24, half = 12;
  const auto inv_freq =
      rope_inv_freq(head_dim, 10000.0, model::Llama3RopeScaling{4.0, 1.0, 4.0, 64});
  RopeTable table(head_dim, inv_freq);
  table.ensure(5);
  const float* cos3 = table.cos(3);
  std::vector<float> cos3_copy(cos3, cos3 + half);
  table.ensure(5000);  // growing keeps the values of earlier positions
  ASSERT_EQ(0, std::memcmp(cos3_copy.data(), table.cos(3), half * sizeof(float)));
  Rng rng(4);
  for (int pos : {0, 1, 7, 100, 4999}) {
    for (int i = 0; i < half; ++i) {
      ASSERT_EQ(table.cos(pos)[i], static_cast<float>(std::cos(pos * inv_freq[i])));
      ASSERT_EQ(table.sin(pos)[i], static_cast<float>(std::sin(pos * inv_freq[i])));
    }
    const auto x = rng.vec(head_dim, 2.0f);
    std::vector<float> y = x;
    rope_apply(y.data(), table.cos(pos), table.sin(pos), half);
    // x * cos(emb) + rotate_half(x) * sin(emb), emb = cat(freqs, freqs).
    for (int i = 0; i < head_dim; ++i) {
      const double angle = pos * inv_freq[i % half];
      const double rotated = i < half ? -x[i + half] : x[i - half];
      const double ref = x[i] * std::cos(angle) + rotated * std::sin(angle);
      ASSERT_NEAR(y[i], ref, 1e-5) << "pos " << pos << " i " << i;
    }
  }
}

// Paged attention against a dense double softmax, with a shuffled block table; the same
// bits whatever the block size (positions are always read in order) and whether a head is
// computed alone or with the rest of its GQA group.
TEST(CpuOps, AttentionMatchesDenseAndIgnoresPaging) {
  Rng rng(5);
  const std::int32_t kv_heads = 2, head_dim = 20, context = 101, group = 3;
  const auto keys = rng.vec(context * kv_heads * head_dim, 1.5f);  // [context, kv_heads, hd]
  const auto values = rng.vec(context * kv_heads * head_dim, 1.0f);
  const auto q = rng.vec(group * head_dim, 1.5f);  // [group, hd]
  const float scale = 1.0f / std::sqrt(float{head_dim});
  std::vector<std::vector<float>> results_by_block_size;
  for (std::int32_t bs : {1, 3, 16}) {
    const std::int32_t blocks = (context + bs - 1) / bs;
    const std::int32_t num_blocks = blocks + 5;
    std::vector<std::int32_t> table(blocks);
    std::iota(table.begin(), table.end(), 0);
    for (std::int32_t i = blocks - 1; i > 0; --i) std::swap(table[i], table[rng.next() % (i + 1)]);
    for (auto& b : table) b = num_blocks - 1 - b;  // blocks 0..4 unused
    std::vector<float> k_pool(num_blocks * kv_heads * bs * head_dim, NAN);
    std::vector<float> v_pool(k_pool.size(), NAN);
    const PagedKv kv{k_pool.data(), v_pool.data(), table.data(), kv_heads, bs, head_dim};
    for (std::int32_t p = 0; p < context; ++p) {
      for (std::int32_t h = 0; h < kv_heads; ++h) {
        const float* src_k = keys.data() + (p * kv_heads + h) * head_dim;
        const float* src_v = values.data() + (p * kv_heads + h) * head_dim;
        std::copy(src_k, src_k + head_dim, k_pool.begin() + kv.offset(p, h));
        std::copy(src_v, src_v + head_dim, v_pool.begin() + kv.offset(p, h));
      }
    }
    std::vector<float> all;
    for (std::int32_t pos : {0, 1, 30, 31, 32, 33, 64, 100}) {
      for (std::int32_t kvh = 0; kvh < kv_heads; ++kvh) {
        std::vector<float> out(group * head_dim);
        attention(q.data(), 0, 1, group, pos, kv, kvh, scale, out.data(), 0);
        for (std::int32_t g = 0; g < group; ++g) {
          std::vector<float> alone(head_dim);
          attention(q.data() + g * head_dim, 0, 1, 1, pos, kv, kvh, scale, alone.data(), 0);
          ASSERT_EQ(0,
                    std::memcmp(alone.data(), out.data() + g * head_dim, head_dim * sizeof(float)));
          std::vector<double> s(pos + 1);
          double mx = -INFINITY, sum = 0.0;
          for (std::int32_t j = 0; j <= pos; ++j) {
            s[j] = 0.0;
            for (std::int32_t d = 0; d < head_dim; ++d) {
              s[j] += double{q[g * head_dim + d]} * keys[(j * kv_heads + kvh) * head_dim + d];
            }
            s[j] *= scale;
            mx = std::max(mx, s[j]);
          }
          for (double& v : s) sum += (v = std::exp(v - mx));
          for (std::int32_t d = 0; d < head_dim; ++d) {
            double ref = 0.0;
            for (std::int32_t j = 0; j <= pos; ++j) {
              ref += s[j] / sum * values[(j * kv_heads + kvh) * head_dim + d];
            }
            ASSERT_NEAR(out[g * head_dim + d], ref, 2e-6)
                << "bs " << bs << " pos " << pos << " kv head " << kvh << " head " << g;
          }
        }
        all.insert(all.end(), out.begin(), out.end());
      }
    }
    results_by_block_size.push_back(all);
  }
  for (const auto& r : results_by_block_size) {
    ASSERT_EQ(0, std::memcmp(r.data(), results_by_block_size[0].data(), r.size() * sizeof(float)));
  }
}

// More query heads than one pass takes (an MQA-like group of 11).
TEST(CpuOps, AttentionLargeGroup) {
  Rng rng(6);
  const std::int32_t head_dim = 16, context = 40, group = 11;
  std::vector<float> k_pool(context * head_dim), v_pool(context * head_dim);
  for (auto& v : k_pool) v = rng.uniform(1.0f);
  for (auto& v : v_pool) v = rng.uniform(1.0f);
  std::vector<std::int32_t> table(context);
  std::iota(table.begin(), table.end(), 0);
  const PagedKv kv{k_pool.data(), v_pool.data(), table.data(), 1, 1, head_dim};
  const auto q = rng.vec(group * head_dim, 1.0f);
  std::vector<float> out(group * head_dim), alone(head_dim);
  attention(q.data(), 0, 1, group, context - 1, kv, 0, 0.25f, out.data(), 0);
  for (std::int32_t g = 0; g < group; ++g) {
    attention(q.data() + g * head_dim, 0, 1, 1, context - 1, kv, 0, 0.25f, alone.data(), 0);
    ASSERT_EQ(0, std::memcmp(alone.data(), out.data() + g * head_dim, head_dim * sizeof(float)));
  }
}

// Several consecutive tokens in one call (crossing 32-position windows, more tokens and
// heads than one pass takes) give each (token, head) the bits it gets alone.
TEST(CpuOps, AttentionTokensOfACallAreIndependent) {
  Rng rng(7);
  const std::int32_t head_dim = 24, kv_heads = 2, bs = 5, context = 90;
  const std::int32_t blocks = (context + bs - 1) / bs;
  std::vector<std::int32_t> table(blocks);
  std::iota(table.rbegin(), table.rend(), 0);  // descending block ids
  std::vector<float> k_pool(blocks * kv_heads * bs * head_dim), v_pool(k_pool.size());
  for (auto& v : k_pool) v = rng.uniform(1.5f);
  for (auto& v : v_pool) v = rng.uniform(1.0f);
  const PagedKv kv{k_pool.data(), v_pool.data(), table.data(), kv_heads, bs, head_dim};
  for (std::int32_t group : {1, 2, 7}) {
    for (std::int32_t tokens : {1, 5, 8, 13}) {
      const std::int32_t pos0 = 27, stride = group * head_dim + 3;
      const auto q = rng.vec(tokens * stride, 1.5f);
      std::vector<float> out(tokens * stride, -1.0f), alone(group * head_dim);
      attention(q.data(), stride, tokens, group, pos0, kv, 1, 0.3f, out.data(), stride);
      for (std::int32_t i = 0; i < tokens; ++i) {
        attention(q.data() + i * stride, 0, 1, group, pos0 + i, kv, 1, 0.3f, alone.data(), 0);
        ASSERT_EQ(0,
                  std::memcmp(alone.data(), out.data() + i * stride, alone.size() * sizeof(float)))
            << "group " << group << " tokens " << tokens << " token " << i;
        for (std::int32_t pad = 0; pad < 3; ++pad) {
          ASSERT_EQ(out[i * stride + group * head_dim + pad], -1.0f) << "wrote past the heads";
        }
      }
    }
  }
}

}  // namespace
}  // namespace cachet::backend::cpu

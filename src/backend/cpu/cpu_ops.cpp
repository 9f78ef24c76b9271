#include "backend/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>

#include "backend/cpu/cpu_isa.h"
#include "cachet/errors.h"

namespace cachet::backend::cpu {

namespace {

struct MatmulArgs {
  const float* x;  // [num_tokens, in_dim]
  std::int64_t num_tokens, in_dim;
  const WeightRows* w;  // [out_dim, in_dim]
  std::int64_t out_dim;
  const float* bias;  // [out_dim] or null
  float* y;           // [num_tokens, out_dim]
  bool accumulate;
  std::int64_t block_groups;  // row groups whose weights stay in L2 while tokens stream by
  const DotTileFn* tiles;     // the variant's micro-kernels for w's dtype
};

WeightType weight_type(model::DType dtype) {
  switch (dtype) {
    case model::DType::kF32:
      return kWeightF32;
    case model::DType::kBF16:
      return kWeightBF16;
    case model::DType::kF16:
      return kWeightF16;
  }
  return kWeightF32;
}

// Row groups [g0, g1) of kTileRows output rows, all tokens. A partial row group repeats
// its last row and drops the extra results.
void matmul_rows(const MatmulArgs& a, std::int64_t g0, std::int64_t g1) {
  float out[kMaxTileTokens * kTileRows];
  const float* xp[kMaxTileTokens];
  const void* wp[kTileRows];
  for (std::int64_t gb = g0; gb < g1; gb += a.block_groups) {
    const std::int64_t ge = std::min(g1, gb + a.block_groups);
    for (std::int64_t t0 = 0; t0 < a.num_tokens; t0 += kMaxTileTokens) {
      const std::int64_t nt = std::min<std::int64_t>(kMaxTileTokens, a.num_tokens - t0);
      const DotTileFn tile = a.tiles[nt];
      for (std::int64_t t = 0; t < nt; ++t) xp[t] = a.x + (t0 + t) * a.in_dim;
      for (std::int64_t g = gb; g < ge; ++g) {
        const std::int64_t r0 = g * kTileRows;
        const std::int64_t nr = std::min<std::int64_t>(kTileRows, a.out_dim - r0);
        for (std::int64_t r = 0; r < kTileRows; ++r) wp[r] = a.w->row(r0 + std::min(r, nr - 1));
        tile(xp, wp, a.in_dim, out);
        for (std::int64_t t = 0; t < nt; ++t) {
          float* yrow = a.y + (t0 + t) * a.out_dim + r0;
          for (std::int64_t r = 0; r < nr; ++r) {
            float v = out[t * kTileRows + r];
            if (a.bias != nullptr) v += a.bias[r0 + r];
            yrow[r] = a.accumulate ? yrow[r] + v : v;
          }
        }
      }
    }
  }
}

}  // namespace

void WeightRows::append(const std::byte* data, std::int64_t rows) {
  if (num_parts_ == static_cast<int>(parts_.size())) {
    throw Error(ErrorCode::kInternal, "WeightRows::append: more than three parts");
  }
  parts_[num_parts_++] = {data, rows};
  rows_ += rows;
}

const std::byte* WeightRows::row(std::int64_t r) const {
  const auto row_bytes = in_dim_ * static_cast<std::int64_t>(model::dtype_size(dtype_));
  int i = 0;
  while (i + 1 < num_parts_ && r >= parts_[i].rows) r -= parts_[i++].rows;
  return parts_[i].data + r * row_bytes;
}

void matmul(util::ThreadPool& pool, const float* x, std::int64_t num_tokens, const WeightRows& w,
            const float* bias, float* y, bool accumulate) {
  const std::int64_t in_dim = w.in_dim(), out_dim = w.rows();
  if (num_tokens <= 0 || out_dim <= 0) return;
  constexpr std::int64_t kL2Bytes = 256 * 1024;
  const std::int64_t row_bytes =
      std::max<std::int64_t>(in_dim, 1) * static_cast<std::int64_t>(model::dtype_size(w.dtype()));
  const MatmulArgs args{x,
                        num_tokens,
                        in_dim,
                        &w,
                        out_dim,
                        bias,
                        y,
                        accumulate,
                        std::max<std::int64_t>(1, kL2Bytes / row_bytes / kTileRows),
                        kernels().dot_tiles[weight_type(w.dtype())]};
  const std::int64_t groups = (out_dim + kTileRows - 1) / kTileRows;
  // At least ~64k multiply-adds per chunk, so tiny matmuls do not pay for waking threads.
  const std::int64_t macs_per_group = std::max<std::int64_t>(1, in_dim) * num_tokens * kTileRows;
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / macs_per_group);
  pool.parallel_for(0, groups, grain,
                    [a = &args](std::int64_t g0, std::int64_t g1) { matmul_rows(*a, g0, g1); });
}

float dot(const float* a, const float* b, std::int64_t n) { return kernels().dot(a, b, n); }

void rmsnorm_row(const float* x, const float* w, std::int64_t n, float eps, float* y) {
  // Mean of squares in fp32, as HF does after .to(torch.float32).
  const float sum_sq = kernels().dot(x, x, n);
  const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
  for (std::int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv_rms);
}

void rmsnorm(util::ThreadPool& pool, const float* x, std::int64_t num_rows, std::int64_t n,
             const float* w, float eps, float* y) {
  struct Args {
    const float *x, *w;
    std::int64_t n;
    float eps;
    float* y;
  } args{x, w, n, eps, y};
  const std::int64_t grain = std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(n, 1));
  pool.parallel_for(0, num_rows, grain, [a = &args](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      rmsnorm_row(a->x + r * a->n, a->w, a->n, a->eps, a->y + r * a->n);
  });
}

void silu_mul(const float* gate, const float* up, std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

std::vector<double> rope_inv_freq(std::int32_t head_dim, double theta,
                                  const std::optional<model::Llama3RopeScaling>& scaling) {
  const std::int32_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<std::size_t>(half));
  for (std::int32_t i = 0; i < half; ++i) {
    inv_freq[i] = 1.0 / std::pow(theta, 2.0 * i / head_dim);
  }
  if (!scaling) return inv_freq;
  // transformers' _compute_llama3_parameters: long wavelengths are slowed down by
  // `factor`, short ones kept, the band between interpolated.
  const double orig = static_cast<double>(scaling->original_max_position_embeddings);
  const double low_freq_wavelen = orig / scaling->low_freq_factor;
  const double high_freq_wavelen = orig / scaling->high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f = f / scaling->factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (orig / wavelen - scaling->low_freq_factor) /
                            (scaling->high_freq_factor - scaling->low_freq_factor);
      f = (1.0 - smooth) * f / scaling->factor + smooth * f;
    }
  }
  return inv_freq;
}

RopeTable::RopeTable(std::int32_t head_dim, std::vector<double> inv_freq)
    : half_(head_dim / 2), inv_freq_(std::move(inv_freq)) {}

void RopeTable::ensure(std::int64_t num_positions) {
  if (num_positions <= num_positions_) return;
  const std::int64_t target = std::max(num_positions, num_positions_ * 2);
  cos_.resize(static_cast<std::size_t>(target * half_));
  sin_.resize(static_cast<std::size_t>(target * half_));
  for (std::int64_t pos = num_positions_; pos < target; ++pos) {
    for (std::int32_t i = 0; i < half_; ++i) {
      const double angle = static_cast<double>(pos) * inv_freq_[i];
      cos_[pos * half_ + i] = static_cast<float>(std::cos(angle));
      sin_[pos * half_ + i] = static_cast<float>(std::sin(angle));
    }
  }
  num_positions_ = target;
}

void rope_apply(float* x, const float* cos, const float* sin, std::int32_t half) {
  float* x1 = x;
  float* x2 = x + half;
  for (std::int32_t i = 0; i < half; ++i) {
    const float a = x1[i], b = x2[i];
    x1[i] = a * cos[i] - b * sin[i];
    x2[i] = b * cos[i] + a * sin[i];
  }
}

void attention(const float* q, std::int64_t q_stride, std::int32_t num_tokens,
               std::int32_t num_q_heads, std::int32_t pos0, const PagedKv& kv, std::int32_t kv_head,
               float scale, float* out, std::int64_t out_stride) {
  const Kernels& k = kernels();
  constexpr std::int32_t kMaxHeads = kMaxTileTokens;  // query heads per dot_tile call
  constexpr std::int32_t kMaxTokens = 8;              // per-(token, head) state on the stack
  const std::int32_t hd = kv.head_dim;
  // Larger calls take several passes over the K/V.
  for (std::int32_t t0 = 0; t0 < num_tokens; t0 += kMaxTokens) {
    for (std::int32_t h0 = 0; h0 < num_q_heads; h0 += kMaxHeads) {
      const std::int32_t tokens = std::min(kMaxTokens, num_tokens - t0);
      const std::int32_t heads = std::min(kMaxHeads, num_q_heads - h0);
      // Rows of token i, heads [h0, h0 + heads): [heads, hd] each.
      const auto q_of = [&](std::int32_t i) { return q + (t0 + i) * q_stride + h0 * hd; };
      const auto out_of = [&](std::int32_t i) { return out + (t0 + i) * out_stride + h0 * hd; };
      float running_max[kMaxTokens][kMaxHeads], running_sum[kMaxTokens][kMaxHeads];
      for (std::int32_t i = 0; i < tokens; ++i) {
        std::fill_n(running_max[i], heads, -std::numeric_limits<float>::infinity());
        std::fill_n(running_sum[i], heads, 0.0f);
        std::fill_n(out_of(i), std::int64_t{heads} * hd, 0.0f);  // sum of e_j * v_j till the end
      }
      float scores[kMaxHeads][kWindow];
      float weights[kMaxHeads][kWindow];
      float tile[kMaxHeads * kTileRows];
      const float* k_rows[kWindow];
      const float* v_rows[kWindow];
      const std::int32_t last_pos = pos0 + t0 + tokens - 1;
      for (std::int32_t w0 = 0; w0 <= last_pos; w0 += kWindow) {
        // Walk the block table once per window instead of dividing per position.
        const std::int32_t window = std::min(kWindow, last_pos + 1 - w0);
        std::int32_t block = w0 / kv.block_size, in_block = w0 % kv.block_size;
        for (std::int32_t j = 0; j < window; ++j) {
          const std::int64_t offset =
              ((std::int64_t{kv.block_table[block]} * kv.num_kv_heads + kv_head) * kv.block_size +
               in_block) *
              hd;
          k_rows[j] = kv.k_pool + offset;
          v_rows[j] = kv.v_pool + offset;
          if (++in_block == kv.block_size) in_block = 0, ++block;
        }
        // Every token of the call reuses this window's K/V while it is in L1.
        for (std::int32_t i = 0; i < tokens; ++i) {
          const std::int32_t n = std::min(kWindow, pos0 + t0 + i + 1 - w0);
          if (n <= 0) continue;  // the window starts after this token
          const float* q_rows[kMaxHeads];
          for (std::int32_t h = 0; h < heads; ++h) q_rows[h] = q_of(i) + std::int64_t{h} * hd;
          // Scores of all heads against kTileRows keys per call; a partial call repeats the
          // last key and drops the extra scores.
          for (std::int32_t j0 = 0; j0 < n; j0 += kTileRows) {
            const void* keys[kTileRows];
            for (std::int32_t r = 0; r < kTileRows; ++r) keys[r] = k_rows[std::min(j0 + r, n - 1)];
            k.dot_tiles[kWeightF32][heads](q_rows, keys, hd, tile);
            for (std::int32_t h = 0; h < heads; ++h) {
              for (std::int32_t r = 0; r < kTileRows && j0 + r < n; ++r) {
                scores[h][j0 + r] = tile[h * kTileRows + r] * scale;
              }
            }
          }
          float* og = out_of(i);
          for (std::int32_t h = 0; h < heads; ++h) {
            const float window_max = *std::max_element(scores[h], scores[h] + n);
            if (window_max > running_max[i][h]) {
              // Rescale what was summed against the old max (exp(-inf) = 0 the first time).
              const float alpha = std::exp(running_max[i][h] - window_max);
              running_sum[i][h] *= alpha;
              for (std::int32_t d = 0; d < hd; ++d) og[std::int64_t{h} * hd + d] *= alpha;
              running_max[i][h] = window_max;
            }
            for (std::int32_t j = 0; j < n; ++j) {
              weights[h][j] = std::exp(scores[h][j] - running_max[i][h]);
              running_sum[i][h] += weights[h][j];
            }
          }
          k.weighted_sums[heads](weights, v_rows, n, og, hd);
        }
      }
      for (std::int32_t i = 0; i < tokens; ++i) {
        for (std::int32_t h = 0; h < heads; ++h) {
          const float inv_sum = 1.0f / running_sum[i][h];
          float* oh = out_of(i) + std::int64_t{h} * hd;
          for (std::int32_t d = 0; d < hd; ++d) oh[d] *= inv_sum;
        }
      }
    }
  }
}

}  // namespace cachet::backend::cpu

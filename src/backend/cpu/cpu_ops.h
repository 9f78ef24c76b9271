// The numeric kernels of the CPU backend: fp32 arithmetic, weights read in their stored dtype.
//
// Batch invariance: every output element is computed by the same IEEE operations in the
// same order whatever the number of tokens in the call, the element's place in a tile, or
// the thread split; fused multiply-adds are explicit, never left to the compiler's choice.
// A token's results therefore do not depend on what else is in the batch or on how its
// sequence was chunked, which is what makes prefix caching bit-exact on the CPU.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "model/dtype.h"
#include "model/model_config.h"
#include "util/thread_pool.h"

namespace cachet::backend::cpu {

// A weight matrix [rows, in_dim] (Hugging Face layout [out, in]) read in place in its stored
// dtype: the rows of up to three tensors of that dtype stacked, so the fused q/k/v and
// gate/up projections need no copy.
class WeightRows {
 public:
  WeightRows() = default;
  WeightRows(model::DType dtype, std::int64_t in_dim) : dtype_(dtype), in_dim_(in_dim) {}
  // Appends `rows` rows stored at `data` (any alignment). At most three parts.
  void append(const std::byte* data, std::int64_t rows);

  model::DType dtype() const { return dtype_; }
  std::int64_t in_dim() const { return in_dim_; }
  std::int64_t rows() const { return rows_; }
  // The first byte of row r < rows().
  const std::byte* row(std::int64_t r) const;

 private:
  struct Part {
    const std::byte* data;
    std::int64_t rows;
  };
  model::DType dtype_ = model::DType::kF32;
  std::int64_t in_dim_ = 0, rows_ = 0;
  std::array<Part, 3> parts_{};
  int num_parts_ = 0;
};

// y = x · wᵀ (+ bias), or y += that when `accumulate` (a residual add).
//   x: [num_tokens, w.in_dim()]   bias: [w.rows()] or null   y: [num_tokens, w.rows()]
// Each y element is one fixed-order dot product (16 fp32 lanes over in_dim, then a fixed
// reduction tree) of x's row and w's row widened to fp32, then + bias, then added to y. The
// widening is exact, so a bf16 or f16 matrix gives the bits its fp32 copy would.
void matmul(util::ThreadPool& pool, const float* x, std::int64_t num_tokens, const WeightRows& w,
            const float* bias, float* y, bool accumulate);

// The dot product matmul uses for each element (and attention for each score), for one pair
// of vectors of length n.
float dot(const float* a, const float* b, std::int64_t n);

// y = x / sqrt(mean(x²) + eps) * w over one row of n values; y may alias x.
void rmsnorm_row(const float* x, const float* w, std::int64_t n, float eps, float* y);
// The same for each of the rows of x: [num_rows, n] -> y: [num_rows, n].
void rmsnorm(util::ThreadPool& pool, const float* x, std::int64_t num_rows, std::int64_t n,
             const float* w, float eps, float* y);

// out[i] = silu(gate[i]) * up[i] for i < n, silu(g) = g / (1 + exp(-g)).
void silu_mul(const float* gate, const float* up, std::int64_t n, float* out);

// inv_freq[i] = 1 / theta^(2i / head_dim) for i < head_dim / 2, with Hugging Face's llama3
// rescaling (_compute_llama3_parameters) when `scaling` is set. Computed in double.
std::vector<double> rope_inv_freq(std::int32_t head_dim, double theta,
                                  const std::optional<model::Llama3RopeScaling>& scaling);

// cos/sin of pos * inv_freq[i] per position, angles in double, stored as float; grows on
// demand (the values of a position never depend on how far the table reaches).
class RopeTable {
 public:
  RopeTable(std::int32_t head_dim, std::vector<double> inv_freq);
  // Makes positions [0, num_positions) available. Not thread-safe; call before the
  // parallel part of a step.
  void ensure(std::int64_t num_positions);
  std::int32_t half() const { return half_; }
  const float* cos(std::int32_t pos) const { return cos_.data() + std::int64_t{pos} * half_; }
  const float* sin(std::int32_t pos) const { return sin_.data() + std::int64_t{pos} * half_; }

 private:
  std::int32_t half_;
  std::vector<double> inv_freq_;  // [half]
  std::int64_t num_positions_ = 0;
  std::vector<float> cos_, sin_;  // [num_positions, half] each
};

// Rotates one head in place, neox / HF rotate_half layout (pairs (i, i + half)):
//   x[i]        = x[i] * cos[i] - x[i + half] * sin[i]
//   x[i + half] = x[i + half] * cos[i] + x[i] * sin[i]
// x: [2 * half]   cos, sin: [half]
void rope_apply(float* x, const float* cos, const float* sin, std::int32_t half);

// One sequence's view of one layer's paged K/V pools.
struct PagedKv {
  const float* k_pool = nullptr;              // [num_blocks, num_kv_heads, block_size, head_dim]
  const float* v_pool = nullptr;              // [num_blocks, num_kv_heads, block_size, head_dim]
  const std::int32_t* block_table = nullptr;  // [>= ceil(context / block_size)] block ids
  std::int32_t num_kv_heads = 0;
  std::int32_t block_size = 0;
  std::int32_t head_dim = 0;

  // Offset of (position, kv_head) in either pool.
  std::int64_t offset(std::int32_t pos, std::int32_t kv_head) const {
    const std::int64_t block = block_table[pos / block_size];
    return ((block * num_kv_heads + kv_head) * block_size + pos % block_size) * head_dim;
  }
};

// Causal attention of `num_tokens` consecutive tokens of one sequence, at positions pos0,
// pos0 + 1, ..., for the query heads of one GQA group (all sharing `kv_head`). A token at
// position p attends to positions [0, p] read through the block table in increasing order:
// softmax(q·k * scale) · v in fp32 with a running (online) max and sum over fixed 32-position
// windows aligned to position 0. The result of a (token, head) depends only on its q, its
// position and the cached K/V, never on the other tokens or heads of the call: taking
// several tokens only lets them share each window's K/V while it is in L1.
//   q:   token i's heads [num_q_heads, head_dim] start at q + i * q_stride
//   out: token i's heads [num_q_heads, head_dim] start at out + i * out_stride
void attention(const float* q, std::int64_t q_stride, std::int32_t num_tokens,
               std::int32_t num_q_heads, std::int32_t pos0, const PagedKv& kv, std::int32_t kv_head,
               float scale, float* out, std::int64_t out_stride);

}  // namespace cachet::backend::cpu

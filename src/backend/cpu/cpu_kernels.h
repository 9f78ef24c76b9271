// The CPU backend's vectorised inner loops, compiled once per instruction set
// (cpu_kernels_<isa>.cpp, each including cpu_kernels.inc with its own compiler flags) and
// chosen at run time (cpu_isa.h). Weights are read in their stored dtype (f32, bf16, f16) and
// widened to fp32 in registers, which is exact, so a weight's dtype changes the bytes read
// but never a result. Every variant computes the same IEEE operations in the same order (16 fp32
// lanes, one fused multiply-add per lane and step, a fixed reduction tree): the AVX-512 and
// AVX2+FMA variants give bit-identical results; the generic one (no FMA on x86 without AVX2) rounds
// each multiply-add twice. See cpu_ops.h for the batch-invariance contract the variants keep.
#pragma once

#include <cstdint>

namespace cachet::backend::cpu {

// Output rows and tokens of one dot_tile call; positions of one attention window.
inline constexpr int kTileRows = 4;
inline constexpr int kMaxTileTokens = 6;  // 24 accumulators + 4 weights + 1 input of 32 registers
inline constexpr int kWindow = 32;

// How a weight matrix's elements are stored; the first index of Kernels::dot_tiles.
enum WeightType : int { kWeightF32, kWeightBF16, kWeightF16, kNumWeightTypes };

// out[t * kTileRows + r] = dot(x[t], w[r]) over n, for t < kTokens (the table index); the
// rows w[r] hold n elements of the table's WeightType, at any alignment.
using DotTileFn = void (*)(const float* const* x, const void* const* w, std::int64_t n, float* out);
// For each head h < kHeads (the table index): y[h][d] += sum_j a[h][j] * x[j][d], j in order.
//   a: [kHeads][kWindow]   x: [n] row pointers, [dim] each   y: [kHeads, dim]
using WeightedSumFn = void (*)(const float (*a)[kWindow], const float* const* x, std::int32_t n,
                               float* y, std::int64_t dim);
// The dot product of one pair of vectors of length n, in dot_tile's order.
using DotFn = float (*)(const float* a, const float* b, std::int64_t n);

// One instruction set's variants.
struct Kernels {
  const char* isa;  // "avx512", "avx2" or "generic"
  DotFn dot;
  DotTileFn dot_tiles[kNumWeightTypes][kMaxTileTokens + 1];  // [type][1..kMaxTileTokens]
  WeightedSumFn weighted_sums[kMaxTileTokens + 1];           // [1..kMaxTileTokens]
};

}  // namespace cachet::backend::cpu

// The CPU backend's vectorised inner loops, compiled once per instruction set
// (cpu_kernels_<isa>.cpp, each including cpu_kernels.inc with its own compiler flags) and
// chosen at run time (cpu_isa.h). Every variant computes the same IEEE operations in the
// same order (16 fp32 lanes, one fused multiply-add per lane and step, a fixed reduction
// tree): the AVX-512 and AVX2+FMA variants give bit-identical results; the generic one
// (no FMA on x86 without AVX2) rounds each multiply-add twice. See cpu_ops.h for the
// batch-invariance contract the variants keep.
#pragma once

#include <cstdint>

namespace cachet::backend::cpu {

// Output rows and tokens of one dot_tile call; positions of one attention window.
inline constexpr int kTileRows = 4;
inline constexpr int kMaxTileTokens = 6;  // 24 accumulators + 4 weights + 1 input of 32 registers
inline constexpr int kWindow = 32;

// out[t * kTileRows + r] = dot(x[t], w[r]) over n, for t < kTokens (the table index).
using DotTileFn = void (*)(const float* const* x, const float* const* w, std::int64_t n,
                           float* out);
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
  DotTileFn dot_tiles[kMaxTileTokens + 1];          // [1..kMaxTileTokens]; [0] unused
  WeightedSumFn weighted_sums[kMaxTileTokens + 1];  // [1..kMaxTileTokens]; [0] unused
};

}  // namespace cachet::backend::cpu

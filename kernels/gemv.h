// Matrix-vector products for decode steps: Y[M, N] (+)= X[M, K] . W[N, K]^T for M <= 4
// rows, the shape of every projection of a decode step at batch sizes 1-4. Same contract as
// backend/cuda/gemm.h (X and W bf16 or fp16, fp32 accumulation, fp32 Y, `accumulate` adds
// into Y), so the backend can use it in place of a cuBLASLt call.
//
// One warp per output row: each lane issues kGemvUnroll 16-byte streaming loads of the
// weight row before using any (32 lanes x 8 x 16 bytes = 4 KB in flight per warp, 8 warps a
// block), the M activation rows come through the read-only cache, and the warp sums its
// lanes with shuffles. The point is to keep enough weight bytes in flight to stream W at the
// memory bandwidth, which is all a decode projection is bounded by.
#pragma once

#include <cstdint>

#include "kernel_common.h"

namespace cachet::kernels {

inline constexpr std::int32_t kGemvMaxRows = 4;  // M
inline constexpr std::int32_t kGemvUnroll = 8;   // 16-byte weight loads in flight per lane

struct GemvParams {
  const void* x = nullptr;  // T [m, k], rows contiguous, 16-byte aligned
  const void* w = nullptr;  // T [n, k], rows contiguous, 16-byte aligned
  float* y = nullptr;       // fp32 [m, n]
  std::int32_t m = 0;       // 1 .. kGemvMaxRows
  std::int32_t n = 0;
  std::int32_t k = 0;  // a multiple of 8 (16-byte rows)
  bool accumulate = false;
  DType dtype = DType::kBF16;
};

// Whether launch_gemv handles this shape and these pointers.
bool gemv_supported(const GemvParams& p);

// cudaErrorInvalidValue, launching nothing, unless gemv_supported(p) (n == 0: nothing to do).
cudaError_t launch_gemv(const GemvParams& p, cudaStream_t stream);

}  // namespace cachet::kernels

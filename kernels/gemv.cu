// Decode-step matrix-vector products; see gemv.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "gemv.h"

namespace cachet::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;

// 8 elements of T packed in 16 bytes -> fp32.
__device__ __forceinline__ void unpack(const uint4& v, float (&f)[8], __nv_bfloat16) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}
__device__ __forceinline__ void unpack(const uint4& v, float (&f)[8], __half) {
  const auto* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __half22float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

template <typename T, int M>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) gemv_kernel(const GemvParams p) {
  const int lane = threadIdx.x & 31;
  const std::int64_t row = std::int64_t{blockIdx.x} * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= p.n) return;
  const int chunks = p.k / 8;  // 16-byte chunks per row
  const uint4* w = static_cast<const uint4*>(p.w) + row * chunks;
  const uint4* x = static_cast<const uint4*>(p.x);

  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;

  for (int base = 0; base < chunks; base += 32 * kGemvUnroll) {
    // All of this lane's weight loads of the round first, then the arithmetic.
    uint4 wv[kGemvUnroll];
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int c = base + u * 32 + lane;
      wv[u] = c < chunks ? __ldcs(w + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int c = base + u * 32 + lane;
      if (c >= chunks) break;  // c grows with u: the rest of the round is past the row too
      float wf[8];
      unpack(wv[u], wf, T{});
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float xf[8];
        unpack(__ldg(x + std::int64_t{m} * chunks + c), xf, T{});
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[m] = fmaf(wf[j], xf[j], acc[m]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
  }
  if (lane == 0) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float* out = p.y + std::int64_t{m} * p.n + row;
      *out = p.accumulate ? *out + acc[m] : acc[m];
    }
  }
}

template <typename T>
void launch_rows(const GemvParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((std::int64_t{p.n} + kWarpsPerBlock - 1) / kWarpsPerBlock));
  const dim3 block(kWarpsPerBlock * 32);
  switch (p.m) {
    case 1:
      gemv_kernel<T, 1><<<grid, block, 0, stream>>>(p);
      break;
    case 2:
      gemv_kernel<T, 2><<<grid, block, 0, stream>>>(p);
      break;
    case 3:
      gemv_kernel<T, 3><<<grid, block, 0, stream>>>(p);
      break;
    default:
      gemv_kernel<T, 4><<<grid, block, 0, stream>>>(p);
      break;
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool gemv_supported(const GemvParams& p) {
  return p.m >= 1 && p.m <= kGemvMaxRows && p.n >= 0 && p.k > 0 && p.k % 8 == 0 &&
         (p.dtype == DType::kBF16 || p.dtype == DType::kFP16) && p.x != nullptr && p.w != nullptr &&
         p.y != nullptr && aligned16(p.x) && aligned16(p.w);
}

cudaError_t launch_gemv(const GemvParams& p, cudaStream_t stream) {
  if (!gemv_supported(p)) return cudaErrorInvalidValue;
  if (p.n == 0) return cudaGetLastError();
  if (p.dtype == DType::kBF16) {
    launch_rows<__nv_bfloat16>(p, stream);
  } else {
    launch_rows<__half>(p, stream);
  }
  return cudaGetLastError();
}

}  // namespace cachet::kernels

// On-device logits processing: one CTA per processed row copies its raw row (float4 when both
// rows are 16-byte aligned and the vocabulary is a multiple of 4), then applies the row's
// edits, one thread per edit (the ids of a row are unique, so no two threads touch the same
// logit). apply_logit_edit() rounds each operation on its own (__fadd_rn, __fdiv_rn, ...),
// which makes the result bit-identical to the host's process_logits().
#include <cuda_runtime.h>

#include <cstdint>

#include "logits_processing.h"

namespace cachet::kernels {
namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ bool aligned16(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

// dst[0, n) = src[0, n), strided over the block.
__device__ __forceinline__ void copy_row(float* dst, const float* src, std::int32_t n) {
  if (n % 4 == 0 && aligned16(src) && aligned16(dst)) {
    const float4* s4 = reinterpret_cast<const float4*>(src);
    float4* d4 = reinterpret_cast<float4*>(dst);
    for (std::int32_t i = threadIdx.x; i < n / 4; i += kThreads) d4[i] = __ldg(s4 + i);
  } else {
    for (std::int32_t i = threadIdx.x; i < n; i += kThreads) dst[i] = __ldg(src + i);
  }
}

__global__ void __launch_bounds__(kThreads) process_logits_kernel(ProcessLogitsParams p) {
  const std::int64_t i = blockIdx.x;
  const ProcessedRow pr = p.rows[i];
  float* dst = p.processed + i * p.vocab;
  copy_row(dst, p.logits + pr.logits_row * p.row_stride, p.vocab);
  __syncthreads();  // the copy's writes are visible to the whole block
  const sampling::LogitEdit* edits = p.edits + pr.edits_begin;
  for (std::int32_t j = threadIdx.x; j < pr.edits_count; j += kThreads) {
    const sampling::LogitEdit e = edits[j];
    if (e.id < 0 || e.id >= p.vocab) continue;
    dst[e.id] = sampling::apply_logit_edit(dst[e.id], e);
  }
}

}  // namespace

cudaError_t launch_process_logits(const ProcessLogitsParams& p, cudaStream_t stream) {
  if (p.num_processed < 0 || p.vocab <= 0 || p.row_stride < p.vocab) return cudaErrorInvalidValue;
  if (p.num_processed == 0) return cudaGetLastError();
  if (p.logits == nullptr || p.processed == nullptr || p.rows == nullptr || p.edits == nullptr) {
    return cudaErrorInvalidValue;
  }
  process_logits_kernel<<<p.num_processed, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace cachet::kernels

// What every kernel launcher shares. Host-includable: the backend (a .cpp compiled by the
// host compiler) and the GPU tests include the launcher headers, never a .cuh.
//
// Conventions for kernels/:
//  - raw device pointers, an explicit stream, one params struct per kernel;
//  - each launcher is the single dispatch point of its kernel's template instances
//    (dtype x head_dim x block_size ...); unsupported combinations return
//    cudaErrorInvalidValue and launch nothing;
//  - a launcher returns cudaGetLastError() after its launches, so the caller checks every
//    launch; launchers never synchronize and never allocate, so they can be captured in a
//    CUDA graph (grids depend only on host-side params, never on device data).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace cachet::kernels {

// Element type of weights, activations and the KV cache. Residual streams, GEMM outputs that
// feed elementwise kernels, logits and softmax statistics are fp32.
enum class DType : std::int32_t { kBF16 = 0, kFP16 = 1 };

inline constexpr const char* dtype_name(DType d) { return d == DType::kBF16 ? "bf16" : "fp16"; }

}  // namespace cachet::kernels

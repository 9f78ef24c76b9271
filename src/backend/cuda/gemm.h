// Row-major Y[M, N] (+)= X[M, K] . W[N, K]^T through cuBLASLt: X and W bf16 or fp16, fp32
// accumulation, fp32 Y. `accumulate` adds into Y (beta = 1), which is how the o_proj and
// down projections add into the residual stream without a separate kernel.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <type_traits>

#include "backend/cuda/cuda_util.h"

namespace cachet::backend::cuda {

class Gemm {
 public:
  // `fp16` selects fp16 operands, else bf16. Allocates a 32 MiB cuBLASLt workspace.
  explicit Gemm(bool fp16);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Graph-capturable once a shape has been seen (the algorithm search happens the first
  // time a (M, N, K, accumulate) shape runs; it makes no CUDA calls that break capture).
  void run(std::int64_t m, std::int64_t n, std::int64_t k, const void* x, const void* w, float* y,
           bool accumulate, cudaStream_t stream);

  std::size_t workspace_bytes() const { return workspace_.bytes(); }

 private:
  struct Plan;
  using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, bool>;
  const Plan& plan(std::int64_t m, std::int64_t n, std::int64_t k, bool accumulate);

  bool fp16_;
  std::unique_ptr<std::remove_pointer_t<cublasLtHandle_t>, LtHandleDeleter> handle_;
  DeviceBuffer workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace cachet::backend::cuda

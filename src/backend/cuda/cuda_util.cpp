#include "backend/cuda/cuda_util.h"

#include <fmt/format.h>

namespace cachet::backend::cuda {

void fail_cuda(cudaError_t status, const std::string& what) {
  cudaGetLastError();  // clear a sticky non-fatal error so later calls report their own
  const ErrorCode code =
      status == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kInternal;
  throw Error(code, fmt::format("cuda backend: {} failed: {} ({})", what,
                                cudaGetErrorString(status), cudaGetErrorName(status)));
}

void fail_cublas(cublasStatus_t status, const std::string& what) {
  const ErrorCode code =
      status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kInternal;
  throw Error(code, fmt::format("cuda backend: {} failed: cuBLASLt status {}", what,
                                static_cast<int>(status)));
}

void fail_allocation(cudaError_t status, std::size_t bytes, const std::string& what,
                     const char* where) {
  cudaGetLastError();  // a failed allocation leaves a non-sticky error behind
  throw Error(ErrorCode::kOutOfMemory,
              fmt::format("cuda backend: cannot allocate {} ({:.1f} MiB) {}: {}", what,
                          bytes / 1048576.0, where, cudaGetErrorString(status)));
}

}  // namespace cachet::backend::cuda

#include "backend/cuda/cuda_util.h"

#include <fmt/format.h>

namespace cachet::backend::cuda {

bool is_sticky(cudaError_t status) {
  switch (status) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorLaunchTimeout:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorContextIsDestroyed:
      return true;
    default:
      return false;
  }
}

void fail_cuda(cudaError_t status, const std::string& what) {
  cudaGetLastError();  // clear a non-sticky error so later calls report their own
  const std::string message = fmt::format("cuda backend: {} failed: {} ({})", what,
                                          cudaGetErrorString(status), cudaGetErrorName(status));
  // The device's context is broken for good: nothing more can run on it in this process.
  if (is_sticky(status)) throw FatalBackendError(ErrorCode::kInternal, message);
  const ErrorCode code =
      status == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kInternal;
  throw Error(code, message);
}

void fail_cublas(cublasStatus_t status, const std::string& what) {
  std::string message =
      fmt::format("cuda backend: {} failed: cuBLASLt status {}", what, static_cast<int>(status));
  // cuBLASLt reports a kernel fault as an execution failure; the CUDA error behind it says
  // whether the context survived.
  if (const cudaError_t last = cudaPeekAtLastError(); is_sticky(last))
    throw FatalBackendError(ErrorCode::kInternal,
                            fmt::format("{} after {}", message, cudaGetErrorName(last)));
  const ErrorCode code =
      status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kInternal;
  throw Error(code, message);
}

void fail_allocation(cudaError_t status, std::size_t bytes, const std::string& what,
                     const char* where) {
  cudaGetLastError();  // a failed allocation leaves a non-sticky error behind
  throw Error(ErrorCode::kOutOfMemory,
              fmt::format("cuda backend: cannot allocate {} ({:.1f} MiB) {}: {}", what,
                          bytes / 1048576.0, where, cudaGetErrorString(status)));
}

}  // namespace cachet::backend::cuda

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

DeviceBuffer::DeviceBuffer(std::size_t bytes, const std::string& what) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMalloc(&ptr_, bytes);
  if (status != cudaSuccess) {
    ptr_ = nullptr;
    cudaGetLastError();
    throw Error(ErrorCode::kOutOfMemory,
                fmt::format("cuda backend: cannot allocate {} ({:.1f} MiB) on the GPU: {}", what,
                            bytes / 1048576.0, cudaGetErrorString(status)));
  }
  bytes_ = bytes;
}

void DeviceBuffer::reset() noexcept {
  if (ptr_ != nullptr) cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

PinnedBuffer::PinnedBuffer(std::size_t bytes, const std::string& what) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMallocHost(&ptr_, bytes);
  if (status != cudaSuccess) {
    ptr_ = nullptr;
    cudaGetLastError();
    throw Error(ErrorCode::kOutOfMemory,
                fmt::format("cuda backend: cannot allocate {} ({:.1f} MiB) of pinned host "
                            "memory: {}",
                            what, bytes / 1048576.0, cudaGetErrorString(status)));
  }
  bytes_ = bytes;
}

void PinnedBuffer::reset() noexcept {
  if (ptr_ != nullptr) cudaFreeHost(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

}  // namespace cachet::backend::cuda

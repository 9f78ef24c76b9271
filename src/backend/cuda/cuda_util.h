// RAII and error checking for the CUDA backend: every CUDA and cuBLASLt call goes through
// check(), which turns a failure into a cachet::Error naming the call; nothing here exits.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

#include "backend/backend.h"
#include "cachet/errors.h"

namespace cachet::backend::cuda {

// Errors after which the CUDA context is unusable ("sticky": every later call fails too).
bool is_sticky(cudaError_t status);
// Throws Error naming `what`: a FatalBackendError for a sticky error, kOutOfMemory for an
// allocation failure, else kInternal.
[[noreturn]] void fail_cuda(cudaError_t status, const std::string& what);
[[noreturn]] void fail_cublas(cublasStatus_t status, const std::string& what);

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail_cuda(status, what);
}
inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail_cublas(status, what);
}

// Throws kOutOfMemory: "cannot allocate {what} ({size} MiB) {where}: {CUDA's reason}".
[[noreturn]] void fail_allocation(cudaError_t status, std::size_t bytes, const std::string& what,
                                  const char* where);

// Rounds up to a multiple of 256 bytes, the alignment every carve-out of a buffer keeps.
constexpr std::size_t align_up(std::size_t n) { return (n + 255) / 256 * 256; }

// Where an Allocation's memory comes from.
struct DeviceMemory {
  static cudaError_t allocate(void** p, std::size_t n) { return cudaMalloc(p, n); }
  static void release(void* p) noexcept { cudaFree(p); }
  static constexpr const char* kWhere = "on the GPU";
};
struct PinnedHostMemory {  // page-locked, for asynchronous copies
  static cudaError_t allocate(void** p, std::size_t n) { return cudaMallocHost(p, n); }
  static void release(void* p) noexcept { cudaFreeHost(p); }
  static constexpr const char* kWhere = "of pinned host memory";
};

// One allocation from `Memory`. Move-only; freed on destruction.
template <class Memory>
class Allocation {
 public:
  Allocation() = default;
  // Throws kOutOfMemory naming `what` and the size when the allocation fails.
  Allocation(std::size_t bytes, const std::string& what) {
    if (bytes == 0) return;
    const cudaError_t status = Memory::allocate(&ptr_, bytes);
    if (status != cudaSuccess) {
      ptr_ = nullptr;
      fail_allocation(status, bytes, what, Memory::kWhere);
    }
    bytes_ = bytes;
  }
  ~Allocation() { reset(); }
  Allocation(Allocation&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Allocation& operator=(Allocation&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;

  void reset() noexcept {
    if (ptr_ != nullptr) Memory::release(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

using DeviceBuffer = Allocation<DeviceMemory>;
using PinnedBuffer = Allocation<PinnedHostMemory>;

// Owns a stream, a cuBLASLt handle, graphs and graph executables.
struct StreamDeleter {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
struct LtHandleDeleter {
  void operator()(cublasLtHandle_t h) const noexcept { cublasLtDestroy(h); }
};
struct GraphExecDeleter {
  void operator()(cudaGraphExec_t g) const noexcept { cudaGraphExecDestroy(g); }
};
struct EventDeleter {
  void operator()(cudaEvent_t e) const noexcept { cudaEventDestroy(e); }
};

}  // namespace cachet::backend::cuda

// Helpers for GPU tests that call kernel launchers directly: a checked-call macro and a
// typed device buffer. Only for files compiled with CACHET_WITH_CUDA.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <vector>

// Fails the test (returning from it) when a CUDA call does not succeed.
#define CUDA_OK(expr)                                                                  \
  do {                                                                                 \
    const cudaError_t cuda_ok_ = (expr);                                               \
    ASSERT_EQ(cuda_ok_, cudaSuccess) << #expr << ": " << cudaGetErrorString(cuda_ok_); \
  } while (0)

namespace cachet::testing {

// n elements of V on the device (get() is null when the allocation failed).
template <typename V>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t n) : n_(n) {
    const std::size_t bytes = std::max<std::size_t>(n, 1) * sizeof(V);
    if (cudaMalloc(reinterpret_cast<void**>(&p_), bytes) != cudaSuccess) p_ = nullptr;
  }
  explicit DeviceBuffer(const std::vector<V>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  V* get() const { return p_; }
  void upload(const std::vector<V>& host) {
    cudaMemcpy(p_, host.data(), host.size() * sizeof(V), cudaMemcpyHostToDevice);
  }
  std::vector<V> download() const {
    std::vector<V> host(n_);
    cudaMemcpy(host.data(), p_, n_ * sizeof(V), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  V* p_ = nullptr;
  std::size_t n_;
};

}  // namespace cachet::testing

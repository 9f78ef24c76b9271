#include "backend/device_probe.h"

#include <string>

#if defined(CACHET_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace cachet::backend {

CudaProbe probe_cuda(int device) {
  CudaProbe probe;
#if defined(CACHET_WITH_CUDA)
  probe.built_with_cuda = true;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    probe.problem = std::string("no usable CUDA device: ") + cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later probes start clean
    return probe;
  }
  probe.device_count = count;
  if (count == 0) {
    probe.problem = "no CUDA device visible";
    return probe;
  }
  if (device < 0 || device >= count) {
    probe.problem = "CUDA device " + std::to_string(device) + " requested; " +
                    std::to_string(count) + " visible";
    return probe;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) == cudaSuccess) probe.device_name = prop.name;
#else
  (void)device;
  probe.problem = "cachet was built without CUDA (CACHET_CUDA=OFF or no nvcc at build time)";
#endif
  return probe;
}

}  // namespace cachet::backend

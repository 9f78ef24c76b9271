#include "backend/device_probe.h"

#if defined(CACHET_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace cachet::backend {

CudaProbe probe_cuda() {
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
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) probe.device_name = prop.name;
#else
  probe.problem = "cachet was built without CUDA (CACHET_CUDA=OFF or no nvcc at build time)";
#endif
  return probe;
}

}  // namespace cachet::backend

// Whether a CUDA device can be used, asked without touching anything else.
#pragma once

#include <string>

namespace cachet::backend {

struct CudaProbe {
  bool built_with_cuda = false;
  int device_count = 0;
  std::string device_name;  // of the probed device, when there is one
  std::string problem;      // why CUDA cannot be used; empty when it can
};

// Whether CUDA device `device` can be used. Never throws: any CUDA error (no driver, driver
// too old, no such device) is a `problem`.
CudaProbe probe_cuda(int device = 0);

}  // namespace cachet::backend

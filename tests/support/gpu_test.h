// GPU tests skip, with the probe's reason, where no CUDA device can be used (CI, laptops);
// they still compile wherever the CUDA toolkit is present.
#pragma once

#include <gtest/gtest.h>

#include "backend/device_probe.h"

#define CACHET_REQUIRE_GPU()                                                            \
  do {                                                                                  \
    const ::cachet::backend::CudaProbe cachet_probe_ = ::cachet::backend::probe_cuda(); \
    if (!cachet_probe_.problem.empty())                                                 \
      GTEST_SKIP() << "no usable CUDA device: " << cachet_probe_.problem;               \
  } while (0)

// The CUDA device probe. On a machine without a usable GPU (or a build without CUDA) the
// tests skip with the reason; Device::kAuto must then fall back to the CPU backend.
#include <gtest/gtest.h>

#include "backend/device_probe.h"
#include "cachet/engine.h"
#include "model/make_model.h"
#include "support/test_support.h"

namespace cachet {
namespace {

TEST(CudaProbe, ReportsADeviceOrWhyNot) {
  backend::CudaProbe probe = backend::probe_cuda();
  if (!probe.problem.empty()) GTEST_SKIP() << "no GPU: " << probe.problem;
  EXPECT_TRUE(probe.built_with_cuda);
  EXPECT_GT(probe.device_count, 0);
  EXPECT_FALSE(probe.device_name.empty());
}

TEST(CudaProbe, AutoDeviceFallsBackToTheCpuWithoutAGpu) {
  backend::CudaProbe probe = backend::probe_cuda();
  if (probe.problem.empty()) GTEST_SKIP() << "a GPU is present (" << probe.device_name << ")";
  testing::TempDir dir;
  model::MakeModelOptions o;
  o.out_dir = dir.path();
  model::make_model(o);
  EngineConfig c;
  c.model_dir = dir.path().string();
  c.kv_cache_bytes = 1 << 20;
  Engine engine(c);
  EXPECT_EQ(engine.info().backend, "cpu");
}

}  // namespace
}  // namespace cachet

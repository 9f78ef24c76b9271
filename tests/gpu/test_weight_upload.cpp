// The CUDA backend's weight upload (src/backend/cuda/weight_upload.h): every stored dtype into
// both device dtypes, through staging buffers far smaller than the tensors, so chunks cross
// tensor and part boundaries. The device bytes must be the stored bytes where the dtypes agree
// and the round-to-nearest-even of the stored value (model/dtype.h, tested in test_dtype)
// otherwise, every tensor at its own 256-byte-aligned address.
#include <gtest/gtest.h>

#include "support/gpu_test.h"

#if CACHET_WITH_CUDA

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/weight_upload.h"
#include "model/weights.h"

namespace cachet::backend::cuda {
namespace {

using model::DType;
using model::HostTensor;

HostTensor random_tensor(std::vector<std::int64_t> shape, DType dtype, std::mt19937_64& rng) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> values(static_cast<std::size_t>(n));
  for (float& v : values) v = normal(rng);
  values[0] = 3e-6f;  // an fp16 subnormal
  return HostTensor::from_f32(std::move(shape), std::move(values), dtype);
}

// What the device should hold for `t`: its bytes, or its values rounded on the host.
std::vector<std::uint16_t> expected(const HostTensor& t, bool fp16) {
  std::vector<std::uint16_t> out;
  const DType device = fp16 ? DType::kF16 : DType::kBF16;
  if (t.dtype == device) {
    out.resize(t.bytes.size() / 2);
    std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
    return out;
  }
  for (float v : t.to_f32()) out.push_back(fp16 ? model::f32_to_f16(v) : model::f32_to_bf16(v));
  return out;
}

std::vector<std::uint16_t> download(const void* device, std::size_t elems) {
  std::vector<std::uint16_t> host(elems);
  EXPECT_EQ(cudaMemcpy(host.data(), device, elems * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

TEST(WeightUpload, EveryStoredDtypeIntoEveryDeviceDtypeInSmallChunks) {
  CACHET_REQUIRE_GPU();
  std::mt19937_64 rng(9);
  const HostTensor f32 = random_tensor({5, 7}, DType::kF32, rng);
  const HostTensor bf16 = random_tensor({3, 7}, DType::kBF16, rng);
  const HostTensor f16 = random_tensor({11, 7}, DType::kF16, rng);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const bool fp16 : {false, true}) {
    for (const std::size_t staging : {std::size_t{6}, std::size_t{40}, std::size_t{1} << 20}) {
      SCOPED_TRACE(::testing::Message() << (fp16 ? "fp16" : "bf16") << " staging " << staging);
      WeightUpload upload(fp16, staging);
      const void* stacked = nullptr;
      const void* alone = nullptr;
      upload.add({&f32, &bf16, &f16}, &stacked);
      upload.add({&bf16}, &alone);
      EXPECT_EQ(upload.device_bytes(), 512u + 256u);  // 266 and 42 bytes, 256-byte aligned
      const DeviceBuffer buffer = upload.upload(stream);
      std::vector<std::uint16_t> want;
      for (const HostTensor* t : {&f32, &bf16, &f16}) {
        const auto part = expected(*t, fp16);
        want.insert(want.end(), part.begin(), part.end());
      }
      EXPECT_EQ(download(stacked, want.size()), want);
      EXPECT_EQ(download(alone, 21), expected(bf16, fp16));
    }
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace cachet::backend::cuda

#else  // !CACHET_WITH_CUDA

TEST(WeightUpload, Skipped) { GTEST_SKIP() << "built without CUDA"; }

#endif

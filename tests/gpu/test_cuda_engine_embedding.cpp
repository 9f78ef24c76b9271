// The CUDA engine inside someone else's process: a sticky CUDA error fails the engine (not
// the process), the device sampler's non-finite rows fail a step under debug_poison_kv as
// the CPU's do, and the engine leaves the application thread's current device alone.
// Faults are injected through a backend wrapper (engine/engine_testing.h). Skips with the
// probe's reason where no GPU can be used.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/gpu_test.h"

#if CACHET_WITH_CUDA

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cachet/engine.h"
#include "engine/engine_testing.h"
#include "model/make_model.h"
#include "sampling.h"
#include "support/forwarding_backend.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using testing::greedy;
using ::testing::HasSubstr;

struct SmallGpuModel {
  testing::TempDir dir;
  SmallGpuModel() {
    model::MakeModelOptions o;
    o.arch = model::Arch::kQwen3;
    o.preset = "small";
    o.dtype = model::DType::kBF16;
    o.seed = 9;
    o.out_dir = dir.path();
    model::make_model(o);
  }
  EngineConfig config() const {
    EngineConfig c;
    c.model_dir = dir.path().string();
    c.device = Device::kCuda;
    c.block_size = 16;
    c.kv_cache_bytes = std::int64_t{64} << 20;
    c.max_model_len = 1024;
    c.max_num_seqs = 8;
    c.check_kv_integrity = true;
    return c;
  }
};

// Delegates to the CUDA backend; before its `at`-th forward_sample (1-based) it runs
// `before(inner)`.
class Interposer : public testing::ForwardingBackend {
 public:
  Interposer(std::unique_ptr<backend::Backend> inner, int at,
             std::function<void(backend::Backend&)> before)
      : ForwardingBackend(std::move(inner)), at_(at), before_(std::move(before)) {}
  void forward_sample(const backend::ForwardBatch& b, const std::vector<backend::SampleSpec>& specs,
                      std::vector<backend::SampledToken>& out) override {
    if (++calls_ == at_) before_(inner());
    ForwardingBackend::forward_sample(b, specs, out);
  }

 private:
  int at_;
  std::function<void(backend::Backend&)> before_;
  int calls_ = 0;
};

engine::BackendWrapper interpose(int at, std::function<void(backend::Backend&)> before) {
  return [=](std::unique_ptr<backend::Backend> inner) {
    return std::make_unique<Interposer>(std::move(inner), at, before);
  };
}

// The device sampler turns NaN into -inf (an all-NaN row would sample token 0): it must
// report the row so that debug_poison_kv fails the step, as on the CPU.
TEST(CudaEngineEmbedding, PoisonedKvFailsTheStepWhenSamplingOnTheDevice) {
  CACHET_REQUIRE_GPU();
  SmallGpuModel m;
  EngineConfig c = m.config();
  c.debug_poison_kv = true;
  // Before the third step, the block the request's prompt lives in (block 0: the first one
  // handed out) is poisoned while its block table still holds it.
  Engine engine = engine::EngineTestAccess::make(c, interpose(3, [](backend::Backend& b) {
                                                   const std::int32_t block = 0;
                                                   b.poison_blocks({&block, 1});
                                                 }));
  const auto out = engine.generate({{5, 6, 7, 8, 9}}, greedy(8));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kError);
  EXPECT_THAT(out[0].error, HasSubstr("debug_poison_kv: logits row 0 is not finite"));
  EXPECT_TRUE(engine.health().ok) << "a poisoned step fails its requests, not the engine";
  const auto next = engine.generate({{5, 6, 7}}, greedy(3));
  EXPECT_EQ(next[0].finish_reason, FinishReason::kLength) << next[0].error;
}

// A kernel that faults (an illegal address: a sticky error, the CUDA context is unusable
// from then on) fails the engine with the CUDA error named, and the process goes on. Run in
// a child process, whose CUDA context the fault ruins, not this one's.
TEST(CudaEngineEmbedding, AStickyCudaErrorFailsTheEngineNotTheProcess) {
  CACHET_REQUIRE_GPU();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        SmallGpuModel m;
        Engine engine = engine::EngineTestAccess::make(
            m.config(), interpose(2, [](backend::Backend&) {
              // Reads through pointers that are no device memory: the sampler faults.
              kernels::SampleParams p;
              p.logits = reinterpret_cast<const float*>(std::uintptr_t{256});
              p.rows = reinterpret_cast<const kernels::SamplingRow*>(std::uintptr_t{256});
              p.tokens = reinterpret_cast<std::int32_t*>(std::uintptr_t{256});
              p.row_stride = p.vocab = 1000;
              p.num_rows = 4;
              (void)kernels::launch_sample(p, nullptr);
            }));
        const auto out = engine.generate({{5, 6, 7}, {8, 9}}, greedy(6));
        bool ok = true;
        for (const auto& o : out)
          ok = ok && o.finish_reason == FinishReason::kError &&
               o.error.find("cudaErrorIllegalAddress") != std::string::npos;
        const EngineHealth h = engine.health();
        ok = ok && !h.ok && h.error.find("cudaErrorIllegalAddress") != std::string::npos;
        try {
          engine.generate({{1, 2}}, greedy(1));
          ok = false;
        } catch (const Error& e) {
          ok = ok && e.code() == ErrorCode::kEngineFailed;
        }
        std::exit(ok ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

// The engine runs its backend on its own thread: building one on device 0 leaves the
// calling thread's current device as it was.
TEST(CudaEngineEmbedding, TheCallersCurrentDeviceIsLeftAlone) {
  CACHET_REQUIRE_GPU();
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  SmallGpuModel m;
  EngineConfig c = m.config();
  c.cuda_device = count;  // one past the last
  EXPECT_THAT(testing::error_of([&] { Engine e(c); }, ErrorCode::kUnavailable),
              HasSubstr("CUDA device " + std::to_string(count) + " requested"));
  if (count < 2) GTEST_SKIP() << "one GPU: no other device to be left current";
  ASSERT_EQ(cudaSetDevice(1), cudaSuccess);
  c.cuda_device = 0;
  {
    Engine engine(c);
    EXPECT_EQ(engine.generate({{5, 6, 7}}, greedy(3))[0].token_ids.size(), 3u);
  }
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, 1);
}

}  // namespace
}  // namespace cachet

#else  // !CACHET_WITH_CUDA

TEST(CudaEngineEmbedding, Skipped) { GTEST_SKIP() << "built without CUDA"; }

#endif

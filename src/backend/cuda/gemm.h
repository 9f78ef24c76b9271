// Row-major Y[M, N] (+)= X[M, K] . W[N, K]^T through cuBLASLt: X and W bf16 or fp16, fp32
// accumulation, fp32 Y. `accumulate` adds into Y (beta = 1), which is how the o_proj and
// down projections add into the residual stream without a separate kernel.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#include "backend/cuda/cuda_util.h"
#include "gemv.h"
#include "util/log.h"

namespace cachet::backend::cuda {

class Gemm {
 public:
  // `fp16` selects fp16 operands, else bf16. Allocates a 32 MiB cuBLASLt workspace. Tuning
  // results are logged (debug) to `log` when it is not null; it must outlive the Gemm.
  explicit Gemm(bool fp16, const util::Logger* log = nullptr);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Graph-capturable once a shape has been seen (the algorithm search happens the first
  // time a (M, N, K, accumulate) shape runs; it makes no CUDA calls that break capture).
  void run(std::int64_t m, std::int64_t n, std::int64_t k, const void* x, const void* w, float* y,
           bool accumulate, cudaStream_t stream);

  // Autotuning. Between begin_tuning and end_tuning, the first run of each new shape (outside
  // stream capture) times up to kTuneCandidates of cuBLASLt's heuristic algorithms on the
  // call's own operands and keeps the fastest; otherwise the heuristic's first choice is
  // used, as it is outside tuning. For M <= kernels::kGemvMaxRows cachet's own GEMV
  // (kernels/gemv.h) is one more candidate. Each timed run starts with L2 holding other data:
  // `flush` (flush_bytes of device memory, only read) is streamed through it first, as the other
  // weights are in a real step. Timing runs write y (beta = 1 accumulates into it), so tune
  // on a step whose results are thrown away. Not thread-safe, like run().
  static constexpr int kTuneCandidates = 8;
  void begin_tuning(const void* flush, std::size_t flush_bytes);
  void end_tuning();
  struct TuneResult {
    std::int64_t m, n, k;
    bool accumulate;
    int candidates;       // algorithms timed (cuBLASLt's, plus the GEMV where it applies)
    int chosen;           // index in the heuristic's order; 0 is its first choice
    bool gemv;            // cachet's GEMV was kept (`chosen`: the best cuBLASLt one)
    double heuristic_us;  // median time of the heuristic's first choice
    double chosen_us;     // median time of the algorithm kept
  };
  const std::vector<TuneResult>& tune_results() const { return tune_results_; }

  std::size_t workspace_bytes() const { return workspace_.bytes(); }

 private:
  struct Plan;
  using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, bool>;
  kernels::GemvParams gemv_params(std::int64_t m, std::int64_t n, std::int64_t k, const void* x,
                                  const void* w, float* y, bool accumulate) const;
  const Plan& plan(std::int64_t m, std::int64_t n, std::int64_t k, bool accumulate, const void* x,
                   const void* w, float* y, cudaStream_t stream);
  // Median microseconds of `launch` (which enqueues the product on `stream` and returns
  // false when it cannot) over a few runs, each after an L2 flush; < 0 when it cannot run.
  double time_op(const std::function<bool()>& launch, cudaStream_t stream);

  bool fp16_;
  const util::Logger* log_;
  std::unique_ptr<std::remove_pointer_t<cublasLtHandle_t>, LtHandleDeleter> handle_;
  DeviceBuffer workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  const void* flush_ = nullptr;  // non-null while tuning
  std::size_t flush_bytes_ = 0;
  std::vector<TuneResult> tune_results_;
};

}  // namespace cachet::backend::cuda

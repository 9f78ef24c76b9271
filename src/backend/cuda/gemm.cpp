#include "backend/cuda/gemm.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "gemv.h"
#include "ops.h"
#include "util/log.h"

namespace cachet::backend::cuda {

namespace {
constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;
// Autotuning: timed runs per algorithm (after one untimed), and how much faster than the
// heuristic's first choice another algorithm must be to replace it (timing noise otherwise
// flips choices between runs for no gain).
constexpr int kTuneReps = 5;
constexpr double kTuneMargin = 0.97;

using Event = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDeleter>;
Event make_event() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate (GEMM autotuning)");
  return Event(e);
}
}  // namespace

// cuBLASLt is column-major. A row-major [R, C] buffer is a column-major [C, R] one, so
//   Y^T[N, M] = op(W)[N, K] . X^T[K, M]  with W viewed as [K, N] (ld K) and transposed,
// and X viewed as [K, M] (ld K): no copies, and Y comes out row-major [M, N].
struct Gemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool gemv = false;  // kernels::launch_gemv instead of cuBLASLt (chosen by autotuning)
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

Gemm::Gemm(bool fp16, const util::Logger* log)
    : fp16_(fp16), log_(log), workspace_(kWorkspaceBytes, "the cuBLASLt workspace") {
  cublasLtHandle_t h = nullptr;
  check(cublasLtCreate(&h), "cublasLtCreate");
  handle_.reset(h);
}

Gemm::~Gemm() = default;

void Gemm::begin_tuning(const void* flush, std::size_t flush_bytes) {
  flush_ = flush;
  flush_bytes_ = flush == nullptr ? 0 : flush_bytes;
}

void Gemm::end_tuning() {
  flush_ = nullptr;
  flush_bytes_ = 0;
}

double Gemm::time_op(const std::function<bool()>& launch, cudaStream_t stream) {
  const Event start = make_event(), stop = make_event();
  std::vector<double> us;
  for (int rep = 0; rep <= kTuneReps; ++rep) {
    kernels::L2FlushParams f;
    f.data = flush_;
    f.bytes = flush_bytes_;
    f.sink = workspace_.as<std::uint32_t>();
    check(kernels::launch_l2_flush(f, stream), "L2 flush kernel (GEMM autotuning)");
    check(cudaEventRecord(start.get(), stream), "cudaEventRecord (GEMM autotuning)");
    if (!launch()) {
      // Nothing was launched; make sure the stream is still usable before going on.
      check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (GEMM autotuning)");
      return -1.0;
    }
    check(cudaEventRecord(stop.get(), stream), "cudaEventRecord (GEMM autotuning)");
    check(cudaEventSynchronize(stop.get()), "cudaEventSynchronize (GEMM autotuning)");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start.get(), stop.get()), "cudaEventElapsedTime");
    if (rep > 0) us.push_back(1000.0 * ms);  // the first run pays one-time setup
  }
  std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
  return us[us.size() / 2];
}

kernels::GemvParams Gemm::gemv_params(std::int64_t m, std::int64_t n, std::int64_t k, const void* x,
                                      const void* w, float* y, bool accumulate) const {
  kernels::GemvParams g;
  if (m > kernels::kGemvMaxRows || n > INT32_MAX || k > INT32_MAX) return g;  // unsupported
  g.x = x;
  g.w = w;
  g.y = y;
  g.m = static_cast<std::int32_t>(m);
  g.n = static_cast<std::int32_t>(n);
  g.k = static_cast<std::int32_t>(k);
  g.accumulate = accumulate;
  g.dtype = fp16_ ? kernels::DType::kFP16 : kernels::DType::kBF16;
  return g;
}

const Gemm::Plan& Gemm::plan(std::int64_t m, std::int64_t n, std::int64_t k, bool accumulate,
                             const void* x, const void* w, float* y, cudaStream_t stream) {
  const Key key{m, n, k, accumulate};
  if (auto it = plans_.find(key); it != plans_.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  const cudaDataType_t in = fp16_ ? CUDA_R_16F : CUDA_R_16BF;
  check(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
        "cublasLtMatmulDescCreate");
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  check(
      cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)),
      "cublasLtMatmulDescSetAttribute(TRANSA)");
  check(
      cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)),
      "cublasLtMatmulDescSetAttribute(TRANSB)");
  check(cublasLtMatrixLayoutCreate(&p->a, in, static_cast<std::uint64_t>(k),
                                   static_cast<std::uint64_t>(n), k),
        "cublasLtMatrixLayoutCreate(W)");
  check(cublasLtMatrixLayoutCreate(&p->b, in, static_cast<std::uint64_t>(k),
                                   static_cast<std::uint64_t>(m), k),
        "cublasLtMatrixLayoutCreate(X)");
  check(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, static_cast<std::uint64_t>(n),
                                   static_cast<std::uint64_t>(m), n),
        "cublasLtMatrixLayoutCreate(Y)");

  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const std::size_t ws = workspace_.bytes();
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  // Tuning only outside capture: timing synchronizes, which capture forbids.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (flush_ != nullptr) check(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
  const bool tune = flush_ != nullptr && capture == cudaStreamCaptureStatusNone;
  cublasLtMatmulHeuristicResult_t results[kTuneCandidates] = {};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle_.get(), p->op, p->a, p->b, p->c, p->c, pref,
                                        tune ? kTuneCandidates : 1, results, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  check(st, "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("cuda backend: cuBLASLt has no algorithm for a {} GEMM of M {} N {} "
                            "K {}",
                            fp16_ ? "fp16" : "bf16", m, n, k));
  }
  p->algo = results[0].algo;
  const kernels::GemvParams gemv = gemv_params(m, n, k, x, w, y, accumulate);
  const bool gemv_ok = kernels::gemv_supported(gemv);
  if (tune && (found > 1 || gemv_ok)) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    TuneResult r{m, n, k, accumulate, 0, 0, false, -1.0, -1.0};
    // Candidate i < found is cuBLASLt's i-th algorithm; i == found is the GEMV.
    for (int i = 0; i <= found; ++i) {
      double us = -1.0;
      if (i < found) {
        if (results[i].state != CUBLAS_STATUS_SUCCESS || results[i].workspaceSize > ws) continue;
        const cublasLtMatmulAlgo_t& algo = results[i].algo;
        us = time_op(
            [&] {
              return cublasLtMatmul(handle_.get(), p->op, &alpha, w, p->a, x, p->b, &beta, y, p->c,
                                    y, p->c, &algo, workspace_.get(), workspace_.bytes(),
                                    stream) == CUBLAS_STATUS_SUCCESS;
            },
            stream);
      } else if (gemv_ok) {
        us = time_op([&] { return kernels::launch_gemv(gemv, stream) == cudaSuccess; }, stream);
      }
      if (us < 0) continue;
      ++r.candidates;
      if (i == 0) {
        r.heuristic_us = r.chosen_us = us;
      } else if (r.heuristic_us < 0 ? r.chosen_us < 0 || us < r.chosen_us
                                    : us < kTuneMargin * r.chosen_us) {
        if (i < found) r.chosen = i;  // the GEMV (the last candidate) leaves the best cuBLASLt
        r.gemv = i == found;          // algorithm in place, as the fallback
        r.chosen_us = us;
      }
    }
    if (r.candidates > 0) {
      p->algo = results[r.chosen].algo;
      p->gemv = r.gemv;
      if (log_)
        log_->debug(
            "GEMM autotune M {} N {} K {}{}: {} of {} timed, {:.1f} us (cuBLASLt's heuristic "
            "first choice: {:.1f} us)",
            m, n, k, accumulate ? " (accumulate)" : "",
            r.gemv ? std::string("cachet's GEMV") : fmt::format("cuBLASLt algorithm {}", r.chosen),
            r.candidates, r.chosen_us, r.heuristic_us);
      tune_results_.push_back(r);
    }
  }
  return *plans_.emplace(key, std::move(p)).first->second;
}

void Gemm::run(std::int64_t m, std::int64_t n, std::int64_t k, const void* x, const void* w,
               float* y, bool accumulate, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  const Plan& p = plan(m, n, k, accumulate, x, w, y, stream);
  if (p.gemv) {
    // Autotuning chose it for this shape. The operands are the backend's fixed, aligned
    // buffers, so it applies; where it would not, the best cuBLASLt algorithm runs instead.
    const kernels::GemvParams g = gemv_params(m, n, k, x, w, y, accumulate);
    if (kernels::gemv_supported(g)) {
      check(kernels::launch_gemv(g, stream), "GEMV kernel");
      return;
    }
  }
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check(cublasLtMatmul(handle_.get(), p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                       workspace_.get(), workspace_.bytes(), stream),
        "cublasLtMatmul");
}

}  // namespace cachet::backend::cuda

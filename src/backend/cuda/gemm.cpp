#include "backend/cuda/gemm.h"

#include <fmt/format.h>

namespace cachet::backend::cuda {

namespace {
constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;
}

// cuBLASLt is column-major. A row-major [R, C] buffer is a column-major [C, R] one, so
//   Y^T[N, M] = op(W)[N, K] . X^T[K, M]  with W viewed as [K, N] (ld K) and transposed,
// and X viewed as [K, M] (ld K): no copies, and Y comes out row-major [M, N].
struct Gemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

Gemm::Gemm(bool fp16) : fp16_(fp16), workspace_(kWorkspaceBytes, "the cuBLASLt workspace") {
  cublasLtHandle_t h = nullptr;
  check(cublasLtCreate(&h), "cublasLtCreate");
  handle_.reset(h);
}

Gemm::~Gemm() = default;

const Gemm::Plan& Gemm::plan(std::int64_t m, std::int64_t n, std::int64_t k, bool accumulate) {
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
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle_.get(), p->op, p->a, p->b, p->c, p->c, pref, 1,
                                        &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  check(st, "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("cuda backend: cuBLASLt has no algorithm for a {} GEMM of M {} N {} "
                            "K {}",
                            fp16_ ? "fp16" : "bf16", m, n, k));
  }
  p->algo = result.algo;
  return *plans_.emplace(key, std::move(p)).first->second;
}

void Gemm::run(std::int64_t m, std::int64_t n, std::int64_t k, const void* x, const void* w,
               float* y, bool accumulate, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  const Plan& p = plan(m, n, k, accumulate);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check(cublasLtMatmul(handle_.get(), p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                       workspace_.get(), workspace_.bytes(), stream),
        "cublasLtMatmul");
}

}  // namespace cachet::backend::cuda

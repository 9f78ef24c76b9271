// CUDA kernels against floors measured in the same run on the same GPU:
//  - device-to-device copy bandwidth (the decode attention ceiling) and
//  - a cuBLASLt bf16 8192^3 GEMM (the prefill attention reference rate);
// then paged decode attention in GB/s of K/V actually needed, prefill attention in
// TFLOP/s (causal counted as half), and the decode projections (M = 1 and 4 rows, the
// Llama-3.2-1B shapes) through cuBLASLt's heuristic choice and through cachet's GEMV, in GB/s
// of weights read. Prints markdown tables; `--quick` runs fewer repeats.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "attention.h"
#include "backend/cuda/gemm.h"
#include "gemv.h"

namespace {

using cachet::kernels::DType;
using cachet::kernels::PagedAttentionParams;

#define CHECK_CUDA(call)                                                 \
  do {                                                                   \
    const cudaError_t status_ = (call);                                  \
    if (status_ != cudaSuccess) {                                        \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, \
                   cudaGetErrorString(status_));                         \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

#define CHECK_CUBLAS(call)                                                             \
  do {                                                                                 \
    const cublasStatus_t status_ = (call);                                             \
    if (status_ != CUBLAS_STATUS_SUCCESS) {                                            \
      std::fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #call, \
                   static_cast<int>(status_));                                         \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

int g_repeats = 20;  // timed samples per measurement (median reported)
int g_warmup = 3;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median seconds per call of `fn(i)` (i = call index, for rotating buffers), `inner` calls
// per timed sample so that short kernels are not dominated by event resolution.
template <class Fn>
double time_median(cudaStream_t stream, int inner, Fn&& fn) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  int call = 0;
  for (int i = 0; i < g_warmup * inner; ++i) fn(call++);
  CHECK_CUDA(cudaStreamSynchronize(stream));
  std::vector<double> samples;
  for (int r = 0; r < g_repeats; ++r) {
    CHECK_CUDA(cudaEventRecord(start, stream));
    for (int i = 0; i < inner; ++i) fn(call++);
    CHECK_CUDA(cudaEventRecord(stop, stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    samples.push_back(ms * 1e-3 / inner);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  return median(samples);
}

// Median seconds per call of `fn(i)` for i in [0, calls), the calls captured once into a
// CUDA graph and the graph replayed: back to back as in a decode step's graph, with no host
// launch cost between kernels (which would dominate kernels of a few microseconds). `fn` is
// called once outside capture first (cuBLASLt picks its algorithm then).
template <class Fn>
double time_graph(cudaStream_t stream, int calls, Fn&& fn) {
  fn(0);
  CHECK_CUDA(cudaStreamSynchronize(stream));
  cudaGraph_t graph = nullptr;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i) fn(i);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  const double t = time_median(stream, 1, [&](int) { CHECK_CUDA(cudaGraphLaunch(exec, stream)); });
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(graph));
  return t / calls;
}

// How many calls per sample make a sample last about 1 ms, a multiple of `multiple_of`.
template <class Fn>
int calls_per_sample(cudaStream_t stream, int multiple_of, Fn&& fn) {
  const int saved = g_repeats;
  g_repeats = 3;
  const double once = time_median(stream, 1, fn);
  g_repeats = saved;
  int inner = static_cast<int>(std::clamp(1e-3 / std::max(once, 1e-7), 1.0, 200.0));
  return (inner + multiple_of - 1) / multiple_of * multiple_of;
}

// Fills `bytes` of device memory with random 16-bit values in about [-1, 1] (bf16 bit
// patterns), tiling one random chunk (uploaded once, then copied on the device).
void fill_random(void* dst, std::size_t bytes, std::uint32_t seed) {
  constexpr std::size_t kChunk = std::size_t{16} << 20;
  std::vector<std::uint16_t> host(kChunk / 2);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& x : host) {
    const float f = u(rng);
    std::uint32_t bits;
    std::memcpy(&bits, &f, sizeof(bits));
    x = static_cast<std::uint16_t>(bits >> 16);  // truncation to bf16 is fine for timing
  }
  void* chunk = nullptr;
  CHECK_CUDA(cudaMalloc(&chunk, kChunk));
  CHECK_CUDA(cudaMemcpy(chunk, host.data(), kChunk, cudaMemcpyHostToDevice));
  for (std::size_t off = 0; off < bytes; off += kChunk) {
    CHECK_CUDA(cudaMemcpy(static_cast<char*>(dst) + off, chunk, std::min(kChunk, bytes - off),
                          cudaMemcpyDeviceToDevice));
  }
  CHECK_CUDA(cudaFree(chunk));
}

double copy_bandwidth(cudaStream_t stream) {
  const std::size_t bytes = std::size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  CHECK_CUDA(cudaMalloc(&src, bytes));
  CHECK_CUDA(cudaMalloc(&dst, bytes));
  CHECK_CUDA(cudaMemset(src, 1, bytes));
  const double t = time_median(stream, 1, [&](int) {
    CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  });
  CHECK_CUDA(cudaFree(src));
  CHECK_CUDA(cudaFree(dst));
  return 2.0 * bytes / t;  // read + write
}

double gemm_flops(cudaStream_t stream) {
  constexpr std::int64_t n = 8192;
  const std::size_t bytes = std::size_t(n) * n * 2;
  void *a = nullptr, *b = nullptr, *c = nullptr, *ws = nullptr;
  const std::size_t ws_bytes = std::size_t{32} << 20;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&b, bytes));
  CHECK_CUDA(cudaMalloc(&c, bytes));
  CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  fill_random(a, bytes, 1);
  fill_random(b, bytes, 2);

  cublasLtHandle_t lt;
  CHECK_CUBLAS(cublasLtCreate(&lt));
  cublasLtMatmulDesc_t op;
  CHECK_CUBLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CHECK_CUBLAS(
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)));
  CHECK_CUBLAS(
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)));
  cublasLtMatrixLayout_t la, lb, lc;
  CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, n, n, n));
  CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, n, n, n));
  CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, n, n, n));
  cublasLtMatmulPreference_t pref;
  CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
  CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ws_bytes, sizeof(ws_bytes)));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  CHECK_CUBLAS(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heuristic, &found));
  if (found == 0) {
    std::fprintf(stderr, "cuBLASLt found no bf16 GEMM algorithm\n");
    std::exit(1);
  }
  const float alpha = 1.0f, beta = 0.0f;
  const double t = time_median(stream, 1, [&](int) {
    CHECK_CUBLAS(cublasLtMatmul(lt, op, &alpha, a, la, b, lb, &beta, c, lc, c, lc, &heuristic.algo,
                                ws, ws_bytes, stream));
  });
  CHECK_CUBLAS(cublasLtMatmulPreferenceDestroy(pref));
  CHECK_CUBLAS(cublasLtMatrixLayoutDestroy(la));
  CHECK_CUBLAS(cublasLtMatrixLayoutDestroy(lb));
  CHECK_CUBLAS(cublasLtMatrixLayoutDestroy(lc));
  CHECK_CUBLAS(cublasLtMatmulDescDestroy(op));
  CHECK_CUBLAS(cublasLtDestroy(lt));
  for (void* p : {a, b, c, ws}) CHECK_CUDA(cudaFree(p));
  return 2.0 * n * n * n / t;
}

// Llama-3-8B-like attention geometry.
constexpr std::int32_t kHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlockSize = 16;
constexpr std::size_t kElt = 2;  // bf16

// A batch of `batch` sequences, each with `context` positions of which the last `query`
// are new, over shuffled cache blocks; `pools` copies of the cache so that consecutive
// calls can rotate through more K/V than fits in L2.
struct Workload {
  std::int32_t batch, context, query, pools, head_dim;
  std::int32_t prefill_splits = 0;  // PagedAttentionParams::prefill_num_splits
  std::size_t pool_elems = 0;       // per pool, K or V
  void *q = nullptr, *out = nullptr, *k = nullptr, *v = nullptr, *ws = nullptr;
  std::int32_t *query_start = nullptr, *context_lens = nullptr, *block_tables = nullptr;
  std::size_t ws_bytes = 0;
  std::int32_t blocks_per_seq = 0;

  // The workspace holds 32 splits of all tokens and, for split prefill, at least
  // paged_attention_prefill_workspace_bytes(head_dim, num_sms) (num_sms 0: 132).
  Workload(std::int32_t batch_, std::int32_t context_, std::int32_t query_, std::int32_t pools_,
           std::int32_t head_dim_ = kHeadDim, std::int32_t num_sms = 0)
      : batch(batch_), context(context_), query(query_), pools(pools_), head_dim(head_dim_) {
    blocks_per_seq = (context + kBlockSize - 1) / kBlockSize;
    const std::int64_t num_blocks = std::int64_t{batch} * blocks_per_seq;
    pool_elems = std::size_t(num_blocks) * kKvHeads * kBlockSize * head_dim;
    const std::int32_t tokens = batch * query;
    CHECK_CUDA(cudaMalloc(&q, std::size_t(tokens) * kHeads * head_dim * kElt));
    CHECK_CUDA(cudaMalloc(&out, std::size_t(tokens) * kHeads * head_dim * kElt));
    CHECK_CUDA(cudaMalloc(&k, pool_elems * pools * kElt));
    CHECK_CUDA(cudaMalloc(&v, pool_elems * pools * kElt));
    fill_random(q, std::size_t(tokens) * kHeads * head_dim * kElt, 3);
    fill_random(k, pool_elems * pools * kElt, 4);
    fill_random(v, pool_elems * pools * kElt, 5);
    ws_bytes =
        std::max(cachet::kernels::paged_attention_workspace_bytes(tokens, kHeads, head_dim, 32),
                 cachet::kernels::paged_attention_prefill_workspace_bytes(head_dim, num_sms));
    if (ws_bytes > 0) CHECK_CUDA(cudaMalloc(&ws, ws_bytes));

    std::vector<std::int32_t> qs(batch + 1), ctx(batch, context), table(num_blocks);
    for (std::int32_t s = 0; s <= batch; ++s) qs[s] = s * query;
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(6));
    CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&query_start), qs.size() * 4));
    CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&context_lens), ctx.size() * 4));
    CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&block_tables), table.size() * 4));
    CHECK_CUDA(cudaMemcpy(query_start, qs.data(), qs.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(context_lens, ctx.data(), ctx.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(block_tables, table.data(), table.size() * 4, cudaMemcpyHostToDevice));
  }
  ~Workload() {
    for (void* p : {q, out, k, v, ws, static_cast<void*>(query_start),
                    static_cast<void*>(context_lens), static_cast<void*>(block_tables)}) {
      if (p != nullptr) CHECK_CUDA(cudaFree(p));
    }
  }
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  PagedAttentionParams params(int pool, int num_sms) const {
    PagedAttentionParams p;
    p.dtype = DType::kBF16;
    p.q = q;
    p.k_cache = static_cast<const char*>(k) + std::size_t(pool) * pool_elems * kElt;
    p.v_cache = static_cast<const char*>(v) + std::size_t(pool) * pool_elems * kElt;
    p.out = out;
    p.query_start = query_start;
    p.context_lens = context_lens;
    p.block_tables = block_tables;
    p.max_blocks_per_seq = blocks_per_seq;
    p.num_seqs = batch;
    p.num_tokens = batch * query;
    p.num_heads = kHeads;
    p.num_kv_heads = kKvHeads;
    p.head_dim = head_dim;
    p.block_size = kBlockSize;
    p.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    p.max_query_len = query;
    p.max_context_len = context;
    p.num_splits = 0;
    p.workspace = ws;
    p.workspace_bytes = ws_bytes;
    p.num_sms = num_sms;
    p.prefill_num_splits = prefill_splits;
    return p;
  }

  double kv_bytes() const { return double(batch) * context * kKvHeads * head_dim * 2 * kElt; }
};

double run_attention(const Workload& w, cudaStream_t stream, int num_sms) {
  const auto call = [&](int i) {
    CHECK_CUDA(cachet::kernels::paged_attention(w.params(i % w.pools, num_sms), stream));
  };
  const int inner = calls_per_sample(stream, w.pools, call);
  return time_median(stream, inner, call);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      g_repeats = 5;
      g_warmup = 1;
    } else {
      std::fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return 2;
    }
  }
  int device = 0, driver = 0, runtime = 0;
  CHECK_CUDA(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, device));
  CHECK_CUDA(cudaDriverGetVersion(&driver));
  CHECK_CUDA(cudaRuntimeGetVersion(&runtime));
  std::size_t free_bytes = 0, total_bytes = 0;
  CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));

  std::printf(
      "# cachet CUDA kernels on %s (%d SMs, %.1f GiB, L2 %.0f MiB), driver %d, runtime %d\n\n",
      prop.name, prop.multiProcessorCount, total_bytes / double(1 << 30),
      prop.l2CacheSize / double(1 << 20), driver, runtime);
  const double copy_bw = copy_bandwidth(stream);
  const double gemm = gemm_flops(stream);
  std::printf("| floor | value |\n|---|---|\n");
  std::printf("| D2D copy bandwidth (1 GiB, read + write) | %.0f GB/s |\n", copy_bw / 1e9);
  std::printf("| cuBLASLt bf16 GEMM 8192^3 (fp32 accumulate) | %.0f TFLOP/s |\n\n", gemm / 1e12);
  std::fflush(stdout);

  const int sms = prop.multiProcessorCount;
  const double l2 = prop.l2CacheSize;
  std::printf("## Decode (bf16, 32 q / 8 kv heads, head_dim 128, block 16, auto splits)\n\n");
  std::printf("| batch | context | splits | K/V MB | pools | time us | GB/s | %% of copy |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (std::int32_t batch : {1, 16, 64, 256}) {
    for (std::int32_t context : {512, 4096, 32768}) {
      const double kv = double(batch) * context * kKvHeads * kHeadDim * 2 * kElt;
      // Rotate through enough pools that what one call reads is out of L2 by its next turn.
      const std::int32_t pools =
          kv < 4 * l2 ? std::max(2, static_cast<std::int32_t>(std::ceil(4 * l2 / kv))) : 1;
      if (kv * pools > 0.6 * free_bytes) continue;
      Workload w(batch, context, 1, pools);
      const double t = run_attention(w, stream, sms);
      const std::int32_t splits =
          cachet::kernels::paged_attention_num_splits(batch, kKvHeads, context, sms);
      const double bw = w.kv_bytes() / t;
      std::printf("| %d | %d | %d | %.1f | %d | %.1f | %.0f | %.0f%% |\n", batch, context, splits,
                  w.kv_bytes() / 1e6, w.pools, t * 1e6, bw / 1e9, 100.0 * bw / copy_bw);
      std::fflush(stdout);
    }
  }

  std::printf("\n## Prefill (bf16, one causal sequence, 32 q / 8 kv heads, head_dim 128)\n\n");
  std::printf("| tokens | time ms | TFLOP/s | %% of GEMM |\n|---|---|---|---|\n");
  for (std::int32_t tokens : {4096, 16384}) {
    Workload w(1, tokens, tokens, 1);
    const double t = run_attention(w, stream, sms);
    // 2 matmuls x 2 flops per multiply-add, over the causal half of the score matrix.
    const double flops = 4.0 * tokens * (tokens + 1) / 2.0 * kHeadDim * kHeads;
    std::printf("| %d | %.3f | %.0f | %.0f%% |\n", tokens, t * 1e3, flops / t / 1e12,
                100.0 * flops / t / gemm);
    std::fflush(stdout);
  }

  // Time to first token with a cached prefix: 64 new tokens after 0 / 4096 cached positions
  // (Llama-3.2-1B-like 32 q / 8 kv heads), unsplit (prefill_num_splits = 1) and with the
  // automatic split-KV; "ratio" is the time over the 0-cached time of the same column.
  std::printf(
      "\n## Prefill after a cached prefix (bf16, 64 new tokens, 32 q / 8 kv heads, block 16)\n\n");
  std::printf(
      "| head_dim | cached | splits | unsplit us | split us | unsplit ratio | split ratio |\n"
      "|---|---|---|---|---|---|---|\n");
  for (std::int32_t head_dim : {64, 128}) {
    double base_unsplit = 0, base_split = 0;
    for (std::int32_t cached : {0, 4096}) {
      constexpr std::int32_t kNew = 64;
      const std::int32_t context = cached + kNew;
      const double kv = double(context) * kKvHeads * head_dim * 2 * kElt;
      const std::int32_t pools = std::max(2, static_cast<std::int32_t>(std::ceil(4 * l2 / kv)));
      Workload w(1, context, kNew, pools, head_dim, sms);
      w.prefill_splits = 1;
      const double t_unsplit = run_attention(w, stream, sms);
      w.prefill_splits = 0;
      const double t_split = run_attention(w, stream, sms);
      const std::int32_t splits =
          cachet::kernels::paged_attention_prefill_splits_used(w.params(0, sms));
      if (cached == 0) {
        base_unsplit = t_unsplit;
        base_split = t_split;
      }
      std::printf("| %d | %d | %d | %.1f | %.1f | %.2fx | %.2fx |\n", head_dim, cached, splits,
                  t_unsplit * 1e6, t_split * 1e6, t_unsplit / base_unsplit, t_split / base_split);
      std::fflush(stdout);
    }
  }
  // Decode projections: Y[M, N] = X[M, K] . W[N, K]^T, weights rotated over enough copies
  // that each call reads them from DRAM, as in a real step (the other layers' weights pass
  // through L2 in between).
  std::printf(
      "\n## Decode projections (bf16, Llama-3.2-1B shapes): cuBLASLt heuristic vs cachet GEMV\n\n"
      "| what | M | N | K | weights MB | cuBLASLt us | GB/s | GEMV us | GB/s | %% of copy "
      "(GEMV) |\n|---|---|---|---|---|---|---|---|---|---|\n");
  {
    cachet::backend::cuda::Gemm gemm(/*fp16=*/false);
    struct Proj {
      const char* what;
      std::int64_t n, k;
    };
    const Proj projs[] = {{"qkv", 3072, 2048},
                          {"o_proj", 2048, 2048},
                          {"gate_up", 16384, 2048},
                          {"down", 2048, 8192},
                          {"lm_head", 128256, 2048}};
    for (const Proj& pr : projs) {
      const double w_bytes = double(pr.n) * pr.k * kElt;
      const int pools = std::max(2, static_cast<int>(std::ceil(4 * l2 / w_bytes)));
      void* w = nullptr;
      void* x = nullptr;
      float* y = nullptr;
      CHECK_CUDA(cudaMalloc(&w, std::size_t(w_bytes) * pools));
      CHECK_CUDA(cudaMalloc(&x, std::size_t(cachet::kernels::kGemvMaxRows) * pr.k * kElt));
      CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&y),
                            std::size_t(cachet::kernels::kGemvMaxRows) * pr.n * 4));
      fill_random(w, std::size_t(w_bytes) * pools, 11);
      fill_random(x, std::size_t(cachet::kernels::kGemvMaxRows) * pr.k * kElt, 12);
      const auto pool = [&](int i) {
        return static_cast<const char*>(w) + std::size_t(w_bytes) * (i % pools);
      };
      for (std::int32_t m : {1, 4}) {
        // At least 16 calls per graph: one replay is then long enough to time.
        const int calls = (16 + pools - 1) / pools * pools;
        const double t_lt = time_graph(
            stream, calls, [&](int i) { gemm.run(m, pr.n, pr.k, x, pool(i), y, false, stream); });
        cachet::kernels::GemvParams g;
        g.x = x;
        g.y = y;
        g.m = m;
        g.n = static_cast<std::int32_t>(pr.n);
        g.k = static_cast<std::int32_t>(pr.k);
        g.dtype = DType::kBF16;
        const double t_gemv = time_graph(stream, calls, [&](int i) {
          g.w = pool(i);
          CHECK_CUDA(cachet::kernels::launch_gemv(g, stream));
        });
        std::printf("| %s | %d | %lld | %lld | %.1f | %.1f | %.0f | %.1f | %.0f | %.0f%% |\n",
                    pr.what, m, static_cast<long long>(pr.n), static_cast<long long>(pr.k),
                    w_bytes / 1e6, t_lt * 1e6, w_bytes / t_lt / 1e9, t_gemv * 1e6,
                    w_bytes / t_gemv / 1e9, 100.0 * w_bytes / t_gemv / copy_bw);
        std::fflush(stdout);
      }
      CHECK_CUDA(cudaFree(w));
      CHECK_CUDA(cudaFree(x));
      CHECK_CUDA(cudaFree(y));
    }
  }
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}

// End-to-end engine benchmarks on the CUDA backend, each against a floor or a baseline
// measured in the same run:
//  - decode step time at batch 1 vs the memory floor (weight bytes + KV bytes) / the
//    device-to-device copy bandwidth measured here;
//  - decode tokens/s at batch 1, 32 and 128;
//  - time to first token of a 4k-token cached prefix + 64 new tokens vs 64 tokens alone.
//  - the backend's decode step alone without graphs, with graphs, and with graphs plus
//    cuBLASLt autotuning (gemm_autotune), side by side.
//   bench_cuda_engine [--preset llama-3.2-1b] [--arch llama] [--reps 5] [--no-graphs 1]
//                     [--gemm-autotune 1] [--profile-step 1]
// --profile-step 1 only runs one eager decode step (context 80) between cudaProfilerStart
// and cudaProfilerStop, for `ncu --profile-from-start off` to time each of its kernels.
// Medians over repetitions. Makes the model under $TMPDIR if needed (seed 1, bf16).
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "bench_util.h"
#include "cachet/engine.h"
#include "model/make_model.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace {

using Clock = std::chrono::steady_clock;

using cachet::bench::median;
using cachet::bench::tokens;

void check(cudaError_t s, const char* what) {
  if (s != cudaSuccess) {
    fmt::print(stderr, "{}: {}\n", what, cudaGetErrorString(s));
    std::exit(1);
  }
}

// Device-to-device copy of 1 GiB, bytes read + written per second, median of 20.
double copy_bandwidth() {
  const std::size_t bytes = std::size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc");
  check(cudaMalloc(&b, bytes), "cudaMalloc");
  check(cudaMemset(a, 1, bytes), "cudaMemset");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  std::vector<double> gbps;
  for (int i = 0; i < 25; ++i) {
    check(cudaEventRecord(e0), "record");
    check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "copy");
    check(cudaEventRecord(e1), "record");
    check(cudaEventSynchronize(e1), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    if (i >= 5) gbps.push_back(2.0 * bytes / (ms / 1000.0) / 1e9);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return median(gbps);
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> args = {
      {"--preset", "llama-3.2-1b"}, {"--arch", "llama"},     {"--reps", "5"},
      {"--no-graphs", "0"},         {"--profile-step", "0"}, {"--gemm-autotune", "0"},
      {"--decode-tokens", "128"}};
  for (int i = 1; i + 1 < argc; i += 2) args[argv[i]] = argv[i + 1];
  const int reps = std::stoi(args["--reps"]);
  const int decode_tokens = std::stoi(args["--decode-tokens"]);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    fmt::print("no usable CUDA device: nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  int driver = 0;
  cudaDriverGetVersion(&driver);

  const std::filesystem::path dir = cachet::bench::ensure_model(args["--arch"], args["--preset"]);
  const cachet::model::ModelConfig mc = cachet::model::load_model_config(dir / "config.json");

  // One decode step of one sequence at context 80, built for forward_sample.
  const auto decode_batch = [] {
    cachet::backend::ForwardBatch b;
    const int ctx = 80;
    b.token_ids = {5};
    b.positions = {ctx - 1};
    b.query_start = {0, 1};
    b.context_lens = {ctx};
    b.max_blocks_per_seq = (ctx + 15) / 16;
    for (int i = 0; i < b.max_blocks_per_seq; ++i) b.block_tables.push_back(i);
    b.slot_mapping = {std::int64_t{b.block_tables.back()} * 16 + (ctx - 1) % 16};
    b.logits_indices = {0};
    return b;
  };
  const auto backend_options = [](bool graphs, bool autotune) {
    cachet::backend::CudaBackendOptions o;
    o.kv_cache_bytes = std::int64_t{1} << 30;
    o.max_model_len = 8192;
    o.max_num_seqs = 128;
    o.max_num_batched_tokens = 8192;
    o.enable_cuda_graphs = graphs;
    o.gemm_autotune = autotune;
    return o;
  };

  if (args["--profile-step"] != "0") {
    auto be = cachet::backend::make_cuda_backend(mc, cachet::model::load_weights(dir, mc),
                                                 backend_options(false, false));
    const auto b = decode_batch();
    std::vector<cachet::backend::SampleSpec> specs(1);
    std::vector<cachet::backend::SampledToken> out;
    for (int i = 0; i < 20; ++i) be->forward_sample(b, specs, out);  // warm-up
    check(cudaProfilerStart(), "cudaProfilerStart");
    be->forward_sample(b, specs, out);
    check(cudaProfilerStop(), "cudaProfilerStop");
    fmt::print("profiled one eager decode step (context 80)\n");
    return 0;
  }

  const double bw = copy_bandwidth();
  fmt::print("GPU {} ({} SMs), driver {}.{}, copy bandwidth {:.0f} GB/s (read + write)\n",
             prop.name, prop.multiProcessorCount, driver / 1000, (driver % 1000) / 10, bw);

  // The backend alone: one decode step of one sequence (context 80) through forward_sample,
  // host clock around the whole call (metadata upload, graph or kernels, sampling, copy
  // back, synchronize). The engine's step adds scheduling and bookkeeping to this.
  // Variants: 0 no graphs, 1 graphs, 2 graphs + GEMM autotuning.
  std::vector<double> backend_ms[3];
  double setup_s[3] = {};
  cachet::backend::CudaMemoryPlan tuned_plan;
  for (int variant = 0; variant < 3; ++variant) {
    const auto t_setup = Clock::now();
    auto be = cachet::backend::make_cuda_backend(mc, cachet::model::load_weights(dir, mc),
                                                 backend_options(variant >= 1, variant == 2));
    setup_s[variant] = std::chrono::duration<double>(Clock::now() - t_setup).count();
    if (variant == 2) tuned_plan = cachet::backend::cuda_memory_plan(*be);
    const auto b = decode_batch();
    std::vector<cachet::backend::SampleSpec> specs(1);
    std::vector<cachet::backend::SampledToken> out;
    for (int i = 0; i < 220; ++i) {
      const auto t0 = Clock::now();
      be->forward_sample(b, specs, out);
      if (i >= 20)
        backend_ms[variant].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
  }

  cachet::EngineConfig c;
  c.model_dir = dir.string();
  c.device = cachet::Device::kCuda;
  c.enable_prefix_caching = true;
  c.max_num_seqs = 128;
  c.max_num_batched_tokens = 8192;
  c.max_model_len = 8192;
  c.gpu_memory_utilization = 0.8;
  c.enable_cuda_graphs = args["--no-graphs"] == "0";
  c.cuda_gemm_autotune = args["--gemm-autotune"] != "0";
  cachet::Engine engine(c);
  const int vocab = engine.info().vocab_size;
  fmt::print(
      "model {} {} ({} layers, hidden {}, vocab {}), {} KV blocks, graphs {}, GEMM autotune "
      "{}\n",
      args["--arch"], args["--preset"], mc.num_layers, mc.hidden_size, mc.vocab_size,
      engine.info().num_kv_blocks, c.enable_cuda_graphs ? "on" : "off",
      c.cuda_gemm_autotune ? "on" : "off");

  // Bytes a batch-1 decode step must read: every weight matrix once (the embedding gather
  // reads one row; a tied LM head is the embedding read in full), norms, and the K/V so far.
  const double q_dim = double(mc.num_heads) * mc.head_dim,
               kv_dim = double(mc.num_kv_heads) * mc.head_dim;
  const double layer_params = mc.hidden_size * (q_dim + 2 * kv_dim) + q_dim * mc.hidden_size +
                              3.0 * mc.hidden_size * mc.intermediate_size + 2.0 * mc.hidden_size;
  const double weight_bytes = 2.0 * (mc.num_layers * layer_params +
                                     double(mc.vocab_size) * mc.hidden_size + mc.hidden_size);

  cachet::SamplingParams p;
  p.temperature = 0.0f;
  p.ignore_eos = true;
  p.max_tokens = decode_tokens;
  engine.generate({tokens(16, vocab, 1)}, p);  // warm-up

  // Batch 1: step time vs the floor at the mean context of the run.
  std::vector<double> step_ms;
  for (int r = 0; r < reps; ++r) {
    auto out = engine.generate({tokens(16, vocab, 100 + r)}, p)[0];
    step_ms.push_back(out.decode_ms / (out.token_ids.size() - 1));
  }
  const double mean_ctx = 16 + decode_tokens / 2.0;
  const double kv_bytes = 2.0 * mc.num_layers * kv_dim * 2 * mean_ctx;
  // The floor counts each byte read once; the copy moves each byte twice (read + write).
  const double floor_ms = (weight_bytes + kv_bytes) / (bw * 1e9 / 1.0) * 1000.0;
  const double step = median(step_ms);
  fmt::print("\n| measurement | value |\n|---|---|\n");
  fmt::print("| decode step, batch 1 | {:.3f} ms ({:.1f} tokens/s) |\n", step, 1000.0 / step);
  fmt::print("| floor: ({:.2f} GB weights + {:.3f} GB KV) / {:.0f} GB/s | {:.3f} ms |\n",
             weight_bytes / 1e9, kv_bytes / 1e9, bw, floor_ms);
  fmt::print("| step / floor | {:.2f}x |\n", step / floor_ms);
  fmt::print("| backend decode step alone, CUDA graph (context 80) | {:.3f} ms ({:.2f}x floor) |\n",
             median(backend_ms[1]), median(backend_ms[1]) / floor_ms);
  fmt::print("| backend decode step alone, no graph | {:.3f} ms |\n", median(backend_ms[0]));
  fmt::print(
      "| backend decode step alone, CUDA graph + GEMM autotune | {:.3f} ms ({:.2f}x floor) |\n",
      median(backend_ms[2]), median(backend_ms[2]) / floor_ms);
  fmt::print("| GEMM autotune: shapes timed / changed / to cachet's GEMV | {} / {} / {} |\n",
             tuned_plan.gemm_shapes_tuned, tuned_plan.gemm_shapes_changed,
             tuned_plan.gemm_shapes_gemv);
  fmt::print("| GEMM autotune: summed shape times, heuristic -> tuned | {:.1f} -> {:.1f} us |\n",
             tuned_plan.gemm_heuristic_us, tuned_plan.gemm_tuned_us);
  fmt::print(
      "| backend setup (load, upload, graphs): no graph / graphs / + autotune | "
      "{:.2f} / {:.2f} / {:.2f} s |\n",
      setup_s[0], setup_s[1], setup_s[2]);

  for (int batch : {1, 32, 128}) {
    std::vector<double> tps;
    for (int r = 0; r < std::max(1, reps / 2); ++r) {
      std::vector<std::vector<cachet::TokenId>> prompts;
      for (int b = 0; b < batch; ++b) prompts.push_back(tokens(16, vocab, 1000 * r + b + 7));
      auto start = Clock::now();
      auto outs = engine.generate(prompts, p);
      const double total_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      double first_ms = 0;
      for (const auto& o : outs) first_ms = std::max(first_ms, o.ttft_ms);
      tps.push_back(double(batch) * (decode_tokens - 1) / ((total_ms - first_ms) / 1000.0));
    }
    fmt::print("| decode tokens/s, batch {} | {:.0f} |\n", batch, median(tps));
  }

  // TTFT: 4096-token cached prefix + 64 new tokens vs 64 new tokens alone.
  p.max_tokens = 1;
  const auto prefix = tokens(4096, vocab, 7);
  engine.generate({prefix}, p);  // caches the prefix
  std::vector<double> with_prefix, alone;
  std::int32_t hit = 0;
  for (int r = 0; r < reps + 1; ++r) {
    auto question = tokens(64, vocab, 500 + r);
    auto prompt = prefix;
    prompt.insert(prompt.end(), question.begin(), question.end());
    auto a = engine.generate({prompt}, p)[0];
    auto b = engine.generate({tokens(64, vocab, 900 + r)}, p)[0];
    if (r == 0) continue;  // warm-up of both shapes
    hit = a.num_cached_tokens;
    with_prefix.push_back(a.ttft_ms);
    alone.push_back(b.ttft_ms);
  }
  fmt::print("| TTFT, 4096 cached ({} hit) + 64 new | {:.2f} ms |\n", hit, median(with_prefix));
  fmt::print("| TTFT, 64 tokens alone | {:.2f} ms |\n", median(alone));
  fmt::print("| TTFT ratio | {:.2f}x |\n", median(with_prefix) / median(alone));
  return 0;
}

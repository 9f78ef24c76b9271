// The CUDA backend: bf16 (or fp16) weights and KV cache on one GPU, cuBLASLt GEMMs, the
// kernels of kernels/, decode steps replayed from CUDA graphs. Same ForwardBatch contract as
// the CPU backend (backend.h). Only compiled where the build has CUDA (CACHET_WITH_CUDA).
#pragma once

#include <cstdint>
#include <memory>

#include "backend/backend.h"
#include "model/model_config.h"
#include "model/weights.h"
#include "util/log.h"

namespace cachet::backend {

struct CudaBackendOptions {
  // The device, made current on the constructing thread (the engine builds and runs its
  // backend on its own thread, so the application's threads keep their current device).
  int device = 0;
  bool fp16 = false;  // fp16 instead of bf16 for weights, activations and the KV cache
  std::int32_t block_size = 16;
  // KV cache size: num_kv_blocks if > 0, else kv_cache_bytes if > 0, else what
  // gpu_memory_utilization x total memory leaves after weights, workspace and graphs.
  std::int64_t num_kv_blocks = 0;
  std::int64_t kv_cache_bytes = 0;
  double gpu_memory_utilization = 0.9;
  // Sizes the activation workspace and the block tables: a step holds at most
  // max(max_num_batched_tokens, max_num_seqs) tokens of at most max_num_seqs sequences, each
  // at most max_model_len long.
  std::int32_t max_model_len = 0;
  std::int32_t max_num_seqs = 64;
  std::int32_t max_num_batched_tokens = 2048;
  bool enable_cuda_graphs = true;
  // Time cuBLASLt's candidate algorithms for every decode GEMM shape (the batch sizes the
  // decode graphs are captured for) at startup and keep the fastest, instead of the
  // heuristic's first choice; cachet's GEMV competes for batch sizes up to 4 (see
  // Gemm::begin_tuning).
  bool gemm_autotune = false;
  // Where the backend logs (the engine's logger); null: nowhere. Must outlive the backend.
  const util::Logger* log = nullptr;
};

// What the backend took, for EngineInfo and the log.
struct CudaMemoryPlan {
  std::int64_t weight_bytes = 0;
  std::int64_t workspace_bytes = 0;  // activations, metadata, logits, cuBLASLt workspace
  std::int64_t kv_cache_bytes = 0;
  std::int64_t total_bytes = 0;  // the GPU's memory
  std::int64_t free_bytes_after = 0;
  std::int32_t num_graphs = 0;  // decode batch sizes captured
  // GEMM autotuning (gemm_autotune): shapes timed, shapes whose algorithm changed, and the
  // sums over the tuned shapes of the heuristic's and the chosen algorithms' times.
  std::int32_t gemm_shapes_tuned = 0;
  std::int32_t gemm_shapes_changed = 0;
  std::int32_t gemm_shapes_gemv = 0;  // of those changed, to cachet's GEMV (kernels/gemv.h)
  double gemm_heuristic_us = 0;
  double gemm_tuned_us = 0;
};

// Bytes one KV block takes across all layers (K and V) with 2-byte elements.
std::int64_t cuda_kv_block_bytes(const model::ModelConfig& config, std::int32_t block_size);

// Uploads the weights (converted to bf16/fp16), plans memory, allocates the KV cache,
// captures the decode graphs. Throws cachet::Error: kUnavailable when CUDA cannot be used,
// kOutOfMemory naming what did not fit, kInvalidArgument for options it cannot serve.
std::unique_ptr<Backend> make_cuda_backend(const model::ModelConfig& config,
                                           model::ModelWeights weights,
                                           const CudaBackendOptions& options);

// The plan of a backend made by make_cuda_backend; throws kInvalidArgument for another kind.
const CudaMemoryPlan& cuda_memory_plan(const Backend& backend);

}  // namespace cachet::backend

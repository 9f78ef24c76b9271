// cachet — engine construction options.
#pragma once

#include <cstdint>
#include <string>

#include "cachet/types.h"

namespace cachet {

// Which waiting requests a step admits first.
enum class SchedulePolicy {
  kFcfs,        // arrival order
  kCacheAware,  // among the 64 longest-waiting, the longest cached prefix first (SGLang's LPM)
};

// Element type of weights, activations and the KV cache on the GPU. The CPU backend always
// computes in fp32.
enum class ComputeDType {
  kAuto,  // bf16
  kBFloat16,
  kFloat16,
};

// Options for building an Engine. Zero means "choose for me" where a field says so;
// Engine::info() reports the values actually chosen.
struct EngineConfig {
  // A Hugging Face model directory: config.json, model.safetensors or
  // model.safetensors.index.json with its shards.
  std::string model_dir;
  // Where to run. kAuto falls back to the CPU backend (and logs it) when no GPU is usable.
  Device device = Device::kAuto;
  // Tokens per KV-cache block (a power of two, 1..256).
  std::int32_t block_size = 16;
  // Keep the K/V of full blocks after their request ends and reuse it for every later
  // request whose prompt starts with the same tokens (automatic prefix caching).
  bool enable_prefix_caching = true;
  // Order in which waiting requests are admitted.
  SchedulePolicy schedule_policy = SchedulePolicy::kFcfs;
  // Number of KV blocks. 0: as many as `kv_cache_bytes` allows.
  std::int64_t num_kv_blocks = 0;
  // Memory budget for the KV cache in bytes when num_kv_blocks is 0. 0: the backend's
  // default, 512 MiB on the CPU and, on a GPU, what `gpu_memory_utilization` leaves.
  std::int64_t kv_cache_bytes = 0;
  // CUDA: the fraction of the GPU's total memory the engine may use (weights, activation
  // workspace, CUDA graphs and the KV cache); the KV cache gets what the rest leaves. Used
  // when num_kv_blocks and kv_cache_bytes are both 0.
  double gpu_memory_utilization = 0.9;
  // CUDA: element type of weights, activations and the KV cache.
  ComputeDType dtype = ComputeDType::kAuto;
  // CUDA: capture decode steps in CUDA graphs (one per padded batch size) and replay them.
  bool enable_cuda_graphs = true;
  // CUDA: time cuBLASLt's candidate algorithms for each decode GEMM shape (every batch size
  // a decode graph is captured for) at startup and keep the fastest, instead of cuBLASLt's
  // heuristic first choice (for 1 to 4 sequences cachet's own GEMV kernel competes too).
  // Adds startup time (six timed runs of up to 9 candidates per shape). The choice depends
  // on timings, so two engines (or two runs) may pick different algorithms and round
  // differently.
  bool cuda_gemm_autotune = false;
  // Longest sequence (prompt + generated) in tokens. 0: the model's
  // max_position_embeddings.
  std::int32_t max_model_len = 0;
  // At most this many sequences in one step.
  std::int32_t max_num_seqs = 64;
  // At most this many tokens (prefill + decode) in one step; long prompts are prefilled
  // in chunks of at most this size.
  std::int32_t max_num_batched_tokens = 2048;
  // CPU worker threads, at most 1024. 0: std::thread::hardware_concurrency().
  std::int32_t num_threads = 0;
  // Debugging aid (slow): fill fresh KV blocks and every block returned to the free list
  // (freed or evicted) with NaN, and fail a step whose logits are not finite, so that any
  // read of K/V the block table does not vouch for fails loudly. On in cachet's tests.
  bool debug_poison_kv = false;
  // Log level of the library's logger: "trace", "debug", "info", "warn", "error", "off".
  std::string log_level = "warn";
};

}  // namespace cachet

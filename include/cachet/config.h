// cachet — engine construction options.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

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

// Severity of a message of the library's logger.
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// Receives each message an engine logs at or above EngineConfig::log_level, from whichever
// thread logs it (the engine's thread, a caller's, or the disk tier's I/O thread), one call
// per message, without a trailing newline. It must not call back into the engine that logs.
using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Options for building an Engine. Zero means "choose for me" where a field says so;
// Engine::info() reports the values actually chosen.
struct EngineConfig {
  // A Hugging Face model directory: config.json, model.safetensors or
  // model.safetensors.index.json with its shards.
  std::string model_dir;
  // Where to run. kAuto falls back to the CPU backend (and logs it) when no GPU is usable.
  Device device = Device::kAuto;
  // Memory-map the safetensors files (the page cache is then the only copy of the weights on
  // the host, and loading reads only their headers). The files must then not be truncated or
  // rewritten in place while the engine runs. false: read them into the engine's own memory
  // instead (slower to load; a later change to the files cannot affect the engine).
  bool mmap_weights = true;
  // Tokens per KV-cache block (a power of two, 1..256).
  std::int32_t block_size = 16;
  // Keep the K/V of full blocks after their request ends and reuse it for every later
  // request whose prompt starts with the same tokens (automatic prefix caching).
  bool enable_prefix_caching = true;
  // Host-memory tier of the prefix cache, in bytes (0: off; rounded down to whole KV blocks).
  // A block the KV cache evicts is copied here instead of dropped, and a later prompt that
  // matches it has it copied back rather than recomputed: the same bytes, so the same
  // outputs. On a GPU the tier is pinned host memory. Needs enable_prefix_caching.
  std::int64_t host_kv_cache_bytes = 0;
  // Disk tier of the prefix cache: a directory (created when missing; empty: no disk tier),
  // shared safely by several engines and processes. Every KV block the engine computes is
  // written there too (through the host tier, by a thread of its own), and a prompt whose
  // prefix is found there, from this process or an earlier one, has those blocks read back
  // (through the host tier) instead of computed. Records live under a subdirectory named by
  // a fingerprint of the model, tokenizer, block size and K/V format, so blocks of another
  // model are never read; each is checksummed and verified against the request's tokens and
  // cache salt, and one that fails is removed and recomputed. A directory that cannot be
  // written only logs a warning. It holds prompt tokens, salts and K/V in the clear: keep it
  // private (cachet creates it mode 0700). Needs host_kv_cache_bytes > 0 (a read is at most
  // as long as the host tier holds). docs/prefix_caching.md describes it.
  std::string kv_cache_dir;
  // The most bytes of records the disk tier keeps in kv_cache_dir's subdirectory for this
  // model; the least recently used go first.
  std::int64_t disk_kv_cache_bytes = std::int64_t{16} << 30;
  // Reuse cached K/V token by token, not only in whole blocks: when a prompt leaves the
  // cached prefix inside a block, the K/V of its tokens that a cached block computed after
  // the same prefix begins with is copied into the request's block, and only the rest is
  // computed (SGLang's page size 1, TensorRT-LLM's partial reuse). Needs
  // enable_prefix_caching; outputs are the same either way.
  bool partial_block_reuse = true;
  // The most of the KV cache that prefix pins (Request::cache_pin) may hold, as a fraction of
  // num_kv_blocks in [0, 1]; a pin beyond it is refused. Pinned blocks still give way when
  // nothing else is evictable, so pins never starve running requests.
  double max_pinned_fraction = 0.5;
  // Order in which waiting requests are admitted.
  SchedulePolicy schedule_policy = SchedulePolicy::kFcfs;
  // Number of KV blocks. 0: as many as `kv_cache_bytes` allows.
  std::int64_t num_kv_blocks = 0;
  // Memory budget for the KV cache in bytes when num_kv_blocks is 0. 0: the backend's
  // default, 512 MiB on the CPU and, on a GPU, what `gpu_memory_utilization` leaves.
  std::int64_t kv_cache_bytes = 0;
  // CUDA: which device (an index as CUDA_VISIBLE_DEVICES leaves them). The engine uses it on
  // its own thread and leaves the calling thread's current device as it was.
  std::int32_t cuda_device = 0;
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
  // CPU worker threads, at most 1024. 0: the CPUs this process may use (its affinity mask,
  // capped by a cgroup CPU quota such as a container's --cpus).
  std::int32_t num_threads = 0;
  // Debugging aid (slow): fill fresh KV blocks and every block returned to the free list
  // (freed or evicted) with NaN, and fail a step whose logits are not finite, so that any
  // read of K/V the block table does not vouch for fails loudly. On in cachet's tests.
  bool debug_poison_kv = false;
  // Check the KV block accounting after every step (every block free, cached or referenced
  // exactly as the block tables say; the hash index and salts consistent). A violation is a
  // bug in cachet: the engine then fails (Engine::health()) instead of computing on corrupt
  // state. Costs about 7 ns per KV block per step (docs/benchmarks.md): negligible on the
  // CPU backend, up to a few percent of a GPU decode step with tens of thousands of blocks.
  bool check_kv_integrity = false;
  // This engine's log messages at or above this level go to `log_sink`. Each engine has its
  // own logger; nothing process-wide is changed.
  LogLevel log_level = LogLevel::kWarn;
  // Where this engine's log messages go; empty: standard error, as "[cachet W] message".
  LogSink log_sink;
};

}  // namespace cachet

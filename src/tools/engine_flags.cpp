#include "tools/engine_flags.h"

#include <fmt/format.h>

#include <limits>

#include "cachet/errors.h"
#include "util/log.h"

namespace cachet::tools {

void add_engine_flags(CLI::App& cmd, EngineFlags& f) {
  cmd.add_option("--model", f.config.model_dir, "Hugging Face model directory")->required();
  cmd.add_option("--device", f.device, "auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd.add_option("--threads", f.config.num_threads,
                 "CPU threads (0 = the CPUs this process may use: affinity, cgroup quota)")
      ->capture_default_str();
  cmd.add_option("--block-size", f.config.block_size, "Tokens per KV block")->capture_default_str();
  cmd.add_option("--kv-cache-mib", f.kv_cache_mib,
                 "KV cache budget in MiB (0 = 512 on the CPU; on a GPU what "
                 "--gpu-memory-utilization leaves)")
      ->capture_default_str();
  cmd.add_option("--gpu-memory-utilization", f.config.gpu_memory_utilization,
                 "Fraction of GPU memory the engine may use")
      ->capture_default_str();
  cmd.add_option("--dtype", f.dtype, "GPU element type: auto (bf16) | bf16 | fp16")
      ->check(CLI::IsMember({"auto", "bf16", "fp16"}))
      ->capture_default_str();
  cmd.add_option("--cuda-device", f.config.cuda_device, "CUDA device index")->capture_default_str();
  cmd.add_flag("--no-cuda-graphs", f.no_cuda_graphs, "Run GPU decode steps without CUDA graphs");
  cmd.add_flag("--gemm-autotune", f.config.cuda_gemm_autotune,
               "Time cuBLASLt's candidate algorithms for the decode GEMMs at startup and keep "
               "the fastest");
  cmd.add_option("--kv-cache-bytes", f.kv_cache_bytes,
                 "KV cache budget in bytes (overrides --kv-cache-mib)");
  cmd.add_option("--num-kv-blocks", f.config.num_kv_blocks,
                 "Number of KV blocks (overrides the byte budget)");
  cmd.add_flag("--no-prefix-cache", f.no_prefix_cache, "Disable automatic prefix caching");
  cmd.add_flag("--no-partial-blocks", f.no_partial_blocks,
               "Reuse cached K/V in whole blocks only (not token by token)");
  cmd.add_option("--host-kv-cache-mib", f.host_kv_cache_mib,
                 "Host-memory tier of the prefix cache in MiB: blocks the KV cache evicts are "
                 "kept there and loaded back for a later hit (0 = off)")
      ->capture_default_str();
  cmd.add_option("--kv-cache-dir", f.config.kv_cache_dir,
                 "Disk tier of the prefix cache: a directory where every computed KV block is "
                 "written (through the host tier) and read back by any later engine on the same "
                 "model, this process or another; needs --host-kv-cache-mib");
  cmd.add_option("--disk-kv-cache-mib", f.disk_kv_cache_mib,
                 "The most MiB of blocks --kv-cache-dir keeps for this model (least recently "
                 "used removed first)")
      ->capture_default_str();
  cmd.add_flag("--no-mmap", f.no_mmap,
               "Read the weight files into memory instead of memory-mapping them");
  cmd.add_option("--schedule", f.schedule, "fcfs | cache-aware")
      ->check(CLI::IsMember({"fcfs", "cache-aware"}))
      ->capture_default_str();
  cmd.add_option("--max-num-seqs", f.config.max_num_seqs, "Sequences per step")
      ->capture_default_str();
  cmd.add_option("--max-num-batched-tokens", f.config.max_num_batched_tokens, "Tokens per step")
      ->capture_default_str();
  cmd.add_option("--max-model-len", f.config.max_model_len, "0 = the model's")
      ->capture_default_str();
  cmd.add_flag("--check-kv-integrity", f.config.check_kv_integrity,
               "Check the KV block accounting after every step (a debugging aid)");
  cmd.add_option("--log-level", f.log_level, "trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
}

EngineConfig engine_config(const EngineFlags& f) {
  EngineConfig c = f.config;
  // MiB to bytes must not overflow (a wrapped budget of 0 would silently mean the default).
  constexpr std::int64_t kMaxMib = std::numeric_limits<std::int64_t>::max() >> 20;
  if (f.kv_cache_mib < 0 || f.kv_cache_mib > kMaxMib)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--kv-cache-mib must be in [0, {}], got {}", kMaxMib, f.kv_cache_mib));
  if (f.host_kv_cache_mib < 0 || f.host_kv_cache_mib > kMaxMib)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--host-kv-cache-mib must be in [0, {}], got {}", kMaxMib,
                            f.host_kv_cache_mib));
  c.host_kv_cache_bytes = f.host_kv_cache_mib << 20;
  if (f.disk_kv_cache_mib < 0 || f.disk_kv_cache_mib > kMaxMib)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--disk-kv-cache-mib must be in [0, {}], got {}", kMaxMib,
                            f.disk_kv_cache_mib));
  c.disk_kv_cache_bytes = f.disk_kv_cache_mib << 20;
  c.device = f.device == "cpu" ? Device::kCpu : f.device == "cuda" ? Device::kCuda : Device::kAuto;
  c.kv_cache_bytes = f.kv_cache_bytes > 0 ? f.kv_cache_bytes : f.kv_cache_mib << 20;
  c.dtype = f.dtype == "fp16"   ? ComputeDType::kFloat16
            : f.dtype == "bf16" ? ComputeDType::kBFloat16
                                : ComputeDType::kAuto;
  c.enable_cuda_graphs = !f.no_cuda_graphs;
  c.enable_prefix_caching = !f.no_prefix_cache;
  c.partial_block_reuse = !f.no_partial_blocks;
  c.mmap_weights = !f.no_mmap;
  c.schedule_policy =
      f.schedule == "cache-aware" ? SchedulePolicy::kCacheAware : SchedulePolicy::kFcfs;
  const auto level = util::parse_log_level(f.log_level);
  if (!level)
    throw Error(ErrorCode::kInvalidArgument, fmt::format("unknown --log-level '{}'", f.log_level));
  c.log_level = *level;
  return c;
}

}  // namespace cachet::tools

// Engine options shared by the subcommands that build an Engine (`generate`, `bench serve`),
// so that a flag means the same thing, with the same default, in every command.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "cachet/config.h"

namespace cachet::tools {

struct EngineFlags {
  EngineConfig config;  // fields set directly by flags (model_dir, threads, block size, ...)
  std::string device = "auto";
  std::int64_t kv_cache_bytes = 0;
  std::int64_t kv_cache_mib = 0;
  std::int64_t host_kv_cache_mib = 0;
  std::int64_t disk_kv_cache_mib = EngineConfig{}.disk_kv_cache_bytes >> 20;
  bool no_partial_blocks = false;
  std::string dtype = "auto";
  bool no_cuda_graphs = false;
  bool no_prefix_cache = false;
  bool no_mmap = false;
  std::string schedule = "fcfs";
  std::string log_level = "warn";
};

// Registers --model (required) and the engine flags (--device, --threads, --block-size,
// --kv-cache-mib, --kv-cache-bytes, --num-kv-blocks, --host-kv-cache-mib, --kv-cache-dir,
// --disk-kv-cache-mib, --gpu-memory-utilization, --dtype,
// --cuda-device, --no-cuda-graphs, --gemm-autotune, --no-prefix-cache, --no-mmap, --schedule,
// --max-num-seqs, --max-num-batched-tokens, --max-model-len, --check-kv-integrity,
// --log-level) on `cmd`, writing into `flags`, which must outlive parsing.
void add_engine_flags(CLI::App& cmd, EngineFlags& flags);

// The EngineConfig the parsed flags describe.
EngineConfig engine_config(const EngineFlags& flags);

}  // namespace cachet::tools

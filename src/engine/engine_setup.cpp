#include "engine/engine_setup.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_isa.h"
#include "backend/device_probe.h"
#if defined(CACHET_WITH_CUDA)
#include "backend/cuda/cuda_backend.h"
#endif
#include "engine/kv_fingerprint.h"
#include "model/weights.h"
#include "util/cpu_count.h"
#include "util/json_depth.h"

namespace cachet::engine {
namespace {

namespace fs = std::filesystem;

constexpr std::int32_t kMaxThreads = 1024;

void check_config(const EngineConfig& c) {
  auto bad = [](const std::string& msg) {
    throw Error(ErrorCode::kInvalidArgument, "EngineConfig: " + msg);
  };
  if (c.model_dir.empty()) bad("model_dir is empty");
  if (c.block_size < 1 || c.block_size > 256 ||
      !std::has_single_bit(static_cast<unsigned>(c.block_size)))
    bad(fmt::format("block_size must be a power of two in [1, 256], got {}", c.block_size));
  if (c.num_kv_blocks < 0) bad(fmt::format("num_kv_blocks must be >= 0, got {}", c.num_kv_blocks));
  if (c.kv_cache_bytes < 0)
    bad(fmt::format("kv_cache_bytes must be >= 0 (0: the backend's default), got {}",
                    c.kv_cache_bytes));
  if (!(c.max_pinned_fraction >= 0 && c.max_pinned_fraction <= 1))
    bad(fmt::format("max_pinned_fraction must be in [0, 1], got {}", c.max_pinned_fraction));
  if (c.host_kv_cache_bytes < 0)
    bad(fmt::format("host_kv_cache_bytes must be >= 0 (0: no host tier), got {}",
                    c.host_kv_cache_bytes));
  if (c.disk_kv_cache_bytes < 0)
    bad(fmt::format("disk_kv_cache_bytes must be >= 0, got {}", c.disk_kv_cache_bytes));
  if (!c.kv_cache_dir.empty() && c.enable_prefix_caching && c.host_kv_cache_bytes == 0)
    bad(
        fmt::format("kv_cache_dir {} needs host_kv_cache_bytes > 0: the disk tier reads and "
                    "writes blocks through the host tier",
                    c.kv_cache_dir));
  if (c.cuda_device < 0) bad(fmt::format("cuda_device must be >= 0, got {}", c.cuda_device));
  if (!(c.gpu_memory_utilization > 0 && c.gpu_memory_utilization <= 1))
    bad(fmt::format("gpu_memory_utilization must be in (0, 1], got {}", c.gpu_memory_utilization));
  if (c.max_model_len < 0) bad(fmt::format("max_model_len must be >= 0, got {}", c.max_model_len));
  if (c.max_num_seqs < 1) bad(fmt::format("max_num_seqs must be >= 1, got {}", c.max_num_seqs));
  if (c.max_num_batched_tokens < 1)
    bad(fmt::format("max_num_batched_tokens must be >= 1, got {}", c.max_num_batched_tokens));
  // Far more threads than any machine has cores would only exhaust the process's threads.
  if (c.num_threads < 0 || c.num_threads > kMaxThreads)
    bad(fmt::format("num_threads must be in [0, {}] (0: one per usable CPU), got {}", kMaxThreads,
                    c.num_threads));
  if (c.log_level < LogLevel::kTrace || c.log_level > LogLevel::kOff)
    bad(fmt::format("log_level {} is not a LogLevel", static_cast<int>(c.log_level)));
}

// EOS ids of generation_config.json (which chat models use to add end-of-turn tokens),
// merged into those of config.json. Each must be a token of the model: an id the model
// cannot produce would never end a request, and a silently truncated one would end it at
// the wrong token.
void merge_generation_config(const fs::path& dir, std::int32_t vocab_size,
                             std::vector<TokenId>& eos) {
  const fs::path path = dir / "generation_config.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  const auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::kInvalidModel, fmt::format("{}: {}", path.string(), what));
  };
  // A FIFO would block the read forever, a directory reads as empty text.
  if (!fs::is_regular_file(path, ec)) bad("not a regular file");
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (util::json_nests_too_deep(text.view()))
    bad(fmt::format("JSON nested deeper than {} levels", util::kMaxJsonDepth));
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) bad("not a JSON object");
  auto add = [&](const nlohmann::json& v) {
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() >= vocab_size)
      bad(fmt::format(
          "field 'eos_token_id' holds {}, which is not a token id of the model ([0, {}), "
          "config.json's vocab_size)",
          v.is_number() ? v.dump() : std::string(v.type_name()), vocab_size));
    if (std::find(eos.begin(), eos.end(), v.get<TokenId>()) == eos.end())
      eos.push_back(v.get<TokenId>());
  };
  if (auto it = j.find("eos_token_id"); it != j.end()) {
    if (it->is_array())
      for (const auto& v : *it) add(v);
    else
      add(*it);
  }
}

model::WeightLoading loading(const EngineConfig& config) {
  return config.mmap_weights ? model::WeightLoading::kMap : model::WeightLoading::kRead;
}

// The CUDA backend, or null when kAuto settles for the CPU (and logs why).

std::unique_ptr<backend::Backend> make_cuda(const EngineConfig& config, const fs::path& dir,
                                            const model::ModelConfig& model, std::int32_t max_len,
                                            const util::Logger& log, std::int64_t& block_bytes) {
  const backend::CudaProbe probe = backend::probe_cuda(config.cuda_device);
  if (config.device == Device::kCuda && !probe.problem.empty())
    throw Error(ErrorCode::kUnavailable,
                fmt::format("Device::kCuda requested but the CUDA backend cannot be used: {}",
                            probe.problem));
  if (config.device == Device::kCpu) return nullptr;
  if (!probe.problem.empty()) {
    // A build without CUDA has nothing to fall back from; one with CUDA but no usable GPU
    // is worth a warning a user sees by default.
    log.log(probe.built_with_cuda ? LogLevel::kWarn : LogLevel::kInfo,
            "device auto: using the CPU backend ({})", probe.problem);
    return nullptr;
  }
#if defined(CACHET_WITH_CUDA)
  backend::CudaBackendOptions o;
  o.fp16 = config.dtype == ComputeDType::kFloat16;
  o.device = config.cuda_device;
  o.block_size = config.block_size;
  o.num_kv_blocks = config.num_kv_blocks;
  o.kv_cache_bytes = config.kv_cache_bytes;
  o.gpu_memory_utilization = config.gpu_memory_utilization;
  o.max_model_len = max_len;
  o.max_num_seqs = config.max_num_seqs;
  o.max_num_batched_tokens = config.max_num_batched_tokens;
  o.enable_cuda_graphs = config.enable_cuda_graphs;
  o.gemm_autotune = config.cuda_gemm_autotune;
  o.log = &log;
  try {
    auto backend =
        backend::make_cuda_backend(model, model::load_weights(dir, model, loading(config)), o);
    block_bytes = backend::cuda_kv_block_bytes(model, config.block_size);
    return backend;
  } catch (const Error& e) {
    // kAuto runs what the GPU kernels do not cover (a head_dim, a block size) on the CPU.
    if (config.device != Device::kAuto || e.code() != ErrorCode::kUnsupported) throw;
    log.warn("device auto: using the CPU backend ({})", e.what());
  }
#else
  (void)dir, (void)model, (void)max_len, (void)block_bytes;
#endif
  return nullptr;
}

std::unique_ptr<backend::Backend> make_cpu(const EngineConfig& config, const fs::path& dir,
                                           const model::ModelConfig& model, int threads,
                                           const util::Logger& log, std::int64_t& block_bytes) {
  const backend::cpu::IsaChoice& isa = backend::cpu::isa_choice();
  if (!isa.ignored.empty()) log.warn("{}", isa.ignored);
  // The weights first: they are checked against config.json, and so bound every size the
  // KV cache is computed from (a config.json claiming huge head counts fails as the
  // mismatch it is, not as an absurd KV block size that may overflow).
  model::ModelWeights weights = model::load_weights(dir, model, loading(config));
  block_bytes = backend::cpu_kv_block_bytes(model, config.block_size);
  const std::int64_t budget =
      config.kv_cache_bytes > 0 ? config.kv_cache_bytes : std::int64_t{512} << 20;
  std::int64_t num_blocks = config.num_kv_blocks > 0 ? config.num_kv_blocks : budget / block_bytes;
  if (num_blocks < 1)
    throw Error(ErrorCode::kOutOfMemory,
                fmt::format("EngineConfig: kv_cache_bytes {} holds no KV block (one block of {} "
                            "tokens takes {} bytes)",
                            budget, config.block_size, block_bytes));
  num_blocks = std::min<std::int64_t>(num_blocks,
                                      std::numeric_limits<std::int32_t>::max() / config.block_size);
  backend::KvCacheSpec kv{model.num_layers, model.num_kv_heads, model.head_dim, config.block_size,
                          num_blocks};
  return backend::make_cpu_backend(model, std::move(weights), kv, threads);
}

// The host tier's slots, allocated by the backend: none without prefix caching.
std::int64_t make_host_tier(const EngineConfig& config, backend::Backend& backend,
                            std::int64_t block_bytes) {
  if (!config.enable_prefix_caching || config.host_kv_cache_bytes == 0) return 0;
  const std::int64_t slots = config.host_kv_cache_bytes / block_bytes;
  if (slots < 1)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("EngineConfig: host_kv_cache_bytes {} holds no KV block (one block "
                            "of {} tokens takes {} bytes)",
                            config.host_kv_cache_bytes, config.block_size, block_bytes));
  backend.allocate_host_tier(slots);
  return slots;
}

// The model directory's chat template. One it cannot parse is logged and left out (with why,
// in `error`): the engine still serves prompts; only chat requests are refused.
std::optional<ChatTemplate> load_chat_template(const fs::path& dir, const util::Logger& log,
                                               std::string& error) {
  try {
    return ChatTemplate::from_model_dir(dir.string());
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kNotFound) return std::nullopt;
    error = e.what();
    log.warn("chat template not usable, chat requests will be refused: {}", error);
    return std::nullopt;
  }
}

// The disk tier under the host tier: none without one (or without prefix caching).
std::unique_ptr<kv::DiskTier> make_disk_tier(const EngineConfig& config, const fs::path& dir,
                                             backend::Backend& backend, std::int64_t block_bytes,
                                             std::int64_t host_blocks, const util::Logger& log) {
  if (config.kv_cache_dir.empty() || host_blocks == 0) return nullptr;
  if (config.disk_kv_cache_bytes < block_bytes)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("EngineConfig: disk_kv_cache_bytes {} holds no KV block (one block "
                            "of {} tokens takes {} bytes)",
                            config.disk_kv_cache_bytes, config.block_size, block_bytes));
  const KvFingerprint fp = kv_fingerprint(dir, config.block_size, backend.kv_format());
  kv::DiskTierOptions o;
  o.root = config.kv_cache_dir;
  o.fingerprint = fp.hash;
  o.fingerprint_json = fp.json;
  o.block_size = config.block_size;
  o.payload_bytes = static_cast<std::uint64_t>(block_bytes);
  o.capacity_bytes = config.disk_kv_cache_bytes;
  // At most half the host tier waits for the disk (a write holds its slot): the rest stays a
  // cache. Beyond that, blocks are not written (EngineStats::disk_writes_dropped).
  o.max_queued_writes = static_cast<std::size_t>(std::max<std::int64_t>(1, host_blocks / 2));
  return std::make_unique<kv::DiskTier>(std::move(o), log);
}

EngineInfo describe(const EngineConfig& config, const EngineParts& parts, std::int32_t max_len,
                    int threads, std::int64_t block_bytes, std::int64_t host_blocks) {
  EngineInfo info;
  const std::int64_t num_blocks = parts.backend->kv_spec().num_blocks;
  info.architecture = std::string(model::arch_name(parts.model.arch));
  info.backend = std::string(parts.backend->name());
  if (info.backend == "cpu") info.cpu_isa = backend::cpu::kernels().isa;
  info.vocab_size = parts.model.vocab_size;
  info.num_layers = parts.model.num_layers;
  info.block_size = config.block_size;
  info.num_kv_blocks = num_blocks;
  info.kv_cache_bytes = num_blocks * block_bytes;
  info.num_host_kv_blocks = host_blocks;
  info.host_kv_cache_bytes = host_blocks * block_bytes;
  if (parts.disk) {
    info.disk_kv_cache_dir = parts.disk->dir().string();
    info.disk_kv_cache_writable = parts.disk->writable();
  }
  info.max_model_len = max_len;
  info.max_num_seqs = config.max_num_seqs;
  info.max_num_batched_tokens = config.max_num_batched_tokens;
  info.num_threads = threads;
  info.eos_token_ids = parts.model.eos_token_ids;
  info.prefix_caching = config.enable_prefix_caching;
  info.has_chat_template = parts.chat_template.has_value();
  return info;
}

}  // namespace

EngineParts build_engine_parts(const EngineConfig& config, const util::Logger& log) {
  check_config(config);
  const fs::path dir(config.model_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorCode::kNotFound,
                fmt::format("{}: {}", dir.string(),
                            fs::exists(dir, ec) ? "not a directory (expected a model directory)"
                                                : "model directory not found"));
  EngineParts parts;
  parts.model = model::load_model_config(dir / "config.json");
  merge_generation_config(dir, parts.model.vocab_size, parts.model.eos_token_ids);
  const std::int32_t max_len =
      config.max_model_len > 0 ? config.max_model_len : parts.model.max_position_embeddings;
  if (max_len > parts.model.max_position_embeddings)
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format(
            "EngineConfig: max_model_len {} exceeds the model's max_position_embeddings {} ({})",
            max_len, parts.model.max_position_embeddings, (dir / "config.json").string()));
  const int threads = config.num_threads > 0 ? config.num_threads : util::usable_cpus();

  // A model directory may come without a tokenizer (token-id prompts only); a tokenizer that
  // is there but broken is an error naming it.
  if (fs::exists(dir / "tokenizer.json")) parts.tokenizer = Tokenizer::from_file(dir);
  std::string chat_template_error;
  if (parts.tokenizer) parts.chat_template = load_chat_template(dir, log, chat_template_error);

  std::int64_t block_bytes = 0;
  parts.backend = make_cuda(config, dir, parts.model, max_len, log, block_bytes);
  if (!parts.backend) parts.backend = make_cpu(config, dir, parts.model, threads, log, block_bytes);
  const std::int64_t host_blocks = make_host_tier(config, *parts.backend, block_bytes);
  parts.disk = make_disk_tier(config, dir, *parts.backend, block_bytes, host_blocks, log);
  parts.info = describe(config, parts, max_len, threads, block_bytes, host_blocks);
  parts.info.chat_template_error = chat_template_error;
  log.info(
      "{} on {}{}: {} KV blocks of {} tokens ({:.1f} MiB), host tier {} blocks ({:.1f} MiB), "
      "max_model_len {}, prefix caching {}",
      parts.info.architecture, parts.info.backend,
      parts.info.cpu_isa.empty() ? "" : " (" + parts.info.cpu_isa + " kernels)",
      parts.info.num_kv_blocks, config.block_size, parts.info.kv_cache_bytes / 1048576.0,
      host_blocks, parts.info.host_kv_cache_bytes / 1048576.0, max_len,
      config.enable_prefix_caching ? "on" : "off");
  return parts;
}

}  // namespace cachet::engine

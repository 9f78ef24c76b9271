// Engine: builds the model and its KV cache, then runs batches of requests to completion.
#include "cachet/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "backend/cpu/cpu_backend.h"
#include "backend/device_probe.h"
#if defined(CACHET_WITH_CUDA)
#include "backend/cuda/cuda_backend.h"
#endif
#include "engine/engine_core.h"
#include "model/model_config.h"
#include "model/weights.h"
#include "util/json_depth.h"
#include "util/log.h"

namespace cachet {
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
  if (!(c.gpu_memory_utilization > 0 && c.gpu_memory_utilization <= 1))
    bad(fmt::format("gpu_memory_utilization must be in (0, 1], got {}", c.gpu_memory_utilization));
  if (c.max_model_len < 0) bad(fmt::format("max_model_len must be >= 0, got {}", c.max_model_len));
  if (c.max_num_seqs < 1) bad(fmt::format("max_num_seqs must be >= 1, got {}", c.max_num_seqs));
  if (c.max_num_batched_tokens < 1)
    bad(fmt::format("max_num_batched_tokens must be >= 1, got {}", c.max_num_batched_tokens));
  // Far more threads than any machine has cores would only exhaust the process's threads.
  if (c.num_threads < 0 || c.num_threads > kMaxThreads)
    bad(fmt::format("num_threads must be in [0, {}] (0: one per core), got {}", kMaxThreads,
                    c.num_threads));
  if (!util::set_log_level(c.log_level)) bad(fmt::format("unknown log_level '{}'", c.log_level));
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

}  // namespace

struct Engine::Impl {
  EngineInfo info;
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<engine::EngineCore> core;  // touched by the loop thread only

  // Shared with callers, under `mutex`.
  mutable std::mutex mutex;
  std::condition_variable wake;
  struct Submission {
    RequestId id;
    Request request;
    RequestCallback callback;
    engine::Clock::time_point submitted;
    std::string problem;  // why it cannot run, found in submit() (tokenizing)
  };
  std::vector<Submission> inbox;
  std::vector<RequestId> aborts;
  std::unordered_set<RequestId> live;  // submitted, final update not yet delivered
  RequestId next_id = 1;
  EngineStats stats;
  bool stop = false;
  std::thread loop_thread;

  explicit Impl(const EngineConfig& c);
  ~Impl();
  void loop();
  void deliver(std::vector<engine::Delivery> deliveries);
};

Engine::Impl::Impl(const EngineConfig& config) {
  check_config(config);
  const fs::path dir(config.model_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorCode::kNotFound,
                fmt::format("{}: {}", dir.string(),
                            fs::exists(dir, ec) ? "not a directory (expected a model directory)"
                                                : "model directory not found"));
  model::ModelConfig model = model::load_model_config(dir / "config.json");
  merge_generation_config(dir, model.vocab_size, model.eos_token_ids);

  const backend::CudaProbe probe = backend::probe_cuda();
  if (config.device == Device::kCuda && !probe.problem.empty())
    throw Error(ErrorCode::kUnavailable,
                fmt::format("Device::kCuda requested but the CUDA backend cannot be used: {}",
                            probe.problem));
  const bool use_cuda = config.device != Device::kCpu && probe.problem.empty();
  if (config.device == Device::kAuto && !use_cuda)
    util::logger().info("device auto: using the CPU backend ({})", probe.problem);

  const std::int32_t max_len =
      config.max_model_len > 0 ? config.max_model_len : model.max_position_embeddings;
  if (max_len > model.max_position_embeddings)
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format(
            "EngineConfig: max_model_len {} exceeds the model's max_position_embeddings {} ({})",
            max_len, model.max_position_embeddings, (dir / "config.json").string()));
  const int threads = config.num_threads > 0
                          ? config.num_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));

  // A model directory may come without a tokenizer (token-id prompts only); a tokenizer that
  // is there but broken is an error naming it.
  if (fs::exists(dir / "tokenizer.json")) tokenizer = Tokenizer::from_file(dir);

  std::unique_ptr<backend::Backend> backend;
  std::int64_t block_bytes = 0;
#if defined(CACHET_WITH_CUDA)
  if (use_cuda) {
    backend::CudaBackendOptions o;
    o.fp16 = config.dtype == ComputeDType::kFloat16;
    o.block_size = config.block_size;
    o.num_kv_blocks = config.num_kv_blocks;
    o.kv_cache_bytes = config.kv_cache_bytes;
    o.gpu_memory_utilization = config.gpu_memory_utilization;
    o.max_model_len = max_len;
    o.max_num_seqs = config.max_num_seqs;
    o.max_num_batched_tokens = config.max_num_batched_tokens;
    o.enable_cuda_graphs = config.enable_cuda_graphs;
    o.gemm_autotune = config.cuda_gemm_autotune;
    try {
      backend = backend::make_cuda_backend(model, model::load_weights(dir, model), o);
      block_bytes = backend::cuda_kv_block_bytes(model, config.block_size);
    } catch (const Error& e) {
      // kAuto runs what the GPU kernels do not cover (a head_dim, a block size) on the CPU.
      if (config.device != Device::kAuto || e.code() != ErrorCode::kUnsupported) throw;
      util::logger().warn("device auto: using the CPU backend ({})", e.what());
    }
  }
#endif
  if (!backend) {
    // The weights first: they are checked against config.json, and so bound every size the
    // KV cache is computed from (a config.json claiming huge head counts fails as the
    // mismatch it is, not as an absurd KV block size that may overflow).
    model::ModelWeights weights = model::load_weights(dir, model);
    block_bytes = backend::cpu_kv_block_bytes(model, config.block_size);
    const std::int64_t budget =
        config.kv_cache_bytes > 0 ? config.kv_cache_bytes : std::int64_t{512} << 20;
    std::int64_t num_blocks =
        config.num_kv_blocks > 0 ? config.num_kv_blocks : budget / block_bytes;
    if (num_blocks < 1)
      throw Error(ErrorCode::kOutOfMemory,
                  fmt::format("EngineConfig: kv_cache_bytes {} holds no KV block (one block of {} "
                              "tokens takes {} bytes)",
                              budget, config.block_size, block_bytes));
    num_blocks = std::min<std::int64_t>(
        num_blocks, std::numeric_limits<std::int32_t>::max() / config.block_size);
    backend::KvCacheSpec kv{model.num_layers, model.num_kv_heads, model.head_dim, config.block_size,
                            num_blocks};
    backend = backend::make_cpu_backend(model, std::move(weights), kv, threads);
  }
  const std::int64_t num_blocks = backend->kv_spec().num_blocks;

  info.architecture = std::string(model::arch_name(model.arch));
  info.backend = std::string(backend->name());
  info.vocab_size = model.vocab_size;
  info.num_layers = model.num_layers;
  info.block_size = config.block_size;
  info.num_kv_blocks = num_blocks;
  info.kv_cache_bytes = num_blocks * block_bytes;
  info.max_model_len = max_len;
  info.max_num_seqs = config.max_num_seqs;
  info.max_num_batched_tokens = config.max_num_batched_tokens;
  info.num_threads = threads;
  info.eos_token_ids = model.eos_token_ids;
  info.prefix_caching = config.enable_prefix_caching;
  util::logger().info(
      "{} on {}: {} KV blocks of {} tokens ({:.1f} MiB), max_model_len {}, prefix caching {}",
      info.architecture, info.backend, num_blocks, config.block_size,
      info.kv_cache_bytes / 1048576.0, max_len, config.enable_prefix_caching ? "on" : "off");
  core = std::make_unique<engine::EngineCore>(config, info, std::move(model), std::move(backend),
                                              tokenizer);
  stats = core->stats();
  loop_thread = std::thread([this] { loop(); });
}

Engine::Impl::~Impl() {
  {
    std::lock_guard lock(mutex);
    stop = true;
  }
  wake.notify_all();
  if (loop_thread.joinable()) loop_thread.join();
}

void Engine::Impl::deliver(std::vector<engine::Delivery> deliveries) {
  {
    // A request is over for abort() as soon as the core has finished it, before any of this
    // batch's callbacks run (one of them may be waiting to abort it).
    std::lock_guard lock(mutex);
    for (const auto& d : deliveries)
      if (d.update.finished) live.erase(d.update.id);
  }
  for (auto& d : deliveries) {
    if (*d.callback) {
      try {
        (*d.callback)(d.update);
      } catch (const std::exception& e) {
        util::logger().error("request {}: callback threw: {}", d.update.id, e.what());
      } catch (...) {
        util::logger().error("request {}: callback threw", d.update.id);
      }
    }
  }
}

void Engine::Impl::loop() {
  for (;;) {
    std::vector<Submission> new_requests;
    std::vector<RequestId> to_abort;
    bool stopping;
    {
      std::unique_lock lock(mutex);
      wake.wait(lock,
                [&] { return stop || !inbox.empty() || !aborts.empty() || core->has_work(); });
      new_requests.swap(inbox);
      to_abort.swap(aborts);
      stopping = stop;
    }
    for (auto& s : new_requests)
      core->add(s.id, std::move(s.request), std::move(s.callback), s.submitted,
                std::move(s.problem));
    for (RequestId id : to_abort) core->abort(id);
    if (stopping) {
      // Whatever is still live ends as aborted: every callback fires exactly once.
      std::vector<RequestId> remaining;
      {
        std::lock_guard lock(mutex);
        remaining.assign(live.begin(), live.end());
      }
      for (RequestId id : remaining) core->abort(id);
      deliver(core->take_deliveries());
      return;
    }
    if (core->has_work()) core->step();
    EngineStats snapshot = core->stats();
    {
      std::lock_guard lock(mutex);
      stats = snapshot;
    }
    deliver(core->take_deliveries());
  }
}

Engine::Engine(const EngineConfig& config) : impl_(std::make_unique<Impl>(config)) {}
Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;

// A moved-from Engine has no Impl: using it is an error, not a null dereference.
Engine::Impl& Engine::checked_impl(const char* method) const {
  if (!impl_)
    throw Error(ErrorCode::kUnavailable,
                fmt::format("Engine::{}: this Engine was moved from and has no model", method));
  return *impl_;
}

RequestId Engine::submit(Request request, RequestCallback callback) {
  checked_impl("submit");
  const auto now = engine::Clock::now();
  // Text is tokenized here, on the caller's thread: a long prompt then holds up its own
  // caller, not the engine's thread and every request it is running. A problem is reported
  // through the callback like every other bad request.
  std::string problem =
      engine::tokenize_prompt(request, impl_->tokenizer ? &*impl_->tokenizer : nullptr);
  RequestId id;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stop)
      throw Error(ErrorCode::kUnavailable, "Engine::submit: the engine is shutting down");
    id = impl_->next_id++;
    impl_->live.insert(id);
    impl_->inbox.push_back({id, std::move(request), std::move(callback), now, std::move(problem)});
  }
  impl_->wake.notify_all();
  return id;
}

bool Engine::abort(RequestId id) {
  checked_impl("abort");
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->live.contains(id)) return false;
    impl_->aborts.push_back(id);
  }
  impl_->wake.notify_all();
  return true;
}

std::vector<RequestOutput> Engine::generate(const std::vector<Request>& requests) {
  checked_impl("generate");
  struct Collector {
    std::mutex mutex;
    std::condition_variable done;
    std::vector<RequestOutput> outputs;
    std::size_t remaining = 0;
  };
  auto collector = std::make_shared<Collector>();
  collector->outputs.resize(requests.size());
  collector->remaining = requests.size();
  for (std::size_t i = 0; i < requests.size(); ++i) {
    submit(requests[i], [collector, i](const RequestUpdate& u) {
      if (!u.finished) return;
      std::lock_guard lock(collector->mutex);
      collector->outputs[i] = *u.output;
      if (--collector->remaining == 0) collector->done.notify_all();
    });
  }
  std::unique_lock lock(collector->mutex);
  collector->done.wait(lock, [&] { return collector->remaining == 0; });
  return std::move(collector->outputs);
}

std::vector<RequestOutput> Engine::generate(const std::vector<std::vector<TokenId>>& prompts,
                                            const SamplingParams& params) {
  std::vector<Request> requests;
  requests.reserve(prompts.size());
  for (const auto& p : prompts) requests.push_back({p, params, {}, {}});
  return generate(requests);
}

const EngineInfo& Engine::info() const { return checked_impl("info").info; }

const Tokenizer* Engine::tokenizer() const {
  const Impl& impl = checked_impl("tokenizer");
  return impl.tokenizer ? &*impl.tokenizer : nullptr;
}

EngineStats Engine::stats() const {
  const Impl& impl = checked_impl("stats");
  std::lock_guard lock(impl.mutex);
  return impl.stats;
}

}  // namespace cachet

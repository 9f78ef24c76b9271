// Engine: builds the model and its KV cache, then runs batches of requests to completion.
#include "cachet/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "backend/device_probe.h"
#include "engine/batch_builder.h"
#include "engine/scheduler.h"
#include "kv/block_pool.h"
#include "model/model_config.h"
#include "model/weights.h"
#include "sampling/sampler.h"
#include "util/log.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;

void check_config(const EngineConfig& c) {
  auto bad = [](const std::string& msg) { throw Error(ErrorCode::kInvalidArgument, "EngineConfig: " + msg); };
  if (c.model_dir.empty()) bad("model_dir is empty");
  if (c.block_size < 1 || c.block_size > 256 || !std::has_single_bit(static_cast<unsigned>(c.block_size)))
    bad(fmt::format("block_size must be a power of two in [1, 256], got {}", c.block_size));
  if (c.num_kv_blocks < 0) bad(fmt::format("num_kv_blocks must be >= 0, got {}", c.num_kv_blocks));
  if (c.num_kv_blocks == 0 && c.kv_cache_bytes <= 0)
    bad(fmt::format("kv_cache_bytes must be > 0 when num_kv_blocks is 0, got {}", c.kv_cache_bytes));
  if (c.max_model_len < 0) bad(fmt::format("max_model_len must be >= 0, got {}", c.max_model_len));
  if (c.max_num_seqs < 1) bad(fmt::format("max_num_seqs must be >= 1, got {}", c.max_num_seqs));
  if (c.max_num_batched_tokens < 1)
    bad(fmt::format("max_num_batched_tokens must be >= 1, got {}", c.max_num_batched_tokens));
  if (c.num_threads < 0) bad(fmt::format("num_threads must be >= 0, got {}", c.num_threads));
  if (!util::set_log_level(c.log_level)) bad(fmt::format("unknown log_level '{}'", c.log_level));
}

// EOS ids of generation_config.json (which chat models use to add end-of-turn tokens),
// merged into those of config.json.
void merge_generation_config(const fs::path& dir, std::vector<TokenId>& eos) {
  fs::path path = dir / "generation_config.json";
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    util::logger().warn("{}: not a JSON object, ignored", path.string());
    return;
  }
  auto add = [&](const nlohmann::json& v) {
    if (v.is_number_integer() && std::find(eos.begin(), eos.end(), v.get<TokenId>()) == eos.end())
      eos.push_back(v.get<TokenId>());
  };
  if (auto it = j.find("eos_token_id"); it != j.end()) {
    if (it->is_array())
      for (const auto& v : *it) add(v);
    else
      add(*it);
  }
}

std::uint64_t fresh_seed() {
  static std::mutex mutex;
  static std::mt19937_64 gen{std::random_device{}()};
  std::lock_guard lock(mutex);
  return gen();
}

double ms_between(engine::Clock::time_point a, engine::Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

struct Engine::Impl {
  EngineConfig config;
  EngineInfo info;
  model::ModelConfig model;
  std::unique_ptr<backend::Backend> backend;
  std::unique_ptr<kv::BlockPool> pool;
  std::mutex mutex;  // generate() calls are served one after another
  std::uint64_t next_arrival = 0;

  explicit Impl(const EngineConfig& c);
  std::vector<RequestOutput> generate(const std::vector<Request>& requests);
  std::string check_request(const Request& r) const;
  void on_token(engine::Sequence& seq, TokenId token, std::span<const float> logits);
  void finish(engine::Scheduler& scheduler, engine::Sequence& seq, FinishReason reason, std::string error = {});
};

Engine::Impl::Impl(const EngineConfig& c) : config(c) {
  check_config(config);
  const fs::path dir(config.model_dir);
  if (!fs::is_directory(dir))
    throw Error(ErrorCode::kNotFound, fmt::format("{}: model directory not found", dir.string()));
  model = model::load_model_config(dir / "config.json");
  merge_generation_config(dir, model.eos_token_ids);

  const backend::CudaProbe probe = backend::probe_cuda();
  if (config.device == Device::kCuda) {
    throw Error(ErrorCode::kUnavailable,
                fmt::format("Device::kCuda requested but the CUDA backend cannot be used: {}",
                            probe.problem.empty() ? "the CUDA backend is not implemented in this version" : probe.problem));
  }
  if (config.device == Device::kAuto) {
    util::logger().info("device auto: using the CPU backend ({})",
                        probe.problem.empty() ? "the CUDA backend is not implemented in this version" : probe.problem);
  }

  const std::int32_t max_len = config.max_model_len > 0 ? config.max_model_len : model.max_position_embeddings;
  if (max_len > model.max_position_embeddings)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("EngineConfig: max_model_len {} exceeds the model's max_position_embeddings {} ({})",
                            max_len, model.max_position_embeddings, (dir / "config.json").string()));
  const int threads = config.num_threads > 0 ? config.num_threads
                                             : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));

  const std::int64_t block_bytes = backend::cpu_kv_block_bytes(model, config.block_size);
  std::int64_t num_blocks = config.num_kv_blocks > 0 ? config.num_kv_blocks : config.kv_cache_bytes / block_bytes;
  if (num_blocks < 1)
    throw Error(ErrorCode::kOutOfMemory,
                fmt::format("EngineConfig: kv_cache_bytes {} holds no KV block (one block of {} tokens takes {} bytes)",
                            config.kv_cache_bytes, config.block_size, block_bytes));
  if (num_blocks > std::numeric_limits<std::int32_t>::max() / config.block_size)
    num_blocks = std::numeric_limits<std::int32_t>::max() / config.block_size;

  backend::KvCacheSpec kv{model.num_layers, model.num_kv_heads, model.head_dim, config.block_size, num_blocks};
  backend = backend::make_cpu_backend(model, model::load_weights(dir, model), kv, threads);
  pool = std::make_unique<kv::BlockPool>(num_blocks);

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
  util::logger().info("{} on {}: {} KV blocks of {} tokens ({:.1f} MiB), max_model_len {}", info.architecture,
                      info.backend, num_blocks, config.block_size, info.kv_cache_bytes / 1048576.0, max_len);
}

std::string Engine::Impl::check_request(const Request& r) const {
  const auto& prompt = r.prompt_token_ids;
  if (prompt.empty()) return "prompt is empty";
  for (std::size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= model.vocab_size)
      return fmt::format("prompt token id {} at position {} is outside the vocabulary [0, {})", prompt[i], i,
                         model.vocab_size);
  }
  if (static_cast<std::int64_t>(prompt.size()) >= info.max_model_len)
    return fmt::format("prompt has {} tokens; max_model_len is {}, which leaves no room to generate", prompt.size(),
                       info.max_model_len);
  if (std::string msg = sampling::validate(r.params, model.vocab_size); !msg.empty()) return msg;
  const std::int64_t blocks = (static_cast<std::int64_t>(prompt.size()) + 1 + info.block_size - 1) / info.block_size;
  if (blocks > info.num_kv_blocks)
    return fmt::format("prompt of {} tokens needs {} KV blocks; the cache has {} in all", prompt.size(), blocks,
                       info.num_kv_blocks);
  return {};
}

void Engine::Impl::finish(engine::Scheduler& scheduler, engine::Sequence& seq, FinishReason reason,
                          std::string error) {
  scheduler.finish(&seq);
  seq.output.finish_reason = reason;
  seq.output.error = std::move(error);
  seq.output.token_ids.assign(seq.tokens.begin() + seq.num_prompt_tokens, seq.tokens.end());
  const auto now = engine::Clock::now();
  if (seq.first_token_at) {
    seq.output.ttft_ms = ms_between(seq.submitted, *seq.first_token_at);
    seq.output.decode_ms = ms_between(*seq.first_token_at, now);
  }
}

void Engine::Impl::on_token(engine::Sequence& seq, TokenId token, std::span<const float> logits) {
  if (seq.params.logprobs) seq.output.logprobs.push_back(sampling::top_logprobs(logits, *seq.params.logprobs, token));
  seq.tokens.push_back(token);
  if (!seq.first_token_at) seq.first_token_at = engine::Clock::now();
}

std::vector<RequestOutput> Engine::Impl::generate(const std::vector<Request>& requests) {
  std::lock_guard lock(mutex);
  const auto submitted = engine::Clock::now();
  std::vector<engine::Sequence> seqs(requests.size());
  engine::Scheduler scheduler({config.block_size, config.max_num_seqs, config.max_num_batched_tokens}, *pool);

  for (std::size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    engine::Sequence& seq = seqs[i];
    seq.index = i;
    seq.arrival = next_arrival++;
    seq.params = r.params;
    seq.submitted = submitted;
    seq.tokens = r.prompt_token_ids;
    seq.num_prompt_tokens = static_cast<std::int32_t>(r.prompt_token_ids.size());
    seq.output.prompt_token_ids = r.prompt_token_ids;
    if (std::string problem = check_request(r); !problem.empty()) {
      seq.status = engine::SeqStatus::kFinished;
      seq.output.finish_reason = FinishReason::kError;
      seq.output.error = fmt::format("request {}: {}", i, problem);
      util::logger().warn("{}", seq.output.error);
      continue;
    }
    seq.seed = r.params.seed ? *r.params.seed : fresh_seed();
    if (r.params.prompt_logprobs) seq.output.prompt_logprobs.resize(seq.tokens.size());
    scheduler.add(&seq);
  }

  std::vector<float> logits;
  const auto vocab = static_cast<std::size_t>(model.vocab_size);
  while (scheduler.has_work()) {
    engine::Step step = scheduler.schedule();
    for (engine::Sequence* seq : step.unservable) {
      finish(scheduler, *seq, FinishReason::kError,
             fmt::format("request {}: needs more KV blocks than the cache has ({} blocks of {} tokens) at {} tokens",
                         seq->index, info.num_kv_blocks, info.block_size, seq->size() + 1));
    }
    if (step.empty()) {
      if (!step.unservable.empty()) continue;
      // Nothing can run although requests remain: a scheduler bug, reported per request.
      for (auto& seq : seqs)
        if (seq.status != engine::SeqStatus::kFinished)
          finish(scheduler, seq, FinishReason::kError, fmt::format("request {}: internal error: scheduler stalled", seq.index));
      break;
    }
    engine::BuiltBatch built = engine::build_batch(step, config.block_size);
    try {
      backend->forward(built.batch, logits);
    } catch (const std::exception& e) {
      for (const auto& s : step.seqs)
        finish(scheduler, *s.seq, FinishReason::kError, fmt::format("request {}: forward pass failed: {}", s.seq->index, e.what()));
      continue;
    }
    for (const auto& s : step.seqs) s.seq->num_computed += s.num_tokens;
    for (std::size_t row = 0; row < built.uses.size(); ++row) {
      const engine::LogitsUse& use = built.uses[row];
      engine::Sequence& seq = *use.seq;
      std::span<const float> row_logits(logits.data() + row * vocab, vocab);
      if (use.kind == engine::LogitsUse::Kind::kPromptLogprob) {
        const TokenId next = seq.tokens[static_cast<std::size_t>(use.position + 1)];
        seq.output.prompt_logprobs[static_cast<std::size_t>(use.position + 1)] =
            sampling::top_logprobs(row_logits, *seq.params.prompt_logprobs, next);
        continue;
      }
      const TokenId token = sampling::sample(row_logits, seq.params, seq.seed,
                                             static_cast<std::uint64_t>(seq.num_generated()));
      on_token(seq, token, row_logits);
      const bool eos = !seq.params.ignore_eos &&
                       std::find(model.eos_token_ids.begin(), model.eos_token_ids.end(), token) != model.eos_token_ids.end();
      const bool stop = std::find(seq.params.stop_token_ids.begin(), seq.params.stop_token_ids.end(), token) !=
                        seq.params.stop_token_ids.end();
      if (eos || stop)
        finish(scheduler, seq, FinishReason::kStop);
      else if (seq.num_generated() >= seq.params.max_tokens || seq.size() >= info.max_model_len)
        finish(scheduler, seq, FinishReason::kLength);
    }
#ifdef CACHET_CHECKS
    pool->check_integrity();
#endif
  }

  std::vector<RequestOutput> outputs;
  outputs.reserve(seqs.size());
  for (auto& seq : seqs) outputs.push_back(std::move(seq.output));
  return outputs;
}

Engine::Engine(const EngineConfig& config) : impl_(std::make_unique<Impl>(config)) {}
Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;

std::vector<RequestOutput> Engine::generate(const std::vector<Request>& requests) {
  return impl_->generate(requests);
}

std::vector<RequestOutput> Engine::generate(const std::vector<std::vector<TokenId>>& prompts,
                                            const SamplingParams& params) {
  std::vector<Request> requests;
  requests.reserve(prompts.size());
  for (const auto& p : prompts) requests.push_back({p, params});
  return impl_->generate(requests);
}

const EngineInfo& Engine::info() const { return impl_->info; }

}  // namespace cachet

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cachet/engine.h"
#include "tools/commands.h"
#include "tools/request_file.h"

namespace cachet::tools {
namespace {

struct GenerateArgs {
  std::string model;
  std::vector<std::string> prompt_ids;
  std::vector<std::string> prompts;
  std::string prompts_file;
  SamplingParams params;
  std::int32_t logprobs = -1;
  std::int32_t prompt_logprobs = -1;
  std::uint64_t seed = 0;
  bool json = false;
  std::string device = "auto";
  EngineConfig engine;
  std::int64_t kv_cache_bytes = 0;
  std::int64_t kv_cache_mib = 0;
  std::string dtype = "auto";
  bool no_cuda_graphs = false;
  bool no_prefix_cache = false;
  bool print_stats = false;
  std::string schedule = "fcfs";
};

nlohmann::json logprob_list(const std::vector<TokenLogprob>& entries) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : entries) list.push_back({{"id", e.id}, {"logprob", e.logprob}});
  return list;
}

nlohmann::json to_json(std::size_t index, const RequestOutput& out, const SamplingParams& params) {
  nlohmann::json j;
  j["index"] = index;
  j["prompt_token_ids"] = out.prompt_token_ids;
  j["token_ids"] = out.token_ids;
  j["text"] = out.text;
  j["finish_reason"] = std::string(to_string(out.finish_reason));
  if (!out.error.empty()) j["error"] = out.error;
  j["num_cached_tokens"] = out.num_cached_tokens;
  if (params.logprobs) {
    j["logprobs"] = nlohmann::json::array();
    for (const auto& entry : out.logprobs) j["logprobs"].push_back(logprob_list(entry));
  } else {
    j["logprobs"] = nullptr;
  }
  if (params.prompt_logprobs && out.finish_reason != FinishReason::kError) {
    j["prompt_logprobs"] = nlohmann::json::array();
    for (const auto& entry : out.prompt_logprobs)
      j["prompt_logprobs"].push_back(entry ? logprob_list(*entry) : nlohmann::json(nullptr));
  } else {
    j["prompt_logprobs"] = nullptr;
  }
  j["ttft_ms"] = out.ttft_ms;
  j["decode_ms"] = out.decode_ms;
  return j;
}

nlohmann::json stats_json(const EngineStats& s) {
  return {{"prefix_cache_query_tokens", s.prefix_cache_query_tokens},
          {"prefix_cache_hit_tokens", s.prefix_cache_hit_tokens},
          {"prefix_cache_query_blocks", s.prefix_cache_query_blocks},
          {"prefix_cache_hit_blocks", s.prefix_cache_hit_blocks},
          {"prefix_cache_hit_rate", s.prefix_cache_hit_rate},
          {"blocks_free", s.blocks_free},
          {"blocks_cached", s.blocks_cached},
          {"blocks_in_use", s.blocks_in_use},
          {"peak_blocks_in_use", s.peak_blocks_in_use},
          {"evictions", s.evictions},
          {"preemptions", s.preemptions},
          {"num_running", s.num_running},
          {"num_waiting", s.num_waiting},
          {"num_steps", s.num_steps},
          {"num_finished", s.num_finished}};
}

void print_human(std::size_t index, const RequestOutput& out) {
  if (out.finish_reason == FinishReason::kError) {
    fmt::print("[{}] error: {}\n", index, out.error);
    return;
  }
  const double decode_rate = out.token_ids.size() > 1 && out.decode_ms > 0
                                 ? (out.token_ids.size() - 1) / (out.decode_ms / 1000.0)
                                 : 0.0;
  fmt::print("[{}] prompt ({} tokens, {} from the prefix cache): {}\n", index,
             out.prompt_token_ids.size(), out.num_cached_tokens,
             fmt::join(out.prompt_token_ids, " "));
  fmt::print("    output ({} tokens, {}): {}\n", out.token_ids.size(), to_string(out.finish_reason),
             fmt::join(out.token_ids, " "));
  if (!out.text.empty()) fmt::print("    text: {}\n", nlohmann::json(out.text).dump());
  fmt::print("    time to first token {:.1f} ms, decode {:.1f} tokens/s\n", out.ttft_ms,
             decode_rate);
}

}  // namespace

Runner add_generate_command(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd =
      app.add_subcommand("generate", "Generate from one or more prompts (batched together)");
  cmd->add_option("--model", a->engine.model_dir, "Hugging Face model directory")->required();
  auto* ids = cmd->add_option("--prompt-ids", a->prompt_ids,
                              "Prompt as comma-separated token ids (repeatable)");
  auto* text = cmd->add_option("--prompt", a->prompts,
                               "Prompt text (repeatable; needs the model's tokenizer)");
  auto* file = cmd->add_option(
      "--prompts-file", a->prompts_file,
      "JSON Lines, one request per line: {\"prompt_ids\": [...], ...sampling fields}");
  ids->excludes(file);
  text->excludes(file);
  cmd->add_option("--max-tokens", a->params.max_tokens, "Maximum generated tokens per request")
      ->capture_default_str();
  cmd->add_option("--temperature", a->params.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", a->params.top_k, "0 = off")->capture_default_str();
  cmd->add_option("--top-p", a->params.top_p, "1 = off")->capture_default_str();
  cmd->add_option("--min-p", a->params.min_p, "0 = off")->capture_default_str();
  auto* seed = cmd->add_option("--seed", a->seed, "Seed (request i uses seed + i); default random");
  cmd->add_option("--logprobs", a->logprobs, "Top-k logprobs of every generated token");
  cmd->add_option("--prompt-logprobs", a->prompt_logprobs,
                  "Top-k logprobs of every prompt position");
  cmd->add_option("--stop-token-ids", a->params.stop_token_ids, "Extra tokens that end a request")
      ->delimiter(',');
  cmd->add_option("--stop", a->params.stop,
                  "A string that ends a request, cut from its text (repeatable)");
  cmd->add_flag("--ignore-eos", a->params.ignore_eos, "Do not stop at the model's EOS tokens");
  cmd->add_flag("--json", a->json, "Print JSON Lines, one object per request in input order");
  cmd->add_option("--device", a->device, "auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--threads", a->engine.num_threads, "CPU threads (0 = all cores)")
      ->capture_default_str();
  cmd->add_option("--block-size", a->engine.block_size, "Tokens per KV block")
      ->capture_default_str();
  cmd->add_option("--kv-cache-mib", a->kv_cache_mib,
                  "KV cache budget in MiB (0 = 512 on the CPU; on a GPU what "
                  "--gpu-memory-utilization leaves)")
      ->capture_default_str();
  cmd->add_option("--gpu-memory-utilization", a->engine.gpu_memory_utilization,
                  "Fraction of GPU memory the engine may use")
      ->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "GPU element type: auto (bf16) | bf16 | fp16")
      ->check(CLI::IsMember({"auto", "bf16", "fp16"}))
      ->capture_default_str();
  cmd->add_flag("--no-cuda-graphs", a->no_cuda_graphs, "Run GPU decode steps without CUDA graphs");
  cmd->add_option("--kv-cache-bytes", a->kv_cache_bytes,
                  "KV cache budget in bytes (overrides --kv-cache-mib)");
  cmd->add_option("--num-kv-blocks", a->engine.num_kv_blocks,
                  "Number of KV blocks (overrides the byte budget)");
  cmd->add_flag("--no-prefix-cache", a->no_prefix_cache, "Disable automatic prefix caching");
  cmd->add_option("--schedule", a->schedule, "fcfs | cache-aware")
      ->check(CLI::IsMember({"fcfs", "cache-aware"}))
      ->capture_default_str();
  cmd->add_flag("--stats", a->print_stats,
                "Print the engine's statistics (JSON) on stderr at the end");
  cmd->add_option("--max-num-seqs", a->engine.max_num_seqs, "Sequences per step")
      ->capture_default_str();
  cmd->add_option("--max-num-batched-tokens", a->engine.max_num_batched_tokens, "Tokens per step")
      ->capture_default_str();
  cmd->add_option("--max-model-len", a->engine.max_model_len, "0 = the model's")
      ->capture_default_str();
  cmd->add_option("--log-level", a->engine.log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str();

  return [a, seed] {
    if (a->logprobs >= 0) a->params.logprobs = a->logprobs;
    if (a->prompt_logprobs >= 0) a->params.prompt_logprobs = a->prompt_logprobs;
    a->engine.device = a->device == "cpu"    ? Device::kCpu
                       : a->device == "cuda" ? Device::kCuda
                                             : Device::kAuto;
    a->engine.kv_cache_bytes = a->kv_cache_bytes > 0 ? a->kv_cache_bytes : a->kv_cache_mib << 20;
    a->engine.dtype = a->dtype == "fp16"   ? ComputeDType::kFloat16
                      : a->dtype == "bf16" ? ComputeDType::kBFloat16
                                           : ComputeDType::kAuto;
    a->engine.enable_cuda_graphs = !a->no_cuda_graphs;
    a->engine.enable_prefix_caching = !a->no_prefix_cache;
    a->engine.schedule_policy =
        a->schedule == "cache-aware" ? SchedulePolicy::kCacheAware : SchedulePolicy::kFcfs;

    std::vector<Request> requests;
    if (!a->prompts_file.empty()) {
      requests = read_requests_file(a->prompts_file, a->params);
    } else {
      for (const auto& list : a->prompt_ids)
        requests.push_back({parse_id_list(list), a->params, {}, {}});
      for (const auto& text : a->prompts) requests.push_back({{}, a->params, {}, text});
    }
    if (requests.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "no prompt given: use --prompt-ids or --prompts-file");
    if (seed->count() > 0)
      for (std::size_t i = 0; i < requests.size(); ++i)
        if (!requests[i].params.seed) requests[i].params.seed = a->seed + i;

    Engine engine(a->engine);
    const auto start = std::chrono::steady_clock::now();
    std::vector<RequestOutput> outputs = engine.generate(requests);
    const double wall_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    int failed = 0;
    std::size_t generated = 0, prompt_tokens = 0;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      const auto& out = outputs[i];
      if (out.finish_reason == FinishReason::kError) ++failed;
      generated += out.token_ids.size();
      prompt_tokens += out.prompt_token_ids.size();
      if (a->json)
        fmt::print("{}\n", to_json(i, out, requests[i].params).dump());
      else
        print_human(i, out);
    }
    if (!a->json) {
      const auto& info = engine.info();
      fmt::print(
          "{} requests ({} failed) on {} ({} threads): {} prompt + {} generated tokens in {:.2f} "
          "s, {:.1f} generated tokens/s\n",
          outputs.size(), failed, info.backend, info.num_threads, prompt_tokens, generated, wall_s,
          wall_s > 0 ? generated / wall_s : 0.0);
    }
    std::fflush(stdout);
    if (a->print_stats) fmt::print(stderr, "{}\n", stats_json(engine.stats()).dump(2));
    return failed > 0 ? 1 : 0;
  };
}

}  // namespace cachet::tools

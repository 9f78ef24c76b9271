#include <fmt/core.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "cachet/engine.h"
#include "serve/cache_miss_json.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
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
  std::vector<std::string> logit_bias;  // "ID:BIAS" each
  bool json = false;
  bool chat = false;
  EngineFlags engine;
  bool print_stats = false;
};

nlohmann::json logprob_list(const std::vector<TokenLogprob>& entries) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : entries) list.push_back({{"id", e.id}, {"logprob", e.logprob}});
  return list;
}

nlohmann::json to_json(std::size_t index, const RequestOutput& out, const SamplingParams& params) {
  nlohmann::json j;
  j["index"] = index;
  j["sample_index"] = out.sample_index;
  j["prompt_token_ids"] = out.prompt_token_ids;
  j["token_ids"] = out.token_ids;
  j["text"] = out.text;
  j["finish_reason"] = std::string(to_string(out.finish_reason));
  if (!out.error.empty()) j["error"] = out.error;
  j["num_cached_tokens"] = out.num_cached_tokens;
  j["cache_miss"] = serve::cache_miss_json(out.cache_miss);
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
  j["queue_ms"] = out.queue_ms;
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
          {"prefix_cache_partial_hit_tokens", s.prefix_cache_partial_hit_tokens},
          {"prefix_cache_misses", serve::cache_misses_json(s.prefix_cache_misses)},
          {"prefix_cache_host_hit_tokens", s.prefix_cache_host_hit_tokens},
          {"host_blocks_used", s.host_blocks_used},
          {"host_blocks_stored", s.host_blocks_stored},
          {"host_blocks_loaded", s.host_blocks_loaded},
          {"host_evictions", s.host_evictions},
          {"prefix_cache_disk_hit_tokens", s.prefix_cache_disk_hit_tokens},
          {"disk_blocks_written", s.disk_blocks_written},
          {"disk_blocks_read", s.disk_blocks_read},
          {"disk_read_failures", s.disk_read_failures},
          {"disk_write_failures", s.disk_write_failures},
          {"disk_writes_dropped", s.disk_writes_dropped},
          {"disk_evictions", s.disk_evictions},
          {"disk_blocks_used", s.disk_blocks_used},
          {"disk_bytes_used", s.disk_bytes_used},
          {"blocks_free", s.blocks_free},
          {"blocks_cached", s.blocks_cached},
          {"blocks_in_use", s.blocks_in_use},
          {"peak_blocks_in_use", s.peak_blocks_in_use},
          {"blocks_pinned", s.blocks_pinned},
          {"host_blocks_pinned", s.host_blocks_pinned},
          {"evictions", s.evictions},
          {"preemptions", s.preemptions},
          {"num_running", s.num_running},
          {"num_waiting", s.num_waiting},
          {"num_steps", s.num_steps},
          {"num_finished", s.num_finished},
          {"integrity_checks", s.integrity_checks}};
}

// "[3]" for request 3, "[3.1]" for its sample 1 when it has several.
void print_human(std::size_t index, const RequestOutput& out, const SamplingParams& params) {
  const std::string label =
      params.n > 1 ? fmt::format("{}.{}", index, out.sample_index) : fmt::format("{}", index);
  if (out.finish_reason == FinishReason::kError) {
    fmt::print("[{}] error: {}\n", label, out.error);
    return;
  }
  const double decode_rate = out.token_ids.size() > 1 && out.decode_ms > 0
                                 ? (out.token_ids.size() - 1) / (out.decode_ms / 1000.0)
                                 : 0.0;
  fmt::print("[{}] prompt ({} tokens, {} from the prefix cache): {}\n", label,
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
  add_engine_flags(*cmd, a->engine);
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
  cmd->add_option("--n", a->params.n,
                  "Samples per prompt (sample j uses the request's seed + j); they share the "
                  "prompt's KV cache")
      ->capture_default_str();
  auto* seed = cmd->add_option("--seed", a->seed, "Seed (request i uses seed + i); default random");
  cmd->add_option("--logprobs", a->logprobs, "Top-k logprobs of every generated token");
  cmd->add_option("--prompt-logprobs", a->prompt_logprobs,
                  "Top-k logprobs of every prompt position");
  cmd->add_option("--stop-token-ids", a->params.stop_token_ids, "Extra tokens that end a request")
      ->delimiter(',');
  cmd->add_option("--stop", a->params.stop,
                  "A string that ends a request, cut from its text (repeatable)");
  cmd->add_flag("--ignore-eos", a->params.ignore_eos, "Do not stop at the model's EOS tokens");
  cmd->add_option("--min-tokens", a->params.min_tokens,
                  "EOS and stop tokens are masked until this many tokens are generated")
      ->capture_default_str();
  cmd->add_option("--logit-bias", a->logit_bias,
                  "ID:BIAS, a bias in [-100, 100] added to a token's logit (repeatable)");
  cmd->add_option("--repetition-penalty", a->params.repetition_penalty,
                  "Divides (or multiplies, if negative) the logits of tokens already seen; 1 = off")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", a->params.presence_penalty,
                  "Subtracted from the logits of tokens generated so far; 0 = off")
      ->capture_default_str();
  cmd->add_option("--frequency-penalty", a->params.frequency_penalty,
                  "Subtracted once per time a token was generated so far; 0 = off")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON Lines, one object per request in input order");
  cmd->add_flag("--chat", a->chat,
                "Each --prompt is a user message, rendered with the model's chat template");
  cmd->add_flag("--stats", a->print_stats,
                "Print the engine's statistics (JSON) on stderr at the end");
  return [a, seed] {
    a->params.logit_bias = parse_logit_bias(a->logit_bias);
    if (a->logprobs >= 0) a->params.logprobs = a->logprobs;
    if (a->prompt_logprobs >= 0) a->params.prompt_logprobs = a->prompt_logprobs;
    std::vector<Request> requests;
    // Why request i cannot run (a bad line of the prompts file), or empty.
    std::vector<std::string> line_errors;
    // Where request i comes from, for its error on stderr: "FILE:LINE" or "request i".
    std::vector<std::string> origins;
    if (!a->prompts_file.empty()) {
      for (RequestLine& line : read_requests_file(a->prompts_file, a->params)) {
        requests.push_back(std::move(line.request));
        line_errors.push_back(std::move(line.error));
        origins.push_back(std::move(line.where));
      }
    } else {
      for (const auto& list : a->prompt_ids)
        requests.push_back({parse_id_list(list), a->params, {}, {}});
      for (const auto& text : a->prompts) {
        Request r{{}, a->params, {}, text};
        if (a->chat) {
          // --chat: each --prompt is one user message of its own conversation.
          r.chat =
              ChatPrompt{nlohmann::json::array({{{"role", "user"}, {"content", text}}}).dump(), {}};
          r.prompt.clear();
        }
        requests.push_back(std::move(r));
      }
    }
    if (requests.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "no prompt given: use --prompt-ids or --prompts-file");
    if (seed->count() > 0)
      for (std::size_t i = 0; i < requests.size(); ++i)
        if (!requests[i].params.seed) requests[i].params.seed = a->seed + i;

    line_errors.resize(requests.size());
    for (std::size_t i = origins.size(); i < requests.size(); ++i)
      origins.push_back(fmt::format("request {}", i));

    Engine engine(engine_config(a->engine));
    const auto start = std::chrono::steady_clock::now();
    // A bad line fails alone: the other requests run, and it gets an error output in its place.
    std::vector<Request> runnable;
    for (std::size_t i = 0; i < requests.size(); ++i)
      if (line_errors[i].empty()) runnable.push_back(requests[i]);
    std::vector<RequestOutput> ran = engine.generate(runnable);
    // (request index, one of its samples' outputs), in input order.
    std::vector<std::pair<std::size_t, RequestOutput>> outputs;
    for (std::size_t i = 0, next = 0; i < requests.size(); ++i) {
      if (!line_errors[i].empty()) {
        RequestOutput failed;
        failed.finish_reason = FinishReason::kError;
        failed.error = line_errors[i];
        outputs.emplace_back(i, std::move(failed));
        continue;
      }
      // generate() gives one output per sample (one for a request whose n is invalid).
      do {
        outputs.emplace_back(i, std::move(ran[next++]));
      } while (next < ran.size() && ran[next].sample_index > 0);
    }
    const double wall_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    std::set<std::size_t> failed;  // requests with a failed output
    std::size_t generated = 0, prompt_tokens = 0;
    for (const auto& [i, out] : outputs) {
      if (out.finish_reason == FinishReason::kError) failed.insert(i);
      generated += out.token_ids.size();
      if (out.sample_index == 0) prompt_tokens += out.prompt_token_ids.size();
      if (a->json)
        // Replacement characters, not an exception, for invalid UTF-8 that a message may
        // carry (a file name given on the command line).
        fmt::print("{}\n", to_json(i, out, requests[i].params)
                               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      else
        print_human(i, out, requests[i].params);
    }
    if (!a->json) {
      const auto& info = engine.info();
      fmt::print(
          "{} requests ({} failed) on {} ({} threads): {} prompt + {} generated tokens in {:.2f} "
          "s, {:.1f} generated tokens/s\n",
          requests.size(), failed.size(), info.backend, info.num_threads, prompt_tokens, generated,
          wall_s, wall_s > 0 ? generated / wall_s : 0.0);
    }
    std::fflush(stdout);
    // Each failed request once more on stderr, where a script looks for errors.
    for (const auto& [i, out] : outputs)
      if (out.finish_reason == FinishReason::kError)
        fmt::print(stderr, "cachet: error: {}\n",
                   out.error.starts_with(origins[i])
                       ? out.error
                       : fmt::format("{}: {}", origins[i], out.error));
    if (a->print_stats) fmt::print(stderr, "{}\n", stats_json(engine.stats()).dump(2));
    return failed.empty() ? 0 : 1;
  };
}

}  // namespace cachet::tools

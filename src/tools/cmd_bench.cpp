// `cachet bench serve`: the end-to-end serving benchmark (see tools/bench_serve.h and the
// CLI section of docs/api.md).
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cachet/engine.h"
#include "serve/cache_miss_json.h"
#include "tools/bench_serve.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"

namespace cachet::tools {
namespace {

using nlohmann::json;

struct BenchServeArgs {
  EngineFlags engine;
  std::string workload = "shared-prefix";
  bench::WorkloadSpec spec;
  float temperature = 0.0f;
  bool compare_cache = false;
  bool compare_host_tier = false;
  std::string json_path;
};

json workload_json(const bench::WorkloadSpec& s, std::size_t num_requests) {
  json j = {{"name", std::string(bench::to_string(s.kind))},
            {"seed", s.seed},
            {"output_len", s.output_len},
            {"arrivals", s.request_rate > 0 ? "poisson" : "all-at-once"},
            {"request_rate", s.request_rate},
            {"num_requests", num_requests}};
  switch (s.kind) {
    case bench::WorkloadKind::kSharedPrefix:
      j["groups"] = s.groups;
      j["requests_per_group"] = s.requests_per_group;
      j["system_len"] = s.system_len;
      j["question_len"] = s.question_len;
      break;
    case bench::WorkloadKind::kMultiTurn:
      j["conversations"] = s.conversations;
      j["turns"] = s.turns;
      j["user_len"] = s.user_len;
      break;
    case bench::WorkloadKind::kNoSharing:
      j["num_prompts"] = s.num_prompts;
      j["prompt_len"] = s.prompt_len;
      break;
  }
  return j;
}

std::string describe(const bench::WorkloadSpec& s) {
  std::string what;
  switch (s.kind) {
    case bench::WorkloadKind::kSharedPrefix:
      what = fmt::format("{} groups x {} requests, prompt = {} shared + {} own tokens", s.groups,
                         s.requests_per_group, s.system_len, s.question_len);
      break;
    case bench::WorkloadKind::kMultiTurn:
      what = fmt::format("{} conversations x {} turns, {} new user tokens per turn",
                         s.conversations, s.turns, s.user_len);
      break;
    case bench::WorkloadKind::kNoSharing:
      what = fmt::format("{} unrelated prompts of {} tokens", s.num_prompts, s.prompt_len);
      break;
  }
  const std::string arrivals = s.request_rate > 0
                                   ? fmt::format("Poisson arrivals at {} /s", s.request_rate)
                                   : std::string("all at once");
  return fmt::format("{}: {}, {} output tokens, {}, seed {}", bench::to_string(s.kind), what,
                     s.output_len, arrivals, s.seed);
}

json summary_json(const bench::Summary& s) {
  return {{"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}};
}

// One run: the figures, and per request what a plot of the distributions needs.
json run_json(const bench::RunResult& run, const bench::RunMetrics& m,
              const bench::ExpectedHits& expected) {
  json requests = json::array();
  for (const bench::RequestRecord& r : run.requests) {
    json q = {{"session", r.session},
              {"turn", r.turn},
              {"prompt_tokens", r.prompt_tokens},
              {"cached_tokens", r.cached_tokens},
              {"output_tokens", r.output.size()},
              {"submit_s", r.submit_s},
              {"ttft_ms", r.ttft_ms},
              {"e2e_ms", r.e2e_ms},
              {"finish_reason", std::string(to_string(r.finish_reason))}};
    if (!r.error.empty()) q["error"] = r.error;
    requests.push_back(std::move(q));
  }
  const EngineStats& s = run.stats;
  return {{"prefix_caching", run.prefix_caching},
          {"ttft_ms", summary_json(m.ttft_ms)},
          {"itl_ms", summary_json(m.itl_ms)},
          {"e2e_ms", summary_json(m.e2e_ms)},
          {"requests_per_s", m.requests_per_s},
          {"output_tokens_per_s", m.output_tokens_per_s},
          {"total_tokens_per_s", m.total_tokens_per_s},
          {"hit_rate", s.prefix_cache_hit_rate},
          {"expected_hit_rate", expected.rate()},
          {"hit_tokens", s.prefix_cache_hit_tokens},
          {"query_tokens", s.prefix_cache_query_tokens},
          {"expected_hit_tokens", expected.hit_tokens},
          {"peak_blocks_in_use", s.peak_blocks_in_use},
          {"evictions", s.evictions},
          {"preemptions", s.preemptions},
          {"partial_hit_tokens", s.prefix_cache_partial_hit_tokens},
          {"cache_misses", serve::cache_misses_json(s.prefix_cache_misses)},
          {"host_hit_tokens", s.prefix_cache_host_hit_tokens},
          {"host_blocks_stored", s.host_blocks_stored},
          {"host_blocks_loaded", s.host_blocks_loaded},
          {"host_evictions", s.host_evictions},
          {"disk_hit_tokens", s.prefix_cache_disk_hit_tokens},
          {"disk_blocks_written", s.disk_blocks_written},
          {"disk_blocks_read", s.disk_blocks_read},
          {"num_requests", m.num_requests},
          {"num_failed", m.num_failed},
          {"prompt_tokens", m.prompt_tokens},
          {"output_tokens", m.output_tokens},
          {"duration_s", run.duration_s},
          {"requests", std::move(requests)}};
}

// a / b, or nullopt when b is 0 (e.g. a run where every request failed).
std::optional<double> ratio(double a, double b) {
  if (b > 0) return a / b;
  return std::nullopt;
}

json optional_json(std::optional<double> v) { return v ? json(*v) : json(nullptr); }

struct RunReport {
  std::string label;  // the table's column: "cache on", "cache off", "host tier", "no host tier"
  std::int64_t host_tier_blocks = 0;
  bench::RunResult result;
  bench::RunMetrics metrics;
  bench::ExpectedHits expected;
};

// One run of the workload: an engine configuration and its column's label.
struct RunMode {
  std::string label;
  bool caching = true;
  std::int64_t host_kv_cache_bytes = 0;
};

std::vector<RunMode> run_modes(const BenchServeArgs& a, const EngineConfig& base) {
  if (a.compare_cache)
    return {{"cache on", true, base.host_kv_cache_bytes}, {"cache off", false, 0}};
  if (a.compare_host_tier) {
    if (base.host_kv_cache_bytes <= 0)
      throw Error(ErrorCode::kInvalidArgument,
                  "--compare-host-tier needs a host tier: set --host-kv-cache-mib");
    return {{"host tier", true, base.host_kv_cache_bytes}, {"no host tier", true, 0}};
  }
  return {{base.enable_prefix_caching ? "cache on" : "cache off", base.enable_prefix_caching,
           base.host_kv_cache_bytes}};
}

void print_table(const std::vector<RunReport>& runs) {
  const bool compare = runs.size() == 2;
  fmt::print("{:<26}", "");
  for (const RunReport& r : runs) fmt::print("{:>14}", r.label);
  if (compare) fmt::print("{:>14}", "gain");
  fmt::print("\n");
  // `lower_is_better` rows compare off/on, the others on/off: a gain > 1 favours the cache.
  const auto row = [&](const char* name, auto value, bool lower_is_better, const char* format) {
    fmt::print("{:<26}", name);
    for (const RunReport& r : runs)
      fmt::print("{:>14}", fmt::format(fmt::runtime(format), value(r)));
    if (compare) {
      const double on = value(runs[0]), off = value(runs[1]);
      const std::optional<double> gain = lower_is_better ? ratio(off, on) : ratio(on, off);
      fmt::print("{:>14}", gain ? fmt::format("{:.2f}x", *gain) : std::string("-"));
    }
    fmt::print("\n");
  };
  using R = const RunReport&;
  row(
      "TTFT mean (ms)", [](R r) { return r.metrics.ttft_ms.mean; }, true, "{:.1f}");
  row(
      "TTFT p50 (ms)", [](R r) { return r.metrics.ttft_ms.p50; }, true, "{:.1f}");
  row(
      "TTFT p90 (ms)", [](R r) { return r.metrics.ttft_ms.p90; }, true, "{:.1f}");
  row(
      "TTFT p99 (ms)", [](R r) { return r.metrics.ttft_ms.p99; }, true, "{:.1f}");
  row(
      "ITL mean (ms)", [](R r) { return r.metrics.itl_ms.mean; }, true, "{:.1f}");
  row(
      "ITL p50 (ms)", [](R r) { return r.metrics.itl_ms.p50; }, true, "{:.1f}");
  row(
      "ITL p99 (ms)", [](R r) { return r.metrics.itl_ms.p99; }, true, "{:.1f}");
  row(
      "E2E mean (ms)", [](R r) { return r.metrics.e2e_ms.mean; }, true, "{:.1f}");
  row(
      "E2E p50 (ms)", [](R r) { return r.metrics.e2e_ms.p50; }, true, "{:.1f}");
  row(
      "E2E p99 (ms)", [](R r) { return r.metrics.e2e_ms.p99; }, true, "{:.1f}");
  row(
      "duration (s)", [](R r) { return r.result.duration_s; }, true, "{:.2f}");
  row(
      "requests/s", [](R r) { return r.metrics.requests_per_s; }, false, "{:.3f}");
  row(
      "output tokens/s", [](R r) { return r.metrics.output_tokens_per_s; }, false, "{:.1f}");
  row(
      "total tokens/s", [](R r) { return r.metrics.total_tokens_per_s; }, false, "{:.1f}");
  const auto plain = [&](const char* name, auto value) {
    fmt::print("{:<26}", name);
    for (const RunReport& r : runs) fmt::print("{:>14}", value(r));
    fmt::print("\n");
  };
  plain("prefix-cache hit rate",
        [](R r) { return fmt::format("{:.4f}", r.result.stats.prefix_cache_hit_rate); });
  plain("expected hit rate", [](R r) { return fmt::format("{:.4f}", r.expected.rate()); });
  plain("prompt tokens computed", [](R r) {
    return r.result.stats.prefix_cache_query_tokens - r.result.stats.prefix_cache_hit_tokens;
  });
  plain("partial-block hit tokens",
        [](R r) { return r.result.stats.prefix_cache_partial_hit_tokens; });
  plain("peak KV blocks in use", [](R r) { return r.result.stats.peak_blocks_in_use; });
  plain("evictions / preemptions", [](R r) {
    return fmt::format("{} / {}", r.result.stats.evictions, r.result.stats.preemptions);
  });
  if (std::any_of(runs.begin(), runs.end(), [](R r) { return r.host_tier_blocks > 0; })) {
    plain("hit tokens: device / host / disk", [](R r) {
      const EngineStats& s = r.result.stats;
      return fmt::format("{} / {} / {}",
                         s.prefix_cache_hit_tokens - s.prefix_cache_host_hit_tokens -
                             s.prefix_cache_disk_hit_tokens,
                         s.prefix_cache_host_hit_tokens, s.prefix_cache_disk_hit_tokens);
    });
    plain("host blocks stored / loaded", [](R r) {
      return fmt::format("{} / {}", r.result.stats.host_blocks_stored,
                         r.result.stats.host_blocks_loaded);
    });
  }
  plain("requests (failed)",
        [](R r) { return fmt::format("{} ({})", r.metrics.num_requests, r.metrics.num_failed); });
  // Why each request's cached prefix ended: a row per reason that any run saw.
  for (std::size_t i = 0; i < kNumCacheMissReasons; ++i) {
    if (std::none_of(runs.begin(), runs.end(),
                     [i](R r) { return r.result.stats.prefix_cache_misses[i] > 0; }))
      continue;
    const std::string name = fmt::format("miss: {}", to_string(static_cast<CacheMissReason>(i)));
    plain(name.c_str(), [i](R r) { return r.result.stats.prefix_cache_misses[i]; });
  }
}

// A progress bar on stderr, redrawn as requests finish; only on a terminal, so that logs
// and test captures stay clean.
bench::ProgressFn progress_bar(const char* label) {
  if (!isatty(fileno(stderr))) return {};
  return [label](std::size_t done, std::size_t total) {
    constexpr std::size_t kWidth = 30;
    const std::size_t filled = total > 0 ? done * kWidth / total : kWidth;
    fmt::print(stderr, "\r{:<10} [{}{}] {}/{}", label, std::string(filled, '#'),
               std::string(kWidth - filled, ' '), done, total);
    if (done == total) fmt::print(stderr, "\n");
    std::fflush(stderr);
  };
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchServeArgs>();
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  CLI::App* cmd = bench->add_subcommand(
      "serve",
      "End-to-end serving benchmark on a seeded synthetic workload: TTFT, inter-token latency, "
      "throughput, prefix-cache hit rate against the workload's expected one");
  add_engine_flags(*cmd, a->engine);
  cmd->add_option("--workload", a->workload, "shared-prefix | multi-turn | no-sharing")
      ->check(CLI::IsMember({"shared-prefix", "multi-turn", "no-sharing"}))
      ->capture_default_str();
  cmd->add_option("--seed", a->spec.seed, "Seed of the prompts and arrival times")
      ->capture_default_str();
  cmd->add_option("--output-len", a->spec.output_len, "Generated tokens per request (EOS ignored)")
      ->capture_default_str();
  cmd->add_option("--groups", a->spec.groups, "shared-prefix: groups sharing a system prompt")
      ->capture_default_str();
  cmd->add_option("--requests-per-group", a->spec.requests_per_group,
                  "shared-prefix: requests per group")
      ->capture_default_str();
  cmd->add_option("--system-len", a->spec.system_len, "shared-prefix: system prompt tokens")
      ->capture_default_str();
  cmd->add_option("--question-len", a->spec.question_len,
                  "shared-prefix: tokens of each request's own question")
      ->capture_default_str();
  cmd->add_option("--conversations", a->spec.conversations, "multi-turn: conversations")
      ->capture_default_str();
  cmd->add_option("--turns", a->spec.turns, "multi-turn: turns per conversation")
      ->capture_default_str();
  cmd->add_option("--user-len", a->spec.user_len, "multi-turn: new user tokens per turn")
      ->capture_default_str();
  cmd->add_option("--num-prompts", a->spec.num_prompts, "no-sharing: prompts")
      ->capture_default_str();
  cmd->add_option("--prompt-len", a->spec.prompt_len, "no-sharing: tokens per prompt")
      ->capture_default_str();
  cmd->add_option("--request-rate", a->spec.request_rate,
                  "Poisson arrivals, requests (multi-turn: conversations) per second; 0 = all "
                  "at once")
      ->capture_default_str();
  cmd->add_option("--temperature", a->temperature, "0 = greedy (outputs comparable across runs)")
      ->capture_default_str();
  auto* compare =
      cmd->add_flag("--compare-cache", a->compare_cache,
                    "Run the workload twice, prefix cache on then off, and compare (outputs too)");
  compare->excludes(cmd->get_option("--no-prefix-cache"));
  cmd->add_flag("--compare-host-tier", a->compare_host_tier,
                "Run the workload twice, with the host tier (--host-kv-cache-mib) then without, "
                "and compare (outputs too)")
      ->excludes(compare)
      ->excludes(cmd->get_option("--no-prefix-cache"));
  cmd->add_option("--json", a->json_path, "Also write the results as JSON to this file");

  return [a] {
    a->spec.kind = bench::parse_workload_kind(a->workload);
    SamplingParams params;
    params.temperature = a->temperature;
    const EngineConfig base = engine_config(a->engine);
    const std::vector<RunMode> modes = run_modes(*a, base);

    std::optional<bench::Workload> workload;
    std::optional<EngineInfo> info;
    std::vector<RunReport> runs;
    for (const RunMode& mode : modes) {
      const bool caching = mode.caching;
      EngineConfig config = base;
      config.enable_prefix_caching = caching;
      config.host_kv_cache_bytes = mode.host_kv_cache_bytes;
      // One engine at a time: the second is built after the first is gone, so they never
      // compete for memory or cores.
      Engine engine(config);
      if (!workload) {
        info = engine.info();
        workload = bench::make_workload(a->spec, info->vocab_size, info->max_model_len);
      }
      RunReport r;
      r.label = mode.label;
      r.host_tier_blocks = engine.info().num_host_kv_blocks;
      r.result = bench::run_workload(engine, *workload, params, progress_bar(mode.label.c_str()));
      r.metrics = bench::compute_metrics(r.result);
      r.expected =
          bench::expected_hits(a->spec, info->block_size, caching && config.partial_block_reuse);
      if (!caching) r.expected.hit_tokens = 0;  // the same queries, nothing cached
      if (caching && r.host_tier_blocks == 0 &&
          (r.result.stats.evictions > 0 || r.result.stats.preemptions > 0))
        fmt::print(stderr,
                   "cachet: warning: {} evictions and {} preemptions with the prefix cache on: "
                   "the expected hit rate assumes none (a larger --kv-cache-mib avoids them)\n",
                   r.result.stats.evictions, r.result.stats.preemptions);
      runs.push_back(std::move(r));
    }

    std::optional<bool> identical;
    if (runs.size() == 2) identical = bench::same_outputs(runs[0].result, runs[1].result);

    fmt::print("cachet bench serve: {}\n", describe(a->spec));
    fmt::print("model {} ({}) on {}, {} threads, block size {}, {} KV blocks", base.model_dir,
               info->architecture, info->backend, info->num_threads, info->block_size,
               info->num_kv_blocks);
    if (runs[0].host_tier_blocks > 0)
      fmt::print(", host tier {} blocks ({:.1f} MiB)", runs[0].host_tier_blocks,
                 base.host_kv_cache_bytes / 1048576.0);
    fmt::print("\n\n");
    print_table(runs);
    if (identical) {
      fmt::print("\ngain: {0}/{1} for times, {1}/{0} for rates\n", runs[1].label, runs[0].label);
      fmt::print("outputs identical ({} vs {}, request by request): {}\n", runs[0].label,
                 runs[1].label, *identical ? "yes" : "NO");
    }
    std::fflush(stdout);

    if (!a->json_path.empty()) {
      json j = {{"workload", workload_json(a->spec, workload->num_requests())},
                {"model", base.model_dir},
                {"architecture", info->architecture},
                {"backend", info->backend},
                {"engine",
                 {{"block_size", info->block_size},
                  {"num_kv_blocks", info->num_kv_blocks},
                  {"num_host_kv_blocks", runs[0].host_tier_blocks},
                  {"max_num_seqs", info->max_num_seqs},
                  {"max_num_batched_tokens", info->max_num_batched_tokens},
                  {"num_threads", info->num_threads},
                  {"schedule", a->engine.schedule},
                  {"temperature", a->temperature}}},
                {"runs", json::array()}};
      for (const RunReport& r : runs)
        j["runs"].push_back(run_json(r.result, r.metrics, r.expected));
      if (runs.size() == 2) {
        const RunReport& on = runs[0];
        const RunReport& off = runs[1];
        j["comparison"] = {
            {"ttft_mean_ratio",
             optional_json(ratio(off.metrics.ttft_ms.mean, on.metrics.ttft_ms.mean))},
            {"throughput_ratio",
             optional_json(ratio(on.metrics.output_tokens_per_s, off.metrics.output_tokens_per_s))},
            {"outputs_identical", *identical}};
      }
      std::ofstream out(a->json_path);
      if (!out)
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("--json: cannot write '{}'", a->json_path));
      out << j.dump(2) << "\n";
      if (!out.flush())
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("--json: writing '{}' failed", a->json_path));
    }
    std::vector<const bench::RunResult*> results;
    for (const RunReport& r : runs) results.push_back(&r.result);
    if (const std::string why = bench::failure(results, identical); !why.empty()) {
      fmt::print(stderr, "cachet: error: {}\n", why);
      return 1;
    }
    return 0;
  };
}

}  // namespace cachet::tools

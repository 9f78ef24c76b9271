// `cachet bench serve`: seeded synthetic serving workloads, the analytic prefix-cache hit
// rate they allow, the driver that submits them to an Engine and times every streamed
// token, and the summary statistics. Kept apart from the command so the tests can use it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cachet/engine.h"

namespace cachet::tools::bench {

enum class WorkloadKind {
  kSharedPrefix,  // groups of requests sharing a system prompt, each with its own question
  kMultiTurn,     // conversations; each turn resends the whole conversation so far
  kNoSharing,     // unrelated random prompts (the control)
};

std::string_view to_string(WorkloadKind kind);
// "shared-prefix" | "multi-turn" | "no-sharing"; throws cachet::Error naming --workload.
WorkloadKind parse_workload_kind(std::string_view name);

// What to generate. Each field is the flag of the same name; only the fields of `kind`
// (and seed, output_len, request_rate) are used.
struct WorkloadSpec {
  WorkloadKind kind = WorkloadKind::kSharedPrefix;
  std::uint64_t seed = 0;
  std::int32_t output_len = 64;  // generated tokens per request (EOS ignored, so exact)
  // shared-prefix: G groups x R requests, prompt = S system tokens + Q question tokens.
  std::int32_t groups = 4;
  std::int32_t requests_per_group = 16;
  std::int32_t system_len = 2048;
  std::int32_t question_len = 128;
  // multi-turn: C conversations of T turns, a new user message of U tokens per turn.
  std::int32_t conversations = 8;
  std::int32_t turns = 4;
  std::int32_t user_len = 128;
  // no-sharing: N prompts of L tokens (default L: the default shared-prefix prompt length,
  // so that the control is the same amount of prefill without the sharing).
  std::int32_t num_prompts = 64;
  std::int32_t prompt_len = 2176;
  // Sessions (requests; for multi-turn, conversations) per second, Poisson; 0 = all at once.
  double request_rate = 0.0;
};

// One independent stream of requests. Turn k's prompt is messages[0], output of turn 0,
// messages[1], ..., output of turn k-1, messages[k]; turn k is submitted when turn k-1 has
// finished. Shared-prefix and no-sharing sessions have a single turn.
struct Session {
  std::vector<std::vector<TokenId>> messages;
  double arrival_s = 0.0;  // when its first turn is submitted, from the start of the run
};

struct Workload {
  WorkloadSpec spec;
  std::vector<Session> sessions;  // in arrival order
  // Requests in total (turns of all sessions); request ids run session-major, then turn.
  std::size_t num_requests() const;
};

// Generates the workload from spec.seed: token ids uniform in [0, vocab_size), except that
// the first token of every sequence that must not share a KV block with its siblings is
// distinct among them (each group's system prompt, each question within its group, each
// conversation, each no-sharing prompt), so that random collisions cannot add cache hits
// and the expected hit rate is exact. Throws cachet::Error naming the flag when a size is
// out of range or a request would not fit in max_model_len tokens (prompt + output).
Workload make_workload(const WorkloadSpec& spec, std::int32_t vocab_size,
                       std::int32_t max_model_len);

// Open-loop Poisson arrival times of n sessions at `rate` per second: 0 for the first,
// then seeded exponential gaps of mean 1/rate. All 0 when rate <= 0 (all at once).
std::vector<double> poisson_arrivals(std::size_t n, double rate, std::uint64_t seed);

// Prompt tokens the prefix cache can serve and prompt tokens asked for, over the whole
// workload with caching on. A prompt's cached prefix is whole blocks of the longest prefix
// whose K/V an earlier request computed, and never its last token (its logits are needed):
//  - shared-prefix: per group the first admitted request hits nothing and each of the R-1
//    others floor(S / B) * B tokens (the whole blocks of the system prompt; the block that
//    straddles into the question is unique). Requests arriving together do not all miss:
//    the scheduler defers a request whose next block a running request is computing, so it
//    hits once that block is written. hit = G floor(S/B) B, query = G R (S+Q).
//    With partial-block reuse (`partial`), the others also reuse the system prompt's tokens
//    in the straddling block, so hit = G S, when the first request's prompt fills that
//    block (floor(S/B) B + B <= S + Q) and is computed in one step (S + Q within the step's
//    token budget, shared with whatever else runs).
//  - multi-turn: with P_k = k U + (k-1) O the prompt of turn k (1-based), turn 1 hits
//    nothing and turn k >= 2 hits floor((P_{k-1} + O - 1) / B) * B: everything turn k-1
//    computed (its prompt and its outputs but the last, which was sampled and never fed
//    back) in whole blocks. hit = C sum_{k=2..T} floor((P_{k-1}+O-1)/B) B,
//    query = C sum_{k=1..T} P_k. Partial-block reuse adds nothing: the previous turn's last,
//    partly filled block was never cached.
//  - no-sharing: hit = 0, query = N L.
// Exact as long as nothing is evicted before it is reused (a KV cache large enough for the
// workload; the report counts evictions and preemptions).
struct ExpectedHits {
  std::int64_t hit_tokens = 0;
  std::int64_t query_tokens = 0;
  double rate() const;  // hit / query, 0 when nothing is queried
};
ExpectedHits expected_hits(const WorkloadSpec& spec, std::int32_t block_size, bool partial = false);

// The p-th percentile (p in [0, 100]) with linear interpolation between closest ranks
// (numpy.percentile's default, which vLLM's benchmarks report); 0 for no values.
double percentile(std::vector<double> values, double p);

struct Summary {
  double mean = 0.0;
  double p50 = 0.0;
  double p90 = 0.0;
  double p99 = 0.0;
};
Summary summarize(const std::vector<double>& values);

// What happened to one request, timed on the benchmark's steady clock at the callbacks.
struct RequestRecord {
  std::size_t session = 0;
  std::size_t turn = 0;
  bool submitted = false;  // false when an earlier turn of its conversation failed
  std::int32_t prompt_tokens = 0;
  std::int32_t cached_tokens = 0;
  std::vector<TokenId> output;
  double submit_s = 0.0;       // from the start of the run
  double ttft_ms = 0.0;        // submission to the first streamed token
  double e2e_ms = 0.0;         // submission to the final update
  std::vector<double> itl_ms;  // gaps between consecutive token-bearing updates
  FinishReason finish_reason = FinishReason::kLength;
  std::string error;
};

struct RunResult {
  bool prefix_caching = true;
  std::vector<RequestRecord> requests;  // by request id (session-major, then turn)
  double duration_s = 0.0;              // first submission to the last final update
  EngineStats stats;                    // the engine's, after the run
};

// Called on the benchmark thread after each request finishes: (finished, total).
using ProgressFn = std::function<void(std::size_t, std::size_t)>;

// Runs the workload on `engine` (which should be fresh, so its statistics are this run's):
// submits each session's first turn at its arrival time and each later turn when the
// previous one finishes, from the calling thread, with greedy decoding unless `params`
// says otherwise; max_tokens is spec.output_len and EOS is ignored. Returns when every
// request has finished.
RunResult run_workload(Engine& engine, const Workload& workload, const SamplingParams& params,
                       const ProgressFn& progress = {});

// The figures `bench serve` reports for a run.
struct RunMetrics {
  std::size_t num_requests = 0;
  std::size_t num_failed = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t output_tokens = 0;
  Summary ttft_ms;
  Summary itl_ms;
  Summary e2e_ms;
  double requests_per_s = 0.0;
  double output_tokens_per_s = 0.0;
  double total_tokens_per_s = 0.0;  // (prompt + output) / duration
};
RunMetrics compute_metrics(const RunResult& run);

// True when both runs finished every request and generated the same token ids request by
// request.
bool same_outputs(const RunResult& a, const RunResult& b);

// Why `bench serve` fails, one line for stderr, or "" when it succeeds: a request failed, or
// (with the cache-on and cache-off runs compared) the two runs' outputs differ.
std::string failure(const std::vector<const RunResult*>& runs, std::optional<bool> identical);

}  // namespace cachet::tools::bench

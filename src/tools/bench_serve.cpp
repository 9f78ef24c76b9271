#include "tools/bench_serve.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <numeric>
#include <unordered_set>

#include "util/rng.h"

namespace cachet::tools::bench {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(ErrorCode::kInvalidArgument, message);
}

void require_count(std::int32_t value, const char* flag, std::int32_t max) {
  require(value >= 1 && value <= max,
          fmt::format("{} must be in [1, {}], got {}", flag, max, value));
}

// `count` distinct ids: the first tokens of sequences that must not share a block.
std::vector<TokenId> distinct_tokens(std::int32_t count, std::int32_t vocab,
                                     util::SplitMix64& rng) {
  std::vector<TokenId> out;
  std::unordered_set<TokenId> used;
  while (static_cast<std::int32_t>(out.size()) < count) {
    const auto t = static_cast<TokenId>(rng.below(static_cast<std::uint64_t>(vocab)));
    if (used.insert(t).second) out.push_back(t);
  }
  return out;
}

void append_random(std::vector<TokenId>& seq, std::int32_t n, std::int32_t vocab,
                   util::SplitMix64& rng) {
  for (std::int32_t i = 0; i < n; ++i)
    seq.push_back(static_cast<TokenId>(rng.below(static_cast<std::uint64_t>(vocab))));
}

// A sequence of `len` tokens starting with `first`.
std::vector<TokenId> sequence(TokenId first, std::int32_t len, std::int32_t vocab,
                              util::SplitMix64& rng) {
  std::vector<TokenId> seq{first};
  append_random(seq, len - 1, vocab, rng);
  return seq;
}

// Per-request timing state, written only by that request's callbacks (and by the benchmark
// thread before it submits the request).
struct Timing {
  Clock::time_point submitted;
  Clock::time_point last_token;
  Clock::time_point finished;
  bool got_token = false;
};

// Shared between the benchmark thread and the engine's callbacks; held by the callbacks
// too, so that a callback arriving after an early exit still has somewhere to write.
struct DriverState {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::size_t> finished;  // ids whose final update came, not yet handled
  std::vector<RequestRecord> records;
  std::vector<Timing> timing;
};

}  // namespace

std::string_view to_string(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kSharedPrefix:
      return "shared-prefix";
    case WorkloadKind::kMultiTurn:
      return "multi-turn";
    case WorkloadKind::kNoSharing:
      return "no-sharing";
  }
  return "?";
}

WorkloadKind parse_workload_kind(std::string_view name) {
  for (WorkloadKind k :
       {WorkloadKind::kSharedPrefix, WorkloadKind::kMultiTurn, WorkloadKind::kNoSharing})
    if (name == to_string(k)) return k;
  throw Error(
      ErrorCode::kInvalidArgument,
      fmt::format("--workload must be shared-prefix, multi-turn or no-sharing, got '{}'", name));
}

std::size_t Workload::num_requests() const {
  std::size_t n = 0;
  for (const auto& s : sessions) n += s.messages.size();
  return n;
}

Workload make_workload(const WorkloadSpec& spec, std::int32_t vocab, std::int32_t max_model_len) {
  require(vocab >= 1, "the model has an empty vocabulary");
  constexpr std::int32_t kMaxLen = 1 << 24;
  require_count(spec.output_len, "--output-len", kMaxLen);
  require(std::isfinite(spec.request_rate) && spec.request_rate >= 0.0,
          fmt::format("--request-rate must be >= 0 (0: all at once), got {}", spec.request_rate));
  // Each sequence's first token is distinct among its siblings, so there can be at most
  // `vocab` of them.
  Workload w;
  w.spec = spec;
  util::SplitMix64 rng(util::mix64(spec.seed));
  const auto fits = [&](std::int64_t tokens, const char* flags) {
    require(tokens <= max_model_len,
            fmt::format("{}: a request needs {} tokens (prompt + output), more than the model's "
                        "max_model_len {}",
                        flags, tokens, max_model_len));
  };
  switch (spec.kind) {
    case WorkloadKind::kSharedPrefix: {
      require_count(spec.groups, "--groups", vocab);
      require_count(spec.requests_per_group, "--requests-per-group", vocab);
      require_count(spec.system_len, "--system-len", kMaxLen);
      require_count(spec.question_len, "--question-len", kMaxLen);
      fits(std::int64_t{spec.system_len} + spec.question_len + spec.output_len,
           "--system-len + --question-len + --output-len");
      const std::vector<TokenId> system_first = distinct_tokens(spec.groups, vocab, rng);
      for (std::int32_t g = 0; g < spec.groups; ++g) {
        const std::vector<TokenId> system = sequence(system_first[g], spec.system_len, vocab, rng);
        const std::vector<TokenId> question_first =
            distinct_tokens(spec.requests_per_group, vocab, rng);
        for (std::int32_t r = 0; r < spec.requests_per_group; ++r) {
          std::vector<TokenId> prompt = system;
          const std::vector<TokenId> question =
              sequence(question_first[r], spec.question_len, vocab, rng);
          prompt.insert(prompt.end(), question.begin(), question.end());
          w.sessions.push_back({{std::move(prompt)}, 0.0});
        }
      }
      break;
    }
    case WorkloadKind::kMultiTurn: {
      require_count(spec.conversations, "--conversations", vocab);
      require_count(spec.turns, "--turns", kMaxLen);
      require_count(spec.user_len, "--user-len", kMaxLen);
      fits(std::int64_t{spec.turns} * (std::int64_t{spec.user_len} + spec.output_len),
           "--turns x (--user-len + --output-len)");
      const std::vector<TokenId> first = distinct_tokens(spec.conversations, vocab, rng);
      for (std::int32_t c = 0; c < spec.conversations; ++c) {
        Session s;
        s.messages.push_back(sequence(first[c], spec.user_len, vocab, rng));
        for (std::int32_t t = 1; t < spec.turns; ++t) {
          std::vector<TokenId> message;
          append_random(message, spec.user_len, vocab, rng);
          s.messages.push_back(std::move(message));
        }
        w.sessions.push_back(std::move(s));
      }
      break;
    }
    case WorkloadKind::kNoSharing: {
      require_count(spec.num_prompts, "--num-prompts", vocab);
      require_count(spec.prompt_len, "--prompt-len", kMaxLen);
      fits(std::int64_t{spec.prompt_len} + spec.output_len, "--prompt-len + --output-len");
      const std::vector<TokenId> first = distinct_tokens(spec.num_prompts, vocab, rng);
      for (std::int32_t i = 0; i < spec.num_prompts; ++i)
        w.sessions.push_back({{sequence(first[i], spec.prompt_len, vocab, rng)}, 0.0});
      break;
    }
  }
  // A separate stream, so that the prompts do not change with the arrival mode.
  const std::vector<double> arrivals =
      poisson_arrivals(w.sessions.size(), spec.request_rate, spec.seed ^ 0x5eed'a771'7a15ull);
  for (std::size_t i = 0; i < w.sessions.size(); ++i) w.sessions[i].arrival_s = arrivals[i];
  return w;
}

std::vector<double> poisson_arrivals(std::size_t n, double rate, std::uint64_t seed) {
  std::vector<double> t(n, 0.0);
  if (rate <= 0.0) return t;
  util::SplitMix64 rng(util::mix64(seed));
  for (std::size_t i = 1; i < n; ++i) t[i] = t[i - 1] - std::log1p(-rng.uniform()) / rate;
  return t;
}

double ExpectedHits::rate() const {
  return query_tokens > 0 ? static_cast<double>(hit_tokens) / query_tokens : 0.0;
}

ExpectedHits expected_hits(const WorkloadSpec& s, std::int32_t block_size, bool partial) {
  const std::int64_t b = block_size;
  const auto whole_blocks = [b](std::int64_t tokens) { return tokens / b * b; };
  ExpectedHits e;
  switch (s.kind) {
    case WorkloadKind::kSharedPrefix:
      e.query_tokens = std::int64_t{s.groups} * s.requests_per_group *
                       (std::int64_t{s.system_len} + s.question_len);
      {
        // Capped at the prompt minus its last token, which question_len >= 1 never reaches.
        const std::int64_t shared =
            std::min<std::int64_t>(s.system_len, std::int64_t{s.system_len} + s.question_len - 1);
        const bool straddling_cached = whole_blocks(shared) + b <= s.system_len + s.question_len;
        const std::int64_t per_request =
            partial && straddling_cached ? shared : whole_blocks(shared);
        e.hit_tokens = std::int64_t{s.groups} * (s.requests_per_group - 1) * per_request;
        break;
      }
    case WorkloadKind::kMultiTurn: {
      std::int64_t query = 0, hit = 0;
      for (std::int64_t k = 1; k <= s.turns; ++k) {
        const std::int64_t prompt = k * s.user_len + (k - 1) * s.output_len;
        query += prompt;
        if (k >= 2) {
          const std::int64_t previous = (k - 1) * s.user_len + (k - 2) * s.output_len;
          hit += whole_blocks(previous + s.output_len - 1);
        }
      }
      e.query_tokens = s.conversations * query;
      e.hit_tokens = s.conversations * hit;
      break;
    }
    case WorkloadKind::kNoSharing:
      e.query_tokens = std::int64_t{s.num_prompts} * s.prompt_len;
      break;
  }
  return e;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

Summary summarize(const std::vector<double>& values) {
  Summary s;
  if (values.empty()) return s;
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  s.p50 = percentile(values, 50);
  s.p90 = percentile(values, 90);
  s.p99 = percentile(values, 99);
  return s;
}

RunResult run_workload(Engine& engine, const Workload& workload, const SamplingParams& base,
                       const ProgressFn& progress) {
  const std::vector<Session>& sessions = workload.sessions;
  std::vector<std::size_t> first_id(sessions.size());
  std::size_t total = 0;
  for (std::size_t s = 0; s < sessions.size(); ++s) {
    first_id[s] = total;
    total += sessions[s].messages.size();
  }
  auto state = std::make_shared<DriverState>();
  state->records.resize(total);
  state->timing.resize(total);
  for (std::size_t s = 0; s < sessions.size(); ++s)
    for (std::size_t k = 0; k < sessions[s].messages.size(); ++k) {
      state->records[first_id[s] + k].session = s;
      state->records[first_id[s] + k].turn = k;
    }

  SamplingParams params = base;
  params.max_tokens = workload.spec.output_len;
  params.ignore_eos = true;  // exact output lengths, whatever the (random) model emits

  const Clock::time_point start = Clock::now();
  std::vector<std::vector<TokenId>> context(sessions.size());  // each conversation so far
  const auto submit = [&](std::size_t s, std::size_t k) {
    const std::vector<TokenId>& message = sessions[s].messages[k];
    context[s].insert(context[s].end(), message.begin(), message.end());
    const std::size_t id = first_id[s] + k;
    Request request;
    request.prompt_token_ids = context[s];
    request.params = params;
    // The same seed in every run of the workload, so sampled runs are comparable too.
    if (!request.params.seed) request.params.seed = workload.spec.seed + id;
    RequestRecord& r = state->records[id];
    r.submitted = true;
    r.prompt_tokens = static_cast<std::int32_t>(context[s].size());
    Timing& t = state->timing[id];
    t.submitted = Clock::now();
    r.submit_s = ms_between(start, t.submitted) / 1000.0;
    engine.submit(std::move(request), [state, id](const RequestUpdate& u) {
      const Clock::time_point now = Clock::now();
      RequestRecord& rec = state->records[id];
      Timing& tm = state->timing[id];
      if (!u.new_token_ids.empty()) {
        if (!tm.got_token) {
          rec.ttft_ms = ms_between(tm.submitted, now);
          tm.got_token = true;
        } else {
          rec.itl_ms.push_back(ms_between(tm.last_token, now));
        }
        tm.last_token = now;
      }
      if (!u.finished) return;
      rec.e2e_ms = ms_between(tm.submitted, now);
      tm.finished = now;
      rec.output = u.output->token_ids;
      rec.cached_tokens = u.output->num_cached_tokens;
      rec.finish_reason = u.output->finish_reason;
      rec.error = u.output->error;
      {
        std::lock_guard lock(state->mutex);
        state->finished.push_back(id);
      }
      state->cv.notify_one();
    });
  };

  std::size_t next_session = 0, done = 0;
  const auto arrival = [&](std::size_t s) {
    return start + std::chrono::duration_cast<Clock::duration>(
                       std::chrono::duration<double>(sessions[s].arrival_s));
  };
  while (done < total) {
    const Clock::time_point now = Clock::now();
    while (next_session < sessions.size() && arrival(next_session) <= now)
      submit(next_session++, 0);
    std::vector<std::size_t> ready;
    {
      std::unique_lock lock(state->mutex);
      const auto any = [&] { return !state->finished.empty(); };
      if (next_session < sessions.size())
        state->cv.wait_until(lock, arrival(next_session), any);
      else
        state->cv.wait(lock, any);
      ready.swap(state->finished);
    }
    for (std::size_t id : ready) {
      ++done;
      const RequestRecord& r = state->records[id];
      const std::size_t s = r.session, turns = sessions[s].messages.size();
      if (r.turn + 1 < turns) {
        if (r.finish_reason == FinishReason::kError || r.finish_reason == FinishReason::kAborted) {
          // A conversation cannot go on without the turn it continues.
          for (std::size_t k = r.turn + 1; k < turns; ++k) {
            RequestRecord& skipped = state->records[first_id[s] + k];
            skipped.finish_reason = FinishReason::kError;
            skipped.error =
                fmt::format("not submitted: turn {} of its conversation failed", r.turn);
            ++done;
          }
        } else {
          context[s].insert(context[s].end(), r.output.begin(), r.output.end());
          submit(s, r.turn + 1);
        }
      }
      if (progress) progress(done, total);
    }
  }

  RunResult result;
  result.prefix_caching = engine.info().prefix_caching;
  Clock::time_point last = start;
  for (std::size_t id = 0; id < total; ++id)
    if (state->records[id].submitted) last = std::max(last, state->timing[id].finished);
  result.duration_s = ms_between(start, last) / 1000.0;
  result.stats = engine.stats();
  // Every request has had its final update, so no callback touches the records any more.
  result.requests = std::move(state->records);
  return result;
}

RunMetrics compute_metrics(const RunResult& run) {
  RunMetrics m;
  m.num_requests = run.requests.size();
  std::vector<double> ttft, itl, e2e;
  std::size_t ok = 0;
  for (const RequestRecord& r : run.requests) {
    m.prompt_tokens += r.prompt_tokens;
    m.output_tokens += static_cast<std::int64_t>(r.output.size());
    if (!r.submitted || r.finish_reason == FinishReason::kError ||
        r.finish_reason == FinishReason::kAborted) {
      ++m.num_failed;
      continue;
    }
    ++ok;
    if (!r.output.empty()) ttft.push_back(r.ttft_ms);
    itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
    e2e.push_back(r.e2e_ms);
  }
  m.ttft_ms = summarize(ttft);
  m.itl_ms = summarize(itl);
  m.e2e_ms = summarize(e2e);
  if (run.duration_s > 0) {
    m.requests_per_s = static_cast<double>(ok) / run.duration_s;
    m.output_tokens_per_s = static_cast<double>(m.output_tokens) / run.duration_s;
    m.total_tokens_per_s = static_cast<double>(m.prompt_tokens + m.output_tokens) / run.duration_s;
  }
  return m;
}

std::string failure(const std::vector<const RunResult*>& runs, std::optional<bool> identical) {
  for (const RunResult* run : runs) {
    std::size_t failed = 0;
    const RequestRecord* first = nullptr;
    for (const RequestRecord& q : run->requests)
      if (!q.error.empty()) {
        ++failed;
        if (!first) first = &q;
      }
    if (first) return fmt::format("{} request(s) failed; the first: {}", failed, first->error);
  }
  if (identical && !*identical)
    return "the outputs of the two runs differ (they must be identical: the cache and its tiers "
           "never change what a request produces)";
  return {};
}

bool same_outputs(const RunResult& a, const RunResult& b) {
  if (a.requests.size() != b.requests.size()) return false;
  for (std::size_t i = 0; i < a.requests.size(); ++i) {
    const RequestRecord& x = a.requests[i];
    const RequestRecord& y = b.requests[i];
    for (const RequestRecord* r : {&x, &y})
      if (!r->submitted || r->finish_reason == FinishReason::kError ||
          r->finish_reason == FinishReason::kAborted)
        return false;
    if (x.output != y.output) return false;
  }
  return true;
}

}  // namespace cachet::tools::bench

// `bench serve` helpers: workload generation, the expected hit rate formula, arrival times
// and the summary statistics.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "tools/bench_serve.h"

namespace cachet::tools::bench {
namespace {

using ::testing::HasSubstr;

WorkloadSpec shared_prefix(std::int32_t g, std::int32_t r, std::int32_t s, std::int32_t q,
                           std::int32_t o) {
  WorkloadSpec spec;
  spec.kind = WorkloadKind::kSharedPrefix;
  spec.groups = g;
  spec.requests_per_group = r;
  spec.system_len = s;
  spec.question_len = q;
  spec.output_len = o;
  return spec;
}

TEST(BenchPercentile, InterpolatesLinearlyBetweenClosestRanksLikeNumpy) {
  // numpy.percentile([1, 2, 3, 4], [0, 50, 90, 99, 100]) = [1, 2.5, 3.7, 3.97, 4]
  const std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(percentile(v, 90), 3.7);
  EXPECT_DOUBLE_EQ(percentile(v, 99), 3.97);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 4.0);
  EXPECT_DOUBLE_EQ(percentile({7.5}, 99), 7.5);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0.0);
}

TEST(BenchPercentile, SummarizeGivesMeanAndPercentiles) {
  std::vector<double> v;
  for (int i = 1; i <= 101; ++i) v.push_back(i);
  const Summary s = summarize(v);
  EXPECT_DOUBLE_EQ(s.mean, 51.0);
  EXPECT_DOUBLE_EQ(s.p50, 51.0);
  EXPECT_DOUBLE_EQ(s.p90, 91.0);
  EXPECT_DOUBLE_EQ(s.p99, 100.0);
  const Summary empty = summarize({});
  EXPECT_EQ(empty.mean, 0.0);
  EXPECT_EQ(empty.p99, 0.0);
}

TEST(BenchWorkload, SharedPrefixGroupsShareExactlyTheirSystemPrompt) {
  const Workload w = make_workload(shared_prefix(3, 5, 37, 9, 4), 512, 4096);
  ASSERT_EQ(w.sessions.size(), 15u);
  EXPECT_EQ(w.num_requests(), 15u);
  std::set<TokenId> system_first;
  for (int g = 0; g < 3; ++g) {
    std::set<TokenId> question_first;
    const auto& lead = w.sessions[g * 5].messages.at(0);
    system_first.insert(lead[0]);
    for (int r = 0; r < 5; ++r) {
      const Session& s = w.sessions[g * 5 + r];
      ASSERT_EQ(s.messages.size(), 1u);
      const auto& p = s.messages[0];
      ASSERT_EQ(p.size(), 46u);
      EXPECT_TRUE(std::equal(p.begin(), p.begin() + 37, lead.begin())) << g << " " << r;
      question_first.insert(p[37]);
      for (TokenId t : p) {
        EXPECT_GE(t, 0);
        EXPECT_LT(t, 512);
      }
      EXPECT_EQ(s.arrival_s, 0.0);
    }
    EXPECT_EQ(question_first.size(), 5u);  // questions differ from their first token
  }
  EXPECT_EQ(system_first.size(), 3u);  // groups differ from their first token
}

TEST(BenchWorkload, IsDeterministicInTheSeed) {
  WorkloadSpec spec = shared_prefix(2, 3, 20, 5, 2);
  spec.request_rate = 10.0;
  const Workload a = make_workload(spec, 512, 4096);
  const Workload b = make_workload(spec, 512, 4096);
  spec.seed = 1;
  const Workload c = make_workload(spec, 512, 4096);
  ASSERT_EQ(a.sessions.size(), b.sessions.size());
  for (std::size_t i = 0; i < a.sessions.size(); ++i) {
    EXPECT_EQ(a.sessions[i].messages, b.sessions[i].messages);
    EXPECT_EQ(a.sessions[i].arrival_s, b.sessions[i].arrival_s);
  }
  EXPECT_NE(a.sessions[0].messages, c.sessions[0].messages);
}

TEST(BenchWorkload, MultiTurnAndNoSharingShapes) {
  WorkloadSpec mt;
  mt.kind = WorkloadKind::kMultiTurn;
  mt.conversations = 4;
  mt.turns = 3;
  mt.user_len = 6;
  mt.output_len = 2;
  const Workload w = make_workload(mt, 512, 4096);
  ASSERT_EQ(w.sessions.size(), 4u);
  EXPECT_EQ(w.num_requests(), 12u);
  std::set<TokenId> first;
  for (const Session& s : w.sessions) {
    ASSERT_EQ(s.messages.size(), 3u);
    for (const auto& m : s.messages) EXPECT_EQ(m.size(), 6u);
    first.insert(s.messages[0][0]);
  }
  EXPECT_EQ(first.size(), 4u);

  WorkloadSpec ns;
  ns.kind = WorkloadKind::kNoSharing;
  ns.num_prompts = 7;
  ns.prompt_len = 11;
  const Workload n = make_workload(ns, 512, 4096);
  ASSERT_EQ(n.sessions.size(), 7u);
  first.clear();
  for (const Session& s : n.sessions) {
    ASSERT_EQ(s.messages.size(), 1u);
    EXPECT_EQ(s.messages[0].size(), 11u);
    first.insert(s.messages[0][0]);
  }
  EXPECT_EQ(first.size(), 7u);
}

TEST(BenchWorkload, ErrorsNameTheFlag) {
  const auto message = [](const WorkloadSpec& spec, std::int32_t vocab, std::int32_t max_len) {
    try {
      make_workload(spec, vocab, max_len);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message(shared_prefix(0, 2, 8, 8, 2), 512, 4096), HasSubstr("--groups"));
  EXPECT_THAT(message(shared_prefix(2, 2, 8, 0, 2), 512, 4096), HasSubstr("--question-len"));
  EXPECT_THAT(message(shared_prefix(2, 2, 8, 8, 0), 512, 4096), HasSubstr("--output-len"));
  // More groups than distinct first tokens.
  EXPECT_THAT(message(shared_prefix(2, 20, 8, 8, 2), 16, 4096), HasSubstr("--requests-per-group"));
  EXPECT_THAT(message(shared_prefix(2, 2, 100, 20, 8), 512, 120), HasSubstr("max_model_len 120"));
  WorkloadSpec rate = shared_prefix(1, 1, 8, 8, 2);
  rate.request_rate = -1;
  EXPECT_THAT(message(rate, 512, 4096), HasSubstr("--request-rate"));
  WorkloadSpec mt;
  mt.kind = WorkloadKind::kMultiTurn;
  mt.turns = 0;
  EXPECT_THAT(message(mt, 512, 4096), HasSubstr("--turns"));
  EXPECT_THROW(parse_workload_kind("sharing"), Error);
  EXPECT_EQ(parse_workload_kind("multi-turn"), WorkloadKind::kMultiTurn);
}

TEST(BenchExpectedHits, SharedPrefixCountsWholeSystemBlocksOfAllButTheFirstPerGroup) {
  // 3 groups x 5 requests, 37 + 9 tokens, block 8: 4 whole system blocks (32 tokens) hit by
  // 4 requests per group.
  const ExpectedHits e = expected_hits(shared_prefix(3, 5, 37, 9, 4), 8);
  EXPECT_EQ(e.query_tokens, 3 * 5 * 46);
  EXPECT_EQ(e.hit_tokens, 3 * 4 * 32);
  EXPECT_DOUBLE_EQ(e.rate(), 384.0 / 690.0);
  // A system prompt shorter than a block shares nothing.
  EXPECT_EQ(expected_hits(shared_prefix(2, 4, 7, 9, 4), 8).hit_tokens, 0);
  // One request per group: nothing to share.
  EXPECT_EQ(expected_hits(shared_prefix(2, 1, 64, 9, 4), 8).hit_tokens, 0);
}

TEST(BenchExpectedHits, PartialBlockReuseHitsTheWholeSystemPrompt) {
  // 37 + 9 tokens, block 8: the straddling block (32..39) is full in the first prompt, so
  // the others reuse all 37 tokens.
  EXPECT_EQ(expected_hits(shared_prefix(3, 5, 37, 9, 4), 8, true).hit_tokens, 3 * 4 * 37);
  // A system prompt shorter than a block is shared too, token by token.
  EXPECT_EQ(expected_hits(shared_prefix(2, 4, 7, 9, 4), 8, true).hit_tokens, 2 * 3 * 7);
  // 37 + 2: the first prompt ends inside the straddling block, which is never cached.
  EXPECT_EQ(expected_hits(shared_prefix(3, 5, 37, 2, 4), 8, true).hit_tokens, 3 * 4 * 32);
  // Multi-turn gains nothing (the previous turn's partial block was never cached).
  WorkloadSpec m;
  m.kind = WorkloadKind::kMultiTurn;
  m.conversations = 2;
  m.turns = 3;
  m.user_len = 7;
  m.output_len = 3;
  EXPECT_EQ(expected_hits(m, 4, true).hit_tokens, expected_hits(m, 4).hit_tokens);
}

TEST(BenchExpectedHits, MultiTurnHitsWhatThePreviousTurnComputed) {
  WorkloadSpec s;
  s.kind = WorkloadKind::kMultiTurn;
  s.conversations = 2;
  s.turns = 3;
  s.user_len = 7;
  s.output_len = 3;
  // Prompts 7, 17, 27. Turn 2 hits floor((7 + 3 - 1) / 4) * 4 = 8 of its 17; turn 3
  // floor((17 + 3 - 1) / 4) * 4 = 16 of its 27.
  const ExpectedHits e = expected_hits(s, 4);
  EXPECT_EQ(e.query_tokens, 2 * (7 + 17 + 27));
  EXPECT_EQ(e.hit_tokens, 2 * (8 + 16));
}

TEST(BenchExpectedHits, NoSharingExpectsNothing) {
  WorkloadSpec s;
  s.kind = WorkloadKind::kNoSharing;
  s.num_prompts = 5;
  s.prompt_len = 100;
  const ExpectedHits e = expected_hits(s, 16);
  EXPECT_EQ(e.hit_tokens, 0);
  EXPECT_EQ(e.query_tokens, 500);
  EXPECT_EQ(e.rate(), 0.0);
  EXPECT_EQ(ExpectedHits{}.rate(), 0.0);
}

TEST(BenchArrivals, PoissonIsSeededIncreasingAndHasTheRequestedRate) {
  const std::vector<double> all_at_once = poisson_arrivals(5, 0.0, 1);
  EXPECT_EQ(all_at_once, std::vector<double>(5, 0.0));
  const std::vector<double> a = poisson_arrivals(20001, 50.0, 3);
  EXPECT_EQ(a, poisson_arrivals(20001, 50.0, 3));
  EXPECT_NE(a, poisson_arrivals(20001, 50.0, 4));
  EXPECT_EQ(a[0], 0.0);
  for (std::size_t i = 1; i < a.size(); ++i) ASSERT_GE(a[i], a[i - 1]);
  // Mean gap 1/50 s: 20000 gaps give 400 s within a few standard deviations (sd 400/sqrt(20000)
  // = 2.8 s).
  EXPECT_NEAR(a.back(), 400.0, 15.0);
}

// `bench serve --compare-cache` used to print "outputs identical: NO" and exit 0.
TEST(BenchFailure, DifferingOutputsOrAFailedRequestFailTheRun) {
  RunResult on, off;
  RequestRecord r;
  r.submitted = true;
  r.output = {1, 2, 3};
  on.requests = {r, r};
  off.requests = {r, r};
  const std::vector<const RunResult*> runs = {&on, &off};
  EXPECT_EQ(failure(runs, same_outputs(on, off)), "");
  EXPECT_EQ(failure(runs, std::nullopt), "");
  off.requests[1].output = {1, 2, 4};
  EXPECT_THAT(failure(runs, same_outputs(on, off)), HasSubstr("differ"));
  off.requests[1].error = "boom";
  off.requests[1].finish_reason = FinishReason::kError;
  EXPECT_THAT(failure(runs, same_outputs(on, off)),
              HasSubstr("1 request(s) failed; the first: boom"));
}

}  // namespace
}  // namespace cachet::tools::bench

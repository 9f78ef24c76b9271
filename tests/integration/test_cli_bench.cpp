// `cachet bench serve` end to end on the tiny model: the JSON report, the measured hit rate
// against the analytic one, cache on vs off, Poisson arrivals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_support.h"
#include "tools/bench_serve.h"

namespace cachet {
namespace {

using nlohmann::json;
using testing::cli_path;
using ::testing::HasSubstr;
using testing::run_command;
using testing::TempDir;

class CliBenchTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = testing::make_tiny_cli_model(dir_); }

  // Runs `bench serve` with `args` on the tiny model (block 4, one thread) and returns the
  // JSON report; the human table goes to `table`.
  json bench(const std::string& args, std::string* table = nullptr) {
    const std::string path = (dir_.path() / "bench.json").string();
    auto r = run_command(cli_path() + " bench serve --model " + model_ +
                             " --device cpu --threads 1 --block-size 4 --kv-cache-mib 8 --json " +
                             path + " " + args,
                         true);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    if (table) *table = r.output;
    return json::parse(testing::read_file(path));
  }

  TempDir dir_;
  std::string model_;
};

void expect_run_schema(const json& run) {
  for (const char* key :
       {"prefix_caching", "ttft_ms", "itl_ms", "e2e_ms", "requests_per_s", "output_tokens_per_s",
        "total_tokens_per_s", "hit_rate", "expected_hit_rate", "peak_blocks_in_use", "num_requests",
        "duration_s", "requests"})
    EXPECT_TRUE(run.contains(key)) << key;
  for (const char* key : {"mean", "p50", "p90", "p99"})
    EXPECT_TRUE(run["ttft_ms"][key].is_number());
  for (const char* key : {"mean", "p50", "p99"}) {
    EXPECT_TRUE(run["itl_ms"][key].is_number()) << key;
    EXPECT_TRUE(run["e2e_ms"][key].is_number()) << key;
  }
  EXPECT_EQ(run["num_failed"], 0);
  ASSERT_EQ(run["requests"].size(), run["num_requests"].get<std::size_t>());
  for (const json& q : run["requests"]) {
    EXPECT_TRUE(q["ttft_ms"].is_number());
    EXPECT_GT(q["ttft_ms"].get<double>(), 0.0);
    EXPECT_GE(q["e2e_ms"].get<double>(), q["ttft_ms"].get<double>());
    EXPECT_EQ(q["finish_reason"], "length");
  }
  EXPECT_GT(run["duration_s"].get<double>(), 0.0);
  EXPECT_GT(run["output_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(run["peak_blocks_in_use"].get<int>(), 0);
  EXPECT_EQ(run["evictions"], 0);
  EXPECT_EQ(run["preemptions"], 0);
}

// The measured hit rate is the analytic one, to the token.
void expect_hits_as_expected(const json& run) {
  EXPECT_EQ(run["hit_tokens"], run["expected_hit_tokens"]);
  EXPECT_EQ(run["hit_rate"].get<double>(), run["expected_hit_rate"].get<double>());
}

TEST_F(CliBenchTest, SharedPrefixCompareCacheMatchesTheExpectedHitRateAndOutputs) {
  // A shared prompt of 254 of each request's 262 tokens, 252 of them in whole blocks of 4.
  std::string table;
  const json j = bench(
      "--workload shared-prefix --groups 2 --requests-per-group 4 --system-len 254 "
      "--question-len 8 --output-len 4 --compare-cache",
      &table);
  EXPECT_EQ(j["workload"]["name"], "shared-prefix");
  EXPECT_EQ(j["workload"]["groups"], 2);
  EXPECT_EQ(j["workload"]["num_requests"], 8);
  EXPECT_EQ(j["model"], model_);
  EXPECT_EQ(j["backend"], "cpu");
  ASSERT_EQ(j["runs"].size(), 2u);
  const json& on = j["runs"][0];
  const json& off = j["runs"][1];
  expect_run_schema(on);
  expect_run_schema(off);
  EXPECT_EQ(on["prefix_caching"], true);
  EXPECT_EQ(off["prefix_caching"], false);
  EXPECT_EQ(on["num_requests"], 8);
  // 2 groups x 3 later requests x 254 tokens (252 in whole blocks, 2 reused from the block
  // that straddles into the first request's question), of 8 x 262.
  EXPECT_EQ(on["expected_hit_tokens"], 2 * 3 * 254);
  EXPECT_EQ(on["partial_hit_tokens"], 2 * 3 * 2);
  EXPECT_DOUBLE_EQ(on["expected_hit_rate"].get<double>(), 1524.0 / 2096.0);
  expect_hits_as_expected(on);
  EXPECT_EQ(off["hit_rate"], 0.0);
  EXPECT_EQ(off["expected_hit_rate"], 0.0);
  // Output tokens per request are exact (EOS ignored).
  EXPECT_EQ(on["output_tokens"], 8 * 4);
  const json& cmp = j["comparison"];
  EXPECT_EQ(cmp["outputs_identical"], true);
  EXPECT_TRUE(cmp["throughput_ratio"].is_number());
  // The cache computes 2 x 262 + 6 x 10 prompt tokens instead of 8 x 262.
  EXPECT_LT(on["ttft_ms"]["mean"].get<double>(), off["ttft_ms"]["mean"].get<double>());
  EXPECT_GT(cmp["ttft_mean_ratio"].get<double>(), 1.0);
  EXPECT_THAT(table, HasSubstr("TTFT mean (ms)"));
  EXPECT_THAT(table, HasSubstr("expected hit rate"));
  EXPECT_THAT(table,
              HasSubstr("outputs identical (cache on vs cache off, request by request): yes"));
}

// A KV cache far smaller than the conversations' working set: without a host tier, later
// turns find their earlier blocks evicted; with one, they are loaded back, and every hit the
// workload allows happens, with the same outputs.
TEST_F(CliBenchTest, CompareHostTierRecoversTheHitsEvictionLoses) {
  std::string table;
  const json j = bench(
      "--workload multi-turn --conversations 8 --turns 4 --user-len 7 --output-len 3 "
      "--num-kv-blocks 16 --host-kv-cache-mib 4 --compare-host-tier",
      &table);
  ASSERT_EQ(j["runs"].size(), 2u);
  const json& tier = j["runs"][0];
  const json& none = j["runs"][1];
  EXPECT_GT(j["engine"]["num_host_kv_blocks"].get<int>(), 0);
  EXPECT_GT(tier["evictions"].get<int>(), 0);
  expect_hits_as_expected(tier);
  EXPECT_GT(tier["host_hit_tokens"].get<int>(), 0);
  EXPECT_GT(tier["host_blocks_loaded"].get<int>(), 0);
  EXPECT_LT(none["hit_tokens"].get<int>(), none["expected_hit_tokens"].get<int>());
  EXPECT_EQ(none["host_hit_tokens"], 0);
  EXPECT_EQ(j["comparison"]["outputs_identical"], true);
  EXPECT_THAT(table, HasSubstr("hit tokens: device / host"));
  EXPECT_THAT(table,
              HasSubstr("outputs identical (host tier vs no host tier, request by request): yes"));
}

TEST_F(CliBenchTest, MultiTurnHitsWhatEarlierTurnsComputed) {
  // User messages and outputs not multiples of the block size: the formula's floors and
  // the uncomputed last output token both matter.
  const json j = bench(
      "--workload multi-turn --conversations 3 --turns 3 --user-len 7 --output-len 3 "
      "--compare-cache");
  ASSERT_EQ(j["runs"].size(), 2u);
  const json& on = j["runs"][0];
  expect_run_schema(on);
  EXPECT_EQ(on["num_requests"], 9);
  EXPECT_EQ(on["query_tokens"], 3 * (7 + 17 + 27));
  EXPECT_EQ(on["expected_hit_tokens"], 3 * (8 + 16));
  expect_hits_as_expected(on);
  // Turn k's prompt is the conversation so far: the generated tokens are resent.
  for (const json& q : on["requests"])
    EXPECT_EQ(q["prompt_tokens"], 7 * (q["turn"].get<int>() + 1) + 3 * q["turn"].get<int>());
  EXPECT_EQ(j["comparison"]["outputs_identical"], true);
}

TEST_F(CliBenchTest, NoSharingExpectsAndMeasuresNoHits) {
  const json j = bench("--workload no-sharing --num-prompts 6 --prompt-len 33 --output-len 3");
  ASSERT_EQ(j["runs"].size(), 1u);
  EXPECT_FALSE(j.contains("comparison"));
  const json& run = j["runs"][0];
  expect_run_schema(run);
  EXPECT_EQ(run["prefix_caching"], true);
  EXPECT_EQ(run["expected_hit_rate"], 0.0);
  EXPECT_EQ(run["hit_rate"], 0.0);
  EXPECT_EQ(run["query_tokens"], 6 * 33);
}

TEST_F(CliBenchTest, PoissonArrivalsAreHonoredAndKeepTheExpectedHitRate) {
  const json j = bench(
      "--workload shared-prefix --groups 2 --requests-per-group 4 --system-len 30 "
      "--question-len 5 --output-len 3 --request-rate 40 --seed 7");
  ASSERT_EQ(j["runs"].size(), 1u);
  EXPECT_EQ(j["workload"]["arrivals"], "poisson");
  const json& run = j["runs"][0];
  expect_run_schema(run);
  expect_hits_as_expected(run);
  // Each request went out at its seeded arrival time (late by at most a generous margin
  // for a loaded machine, never early).
  tools::bench::WorkloadSpec spec;
  spec.groups = 2;
  spec.requests_per_group = 4;
  spec.system_len = 30;
  spec.question_len = 5;
  spec.output_len = 3;
  spec.request_rate = 40;
  spec.seed = 7;
  const tools::bench::Workload w = tools::bench::make_workload(spec, 512, 4096);
  ASSERT_EQ(run["requests"].size(), w.sessions.size());
  EXPECT_GT(w.sessions.back().arrival_s, 0.0);
  for (std::size_t i = 0; i < w.sessions.size(); ++i) {
    const double submitted = run["requests"][i]["submit_s"].get<double>();
    EXPECT_GE(submitted, w.sessions[i].arrival_s) << i;
    EXPECT_LE(submitted, w.sessions[i].arrival_s + 2.0) << i;
  }
  EXPECT_GE(run["duration_s"].get<double>(), w.sessions.back().arrival_s);
}

TEST_F(CliBenchTest, BadSizesAreErrorsNamingTheFlag) {
  auto r = run_command(
      cli_path() + " bench serve --model " + model_ + " --device cpu --threads 1 --groups 0", true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--groups"));
  r = run_command(cli_path() + " bench serve --model " + model_ +
                      " --device cpu --compare-cache --no-prefix-cache",
                  true);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("excludes"));
}

}  // namespace
}  // namespace cachet

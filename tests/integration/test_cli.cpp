// The `cachet` command-line tool: make-model, generate (human and JSON Lines), info, errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace cachet {
namespace {

using nlohmann::json;
using testing::cli_path;
using ::testing::HasSubstr;
using testing::json_lines;
using testing::run_command;
using testing::TempDir;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = testing::make_tiny_cli_model(dir_); }

  TempDir dir_;
  std::string model_;
};

TEST_F(CliTest, GenerateJsonFollowsTheDocumentedSchema) {
  auto r = run_command(
      cli_path() + " generate --model " + model_ +
      " --prompt-ids 1,2,3,4 --prompt-ids 9,8 --max-tokens 5 --temperature 0 --ignore-eos"
      " --logprobs 2 --prompt-logprobs 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["prompt_token_ids"], json({1, 2, 3, 4}));
  EXPECT_EQ(lines[1]["prompt_token_ids"], json({9, 8}));
  for (const auto& j : lines) {
    ASSERT_EQ(j["token_ids"].size(), 5u);
    EXPECT_EQ(j["finish_reason"], "length");
    EXPECT_EQ(j["num_cached_tokens"], 0);
    EXPECT_TRUE(j["ttft_ms"].is_number());
    EXPECT_TRUE(j["queue_ms"].is_number());
    EXPECT_EQ(j["cache_miss"]["reason"], "bypassed") << "--prompt-logprobs computes it all";
    EXPECT_LE(j["queue_ms"].get<double>(), j["ttft_ms"].get<double>());
    EXPECT_TRUE(j["decode_ms"].is_number());
    ASSERT_EQ(j["logprobs"].size(), 5u);
    for (std::size_t t = 0; t < 5; ++t) {
      const json& entry = j["logprobs"][t];
      ASSERT_EQ(entry.size(), 2u);
      EXPECT_EQ(entry[0]["id"], j["token_ids"][t]);  // greedy: the sampled token is the top one
      EXPECT_GE(entry[0]["logprob"].get<double>(), entry[1]["logprob"].get<double>());
      EXPECT_LE(entry[0]["logprob"].get<double>(), 0.0);
    }
    const json& prompt_lp = j["prompt_logprobs"];
    ASSERT_EQ(prompt_lp.size(), j["prompt_token_ids"].size());
    EXPECT_TRUE(prompt_lp[0].is_null());
    for (std::size_t i = 1; i < prompt_lp.size(); ++i) {
      bool has_prompt_token = false;
      for (const auto& e : prompt_lp[i]) has_prompt_token |= e["id"] == j["prompt_token_ids"][i];
      EXPECT_TRUE(has_prompt_token);
    }
  }
}

TEST_F(CliTest, PromptsFileCarriesPerRequestSamplingAndMatchesPromptIds) {
  std::string file = (dir_.path() / "prompts.jsonl").string();
  testing::write_file(
      file,
      "{\"prompt_ids\": [5, 6, 7], \"max_tokens\": 3}\n"
      "\n"
      "{\"prompt_ids\": [5, 6, 7], \"temperature\": 1.0, \"seed\": 3, \"max_tokens\": 7, "
      "\"logprobs\": 0}\n");
  auto r = run_command(cli_path() + " generate --model " + model_ + " --prompts-file " + file +
                       " --temperature 0 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["token_ids"].size(), 3u);
  EXPECT_TRUE(lines[0]["logprobs"].is_null());
  EXPECT_EQ(lines[1]["token_ids"].size(), 7u);
  ASSERT_EQ(lines[1]["logprobs"].size(), 7u);
  EXPECT_EQ(lines[1]["logprobs"][0].size(), 1u);  // logprobs 0: just the sampled token
  EXPECT_EQ(lines[1]["logprobs"][0][0]["id"], lines[1]["token_ids"][0]);

  auto same = run_command(cli_path() + " generate --model " + model_ +
                          " --prompt-ids 5,6,7 --max-tokens 3 --temperature 0 --ignore-eos --json");
  ASSERT_EQ(same.exit_code, 0);
  EXPECT_EQ(json_lines(same.output)[0]["token_ids"], lines[0]["token_ids"]);
}

TEST_F(CliTest, LogitsProcessingFlagsAndPromptsFileFields) {
  auto r = run_command(cli_path() + " generate --model " + model_ +
                       " --prompt-ids 1,2,3 --max-tokens 3 --temperature 0 --ignore-eos"
                       " --logit-bias 11:100 --logit-bias 12:-5 --repetition-penalty 1.2"
                       " --presence-penalty 0.5 --frequency-penalty 0.5 --min-tokens 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_lines(r.output)[0]["token_ids"], json({11, 11, 11}));
  const std::string file = (dir_.path() / "bias.jsonl").string();
  testing::write_file(file,
                      "{\"prompt_ids\": [1, 2, 3], \"logit_bias\": {\"13\": 100}, "
                      "\"repetition_penalty\": 1.1, \"min_tokens\": 2}\n"
                      "{\"prompt_ids\": [1], \"logit_bias\": {\"x\": 1}}\n"
                      "{\"prompt_ids\": [1], \"logit_bias\": [1]}\n"
                      "{\"prompt_ids\": [1], \"presence_penalty\": 3}\n");
  r = run_command(cli_path() + " generate --model " + model_ + " --prompts-file " + file +
                  " --max-tokens 2 --temperature 0 --ignore-eos --json");
  EXPECT_EQ(r.exit_code, 1);
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 4u) << r.output;
  EXPECT_EQ(lines[0]["token_ids"], json({13, 13}));
  EXPECT_THAT(lines[1]["error"].get<std::string>(),
              HasSubstr(":2: 'logit_bias' key 'x' is not a token id"));
  EXPECT_THAT(lines[2]["error"].get<std::string>(),
              HasSubstr(":3: field 'logit_bias' must be an object"));
  EXPECT_THAT(lines[3]["error"].get<std::string>(),
              HasSubstr("presence_penalty must be in [-2, 2]"));
  r = run_command(cli_path() + " generate --model " + model_ + " --prompt-ids 1 --logit-bias 5",
                  true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--logit-bias: '5' is not ID:BIAS"));
}

TEST_F(CliTest, SamplesOfOnePromptAreLinesOfTheirOwn) {
  const std::string file = (dir_.path() / "n.jsonl").string();
  testing::write_file(file,
                      "{\"prompt_ids\": [1, 2, 3], \"n\": 3, \"seed\": 9}\n"
                      "{\"prompt_ids\": [4, 5]}\n"
                      "{\"prompt_ids\": [4, 5], \"n\": 0}\n");
  auto r = run_command(cli_path() + " generate --model " + model_ + " --prompts-file " + file +
                       " --max-tokens 3 --temperature 5 --ignore-eos --n 2 --json");
  EXPECT_EQ(r.exit_code, 1);
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 6u) << r.output;
  const int index[] = {0, 0, 0, 1, 1, 2}, sample[] = {0, 1, 2, 0, 1, 0};
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["index"], index[i]) << i;
    EXPECT_EQ(lines[i]["sample_index"], sample[i]) << i;
  }
  EXPECT_THAT(lines[5]["error"].get<std::string>(), HasSubstr("n must be in [1, 128], got 0"));
  // Sample 1 of the first request is what a lone request seeded 9 + 1 gives.
  const std::string alone = (dir_.path() / "alone.jsonl").string();
  testing::write_file(alone, "{\"prompt_ids\": [1, 2, 3], \"seed\": 10}\n");
  r = run_command(cli_path() + " generate --model " + model_ + " --prompts-file " + alone +
                  " --max-tokens 3 --temperature 5 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_lines(r.output)[0]["token_ids"], lines[1]["token_ids"]);
  r = run_command(cli_path() + " generate --model " + model_ +
                  " --prompt-ids 1,2 --n 2 --max-tokens 2 --ignore-eos");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[0.1] prompt"));
  EXPECT_THAT(r.output, HasSubstr("1 requests (0 failed)"));
}

TEST_F(CliTest, HumanOutputShowsIdsAndTimings) {
  auto r = run_command(cli_path() + " generate --model " + model_ +
                       " --prompt-ids 1,2,3 --max-tokens 4 --ignore-eos");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("time to first token"));
  EXPECT_THAT(r.output, HasSubstr("tokens/s"));
  EXPECT_THAT(r.output, HasSubstr("1 requests (0 failed) on cpu"));
}

TEST_F(CliTest, ABadRequestFailsAloneAndTheExitCodeSaysSo) {
  auto r =
      run_command(cli_path() + " generate --model " + model_ +
                  " --prompt-ids 1,2 --prompt-ids 1,999999 --max-tokens 2 --ignore-eos --json");
  EXPECT_EQ(r.exit_code, 1);
  auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["finish_reason"], "length");
  EXPECT_EQ(lines[1]["finish_reason"], "error");
  EXPECT_THAT(lines[1]["error"].get<std::string>(), HasSubstr("999999"));
}

TEST_F(CliTest, InputErrorsNameTheCulprit) {
  std::string bad_file = (dir_.path() / "bad.jsonl").string();
  testing::write_file(bad_file, "{\"prompt_ids\": [1, 2]}\n{\"prompt_ids\": [1, \"x\"]}\n");
  auto r =
      run_command(cli_path() + " generate --model " + model_ + " --prompts-file " + bad_file, true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("bad.jsonl:2"));

  testing::write_file(bad_file, "{\"prompt_ids\": [1], \"temprature\": 1}\n");
  r = run_command(cli_path() + " generate --model " + model_ + " --prompts-file " + bad_file, true);
  EXPECT_THAT(r.output, HasSubstr("unknown field 'temprature'"));

  r = run_command(cli_path() + " generate --model " + model_ + " --prompt-ids 1,x,3", true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("'x' is not a token id"));

  r = run_command(
      cli_path() + " generate --model " + (dir_.path() / "nope").string() + " --prompt-ids 1",
      true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("nope"));

  r = run_command(cli_path() + " generate --model " + model_ + " --prompt hello", true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("tokenizer.json"));

  r = run_command(cli_path() + " make-model --arch gpt2 --out " + (dir_.path() / "m").string(),
                  true);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("--arch"));
}

TEST_F(CliTest, TextPromptsUseTheModelsTokenizerAndPrintText) {
  std::string model = (dir_.path() / "with-tokenizer").string();
  auto made =
      run_command(cli_path() + " make-model --arch qwen3 --preset tiny --seed 2 --out " + model +
                      " --tokenizer " + (testing::test_data_dir() / "tokenizers/qwen3").string(),
                  true);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  auto r = run_command(
      cli_path() + " generate --model " + model +
      " --prompt 'Hello there' --max-tokens 6 --temperature 0 --ignore-eos --json --stats");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(lines[0]["text"].is_string());
  EXPECT_EQ(lines[0]["token_ids"].size(), 6u);
  auto ids = run_command("echo '\"Hello there\"' | " + cli_path() +
                         " tokenize --add-special-tokens --tokenizer " + model);
  ASSERT_EQ(ids.exit_code, 0) << ids.output;
  EXPECT_EQ(lines[0]["prompt_token_ids"], json::parse(ids.output));
  auto decoded = run_command("echo '" + lines[0]["token_ids"].dump() + "' | " + cli_path() +
                             " tokenize --decode --tokenizer " + model);
  EXPECT_EQ(json::parse(decoded.output),
            lines[0]["text"]);  // no special tokens among random ids here
}

TEST_F(CliTest, StatsAndPrefixCacheFlags) {
  std::string file = (dir_.path() / "shared.jsonl").string();
  testing::write_file(file,
                      "{\"prompt_ids\": "
                      "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,"
                      "29,30,31,32,33]}\n");
  const std::string base =
      cli_path() + " generate --model " + model_ + " --prompts-file " + file +
      " --prompt-ids "
      "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,40"
      " --max-tokens 2 --ignore-eos --json --stats";
  // --prompts-file excludes --prompt-ids: this must be a usage error.
  EXPECT_NE(run_command(base, true).exit_code, 0);
  auto on = run_command(cli_path() + " generate --model " + model_ + " --prompts-file " + file +
                            " --max-tokens 2 --ignore-eos --json --stats --schedule cache-aware",
                        true);
  ASSERT_EQ(on.exit_code, 0) << on.output;
  EXPECT_THAT(on.output, HasSubstr("\"prefix_cache_query_tokens\": 33"));
  EXPECT_THAT(on.output, HasSubstr("\"blocks_in_use\": 0"));
  auto off = run_command(
      cli_path() + " generate --model " + model_ + " --prompts-file " + file +
          " --max-tokens 2 --ignore-eos --json --stats --no-prefix-cache --block-size 8",
      true);
  ASSERT_EQ(off.exit_code, 0) << off.output;
  EXPECT_THAT(off.output, HasSubstr("\"blocks_cached\": 0"));
}

TEST_F(CliTest, InfoPrintsTheEnginesChoices) {
  auto r = run_command(cli_path() + " info --model " + model_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json j = json::parse(r.output);
  EXPECT_EQ(j["architecture"], "Qwen3ForCausalLM");
  EXPECT_EQ(j["backend"], "cpu");
  EXPECT_GT(j["num_kv_blocks"].get<int>(), 0);
}

}  // namespace
}  // namespace cachet

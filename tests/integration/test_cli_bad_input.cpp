// Hostile input to the `cachet` tool: each gets a non-zero exit and a message naming the
// file, line, flag or field; a bad line of a prompts file fails alone. The rows of "Bad
// input" in docs/reliability.md point here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace cachet {
namespace {

using nlohmann::json;
using testing::cli_path;
using ::testing::HasSubstr;
using testing::run_command;
using testing::TempDir;

// Its runs merge stderr (the log) into the output: only the JSON objects count.
std::vector<json> json_lines(const std::string& output) {
  return testing::json_lines(output, /*objects_only=*/true);
}

class CliBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = (dir_.path() / "model").string();
    auto r = run_command(cli_path() + " make-model --arch qwen3 --preset tiny --seed 5 --out " +
                             model_ + " --tokenizer " +
                             (testing::test_data_dir() / "tokenizers/gpt2_style").string(),
                         true);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  std::string generate(const std::string& args) {
    return cli_path() + " generate --model " + model_ + " --threads 1 --ignore-eos " + args;
  }

  TempDir dir_;
  std::string model_;
};

TEST_F(CliBadInput, MissingOrUnusableModelDirectory) {
  auto r = run_command(cli_path() + " generate --prompt-ids 1", true);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("--model is required"));
  const std::string missing = (dir_.path() / "nope").string();
  r = run_command(cli_path() + " info --model " + missing, true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("cachet: error: " + missing + ": model directory not found"));
  const std::string file = model_ + "/config.json";
  r = run_command(cli_path() + " generate --prompt-ids 1 --model " + file, true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(file + ": not a directory"));
  const std::string empty = (dir_.path() / "empty").string();
  std::filesystem::create_directory(empty);
  r = run_command(cli_path() + " info --model " + empty, true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(empty + "/config.json: no such file"));
}

// Model files broken in the ways the library tests try one by one (test_bad_input.cpp): the
// tool reports the library's message and exits 1.
TEST_F(CliBadInput, BrokenModelFilesAreNamed) {
  const std::string config = model_ + "/config.json";
  const std::string original = testing::read_file(config);
  testing::write_file(config, std::string(100000, '[') + std::string(100000, ']'));
  auto r = run_command(cli_path() + " info --model " + model_, true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(config + ": JSON nested deeper than 128 levels"));
  testing::write_file(config, original);

  // Cut 100 bytes into the data, after the header.
  const std::string weights = model_ + "/model.safetensors";
  const std::string bytes = testing::read_file(weights);
  std::size_t header_size = 0;
  for (int i = 7; i >= 0; --i)
    header_size = (header_size << 8) | static_cast<unsigned char>(bytes[i]);
  testing::write_file(weights, bytes.substr(0, 8 + header_size + 100));
  r = run_command(cli_path() + " info --model " + model_, true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(weights + ": tensor "));
  EXPECT_THAT(r.output, HasSubstr("past the"));
}

// One bad line used to stop the whole file before anything ran.
TEST_F(CliBadInput, BadPromptsFileLinesFailAloneAndTheOthersRun) {
  const std::string file = (dir_.path() / "bad.jsonl").string();
  testing::write_file(file,
                      "{\"prompt_ids\": [1, 2]}\n"                      // 1: fine
                      "not json\n"                                      // 2
                      "{\"prompt\": \"\xFF\"}\n"                        // 3: invalid UTF-8
                      "[1]\n"                                           // 4
                      "{\"prompt_ids\": [1], \"temprature\": 1}\n"      // 5
                      "\n"                                              // skipped
                      "{\"prompt\": \"hi\", \"prompt_ids\": [1]}\n"     // 7
                      "{\"prompt_ids\": \"1,2\"}\n"                     // 8
                      "{\"prompt_ids\": [1], \"max_tokens\": \"3\"}\n"  // 9
                      "{\"prompt\": \"Hello\"}\n");                     // 10: fine
  // stdout: the JSON of every request; stderr: each failed one's error, naming file and line
  // (it used to say nothing on stderr).
  const std::string err = (dir_.path() / "stderr.txt").string();
  auto r = run_command(generate("--prompts-file " + file + " --max-tokens 2 --json") + " 2>" + err);
  EXPECT_EQ(r.exit_code, 1);
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 9u) << r.output;
  const std::string errors = testing::read_file(err);
  std::size_t error_lines = 0;  // stderr may also hold log lines (kAuto's CPU fallback)
  for (std::size_t at = 0; (at = errors.find("cachet: error: ", at)) != std::string::npos; ++at)
    ++error_lines;
  EXPECT_EQ(error_lines, 7u) << errors;
  for (int line : {2, 3, 4, 5, 7, 8, 9})
    EXPECT_THAT(errors, HasSubstr("cachet: error: " + file + ":" + std::to_string(line) + ": "));
  const std::vector<std::string> expected = {"",
                                             "bad.jsonl:2: not valid JSON",
                                             "bad.jsonl:3: not valid JSON",
                                             "bad.jsonl:4: not a JSON object",
                                             "bad.jsonl:5: unknown field 'temprature'",
                                             "bad.jsonl:7: give exactly one of 'prompt'",
                                             "bad.jsonl:8: field 'prompt_ids' must be an array",
                                             "bad.jsonl:9: field 'max_tokens' must be an integer",
                                             ""};
  for (std::size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(lines[i]["index"], i);
    if (expected[i].empty()) {
      EXPECT_EQ(lines[i]["finish_reason"], "length") << lines[i].dump();
      EXPECT_EQ(lines[i]["token_ids"].size(), 2u);
    } else {
      EXPECT_EQ(lines[i]["finish_reason"], "error");
      EXPECT_THAT(lines[i]["error"].get<std::string>(), HasSubstr(expected[i]));
    }
  }
  EXPECT_THAT(lines[2]["error"].get<std::string>(), HasSubstr("ill-formed UTF-8"));
  // The human format says the same, one line per failed request.
  r = run_command(generate("--prompts-file " + file + " --max-tokens 2"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("[4] error: " + file + ":5: unknown field 'temprature'"));
  EXPECT_THAT(r.output, HasSubstr("9 requests (7 failed)"));
}

// Numbers used to be converted unchecked: max_tokens 2^32 + 1 became 1, a stop token id of
// 2^40 became 0, and the largest seed was refused as "the wrong type".
TEST_F(CliBadInput, PromptsFileNumbersAreRangeCheckedNotTruncated) {
  const std::string file = (dir_.path() / "numbers.jsonl").string();
  testing::write_file(file,
                      "{\"prompt_ids\": [1], \"max_tokens\": 4294967297}\n"
                      "{\"prompt_ids\": [1], \"stop_token_ids\": [1099511627776]}\n"
                      "{\"prompt_ids\": [4294967297]}\n"
                      "{\"prompt_ids\": [1], \"temperature\": 1e300}\n"
                      "{\"prompt_ids\": [1], \"top_p\": 1e999}\n"
                      "{\"prompt_ids\": [1], \"seed\": -1}\n"
                      "{\"prompt_ids\": [1], \"temperature\": -1}\n"
                      "{\"prompt_ids\": [1], \"logprobs\": 1000000}\n"
                      "{\"prompt_ids\": [1], \"seed\": 18446744073709551615, \"max_tokens\": 1}\n");
  auto r = run_command(generate("--prompts-file " + file + " --json"));
  EXPECT_EQ(r.exit_code, 1);
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 9u) << r.output;
  const std::vector<std::string> expected = {
      "numbers.jsonl:1: field 'max_tokens' must be an integer in [-2147483648, 2147483647] (got "
      "4294967297)",
      "numbers.jsonl:2: 'stop_token_ids' holds 1099511627776, not a token id",
      "numbers.jsonl:3: 'prompt_ids' holds 4294967297, not a token id",
      "numbers.jsonl:4: field 'temperature' must be a number within the range of a float (got "
      "1e+300)",
      "numbers.jsonl:5: not valid JSON: [json.exception.out_of_range.406] number overflow",
      "numbers.jsonl:6: field 'seed' must be an integer in [0, 18446744073709551615] (got -1)",
      // Well-formed but invalid values are the engine's to refuse, per request.
      "temperature must be finite and >= 0, got -1",
      "logprobs must be in [0, 20], got 1000000",
  };
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(lines[i]["finish_reason"], "error") << i;
    EXPECT_THAT(lines[i]["error"].get<std::string>(), HasSubstr(expected[i]));
  }
  EXPECT_EQ(lines[8]["finish_reason"], "length") << lines[8].dump();
}

TEST_F(CliBadInput, PromptsFileThatIsMissingADirectoryEmptyOrAPipe) {
  auto r = run_command(generate("--prompts-file " + (dir_.path() / "none.jsonl").string()), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("none.jsonl: cannot open prompts file"));
  r = run_command(generate("--prompts-file " + dir_.path().string()), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(dir_.path().string() + ": is a directory, not a prompts file"));
  const std::string empty = (dir_.path() / "empty.jsonl").string();
  testing::write_file(empty, "\n  \n");
  r = run_command(generate("--prompts-file " + empty), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("empty.jsonl: no requests in the file"));
  // A pipe is a fine prompts file.
  r = run_command("echo '{\"prompt_ids\": [1, 2]}' | " +
                      generate("--prompts-file /dev/stdin --max-tokens 2 --json"),
                  true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(CliBadInput, InvalidUtf8PromptsAndFileNames) {
  // --prompt takes raw bytes: invalid UTF-8 is repaired to U+FFFD (see tokenizer.h), and the
  // printed JSON is valid.
  auto r = run_command(
      generate("--prompt \"$(printf 'a\\377b')\" --prompt \"$(printf '\\355\\240\\200')\" "
               "--max-tokens 2 --json"),
      true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 2u) << r.output;
  for (const json& line : lines) EXPECT_EQ(line["finish_reason"], "length");
  auto ids = run_command("printf '%s\\n' '\"a\\ufffdb\"' | " + cli_path() +
                         " tokenize --add-special-tokens --tokenizer " + model_);
  EXPECT_EQ(lines[0]["prompt_token_ids"], json::parse(ids.output));

  // A message may carry bytes of a file name that are not UTF-8; printing it as JSON used to
  // throw (an "internal error", exit 3).
  const std::string file = (dir_.path() / "bad\xFF.jsonl").string();
  testing::write_file(file, "{\"prompt_ids\": [1], \"bogus\": 1}\n");
  r = run_command(generate("--prompts-file '" + file + "' --json"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const auto bad = json_lines(r.output);
  ASSERT_EQ(bad.size(), 1u) << r.output;
  EXPECT_THAT(bad[0]["error"].get<std::string>(), HasSubstr("bad\uFFFD.jsonl:1: unknown field"));
}

TEST_F(CliBadInput, EngineFlagsOutOfRangeNameTheFlagOrField) {
  // 2^44 MiB is 2^64 bytes: the product used to wrap to 0, which silently meant "default".
  auto r = run_command(generate("--prompt-ids 1 --kv-cache-mib 17592186044416"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--kv-cache-mib must be in [0, 8796093022207]"));
  r = run_command(generate("--prompt-ids 1 --kv-cache-mib -1"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--kv-cache-mib"));
  r = run_command(generate("--prompt-ids 1 --block-size 3"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("EngineConfig: block_size must be a power of two"));
  r = run_command(generate("--prompt-ids 1 --max-num-seqs 0"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("EngineConfig: max_num_seqs must be >= 1"));
  r = run_command(cli_path() + " generate --model " + model_ + " --prompt-ids 1 --threads 100000",
                  true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("EngineConfig: num_threads must be in [0, 1024]"));
  // Values CLI11 cannot convert are usage errors (its own exit codes, not 0 or 1).
  r = run_command(generate("--prompt-ids 1 --block-size abc"), true);
  EXPECT_GT(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--block-size"));
  r = run_command(generate("--prompt-ids 1 --device tpu"), true);
  EXPECT_GT(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--device"));
}

// `tokenize --decode` used to truncate an id beyond 32 bits into some other token.
TEST_F(CliBadInput, TokenizeDecodeRefusesIdsBeyond32Bits) {
  auto r = run_command(
      "echo '[1, 99999999999]' | " + cli_path() + " tokenize --decode --tokenizer " + model_, true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("stdin line 1: expected a JSON array of integer token ids"));
  // Ids within 32 bits that are no token are skipped, as Hugging Face does.
  r = run_command(
      "echo '[-1, 2147483647]' | " + cli_path() + " tokenize --decode --tokenizer " + model_, true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json::parse(r.output), "");
}

}  // namespace
}  // namespace cachet

// The disk tier across real processes: a `cachet generate` run finds the blocks an earlier
// run wrote, and a run killed (SIGKILL) while writing leaves a directory the next run uses
// safely: the same tokens as a run without the cache.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "support/test_support.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::cli_path;
using testing::json_lines;
using testing::run_command;
using testing::TempDir;

class CliDiskCache : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::make_tiny_cli_model(dir_);
    cache_ = (dir_.path() / "kv").string();
    prompts_ = (dir_.path() / "prompts.jsonl").string();
  }

  // One prompt of `n` token ids, `max_tokens` to generate.
  void write_prompt(int n, int max_tokens) {
    json ids = json::array();
    for (int i = 0; i < n; ++i) ids.push_back(1 + (i * 7919) % 500);
    testing::write_file(prompts_,
                        json{{"prompt_ids", ids}, {"max_tokens", max_tokens}}.dump() + "\n");
  }

  std::string generate_command(const std::string& extra) const {
    return cli_path() + " generate --model " + model_ +
           " --device cpu --threads 1 --prompts-file " + prompts_ +
           " --temperature 0 --ignore-eos --json --block-size 16 " + extra;
  }

  json generate(const std::string& extra) {
    auto r = run_command(generate_command(extra));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    auto lines = json_lines(r.output);
    EXPECT_EQ(lines.size(), 1u);
    return lines.empty() ? json{} : lines[0];
  }

  std::size_t num_records() const {
    std::size_t n = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(cache_, ec), end; !ec && it != end; it.increment(ec))
      n += it->path().extension() == ".kvb" ? 1 : 0;
    return n;
  }

  TempDir dir_;
  std::string model_, cache_, prompts_;
};

TEST_F(CliDiskCache, ASecondProcessReadsThePromptFromDisk) {
  write_prompt(1000, 4);
  const std::string disk = "--host-kv-cache-mib 4 --kv-cache-dir " + cache_;
  const json first = generate(disk);
  EXPECT_EQ(first["num_cached_tokens"], 0);
  const json second = generate(disk);
  EXPECT_EQ(second["num_cached_tokens"], 992) << "62 blocks of 16; the last token is computed";
  const json off = generate("--no-prefix-cache");
  EXPECT_EQ(second["token_ids"], off["token_ids"]);
  EXPECT_EQ(first["token_ids"], off["token_ids"]);
  EXPECT_EQ(second["logprobs"], off["logprobs"]);
}

// SIGKILL once the first records are on disk: whatever the run left (whole records, a
// temporary file) the next run uses or ignores, never anything partial.
TEST_F(CliDiskCache, ARunKilledWhileWritingLeavesADirectoryTheNextRunUsesSafely) {
  write_prompt(4000, 64);
  const std::string disk = "--host-kv-cache-mib 16 --kv-cache-dir " + cache_;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string command = "exec " + generate_command(disk) + " > /dev/null 2>&1";
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (num_records() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  const std::size_t left = num_records();
  EXPECT_GE(left, 3u);
  const json next = generate(disk);
  const json off = generate("--no-prefix-cache");
  EXPECT_EQ(next["token_ids"], off["token_ids"]);
  EXPECT_EQ(next["logprobs"], off["logprobs"]);
  EXPECT_GT(next["num_cached_tokens"].get<int>(), 0) << left << " records were left";
  // And the run after that has the whole prompt.
  EXPECT_EQ(generate(disk)["num_cached_tokens"], 3984);
}

TEST_F(CliDiskCache, StatsReportTheDiskTier) {
  write_prompt(100, 2);
  const std::string disk = "--host-kv-cache-mib 4 --kv-cache-dir " + cache_ + " --stats";
  generate(disk);
  auto r = run_command(generate_command(disk), true);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::HasSubstr("\"prefix_cache_disk_hit_tokens\": 96"));
  EXPECT_THAT(r.output, ::testing::HasSubstr("\"disk_blocks_read\": 6"));
  auto bad = run_command(generate_command("--kv-cache-dir " + cache_), true);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.output, ::testing::HasSubstr("host_kv_cache_bytes"));
}

}  // namespace
}  // namespace cachet

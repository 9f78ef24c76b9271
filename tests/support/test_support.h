// Helpers shared by the tests: temporary directories, test models, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cachet/errors.h"
#include "model/make_model.h"

namespace cachet::testing {

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Reads a whole file; throws std::runtime_error when it cannot.
std::string read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& contents);

// Runs `f`, expects a cachet::Error with `code`, and returns its message (with a test
// failure and "" when nothing is thrown).
template <typename F>
std::string error_of(F&& f, ErrorCode code) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

// Restricts the calling thread to the first CPU of its affinity mask. False (and nothing
// changed) when the mask has a single CPU or the kernel refuses.
bool pin_to_one_cpu();

// tests/data in the source tree.
std::filesystem::path test_data_dir();

// Runs `command` through the shell; returns its exit code and what it printed on stdout
// (stderr is folded in when `merge_stderr`).
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult run_command(const std::string& command, bool merge_stderr = false);
// The built `cachet` executable.
std::string cli_path();
// The tiny Qwen3 model `cachet make-model` writes with seed 5, in `dir`/model; its path (a
// test failure when the command fails).
std::string make_tiny_cli_model(const TempDir& dir);

// The JSON objects of a command's output, one per non-empty line. Every line must be JSON,
// unless `objects_only`: then lines not starting with '{' (log lines of merged stderr) are
// skipped.
std::vector<nlohmann::json> json_lines(const std::string& output, bool objects_only = false);

}  // namespace cachet::testing

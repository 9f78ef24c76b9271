// Every golden case of every tokenizer fixture, exact: ids, ids with special tokens, and
// the decoded text. The goldens come from Hugging Face `tokenizers` (see the README in
// tests/data/tokenizers).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cachet/tokenizer.h"
#include "support/test_support.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string text;
  std::vector<TokenId> ids, ids_with_special;
  std::string decoded;
};

std::vector<Case> load_cases(const fs::path& file) {
  std::vector<Case> cases;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    cases.push_back({j.at("text").get<std::string>(), j.at("ids").get<std::vector<TokenId>>(),
                     j.at("ids_with_special").get<std::vector<TokenId>>(),
                     j.at("decoded").get<std::string>()});
  }
  return cases;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, AllCasesExact) {
  const fs::path dir = testing::test_data_dir() / "tokenizers" / GetParam();
  const Tokenizer tok = Tokenizer::from_file(dir);
  std::size_t total = 0, exact = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!name.ends_with("_cases.jsonl")) continue;
    for (const Case& c : load_cases(entry.path())) {
      ++total;
      const auto ids = tok.encode(c.text, false);
      const auto with_special = tok.encode(c.text, true);
      const auto decoded = tok.decode(c.ids, false);
      EXPECT_EQ(ids, c.ids) << name << " text: " << nlohmann::json(c.text).dump();
      EXPECT_EQ(with_special, c.ids_with_special)
          << name << " text: " << nlohmann::json(c.text).dump();
      EXPECT_EQ(decoded, c.decoded) << name << " text: " << nlohmann::json(c.text).dump();
      if (ids == c.ids && with_special == c.ids_with_special && decoded == c.decoded) ++exact;
    }
  }
  std::printf("[ golden ] %s: %zu/%zu cases exact\n", GetParam().c_str(), exact, total);
  RecordProperty("cases", static_cast<int>(total));
  RecordProperty("exact", static_cast<int>(exact));
  EXPECT_GT(total, 0u);
  EXPECT_EQ(exact, total);
}

INSTANTIATE_TEST_SUITE_P(Families, GoldenTest,
                         ::testing::Values("qwen3", "gpt2_style", "llama3_style", "llama2_style",
                                           "mistral_style", "components_a", "components_b"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cachet

// `cachet tokenize` end to end: JSON lines in, the library's ids (or text) out.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cachet/tokenizer.h"
#include "support/test_support.h"

namespace cachet {
namespace {

using nlohmann::json;

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct Cli {
  testing::TempDir dir;
  testing::CommandResult run(const std::string& input, const std::string& args,
                             bool merge = false) {
    testing::write_file(dir.path() / "in.txt", input);
    return testing::run_command(
        testing::cli_path() + " tokenize " + args + " < " + (dir.path() / "in.txt").string(),
        merge);
  }
};

const std::string kTokenizer = (testing::test_data_dir() / "tokenizers" / "llama2_style").string();

TEST(CliTokenize, EncodesLinesLikeTheLibrary) {
  const auto tok = Tokenizer::from_file(kTokenizer);
  const std::vector<std::string> texts = {"Hello world", "", "<s>Two\nlines \xE4\xB8\xAD", "  x  "};
  std::string input;
  for (const auto& t : texts) input += json(t).dump() + "\n";
  for (const bool special : {false, true}) {
    Cli cli;
    const auto result =
        cli.run(input, "--tokenizer " + kTokenizer + (special ? "" : " --no-special-tokens"));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    const auto lines = lines_of(result.output);
    ASSERT_EQ(lines.size(), texts.size());
    for (std::size_t i = 0; i < texts.size(); ++i) {
      EXPECT_EQ(json::parse(lines[i]).get<std::vector<TokenId>>(), tok.encode(texts[i], special));
    }
  }
}

TEST(CliTokenize, Decodes) {
  const auto tok = Tokenizer::from_file(kTokenizer);
  const auto ids = tok.encode("Hello there, \xE4\xB8\xAD!", true);
  Cli cli;
  const auto result = cli.run(json(ids).dump() + "\n[]\n", "--decode --tokenizer " + kTokenizer);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto lines = lines_of(result.output);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0]).get<std::string>(), tok.decode(ids, false));
  EXPECT_EQ(json::parse(lines[1]).get<std::string>(), "");
}

TEST(CliTokenize, MalformedLineFailsNamingTheLine) {
  Cli cli;
  const auto result = cli.run("\"ok\"\nnot json\n\"never\"\n", "--tokenizer " + kTokenizer, true);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("line 2"), std::string::npos) << result.output;
  Cli wrong_type;
  const auto r2 = wrong_type.run("[1, 2]\n", "--tokenizer " + kTokenizer, true);
  EXPECT_NE(r2.exit_code, 0);
  EXPECT_NE(r2.output.find("line 1"), std::string::npos) << r2.output;
  Cli missing;
  const auto r3 = missing.run("\"x\"\n", "--tokenizer /nonexistent/dir", true);
  EXPECT_EQ(r3.exit_code, 1);
  EXPECT_NE(r3.output.find("cachet: error:"), std::string::npos) << r3.output;
}

}  // namespace
}  // namespace cachet

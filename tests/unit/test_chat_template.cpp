// ChatTemplate's own behaviour around the renderer: where a model directory's template comes
// from, and that every failure (a missing or broken file, a syntax error, an unsupported
// statement, messages that are not JSON, the template's raise_exception) is an Error naming
// what and where, never a crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cachet/chat.h"
#include "cachet/errors.h"
#include "support/test_support.h"

namespace cachet {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

void write_config(const TempDir& dir, const nlohmann::json& config) {
  testing::write_file(dir.path() / "tokenizer_config.json", config.dump());
}

TEST(ChatTemplate, RendersMessagesWithTheTemplatesVariables) {
  const ChatTemplate t(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}"
      "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
      "{{ tools | length if tools else 'no tools' }}{{ extra_var }}",
      "<s>");
  EXPECT_EQ(t.render(R"([{"role": "user", "content": "Hi"}])"), "<s><user>Hi<assistant>no tools");
  ChatRenderOptions o;
  o.add_generation_prompt = false;
  o.tools_json = R"([{"type": "function"}])";
  o.extra_json = R"({"extra_var": "!"})";
  EXPECT_EQ(t.render(R"([{"role": "user", "content": "Hi"}])", o), "<s><user>Hi1!");
}

TEST(ChatTemplate, FromATokenizerConfigStringAListOfNamedTemplatesOrAJinjaFile) {
  TempDir dir;
  write_config(dir, {{"chat_template", "A{{ eos_token }}"},
                     {"eos_token", "</s>"},
                     {"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}}});
  EXPECT_EQ(ChatTemplate::from_model_dir(dir.path().string()).render("[]"), "A</s>");
  write_config(dir, {{"chat_template",
                      {{{"name", "default"}, {"template", "D{{ bos_token }}"}},
                       {{"name", "tool_use"}, {"template", "T"}}}},
                     {"bos_token", {{"content", "<s>"}}}});
  EXPECT_EQ(ChatTemplate::from_model_dir(dir.path().string()).render("[]"), "D<s>");
  EXPECT_EQ(ChatTemplate::from_model_dir(dir.path().string(), "tool_use").render("[]"), "T");
  EXPECT_EQ(testing::error_of([&] { ChatTemplate::from_model_dir(dir.path().string(), "rag"); },
                              ErrorCode::kNotFound),
            (dir.path() / "tokenizer_config.json").string() +
                ": field 'chat_template' has no template named 'rag'");
  write_config(dir, {{"eos_token", "</s>"}});
  testing::write_file(dir.path() / "chat_template.jinja", "J{{ eos_token }}\n");
  EXPECT_EQ(ChatTemplate::from_model_dir(dir.path().string()).render("[]"), "J</s>")
      << "one trailing newline is dropped, as Jinja2 does";
}

TEST(ChatTemplate, AModelDirectoryWithoutOneOrWithABrokenOneIsAClearError) {
  TempDir dir;
  EXPECT_THAT(testing::error_of([&] { ChatTemplate::from_model_dir(dir.path().string()); },
                                ErrorCode::kNotFound),
              HasSubstr("has no chat template"));
  testing::write_file(dir.path() / "tokenizer_config.json", "{not json");
  EXPECT_THAT(testing::error_of([&] { ChatTemplate::from_model_dir(dir.path().string()); },
                                ErrorCode::kInvalidModel),
              HasSubstr("tokenizer_config.json: not valid JSON"));
  write_config(dir, {{"chat_template", "line one\n{% if x %}\nno end"}});
  EXPECT_THAT(testing::error_of([&] { ChatTemplate::from_model_dir(dir.path().string()); },
                                ErrorCode::kInvalidModel),
              HasSubstr("tokenizer_config.json: chat template line 3: missing {% endif %}"));
}

TEST(ChatTemplate, SyntaxErrorsAndUnsupportedConstructsNameTheirLine) {
  const auto error = [](const std::string& source) {
    return testing::error_of([&] { ChatTemplate t(source); }, ErrorCode::kInvalidArgument);
  };
  EXPECT_EQ(error("a\n{{ 1 + }}"), "chat template line 2: unexpected '}}' in an expression");
  EXPECT_EQ(error("\n\n{% include 'x' %}"),
            "chat template line 3: unsupported Jinja statement 'include'");
  EXPECT_EQ(error("{% for x in y recursive %}{% endfor %}"),
            "chat template line 1: recursive for loops are not supported");
  EXPECT_EQ(error("{{ 'abc }}"), "chat template line 1: unterminated string");
  EXPECT_EQ(error("{# never closed"), "chat template line 1: unterminated comment");
  EXPECT_EQ(error("{% if a %}{% endfor %}"),
            "chat template line 1: unsupported Jinja statement 'endfor'");
}

TEST(ChatTemplate, RenderErrorsNameTheirLineAndTheTemplatesOwnMessageComesThrough) {
  const ChatTemplate t(
      "{% for m in messages %}\n"
      "{% if m.role not in ['user', 'assistant'] %}"
      "{{ raise_exception('Unknown role: ' + m.role) }}{% endif %}\n"
      "{{ m.content + 1 }}\n"
      "{% endfor %}");
  EXPECT_EQ(testing::error_of([&] { t.render(R"([{"role": "system", "content": "x"}])"); },
                              ErrorCode::kInvalidArgument),
            "chat template line 2: Unknown role: system");
  EXPECT_THAT(
      testing::error_of([&] { t.render(R"([{"role": "user", "content": "x"}])"); },
                        ErrorCode::kInvalidArgument),
      HasSubstr("chat template line 3: unsupported operand type(s) for +: 'str' and 'int'"));
  EXPECT_THAT(testing::error_of([&] { t.render("{"); }, ErrorCode::kInvalidArgument),
              HasSubstr("chat messages: not valid JSON"));
  EXPECT_EQ(
      testing::error_of([&] { t.render(R"({"role": "user"})"); }, ErrorCode::kInvalidArgument),
      "chat messages: expected a JSON array of messages");
  ChatRenderOptions o;
  o.extra_json = "[1]";
  EXPECT_EQ(testing::error_of([&] { t.render("[]", o); }, ErrorCode::kInvalidArgument),
            "chat template variables: expected a JSON object");
}

TEST(ChatTemplate, RunawayTemplatesStopWithAnError) {
  const ChatTemplate recursive("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}");
  EXPECT_THAT(testing::error_of([&] { recursive.render("[]"); }, ErrorCode::kInvalidArgument),
              HasSubstr("macros nested too deeply"));
  const ChatTemplate long_range("{% for i in range(1000000) %}{% endfor %}");
  EXPECT_THAT(testing::error_of([&] { long_range.render("[]"); }, ErrorCode::kInvalidArgument),
              HasSubstr("range() too long"));
  const ChatTemplate nested_loops(
      "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}");
  EXPECT_THAT(testing::error_of([&] { nested_loops.render("[]"); }, ErrorCode::kInvalidArgument),
              HasSubstr("more than 1000000 steps"));
  const ChatTemplate doubling(
      "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}"
      "{% endfor %}");
  EXPECT_THAT(testing::error_of([&] { doubling.render("[]"); }, ErrorCode::kInvalidArgument),
              HasSubstr("over 64 Mi elements"));
  const ChatTemplate repeat("{{ 'ab' * 100000000000 }}");
  EXPECT_THAT(testing::error_of([&] { repeat.render("[]"); }, ErrorCode::kInvalidArgument),
              HasSubstr("over 64 Mi elements"));
  const ChatTemplate deep(
      "{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}"
      "{% endfor %}{{ ns.x }}");
  EXPECT_THAT(testing::error_of([&] { deep.render("[]"); }, ErrorCode::kInvalidArgument),
              HasSubstr("nested over 256 deep"));
  const ChatTemplate self("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}");
  EXPECT_THAT(testing::error_of([&] { self.render("[]"); }, ErrorCode::kInvalidArgument),
              HasSubstr("a namespace nested in itself"));
}

// Namespaces that refer to each other (directly or through a list) render and are freed
// with the render: LeakSanitizer in the asan preset checks the second half.
TEST(ChatTemplate, NamespacesInACycleAreFreed) {
  const ChatTemplate cycle(
      "{% set a = namespace(n=1) %}{% set b = namespace(x=[a]) %}{% set a.b = b %}"
      "{% set a.me = a %}{{ a.b.x[0].n }}");
  EXPECT_EQ(cycle.render("[]"), "1");
  const ChatTemplate raising(
      "{% set a = namespace() %}{% set a.me = a %}{{ raise_exception('stop') }}");
  EXPECT_THROW(raising.render("[]"), Error);
}

// Found by fuzz_chat_template: an index too large for an int64 (x.99999999999999999999, and
// as map()'s attribute path) is an error or indexes nothing, never a std::out_of_range.
TEST(ChatTemplate, HugeIndicesAreErrorsNotExceptions) {
  EXPECT_THAT(testing::error_of([] { ChatTemplate t("{{ x.99999999999999999999 }}"); },
                                ErrorCode::kInvalidArgument),
              HasSubstr("index out of range: 99999999999999999999"));
  const ChatTemplate by_attribute(
      "{{ messages | map(attribute='99999999999999999999') | select('defined') | list }}");
  EXPECT_EQ(by_attribute.render(R"([{"role": "user", "content": "hi"}])"), "[]");
  const ChatTemplate tuple("{{ (7, 8).1 }}");
  EXPECT_EQ(tuple.render("[]"), "8");
}

// Found by fuzz_chat_template (UBSan): Python's ints have no bound, a template's are 64-bit;
// going past that is an error, and a huge exponent does not loop.
TEST(ChatTemplate, IntegerOverflowIsAnError) {
  for (const char* source :
       {"{{ 2 ** 3 * 3 ** 2 ** 20 }}", "{{ 9223372036854775807 + 1 }}",
        "{{ -9223372036854775807 - 2 }}", "{{ 4294967296 * 4294967296 }}",
        "{{ 3 ** 1000000000000 }}", "{{ (-9223372036854775807 - 1) // -1 }}",
        "{{ -(-9223372036854775807 - 1) }}", "{{ (-9223372036854775807 - 1) | abs }}"}) {
    SCOPED_TRACE(source);
    EXPECT_THAT(
        testing::error_of([&] { ChatTemplate(source).render("[]"); }, ErrorCode::kInvalidArgument),
        HasSubstr("integer overflow"));
  }
  EXPECT_EQ(ChatTemplate("{{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 1 ** 1000000000000 }} "
                         "{{ (-9223372036854775807 - 1) % -1 }} {{ 3037000499 ** 2 }}")
                .render("[]"),
            "4611686018427387904 -9223372036854775808 1 0 9223372030926249001");
  EXPECT_EQ(
      ChatTemplate("{{ range(9223372036854775800, 9223372036854775807, 5) | list }}").render("[]"),
      "[9223372036854775800, 9223372036854775805]");
}

TEST(ChatTemplate, DeepNestingIsAnErrorNotAStackOverflow) {
  for (const std::string& source :
       {"{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}",
        "{{ " + std::string(100000, '-') + "1 }}",
        "{{ " + std::string(100000, '[') + std::string(100000, ']') + " }}"}) {
    EXPECT_THAT(testing::error_of([&] { ChatTemplate t(source); }, ErrorCode::kInvalidArgument),
                HasSubstr("nested more than 256 levels deep"));
  }
  std::string blocks;
  for (int i = 0; i < 5000; ++i) blocks += "{% if true %}";
  EXPECT_THAT(testing::error_of([&] { ChatTemplate t(blocks); }, ErrorCode::kInvalidArgument),
              HasSubstr("nested more than 256 levels deep"));
}

TEST(ChatTemplate, CopiesShareTheParsedTemplateAndRenderAlike) {
  const ChatTemplate a("{{ messages[0].content | upper }}");
  const ChatTemplate b = a;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(&a.source(), &b.source());
  EXPECT_EQ(b.render(R"([{"content": "é x"}])"), "É X");
}

}  // namespace
}  // namespace cachet

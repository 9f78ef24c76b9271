// cachet's Jinja subset feature by feature against Python's jinja2, configured as Hugging
// Face transformers configures it for chat templates: tests/data/chat_templates/
// snippets.json (written by snippets_source.py) holds small templates, their variables and
// what jinja2 rendered or raised. Each must render byte for byte the same, or raise too.
#include <gtest/gtest.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "chat/jinja_ast.h"
#include "chat/jinja_eval.h"
#include "support/test_support.h"

namespace cachet {
namespace {

using Json = nlohmann::ordered_json;

// Cases beyond the subset, each with its reason.
const std::set<std::string>& unsupported() {
  static const std::set<std::string> names = {
      "stmt.filter_block",      // {% filter %} blocks: no chat template uses them
      "stmt.set_block_filter",  // {% set x | filter %}
      "str.format",             // str.format(): Python's format mini-language
      "glob.range_repr",        // range objects print as range(0, 3); ours are lists
      "dict.keys_repr",         // dict views print as dict_keys([...]); ours are lists
      "glob.namespace_repr",    // a namespace's repr
      "out.bigint",             // integers are 64-bit (2 ** 64)
      // transformers' environment has {% generation %} (its AssistantTracker); plain jinja2,
      // which wrote this case, has not
      "err.syntax_unknown_tag",
  };
  return names;
}

std::time_t fixed_now() {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_isdst = -1;
  return std::mktime(&tm);
}

TEST(JinjaSnippets, EachRendersOrRaisesAsJinja2Does) {
  const Json cases = Json::parse(
      testing::read_file(testing::test_data_dir() / "chat_templates" / "snippets.json"));
  int matched = 0, raised = 0, skipped = 0;
  for (const Json& c : cases) {
    const std::string name = c["name"];
    if (unsupported().contains(name)) {
      ++skipped;
      continue;
    }
    SCOPED_TRACE(name + ": " + c["template"].get<std::string>());
    chat::Dict vars;
    for (const auto& [k, v] : c["vars"].items()) vars.set(k, chat::Value::from_json(v));
    std::string got, error;
    try {
      got = chat::render(chat::parse(c["template"].get<std::string>()), vars, fixed_now());
    } catch (const chat::TemplateError& e) {
      error = e.what();
    }
    if (c.contains("error")) {
      EXPECT_NE(error, "") << "jinja2 raised " << c.value("error_type", "") << ": "
                           << c["error"].get<std::string>() << "; cachet rendered [" << got << "]";
      raised += error.empty() ? 0 : 1;
    } else {
      EXPECT_EQ(error, "");
      EXPECT_EQ(got, c["output"].get<std::string>());
      matched += error.empty() && got == c["output"].get<std::string>() ? 1 : 0;
    }
  }
  std::printf(
      "[ snippets ] %d rendered byte-identical, %d raised as jinja2 does, %d outside the "
      "subset, of %zu\n",
      matched, raised, skipped, cases.size());
}

}  // namespace
}  // namespace cachet

// Chat templates: parsing and rendering an arbitrary template over a fixed conversation (with
// tools, a tool call and non-ASCII content) must end in output or a cachet::Error, never a
// crash, a hang or another exception; and rendering is deterministic.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cachet/chat.h"
#include "fuzz_util.h"

using namespace cachet;

namespace {

constexpr const char* kMessages = R"([
  {"role": "system", "content": "You are helpful."},
  {"role": "user", "content": "Héllo {{ x }} <|im_start|>"},
  {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
    "function": {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]},
  {"role": "tool", "content": "42"},
  {"role": "assistant", "content": "<think>hm</think>done", "reasoning_content": null}
])";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  ChatRenderOptions options;
  options.tools_json = R"([{"type": "function", "function": {"name": "f", "parameters": {}}}])";
  options.extra_json = R"({"enable_thinking": false})";
  options.now = 1721952000;
  std::string first, second;
  bool rendered = false;
  fuzz::accepts([&] {
    const ChatTemplate t(source, "<s>", "</s>");
    first = t.render(kMessages, options);
    rendered = true;
    second = t.render(kMessages, options);
  });
  if (rendered) fuzz::require(first == second, "a template rendered differently twice");
  return 0;
}

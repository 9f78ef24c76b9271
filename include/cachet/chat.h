// cachet — chat templates: a model's conversation format, rendered from its Hugging Face
// chat template (a Jinja template) exactly as Hugging Face transformers renders it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "cachet/export.h"

namespace cachet {

// How to render a conversation.
struct ChatRenderOptions {
  // End with the header of an assistant turn, so that generation continues as the assistant.
  bool add_generation_prompt = true;
  // Tool definitions as a JSON array (OpenAI's {"type": "function", "function": {...}}), or
  // empty: the template's `tools` is None.
  std::string tools_json;
  // More template variables as a JSON object, e.g. {"enable_thinking": false} for Qwen3.
  std::string extra_json;
  // The time strftime_now() formats, in seconds since the epoch (local time, as Python's
  // datetime.now()); 0: now.
  std::int64_t now = 0;
};

// A parsed chat template. Immutable and thread-safe; copies share the parsed form.
class CACHET_API ChatTemplate {
 public:
  // `source`: the template text; `bos_token`, `eos_token`: what the template's variables of
  // those names hold. Throws Error(kInvalidArgument) naming the line of a syntax error or of
  // a construct cachet's Jinja subset does not support.
  explicit ChatTemplate(std::string source, std::string bos_token = "", std::string eos_token = "");
  // The chat template of a Hugging Face model directory: tokenizer_config.json's
  // `chat_template` (a string, or a list of {"name", "template"}: `name`, or "default" when
  // empty), else chat_template.jinja; its special tokens from tokenizer_config.json. Throws
  // Error(kNotFound) when the directory has no chat template, Error(kInvalidModel) naming the
  // file (and line) when it cannot be read or parsed.
  static ChatTemplate from_model_dir(const std::string& model_dir, const std::string& name = "");

  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&);
  ChatTemplate& operator=(const ChatTemplate&);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders a conversation: `messages_json` is a JSON array of messages ({"role", "content"}
  // and whatever else the template reads: tool_calls, reasoning_content, ...). Throws
  // Error(kInvalidArgument) naming the problem: JSON that does not parse, a template error
  // with its line, or the template's own raise_exception() message (e.g. roles that do not
  // alternate).
  std::string render(std::string_view messages_json, const ChatRenderOptions& options = {}) const;

  const std::string& source() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace cachet

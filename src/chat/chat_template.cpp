// ChatTemplate: a model directory's chat template, parsed once, rendered per conversation
// with the variables transformers' apply_chat_template() passes.
#include <fmt/format.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cachet/chat.h"
#include "cachet/errors.h"
#include "chat/jinja_ast.h"
#include "chat/jinja_eval.h"
#include "util/json_depth.h"

namespace cachet {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

struct ChatTemplate::Impl {
  std::string source;
  std::shared_ptr<const chat::Body> program;
  chat::Dict special_tokens;  // bos_token, eos_token, ...
};

namespace {

// Messages, tools and variables keep their key order (tojson writes it); a config does not
// need to (and tokenizer_config.json's thousands of added tokens would make an ordered parse
// quadratic).
template <class J = Json>
J parse_json(std::string_view text, const std::string& what) {
  if (util::json_nests_too_deep(text))
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: JSON nested deeper than {} levels", what, util::kMaxJsonDepth));
  try {
    return J::parse(text);
  } catch (const typename J::exception& e) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: not valid JSON: {}", what, e.what()));
  }
}

std::string read_text(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw Error(ErrorCode::kInvalidModel, fmt::format("{}: not a regular file", path.string()));
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::kInvalidModel, fmt::format("{}: cannot be opened", path.string()));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A special token of tokenizer_config.json: a string, or an AddedToken object's content.
std::string token_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token) {
  auto impl = std::make_shared<Impl>();
  try {
    impl->program = std::make_shared<const chat::Body>(chat::parse(source));
  } catch (const chat::TemplateError& e) {
    throw Error(ErrorCode::kInvalidArgument, e.what());
  }
  impl->source = std::move(source);
  // A token not given stays undefined, as transformers leaves a token the tokenizer lacks.
  if (!bos_token.empty()) impl->special_tokens.set("bos_token", chat::Value(std::move(bos_token)));
  if (!eos_token.empty()) impl->special_tokens.set("eos_token", chat::Value(std::move(eos_token)));
  impl_ = std::move(impl);
}

ChatTemplate ChatTemplate::from_model_dir(const std::string& model_dir, const std::string& name) {
  const fs::path dir(model_dir);
  const fs::path config_path = dir / "tokenizer_config.json";
  const fs::path jinja_path = dir / "chat_template.jinja";
  std::error_code ec;
  nlohmann::json config = nlohmann::json::object();
  if (fs::exists(config_path, ec)) {
    try {
      config = parse_json<nlohmann::json>(read_text(config_path), config_path.string());
    } catch (const Error& e) {
      throw Error(ErrorCode::kInvalidModel, e.what());
    }
    if (!config.is_object())
      throw Error(ErrorCode::kInvalidModel, config_path.string() + ": not a JSON object");
  }
  std::string source;
  std::string from = config_path.string();
  const auto it = config.find("chat_template");
  if (it != config.end() && it->is_string()) {
    source = it->get<std::string>();
  } else if (it != config.end() && it->is_array()) {
    const std::string want = name.empty() ? "default" : name;
    for (const nlohmann::json& t : *it)
      if (t.is_object() && t.value("name", "") == want && t.contains("template") &&
          t["template"].is_string())
        source = t["template"].get<std::string>();
    if (source.empty())
      throw Error(ErrorCode::kNotFound,
                  fmt::format("{}: field 'chat_template' has no template named '{}'", from, want));
  } else if (fs::exists(jinja_path, ec)) {
    source = read_text(jinja_path);
    from = jinja_path.string();
  } else {
    throw Error(ErrorCode::kNotFound,
                fmt::format("{} has no chat template (no 'chat_template' in tokenizer_config.json, "
                            "no chat_template.jinja)",
                            model_dir));
  }
  try {
    ChatTemplate t(std::move(source));
    auto impl = std::make_shared<Impl>(*t.impl_);
    for (const auto& [key, value] : config.items())
      if (key.size() > 6 && key.ends_with("_token") && !token_text(value).empty())
        impl->special_tokens.set(key, chat::Value(token_text(value)));
    t.impl_ = std::move(impl);
    return t;
  } catch (const Error& e) {
    throw Error(ErrorCode::kInvalidModel, fmt::format("{}: {}", from, e.what()));
  }
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(const ChatTemplate&) = default;
ChatTemplate& ChatTemplate::operator=(const ChatTemplate&) = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

const std::string& ChatTemplate::source() const { return impl_->source; }

std::string ChatTemplate::render(std::string_view messages_json,
                                 const ChatRenderOptions& options) const {
  const Json messages = parse_json(messages_json, "chat messages");
  if (!messages.is_array())
    throw Error(ErrorCode::kInvalidArgument, "chat messages: expected a JSON array of messages");
  chat::Dict vars = impl_->special_tokens;
  vars.set("messages", chat::Value::from_json(messages));
  vars.set("add_generation_prompt", chat::Value(options.add_generation_prompt));
  // As transformers: `tools` is always passed, None without tools.
  vars.set("tools", options.tools_json.empty()
                        ? chat::Value::none()
                        : chat::Value::from_json(parse_json(options.tools_json, "chat tools")));
  if (!options.extra_json.empty()) {
    const Json extra = parse_json(options.extra_json, "chat template variables");
    if (!extra.is_object())
      throw Error(ErrorCode::kInvalidArgument, "chat template variables: expected a JSON object");
    for (const auto& [k, v] : extra.items()) vars.set(k, chat::Value::from_json(v));
  }
  const std::time_t now =
      options.now != 0 ? static_cast<std::time_t>(options.now) : std::time(nullptr);
  try {
    return chat::render(*impl_->program, vars, now);
  } catch (const chat::TemplateError& e) {
    throw Error(ErrorCode::kInvalidArgument, e.what());
  }
}

}  // namespace cachet

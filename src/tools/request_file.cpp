#include "tools/request_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "util/json_depth.h"

namespace cachet::tools {
namespace {

using nlohmann::json;

// A bad line; caught per line by read_requests_file.
struct LineError {
  std::string message;
};

[[noreturn]] void bad_line(std::string message) { throw LineError{std::move(message)}; }

// A value for a message, cut short (a line may hold megabytes).
std::string shown(const json& v) {
  std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 60) text = text.substr(0, 60) + "...";
  return text;
}

// An integer of type T, or nullopt when `v` is not an integer or does not fit T.
template <typename T>
std::optional<T> integer_of(const json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    return static_cast<T>(u);
  }
  if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i < 0 && !std::is_signed_v<T>) return std::nullopt;
    if constexpr (std::is_signed_v<T>) {
      if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max())
        return std::nullopt;
    }
    return static_cast<T>(i);
  }
  return std::nullopt;
}

template <typename T>
T field(const json& j, const char* name, const std::string& where) {
  const json& v = j.at(name);
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean())
      bad_line(fmt::format("{}: field '{}' must be true or false (got {})", where, name, shown(v)));
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    const std::optional<T> value = integer_of<T>(v);
    if (!value)
      bad_line(fmt::format("{}: field '{}' must be an integer in [{}, {}] (got {})", where, name,
                           std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), shown(v)));
    return *value;
  } else {
    // A double beyond the float range does not convert (undefined behavior), and JSON's
    // 1e999 parses as infinity.
    if (!v.is_number() || !std::isfinite(v.get<double>()) ||
        std::abs(v.get<double>()) > std::numeric_limits<float>::max())
      bad_line(fmt::format("{}: field '{}' must be a number within the range of a float (got {})",
                           where, name, shown(v)));
    return static_cast<float>(v.get<double>());
  }
}

std::vector<TokenId> token_ids(const json& list, const char* name, const std::string& where) {
  if (!list.is_array())
    bad_line(fmt::format("{}: field '{}' must be an array of token ids", where, name));
  std::vector<TokenId> ids;
  for (const json& id : list) {
    const std::optional<TokenId> value = integer_of<TokenId>(id);
    if (!value) bad_line(fmt::format("{}: '{}' holds {}, not a token id", where, name, shown(id)));
    ids.push_back(*value);
  }
  return ids;
}

// OpenAI's logit_bias: an object from token id (as a string, as JSON requires) to a bias.
std::map<TokenId, float> logit_bias(const json& j, const std::string& where) {
  if (!j.is_object())
    bad_line(fmt::format("{}: field 'logit_bias' must be an object of token id -> bias", where));
  std::map<TokenId, float> out;
  for (const auto& [key, value] : j.items()) {
    TokenId id = 0;
    auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (key.empty() || ec != std::errc() || ptr != key.data() + key.size())
      bad_line(fmt::format("{}: 'logit_bias' key '{}' is not a token id", where, key));
    json entry = {{"logit_bias", value}};
    out[id] = field<float>(entry, "logit_bias", where);
  }
  return out;
}

void parse_logits_processing(const json& j, const std::string& where, SamplingParams& p) {
  if (j.contains("min_tokens")) p.min_tokens = field<std::int32_t>(j, "min_tokens", where);
  if (j.contains("logit_bias")) p.logit_bias = logit_bias(j["logit_bias"], where);
  if (j.contains("repetition_penalty"))
    p.repetition_penalty = field<float>(j, "repetition_penalty", where);
  if (j.contains("presence_penalty"))
    p.presence_penalty = field<float>(j, "presence_penalty", where);
  if (j.contains("frequency_penalty"))
    p.frequency_penalty = field<float>(j, "frequency_penalty", where);
}

// A line's chat: `messages` (an array), with `tools` (an array), `add_generation_prompt`
// (true) and `chat_template_kwargs` (an object of extra template variables), as vLLM's chat
// API names them.
ChatPrompt chat_prompt(const json& j, const std::string& where) {
  ChatPrompt chat;
  if (!j["messages"].is_array())
    bad_line(fmt::format("{}: field 'messages' must be an array of messages", where));
  chat.messages_json = j["messages"].dump();
  if (j.contains("tools")) {
    if (!j["tools"].is_array()) bad_line(fmt::format("{}: field 'tools' must be an array", where));
    chat.options.tools_json = j["tools"].dump();
  }
  if (j.contains("add_generation_prompt"))
    chat.options.add_generation_prompt = field<bool>(j, "add_generation_prompt", where);
  if (j.contains("chat_template_kwargs")) {
    if (!j["chat_template_kwargs"].is_object())
      bad_line(fmt::format("{}: field 'chat_template_kwargs' must be an object", where));
    chat.options.extra_json = j["chat_template_kwargs"].dump();
  }
  return chat;
}

Request parse_line(const std::string& line, const std::string& where,
                   const SamplingParams& defaults) {
  static const std::set<std::string> known = {"prompt_ids",
                                              "prompt",
                                              "messages",
                                              "tools",
                                              "add_generation_prompt",
                                              "chat_template_kwargs",
                                              "temperature",
                                              "top_k",
                                              "top_p",
                                              "min_p",
                                              "seed",
                                              "max_tokens",
                                              "n",
                                              "stop_token_ids",
                                              "ignore_eos",
                                              "logprobs",
                                              "prompt_logprobs",
                                              "cache_salt",
                                              "stop",
                                              "skip_special_tokens",
                                              "min_tokens",
                                              "logit_bias",
                                              "repetition_penalty",
                                              "presence_penalty",
                                              "frequency_penalty"};
  if (util::json_nests_too_deep(line))
    bad_line(fmt::format("{}: JSON nested deeper than {} levels", where, util::kMaxJsonDepth));
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    bad_line(fmt::format("{}: not valid JSON: {}", where, e.what()));
  }
  if (!j.is_object()) bad_line(fmt::format("{}: not a JSON object", where));
  for (const auto& [key, value] : j.items())
    if (!known.contains(key)) bad_line(fmt::format("{}: unknown field '{}'", where, key));
  Request r;
  r.params = defaults;
  if (j.contains("prompt") + j.contains("prompt_ids") + j.contains("messages") != 1)
    bad_line(
        fmt::format("{}: give exactly one of 'prompt' (text), 'prompt_ids' (an array of "
                    "token ids) and 'messages' (a chat)",
                    where));
  if (j.contains("messages")) {
    r.chat = chat_prompt(j, where);
  } else if (j.contains("prompt")) {
    if (!j["prompt"].is_string())
      bad_line(fmt::format("{}: field 'prompt' must be a string", where));
    r.prompt = j["prompt"].get<std::string>();
  } else {
    r.prompt_token_ids = token_ids(j["prompt_ids"], "prompt_ids", where);
  }
  if (j.contains("cache_salt")) {
    if (!j["cache_salt"].is_string())
      bad_line(fmt::format("{}: field 'cache_salt' must be a string", where));
    r.cache_salt = j["cache_salt"].get<std::string>();
  }
  SamplingParams& p = r.params;
  if (j.contains("temperature")) p.temperature = field<float>(j, "temperature", where);
  if (j.contains("top_k")) p.top_k = field<std::int32_t>(j, "top_k", where);
  if (j.contains("top_p")) p.top_p = field<float>(j, "top_p", where);
  if (j.contains("min_p")) p.min_p = field<float>(j, "min_p", where);
  if (j.contains("seed")) p.seed = field<std::uint64_t>(j, "seed", where);
  if (j.contains("max_tokens")) p.max_tokens = field<std::int32_t>(j, "max_tokens", where);
  if (j.contains("n")) p.n = field<std::int32_t>(j, "n", where);
  if (j.contains("ignore_eos")) p.ignore_eos = field<bool>(j, "ignore_eos", where);
  if (j.contains("logprobs")) p.logprobs = field<std::int32_t>(j, "logprobs", where);
  if (j.contains("prompt_logprobs"))
    p.prompt_logprobs = field<std::int32_t>(j, "prompt_logprobs", where);
  if (j.contains("skip_special_tokens"))
    p.skip_special_tokens = field<bool>(j, "skip_special_tokens", where);
  if (j.contains("stop")) {
    const json& stop = j["stop"];
    p.stop.clear();
    if (stop.is_string()) {
      p.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array() &&
               std::all_of(stop.begin(), stop.end(), [](const json& s) { return s.is_string(); })) {
      for (const auto& s : stop) p.stop.push_back(s.get<std::string>());
    } else {
      bad_line(fmt::format("{}: field 'stop' must be a string or an array of strings", where));
    }
  }
  if (j.contains("stop_token_ids"))
    p.stop_token_ids = token_ids(j["stop_token_ids"], "stop_token_ids", where);
  parse_logits_processing(j, where, p);
  return r;
}

}  // namespace

std::map<TokenId, float> parse_logit_bias(const std::vector<std::string>& items) {
  std::map<TokenId, float> out;
  for (const std::string& item : items) {
    const auto colon = item.find(':');
    TokenId id = 0;
    float bias = 0.0f;
    const char* end = item.data() + item.size();
    bool ok = colon != std::string::npos && colon > 0 && colon + 1 < item.size();
    if (ok) {
      auto [p1, e1] = std::from_chars(item.data(), item.data() + colon, id);
      auto [p2, e2] = std::from_chars(item.data() + colon + 1, end, bias);
      ok = e1 == std::errc() && p1 == item.data() + colon && e2 == std::errc() && p2 == end;
    }
    if (!ok)
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("--logit-bias: '{}' is not ID:BIAS (e.g. 42:-100)", item));
    out[id] = bias;
  }
  return out;
}

std::vector<TokenId> parse_id_list(const std::string& text) {
  std::vector<TokenId> ids;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    TokenId id = 0;
    auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size())
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("--prompt-ids: '{}' is not a token id (in '{}')", item, text));
    ids.push_back(id);
    start = end + 1;
  }
  return ids;
}

std::vector<RequestLine> read_requests_file(const std::string& path,
                                            const SamplingParams& defaults) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: is a directory, not a prompts file", path));
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, fmt::format("{}: cannot open prompts file", path));
  std::vector<RequestLine> lines;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, line_no);
    try {
      lines.push_back({parse_line(line, where, defaults), {}, where});
    } catch (const LineError& e) {
      lines.push_back({{}, e.message, where});
    }
  }
  if (in.bad()) throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: read failed", path));
  if (lines.empty())
    throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: no requests in the file", path));
  return lines;
}

}  // namespace cachet::tools

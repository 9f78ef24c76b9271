#include "tools/request_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "util/json_depth.h"

namespace cachet::tools {
namespace {

using nlohmann::json;

template <typename T>
T field(const json& j, const char* name, const std::string& where) {
  const json& v = j.at(name);
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>)
    ok = v.is_boolean();
  else if constexpr (std::is_integral_v<T>)
    ok = v.is_number_integer() && (std::is_signed_v<T> || v.get<std::int64_t>() >= 0);
  else
    ok = v.is_number();
  if (!ok)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: field '{}' has the wrong type ({})", where, name, v.dump()));
  return v.get<T>();
}

}  // namespace

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

std::vector<Request> read_requests_file(const std::string& path, const SamplingParams& defaults) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, fmt::format("{}: cannot open prompts file", path));
  static const std::set<std::string> known = {
      "prompt_ids", "prompt",     "temperature",        "top_k",      "top_p",    "min_p",
      "seed",       "max_tokens", "stop_token_ids",     "ignore_eos", "logprobs", "prompt_logprobs",
      "cache_salt", "stop",       "skip_special_tokens"};
  std::vector<Request> requests;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, line_no);
    util::check_json_depth(line, where, ErrorCode::kInvalidArgument);
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: not a JSON object", where));
    for (const auto& [key, value] : j.items())
      if (!known.contains(key))
        throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: unknown field '{}'", where, key));
    Request r;
    r.params = defaults;
    if (j.contains("prompt") == j.contains("prompt_ids"))
      throw Error(
          ErrorCode::kInvalidArgument,
          fmt::format(
              "{}: give exactly one of 'prompt' (text) and 'prompt_ids' (an array of token ids)",
              where));
    if (j.contains("prompt")) {
      if (!j["prompt"].is_string())
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: field 'prompt' must be a string", where));
      r.prompt = j["prompt"].get<std::string>();
    } else if (!j["prompt_ids"].is_array()) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("{}: field 'prompt_ids' must be an array of token ids", where));
    }
    for (const auto& id : j.contains("prompt_ids") ? j["prompt_ids"] : json::array()) {
      if (!id.is_number_integer() || id.get<std::int64_t>() < INT32_MIN ||
          id.get<std::int64_t>() > INT32_MAX)
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: 'prompt_ids' holds {}, not a token id", where, id.dump()));
      r.prompt_token_ids.push_back(id.get<TokenId>());
    }
    if (j.contains("cache_salt")) {
      if (!j["cache_salt"].is_string())
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: field 'cache_salt' must be a string", where));
      r.cache_salt = j["cache_salt"].get<std::string>();
    }
    SamplingParams& p = r.params;
    if (j.contains("temperature")) p.temperature = field<float>(j, "temperature", where);
    if (j.contains("top_k")) p.top_k = field<std::int32_t>(j, "top_k", where);
    if (j.contains("top_p")) p.top_p = field<float>(j, "top_p", where);
    if (j.contains("min_p")) p.min_p = field<float>(j, "min_p", where);
    if (j.contains("seed")) p.seed = field<std::uint64_t>(j, "seed", where);
    if (j.contains("max_tokens")) p.max_tokens = field<std::int32_t>(j, "max_tokens", where);
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
      } else if (stop.is_array() && std::all_of(stop.begin(), stop.end(),
                                                [](const json& s) { return s.is_string(); })) {
        for (const auto& s : stop) p.stop.push_back(s.get<std::string>());
      } else {
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: field 'stop' must be a string or an array of strings", where));
      }
    }
    if (j.contains("stop_token_ids")) {
      if (!j["stop_token_ids"].is_array())
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: field 'stop_token_ids' must be an array", where));
      p.stop_token_ids.clear();
      for (const auto& id : j["stop_token_ids"]) {
        if (!id.is_number_integer())
          throw Error(
              ErrorCode::kInvalidArgument,
              fmt::format("{}: 'stop_token_ids' holds {}, not a token id", where, id.dump()));
        p.stop_token_ids.push_back(id.get<TokenId>());
      }
    }
    requests.push_back(std::move(r));
  }
  if (requests.empty())
    throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: no requests in the file", path));
  return requests;
}

}  // namespace cachet::tools

#include "serve/openai_protocol.h"

#include <fmt/format.h>

#include <cmath>

#include "serve/api_error.h"

namespace cachet::serve {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw ApiError(400, fmt::format("'{}' {}", field, what), field);
}

const json* find(const json& body, const char* field) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<double> number(const json& body, const char* field, double lo, double hi) {
  const json* v = find(body, field);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad(field, "must be a number");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad(field, fmt::format("must be in [{}, {}], got {}", lo, hi, x));
  return x;
}

std::optional<std::int64_t> integer(const json& body, const char* field, std::int64_t lo,
                                    std::int64_t hi) {
  const json* v = find(body, field);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) bad(field, "must be an integer");
  if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(hi))
    bad(field, fmt::format("must be at most {}", hi));
  const auto x = v->get<std::int64_t>();
  if (x < lo || x > hi) bad(field, fmt::format("must be in [{}, {}], got {}", lo, hi, x));
  return x;
}

std::optional<bool> boolean(const json& body, const char* field) {
  const json* v = find(body, field);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad(field, "must be true or false");
  return v->get<bool>();
}

std::vector<TokenId> token_ids(const json& v, const std::string& field, const ModelInfo& m) {
  std::vector<TokenId> ids;
  for (const json& t : v) {
    if (!t.is_number_integer()) bad(field, "must hold token ids (integers)");
    const auto id = t.get<std::int64_t>();
    if (id < 0 || id >= m.vocab_size)
      bad(field,
          fmt::format("holds token id {}, outside the vocabulary [0, {})", id, m.vocab_size));
    ids.push_back(static_cast<TokenId>(id));
  }
  return ids;
}

std::vector<TokenId> encode(const ModelInfo& m, const std::string& text, bool special,
                            const std::string& field) {
  if (!m.tokenizer) bad(field, "is text, and the model has no tokenizer: send token ids");
  try {
    return m.tokenizer->encode(text, special);
  } catch (const std::exception& e) {
    throw ApiError(400, fmt::format("'{}' could not be tokenized: {}", field, e.what()), field);
  }
}

// The sampling fields both APIs share, into `params`.
void read_sampling(const json& body, SamplingParams& p) {
  if (auto t = number(body, "temperature", 0, 2)) p.temperature = static_cast<float>(*t);
  if (auto t = number(body, "top_p", 0, 1)) {
    if (*t == 0) bad("top_p", "must be in (0, 1], got 0");
    p.top_p = static_cast<float>(*t);
  }
  if (auto k = integer(body, "top_k", -1, 1 << 30))
    p.top_k = *k < 0 ? 0 : static_cast<std::int32_t>(*k);
  if (auto m = number(body, "min_p", 0, 1)) p.min_p = static_cast<float>(*m);
  if (auto s = integer(body, "seed", INT64_MIN, INT64_MAX)) p.seed = static_cast<std::uint64_t>(*s);
  if (auto n = integer(body, "n", 1, kMaxSamples)) p.n = static_cast<std::int32_t>(*n);
  if (auto b = integer(body, "best_of", 1, kMaxSamples); b && *b != p.n)
    bad("best_of", "other than n is not supported");
  if (auto v = number(body, "presence_penalty", -2, 2)) p.presence_penalty = static_cast<float>(*v);
  if (auto v = number(body, "frequency_penalty", -2, 2))
    p.frequency_penalty = static_cast<float>(*v);
  if (auto v = number(body, "repetition_penalty", 0, 1e6)) {
    if (*v == 0) bad("repetition_penalty", "must be greater than 0");
    p.repetition_penalty = static_cast<float>(*v);
  }
  if (auto v = integer(body, "min_tokens", 0, 1 << 30))
    p.min_tokens = static_cast<std::int32_t>(*v);
  if (auto v = boolean(body, "ignore_eos")) p.ignore_eos = *v;
  if (auto v = boolean(body, "skip_special_tokens")) p.skip_special_tokens = *v;
  if (const json* stop = find(body, "stop")) {
    if (stop->is_string()) {
      p.stop = {stop->get<std::string>()};
    } else if (stop->is_array()) {
      for (const json& s : *stop) {
        if (!s.is_string()) bad("stop", "must be a string or a list of strings");
        p.stop.push_back(s.get<std::string>());
      }
    } else {
      bad("stop", "must be a string or a list of strings");
    }
    for (const auto& s : p.stop)
      if (s.empty()) bad("stop", "must not hold an empty string");
  }
  if (const json* bias = find(body, "logit_bias")) {
    if (!bias->is_object()) bad("logit_bias", "must be an object of token id -> bias");
    for (const auto& [key, value] : bias->items()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id > INT32_MAX)
        bad("logit_bias", fmt::format("has key '{}', which is not a token id", key));
      if (!value.is_number() || value.get<double>() < -100 || value.get<double>() > 100)
        bad("logit_bias", fmt::format("value of token {} must be a number in [-100, 100]", key));
      p.logit_bias[static_cast<TokenId>(id)] = value.get<float>();
    }
  }
}

// stream, stream_options, cache_salt, the output length and the context checks.
void read_common(const json& body, const ModelInfo& m, GenerationRequest& g, bool chat) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  const json* model = find(body, "model");
  if (!model || !model->is_string()) bad("model", "is required (a string)");
  if (model->get<std::string>() != m.name)
    throw ApiError(404, fmt::format("The model `{}` does not exist.", model->get<std::string>()),
                   "model", "not_found_error");
  read_sampling(body, g.params);
  if (auto s = boolean(body, "stream")) g.stream = *s;
  if (const json* o = find(body, "stream_options")) {
    if (!o->is_object()) bad("stream_options", "must be an object");
    if (auto u = boolean(*o, "include_usage")) g.include_usage = *u;
  }
  if (const json* salt = find(body, "cache_salt")) {
    if (!salt->is_string() || salt->get<std::string>().empty())
      bad("cache_salt", "must be a non-empty string");
    g.cache_salt = salt->get<std::string>();
  }
  (void)chat;
}

// max_tokens against what each prompt leaves of the context; prompts that do not fit.
void fit_context(const json& body, const ModelInfo& m, GenerationRequest& g, bool chat) {
  std::optional<std::int64_t> max = integer(body, "max_tokens", 1, 1 << 30);
  if (chat) {
    if (auto mc = integer(body, "max_completion_tokens", 1, 1 << 30)) max = mc;
  }
  std::size_t longest = 0;
  for (const auto& p : g.prompts) {
    if (p.empty()) bad(chat ? "messages" : "prompt", "must not be empty");
    longest = std::max(longest, p.size());
  }
  const auto left = static_cast<std::int64_t>(m.max_model_len) - static_cast<std::int64_t>(longest);
  const char* field = chat ? "messages" : "prompt";
  if (left <= 0 || (max && *max > left))
    throw ApiError(
        400,
        fmt::format("This model's maximum context length is {} tokens. However, you "
                    "requested {} tokens ({} in the {}, {} for the completion). Please "
                    "reduce the length of the {} or completion.",
                    m.max_model_len, static_cast<std::int64_t>(longest) + max.value_or(0), longest,
                    field, max.value_or(0), field),
        field);
  const std::int64_t blocks =
      (static_cast<std::int64_t>(longest) + 1 + m.block_size - 1) / m.block_size;
  if (blocks > m.max_prompt_blocks)
    throw ApiError(400,
                   fmt::format("the {} of {} tokens does not fit in the KV cache ({} blocks of {} "
                               "tokens)",
                               field, longest, m.max_prompt_blocks, m.block_size),
                   field);
  g.params.max_tokens =
      static_cast<std::int32_t>(max.value_or(chat ? left : std::min<std::int64_t>(16, left)));
}

std::string token_text(const Tokenizer& tok, TokenId id) {
  const TokenId one[] = {id};
  return tok.decode(one, false);
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(c);
  return b;
}

// The logprob of `token` in its entry (the engine lists the sampled token too).
double logprob_of(const std::vector<TokenLogprob>& entry, TokenId token) {
  for (const TokenLogprob& e : entry)
    if (e.id == token) return e.logprob;
  return -INFINITY;
}

}  // namespace

GenerationRequest parse_completion_request(const json& body, const ModelInfo& m) {
  GenerationRequest g;
  read_common(body, m, g, false);
  if (auto echo = boolean(body, "echo"); echo && *echo) bad("echo", "is not supported");
  if (find(body, "suffix")) bad("suffix", "is not supported");
  if (auto lp = integer(body, "logprobs", 0, 20)) {
    g.logprobs = true;
    g.params.logprobs = static_cast<std::int32_t>(*lp);
  }
  const json* prompt = find(body, "prompt");
  if (!prompt) bad("prompt", "is required");
  if (prompt->is_string()) {
    g.prompts.push_back(encode(m, prompt->get<std::string>(), true, "prompt"));
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number_integer()) {
    g.prompts.push_back(token_ids(*prompt, "prompt", m));
  } else if (prompt->is_array() && !prompt->empty()) {
    for (const json& p : *prompt) {
      if (p.is_string())
        g.prompts.push_back(encode(m, p.get<std::string>(), true, "prompt"));
      else if (p.is_array())
        g.prompts.push_back(token_ids(p, "prompt", m));
      else
        bad("prompt", "must be a string, a list of strings, token ids, or a list of lists of them");
    }
  } else {
    bad("prompt", "must be a string, a list of strings, token ids, or a list of lists of them");
  }
  fit_context(body, m, g, false);
  return g;
}

GenerationRequest parse_chat_request(const json& body, const ModelInfo& m) {
  GenerationRequest g;
  g.chat = true;
  read_common(body, m, g, true);
  if (auto lp = boolean(body, "logprobs"); lp && *lp) {
    g.logprobs = true;
    g.params.logprobs = static_cast<std::int32_t>(integer(body, "top_logprobs", 0, 20).value_or(0));
  } else if (find(body, "top_logprobs")) {
    bad("top_logprobs", "needs logprobs: true");
  }
  if (const json* f = find(body, "response_format");
      f && !(f->is_object() && f->value("type", "") == "text"))
    bad("response_format", "other than {\"type\": \"text\"} is not supported");
  const json* messages = find(body, "messages");
  if (!messages || !messages->is_array() || messages->empty())
    bad("messages", "is required: a non-empty list of messages");
  for (std::size_t i = 0; i < messages->size(); ++i) {
    const json& msg = (*messages)[i];
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
      bad(fmt::format("messages[{}]", i), "must be an object with a string 'role'");
  }
  if (!m.chat_template || !m.tokenizer)
    throw ApiError(400, "this model has no chat template: use /v1/completions", "messages");
  ChatRenderOptions options;
  if (auto gen = boolean(body, "add_generation_prompt")) options.add_generation_prompt = *gen;
  if (const json* tools = find(body, "tools")) {
    if (!tools->is_array()) bad("tools", "must be a list of tools");
    if (!tools->empty()) options.tools_json = tools->dump();
  }
  if (const json* kw = find(body, "chat_template_kwargs")) {
    if (!kw->is_object()) bad("chat_template_kwargs", "must be an object");
    options.extra_json = kw->dump();
  }
  std::string text;
  try {
    text = m.chat_template->render(messages->dump(), options);
  } catch (const Error& e) {
    throw ApiError(400,
                   fmt::format("the messages cannot be rendered with the model's chat "
                               "template: {}",
                               e.what()),
                   "messages");
  }
  g.prompts.push_back(encode(m, text, false, "messages"));
  fit_context(body, m, g, true);
  return g;
}

std::string finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    default:
      return "abort";
  }
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json completion_logprobs(const Tokenizer& tok, const std::vector<TokenId>& token_ids,
                         const std::vector<std::vector<TokenLogprob>>& entries, std::int32_t top,
                         std::int64_t text_offset) {
  json out = {{"tokens", json::array()},
              {"token_logprobs", json::array()},
              {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (std::size_t i = 0; i < token_ids.size() && i < entries.size(); ++i) {
    const std::string text = token_text(tok, token_ids[i]);
    out["tokens"].push_back(text);
    out["token_logprobs"].push_back(logprob_of(entries[i], token_ids[i]));
    json tops = json::object();
    for (std::size_t k = 0; k < entries[i].size() && static_cast<std::int32_t>(k) < top; ++k)
      tops[token_text(tok, entries[i][k].id)] = entries[i][k].logprob;
    out["top_logprobs"].push_back(tops);
    out["text_offset"].push_back(text_offset);
    text_offset += static_cast<std::int64_t>(text.size());
  }
  return out;
}

json chat_logprobs(const Tokenizer& tok, const std::vector<TokenId>& token_ids,
                   const std::vector<std::vector<TokenLogprob>>& entries, std::int32_t top) {
  json content = json::array();
  for (std::size_t i = 0; i < token_ids.size() && i < entries.size(); ++i) {
    const std::string text = token_text(tok, token_ids[i]);
    json tops = json::array();
    for (std::size_t k = 0; k < entries[i].size() && static_cast<std::int32_t>(k) < top; ++k) {
      const std::string t = token_text(tok, entries[i][k].id);
      tops.push_back({{"token", t}, {"logprob", entries[i][k].logprob}, {"bytes", bytes_of(t)}});
    }
    content.push_back({{"token", text},
                       {"logprob", logprob_of(entries[i], token_ids[i])},
                       {"bytes", bytes_of(text)},
                       {"top_logprobs", tops}});
  }
  return {{"content", content}};
}

}  // namespace cachet::serve

// POST /v1/messages: Anthropic's Messages API (the subset: system, messages, max_tokens,
// stop_sequences, temperature, top_p, top_k, stream, cache_control breakpoints), rendered
// with the model's chat template and answered in Anthropic's shapes: a message object, or
// the named server-sent events message_start ... message_stop.
#include "serve/anthropic_handlers.h"

#include <fmt/format.h>

#include <memory>

#include "serve/api_error.h"
#include "serve/cache_miss_json.h"
#include "serve/generation_run.h"

namespace cachet::serve {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw ApiError(400, fmt::format("{}: {}", field, what), field);
}

// The text of a content: a string, or the text blocks of a list; whether a block asked to
// be cached (cache_control), and its TTL in seconds.
struct Content {
  std::string text;
  std::optional<double> cache_ttl;
};

Content content_of(const json& c, const std::string& field) {
  Content out;
  if (c.is_string()) {
    out.text = c.get<std::string>();
    return out;
  }
  if (!c.is_array()) bad(field, "must be a string or a list of content blocks");
  for (const json& block : c) {
    if (!block.is_object() || block.value("type", "") != "text" || !block.contains("text") ||
        !block["text"].is_string())
      bad(field, "only text content blocks are supported");
    out.text += block["text"].get<std::string>();
    if (block.contains("cache_control")) {
      const json& cc = block["cache_control"];
      if (!cc.is_object() || cc.value("type", "") != "ephemeral")
        bad(field, "cache_control must be {\"type\": \"ephemeral\"}");
      const std::string ttl = cc.value("ttl", "5m");
      if (ttl != "5m" && ttl != "1h") bad(field, "cache_control ttl must be \"5m\" or \"1h\"");
      out.cache_ttl = ttl == "1h" ? 3600.0 : 300.0;
    }
  }
  return out;
}

// What a request asks for, as a chat: the messages in OpenAI's shape for the template, and
// where the last cache breakpoint is (the messages up to it render to the prefix to pin).
struct MessagesRequest {
  GenerationRequest generation;
  json messages = json::array();
  std::optional<std::size_t> pin_through;  // index into `messages`
  double pin_ttl = 300;
};

MessagesRequest parse_messages(const json& body, const ModelInfo& m) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  MessagesRequest r;
  GenerationRequest& g = r.generation;
  g.chat = true;
  if (!body.contains("model") || !body["model"].is_string()) bad("model", "is required");
  if (body["model"].get<std::string>() != m.name)
    throw ApiError(404, fmt::format("model: {}", body["model"].get<std::string>()), "model",
                   "not_found_error");
  if (!body.contains("max_tokens") || !body["max_tokens"].is_number_integer() ||
      body["max_tokens"].get<std::int64_t>() < 1)
    bad("max_tokens", "is required: an integer of at least 1");
  const std::int64_t max_tokens = body["max_tokens"].get<std::int64_t>();
  if (body.contains("temperature")) {
    if (!body["temperature"].is_number() || body["temperature"].get<double>() < 0 ||
        body["temperature"].get<double>() > 1)
      bad("temperature", "must be a number in [0, 1]");
    g.params.temperature = body["temperature"].get<float>();
  }
  if (body.contains("top_p")) {
    if (!body["top_p"].is_number() || body["top_p"].get<double>() <= 0 ||
        body["top_p"].get<double>() > 1)
      bad("top_p", "must be a number in (0, 1]");
    g.params.top_p = body["top_p"].get<float>();
  }
  if (body.contains("top_k")) {
    if (!body["top_k"].is_number_integer() || body["top_k"].get<std::int64_t>() < 0)
      bad("top_k", "must be a non-negative integer");
    g.params.top_k = body["top_k"].get<std::int32_t>();
  }
  if (body.contains("stop_sequences")) {
    if (!body["stop_sequences"].is_array()) bad("stop_sequences", "must be a list of strings");
    for (const json& s : body["stop_sequences"]) {
      if (!s.is_string() || s.get<std::string>().empty())
        bad("stop_sequences", "must be a list of non-empty strings");
      g.params.stop.push_back(s.get<std::string>());
    }
  }
  g.stream = body.value("stream", false);
  if (body.contains("system")) {
    const Content sys = content_of(body["system"], "system");
    r.messages.push_back({{"role", "system"}, {"content", sys.text}});
    if (sys.cache_ttl) {
      r.pin_through = 0;
      r.pin_ttl = *sys.cache_ttl;
    }
  }
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    bad("messages", "is required: a non-empty list");
  for (std::size_t i = 0; i < body["messages"].size(); ++i) {
    const json& msg = body["messages"][i];
    const std::string field = fmt::format("messages.{}", i);
    if (!msg.is_object() || !msg.contains("role") ||
        (msg["role"] != "user" && msg["role"] != "assistant"))
      bad(field, "must have role 'user' or 'assistant'");
    if (!msg.contains("content")) bad(field, "needs content");
    const Content c = content_of(msg["content"], field + ".content");
    r.messages.push_back({{"role", msg["role"]}, {"content", c.text}});
    if (c.cache_ttl) {
      r.pin_through = r.messages.size() - 1;
      r.pin_ttl = *c.cache_ttl;
    }
  }
  if (!m.chat_template || !m.tokenizer)
    throw ApiError(400, "this model has no chat template", "messages");
  std::string text;
  try {
    text = m.chat_template->render(r.messages.dump());
  } catch (const Error& e) {
    throw ApiError(400,
                   fmt::format("messages: the model's chat template refuses them: {}", e.what()),
                   "messages");
  }
  g.prompts.push_back(m.tokenizer->encode(text, false));
  const auto left =
      static_cast<std::int64_t>(m.max_model_len) - static_cast<std::int64_t>(g.prompts[0].size());
  if (left <= 0 || max_tokens > left)
    bad("max_tokens", fmt::format("prompt ({} tokens) + max_tokens ({}) > the context ({} tokens)",
                                  g.prompts[0].size(), max_tokens, m.max_model_len));
  g.params.max_tokens = static_cast<std::int32_t>(max_tokens);
  return r;
}

// The tokens of the prompt up to the end of the breakpoint's message: what to pin.
std::int32_t pinned_prefix(const MessagesRequest& r, const ModelInfo& m) {
  if (!r.pin_through) return 0;
  json head(r.messages.begin(),
            r.messages.begin() + static_cast<std::ptrdiff_t>(*r.pin_through + 1));
  ChatRenderOptions o;
  o.add_generation_prompt = false;
  try {
    const auto ids = m.tokenizer->encode(m.chat_template->render(head.dump(), o), false);
    const std::vector<TokenId>& prompt = r.generation.prompts[0];
    // Only if it really is a prefix of the prompt (the template may render a cut
    // conversation differently).
    if (ids.size() > prompt.size() || !std::equal(ids.begin(), ids.end(), prompt.begin())) return 0;
    return static_cast<std::int32_t>(ids.size());
  } catch (const Error&) {
    return 0;
  }
}

// Anthropic's stop reason, and the stop sequence that matched.
std::pair<std::string, json> stop_of(const Choice& c, const GenerationRequest& g,
                                     const ModelInfo& m) {
  if (c.finish_reason == FinishReason::kLength) return {"max_tokens", nullptr};
  const std::string all = m.tokenizer->decode(c.token_ids, true);
  std::size_t best = std::string::npos;
  json which = nullptr;
  for (const std::string& s : g.params.stop) {
    const std::size_t from = c.text.size() >= s.size() ? c.text.size() - s.size() + 1 : 0;
    const std::size_t at = all.find(s, std::min(from, all.size()));
    if (at != std::string::npos && at < best) {
      best = at;
      which = s;
    }
  }
  if (!which.is_null()) return {"stop_sequence", which};
  return {"end_turn", nullptr};
}

json usage(const Usage& u, std::int32_t pinned, std::int64_t output_tokens) {
  const std::int64_t read = u.cached_tokens;
  const std::int64_t created = std::max<std::int64_t>(0, pinned - read);
  return {{"input_tokens", u.prompt_tokens - read - created},
          {"output_tokens", output_tokens},
          {"cache_creation_input_tokens", created},
          {"cache_read_input_tokens", read}};
}

json message_json(const std::string& id, const ModelInfo& m, json content, json stop_reason,
                  json stop_sequence, json usage) {
  return {{"id", id},
          {"type", "message"},
          {"role", "assistant"},
          {"model", m.name},
          {"content", std::move(content)},
          {"stop_reason", std::move(stop_reason)},
          {"stop_sequence", std::move(stop_sequence)},
          {"usage", std::move(usage)}};
}

std::string event(const char* name, const json& data) {
  return fmt::format("event: {}\ndata: {}\n\n", name, data.dump());
}

struct Streaming {
  std::shared_ptr<GenerationRun> run;
  MessagesRequest request;
  std::string id;
  std::int32_t pinned = 0;
  bool started = false;
  std::shared_ptr<ServerContext::StreamOpen> open;  // counts it while it is open
};

bool stream_step(ServerContext& ctx, Streaming& s, httplib::DataSink& sink) {
  auto write = [&](const std::string& t) { return sink.write(t.data(), t.size()); };
  if (ctx.stopping) s.run->abort();
  const auto deltas = s.run->pull(std::chrono::milliseconds(100));
  if (!s.started && (deltas.empty() && !s.run->done())) return true;
  if (!s.started) {
    s.started = true;
    // Cached tokens are only known when the request finished its first step; the first
    // pieces come after that, so the usage here is already right for reads.
    Usage u = s.run->usage();
    u.completion_tokens = 0;
    json msg =
        message_json(s.id, ctx.model, json::array(), nullptr, nullptr, usage(u, s.pinned, 0));
    if (!write(event("message_start", {{"type", "message_start"}, {"message", msg}}))) return false;
    if (!write(event("content_block_start", {{"type", "content_block_start"},
                                             {"index", 0},
                                             {"content_block", {{"type", "text"}, {"text", ""}}}})))
      return false;
  }
  for (const Delta& d : deltas) {
    if (!d.error.empty()) {
      if (!write(event("error", ApiError(500, d.error, {}, "api_error").anthropic_json())))
        return false;
      continue;
    }
    if (d.text.empty()) continue;
    if (!write(
            event("content_block_delta", {{"type", "content_block_delta"},
                                          {"index", 0},
                                          {"delta", {{"type", "text_delta"}, {"text", d.text}}}})))
      return false;
  }
  if (!s.run->done()) return true;
  const Choice& c = s.run->choices()[0];
  const auto [reason, sequence] = stop_of(c, s.request.generation, ctx.model);
  const Usage u = s.run->usage();
  if (!write(event("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}})) ||
      !write(
          event("message_delta", {{"type", "message_delta"},
                                  {"delta", {{"stop_reason", reason}, {"stop_sequence", sequence}}},
                                  {"usage", usage(u, s.pinned, u.completion_tokens)}})) ||
      !write(event("message_stop", {{"type", "message_stop"}})))
    return false;
  sink.done();
  return true;
}

}  // namespace

void handle_messages(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::exception& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  MessagesRequest r = parse_messages(body, ctx.model);
  const std::int32_t pinned = pinned_prefix(r, ctx.model);
  GenerationRequest g = r.generation;
  auto run = std::make_shared<GenerationRun>(
      ctx.engine, g,
      pinned > 0 ? std::optional<CachePin>(CachePin{pinned, r.pin_ttl}) : std::nullopt,
      ctx.metrics);
  const std::string id = ctx.make_id("msg_");
  if (!g.stream) {
    run->wait(ctx.stopping);
    if (!run->error().empty()) throw ApiError(500, run->error(), {}, "api_error");
    const Choice& c = run->choices()[0];
    const auto [reason, sequence] = stop_of(c, g, ctx.model);
    const Usage u = run->usage();
    json message = message_json(id, ctx.model, json::array({{{"type", "text"}, {"text", c.text}}}),
                                reason, sequence, usage(u, pinned, u.completion_tokens));
    if (c.cache_miss) message["cache_miss"] = cache_miss_json(*c.cache_miss);  // an extension
    res.set_content(message.dump(), "application/json");
    return;
  }
  auto state = std::make_shared<Streaming>(Streaming{run, std::move(r), id, pinned});
  stream_response(ctx, state, res, stream_step);
}

}  // namespace cachet::serve

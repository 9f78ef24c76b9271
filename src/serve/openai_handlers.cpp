// POST /v1/completions and /v1/chat/completions: a validated request run on the engine,
// answered as one JSON response or streamed as server-sent events, OpenAI's shapes.
#include "serve/openai_handlers.h"

#include <fmt/format.h>

#include <memory>

#include "serve/api_error.h"
#include "serve/cache_miss_json.h"
#include "serve/generation_run.h"

namespace cachet::serve {
namespace {

using json = nlohmann::json;

// The fields every response and chunk carries.
json envelope(const std::string& id, const char* object, const ServerContext& ctx) {
  return {
      {"id", id}, {"object", object}, {"created", std::time(nullptr)}, {"model", ctx.model.name}};
}

json choice_logprobs(const ServerContext& ctx, const GenerationRequest& g,
                     const std::vector<TokenId>& ids,
                     const std::vector<std::vector<TokenLogprob>>& entries, std::int64_t offset) {
  if (!g.logprobs || !ctx.model.tokenizer) return nullptr;
  const std::int32_t top = g.params.logprobs.value_or(0);
  return g.chat ? chat_logprobs(*ctx.model.tokenizer, ids, entries, top)
                : completion_logprobs(*ctx.model.tokenizer, ids, entries, top, offset);
}

json whole_response(const ServerContext& ctx, const GenerationRequest& g, GenerationRun& run,
                    const std::string& id) {
  json out = envelope(id, g.chat ? "chat.completion" : "text_completion", ctx);
  out["choices"] = json::array();
  for (const Choice& c : run.choices()) {
    json choice = {
        {"index", c.index},
        {"logprobs", choice_logprobs(ctx, g, c.token_ids, c.logprobs, 0)},
        {"finish_reason", finish_reason_name(c.finish_reason.value_or(FinishReason::kAborted))}};
    if (g.chat)
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      choice["text"] = c.text;
    if (c.cache_miss) choice["cache_miss"] = cache_miss_json(*c.cache_miss);  // an extension
    out["choices"].push_back(std::move(choice));
  }
  out["usage"] = usage_json(run.usage());
  return out;
}

std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }

// The chunks of one delta: a chat delta or a completion text piece.
json delta_chunk(const ServerContext& ctx, const GenerationRequest& g, const std::string& id,
                 const Delta& d, std::int64_t offset) {
  json chunk = envelope(id, g.chat ? "chat.completion.chunk" : "text_completion", ctx);
  json choice = {{"index", d.index},
                 {"logprobs", choice_logprobs(ctx, g, d.token_ids, d.logprobs, offset)},
                 {"finish_reason",
                  d.finish_reason ? json(finish_reason_name(*d.finish_reason)) : json(nullptr)}};
  if (g.chat)
    choice["delta"] =
        d.text.empty() && d.finish_reason ? json::object() : json{{"content", d.text}};
  else
    choice["text"] = d.text;
  if (d.cache_miss) choice["cache_miss"] = cache_miss_json(*d.cache_miss);
  chunk["choices"] = json::array({choice});
  return chunk;
}

// State of one streamed response between calls of its content provider.
struct Streaming {
  std::shared_ptr<GenerationRun> run;
  GenerationRequest request;
  std::string id;
  bool started = false;
  std::vector<std::int64_t> offsets;                // per choice: text bytes sent so far
  std::shared_ptr<ServerContext::StreamOpen> open;  // counts it while it is open
};

// One call of the content provider: what is ready, then (when all is done) the usage and
// [DONE]. False when the client has gone: the request is aborted.
bool stream_step(ServerContext& ctx, Streaming& s, httplib::DataSink& sink) {
  auto write = [&](const std::string& text) { return sink.write(text.data(), text.size()); };
  if (!s.started) {
    s.started = true;
    s.offsets.assign(s.run->choices().size(), 0);
    if (s.request.chat) {
      for (const Choice& c : s.run->choices()) {
        json chunk = envelope(s.id, "chat.completion.chunk", ctx);
        chunk["choices"] = json::array({{{"index", c.index},
                                         {"delta", {{"role", "assistant"}, {"content", ""}}},
                                         {"logprobs", nullptr},
                                         {"finish_reason", nullptr}}});
        if (!write(sse(chunk))) return false;
      }
    }
  }
  if (ctx.stopping) s.run->abort();
  for (const Delta& d : s.run->pull(std::chrono::milliseconds(100))) {
    if (!d.error.empty()) {
      if (!write(sse(ApiError(500, d.error, {}, "server_error").openai_json()))) return false;
      continue;
    }
    if (d.text.empty() && !d.finish_reason && d.token_ids.empty()) continue;
    std::int64_t& offset = s.offsets[static_cast<std::size_t>(d.index)];
    if (!write(sse(delta_chunk(ctx, s.request, s.id, d, offset)))) return false;
    offset += static_cast<std::int64_t>(d.text.size());
  }
  if (!s.run->done()) return true;
  if (s.request.include_usage) {
    json chunk = envelope(s.id, s.request.chat ? "chat.completion.chunk" : "text_completion", ctx);
    chunk["choices"] = json::array();
    chunk["usage"] = usage_json(s.run->usage());
    if (!write(sse(chunk))) return false;
  }
  if (!write("data: [DONE]\n\n")) return false;
  sink.done();
  return true;
}

void run_generation(ServerContext& ctx, const GenerationRequest& g, const char* id_prefix,
                    httplib::Response& res) {
  auto run = std::make_shared<GenerationRun>(ctx.engine, g, std::nullopt, ctx.metrics);
  const std::string id = ctx.make_id(id_prefix);
  if (!g.stream) {
    run->wait(ctx.stopping);
    if (!run->error().empty()) throw ApiError(500, run->error(), {}, "server_error");
    res.set_content(whole_response(ctx, g, *run, id).dump(), "application/json");
    return;
  }
  auto state = std::make_shared<Streaming>(Streaming{run, g, id});
  stream_response(ctx, state, res, stream_step);
}

json parse_body(const httplib::Request& req) {
  try {
    return json::parse(req.body);
  } catch (const json::exception& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
}

}  // namespace

void handle_completions(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  run_generation(ctx, parse_completion_request(parse_body(req), ctx.model), "cmpl-", res);
}

void handle_chat_completions(ServerContext& ctx, const httplib::Request& req,
                             httplib::Response& res) {
  run_generation(ctx, parse_chat_request(parse_body(req), ctx.model), "chatcmpl-", res);
}

}  // namespace cachet::serve

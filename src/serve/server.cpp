#include "serve/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "serve/anthropic_handlers.h"
#include "serve/api_error.h"
#include "serve/openai_handlers.h"

namespace cachet::serve {
namespace {

using json = nlohmann::json;

// Enough threads for many concurrent streams: each streamed response holds one.
constexpr std::size_t kHandlerThreads = 128;

void write_error(httplib::Response& res, const ApiError& e, bool anthropic = false) {
  res.status = e.status();
  res.set_content((anthropic ? e.anthropic_json() : e.openai_json()).dump(), "application/json");
}

bool authorized(const ServerContext& ctx, const httplib::Request& req) {
  if (ctx.options.api_key.empty()) return true;
  const std::string bearer = "Bearer " + ctx.options.api_key;
  return req.get_header_value("Authorization") == bearer ||
         req.get_header_value("x-api-key") == ctx.options.api_key;
}

ModelInfo model_info(const Engine& engine, const ServeOptions& options, const std::string& dir) {
  ModelInfo m;
  const EngineInfo& info = engine.info();
  m.name = options.model_name.empty()
               ? std::filesystem::path(dir).lexically_normal().filename().string()
               : options.model_name;
  if (m.name.empty())
    m.name = std::filesystem::path(dir).lexically_normal().parent_path().filename().string();
  m.tokenizer = engine.tokenizer();
  m.chat_template = engine.chat_template();
  m.max_model_len = info.max_model_len;
  m.vocab_size = info.vocab_size;
  m.max_prompt_blocks = info.num_kv_blocks;
  m.block_size = info.block_size;
  return m;
}

json models_json(const ServerContext& ctx) {
  const EngineInfo& info = ctx.engine.info();
  return {{"object", "list"},
          {"data", json::array({{{"id", ctx.model.name},
                                 {"object", "model"},
                                 {"created", ctx.started},
                                 {"owned_by", "cachet"},
                                 {"max_model_len", info.max_model_len},
                                 {"prefix_caching", info.prefix_caching},
                                 {"block_size", info.block_size},
                                 {"chat_template", info.has_chat_template}}})}};
}

json parse_json_body(const httplib::Request& req) {
  try {
    return json::parse(req.body);
  } catch (const json::exception& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
}

// GET /stats: Engine::stats() (the prefix cache's counters, blocks by state, tiers).
json stats_json(const Engine& engine) {
  const EngineStats s = engine.stats();
  return {{"prefix_cache_query_tokens", s.prefix_cache_query_tokens},
          {"prefix_cache_hit_tokens", s.prefix_cache_hit_tokens},
          {"prefix_cache_hit_rate", s.prefix_cache_hit_rate},
          {"prefix_cache_host_hit_tokens", s.prefix_cache_host_hit_tokens},
          {"prefix_cache_disk_hit_tokens", s.prefix_cache_disk_hit_tokens},
          {"prefix_cache_partial_hit_tokens", s.prefix_cache_partial_hit_tokens},
          {"blocks_free", s.blocks_free},
          {"blocks_cached", s.blocks_cached},
          {"blocks_in_use", s.blocks_in_use},
          {"blocks_pinned", s.blocks_pinned},
          {"host_blocks_used", s.host_blocks_used},
          {"disk_blocks_used", s.disk_blocks_used},
          {"evictions", s.evictions},
          {"preemptions", s.preemptions},
          {"num_running", s.num_running},
          {"num_waiting", s.num_waiting},
          {"num_finished", s.num_finished}};
}

// POST /tokenize: {"prompt": text, "add_special_tokens": true} or {"messages": [...]}.
json tokenize(const ServerContext& ctx, const json& body) {
  const Tokenizer* tok = ctx.model.tokenizer;
  if (!tok) throw ApiError(400, "the model has no tokenizer");
  std::string text;
  bool special = body.value("add_special_tokens", true);
  if (body.contains("messages")) {
    if (!ctx.model.chat_template) throw ApiError(400, "the model has no chat template", "messages");
    try {
      text = ctx.model.chat_template->render(body["messages"].dump());
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages");
    }
    special = false;
  } else if (body.contains("prompt") && body["prompt"].is_string()) {
    text = body["prompt"].get<std::string>();
  } else {
    throw ApiError(400, "give 'prompt' (a string) or 'messages'", "prompt");
  }
  const std::vector<TokenId> ids = tok->encode(text, special);
  return {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", ctx.model.max_model_len}};
}

json detokenize(const ServerContext& ctx, const json& body) {
  if (!ctx.model.tokenizer) throw ApiError(400, "the model has no tokenizer");
  if (!body.contains("tokens") || !body["tokens"].is_array())
    throw ApiError(400, "'tokens' must be a list of token ids", "tokens");
  std::vector<TokenId> ids;
  for (const json& t : body["tokens"]) {
    if (!t.is_number_integer() || t.get<std::int64_t>() < 0 ||
        t.get<std::int64_t>() >= ctx.model.vocab_size)
      throw ApiError(400, "'tokens' must hold token ids of the vocabulary", "tokens");
    ids.push_back(t.get<TokenId>());
  }
  return {{"prompt", ctx.model.tokenizer->decode(ids)}};
}

// A route whose errors become the API's error JSON (Anthropic's shape with `anthropic`).
template <class F>
httplib::Server::Handler guarded(ServerContext& ctx, bool needs_key, F f, bool anthropic = false) {
  return [&ctx, needs_key, f, anthropic](const httplib::Request& req, httplib::Response& res) {
    try {
      if (needs_key && !authorized(ctx, req))
        throw ApiError(401, "Incorrect API key provided.", {}, "authentication_error");
      f(req, res);
    } catch (const ApiError& e) {
      write_error(res, e, anthropic);
    } catch (const Error& e) {
      const bool failed = e.code() == ErrorCode::kEngineFailed;
      write_error(
          res,
          ApiError(failed ? 503 : 400, e.what(), {},
                   failed ? (anthropic ? "api_error" : "server_error") : "invalid_request_error"),
          anthropic);
    } catch (const std::exception& e) {
      write_error(res, ApiError(500, e.what(), {}, anthropic ? "api_error" : "server_error"),
                  anthropic);
    }
  };
}

void add_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Get("/health", [&ctx](const httplib::Request&, httplib::Response& res) {
    const EngineHealth h = ctx.engine.health();
    res.status = h.ok ? 200 : 503;
    res.set_content(json{{"status", h.ok ? "ok" : "failed"}, {"error", h.error}}.dump(),
                    "application/json");
  });
  svr.Get("/v1/models", guarded(ctx, true, [&ctx](const httplib::Request&, httplib::Response& res) {
            res.set_content(models_json(ctx).dump(), "application/json");
          }));
  svr.Get("/stats", guarded(ctx, true, [&ctx](const httplib::Request&, httplib::Response& res) {
            res.set_content(stats_json(ctx.engine).dump(), "application/json");
          }));
  // Prometheus scrapes this (behind the API key when one is set: give Prometheus the key as
  // its scrape config's `authorization: credentials`).
  svr.Get("/metrics", guarded(ctx, true, [&ctx](const httplib::Request&, httplib::Response& res) {
            res.set_content(ctx.metrics->scrape(ctx.engine), "text/plain; version=0.0.4");
          }));
  svr.Post("/v1/completions",
           guarded(ctx, true, [&ctx](const httplib::Request& req, httplib::Response& res) {
             handle_completions(ctx, req, res);
           }));
  svr.Post("/v1/chat/completions",
           guarded(ctx, true, [&ctx](const httplib::Request& req, httplib::Response& res) {
             handle_chat_completions(ctx, req, res);
           }));
  svr.Post("/v1/messages", guarded(
                               ctx, true,
                               [&ctx](const httplib::Request& req, httplib::Response& res) {
                                 handle_messages(ctx, req, res);
                               },
                               true));
  svr.Post("/tokenize",
           guarded(ctx, true, [&ctx](const httplib::Request& req, httplib::Response& res) {
             res.set_content(tokenize(ctx, parse_json_body(req)).dump(), "application/json");
           }));
  svr.Post("/detokenize",
           guarded(ctx, true, [&ctx](const httplib::Request& req, httplib::Response& res) {
             res.set_content(detokenize(ctx, parse_json_body(req)).dump(), "application/json");
           }));
}

}  // namespace

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int serve(Engine& engine, const ServeOptions& options, const std::string& model_dir) {
  ServerContext ctx{engine, model_info(engine, options, model_dir), options};
  httplib::Server svr;
  svr.new_task_queue = [] { return new httplib::ThreadPool(kHandlerThreads); };
  svr.set_payload_max_length(options.max_body_bytes);
  // Without it a client that keeps its connection alive waits ~40 ms per response: the
  // response goes out in several writes, and Nagle's algorithm holds each after the first
  // until the client's delayed ACK of it.
  svr.set_tcp_nodelay(true);
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int status = res.status;
    const char* what = status == 404   ? "no such endpoint"
                       : status == 413 ? "the request body is over the size limit"
                                       : "bad request";
    write_error(res, ApiError(status, what, {},
                              status == 404 ? "not_found_error" : "invalid_request_error"));
  });
  add_routes(svr, ctx);
  if (!svr.bind_to_port(options.host.c_str(), options.port)) {
    fmt::print(stderr, "cachet serve: cannot listen on {}:{}\n", options.host, options.port);
    return 1;
  }
  // SIGINT / SIGTERM: stop accepting, end what runs (aborted), let the handlers finish.
  std::thread signals([&] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    fmt::print(stderr, "cachet serve: {} received, stopping\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
    ctx.stopping = true;  // running requests are aborted; their streams end with [DONE]
    for (int i = 0; i < 200 && ctx.open_streams > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    svr.stop();
  });
  fmt::print(stderr, "cachet serve: {} on http://{}:{}\n", ctx.model.name, options.host,
             options.port);
  svr.listen_after_bind();
  if (!ctx.stopping) {  // the listener failed on its own: wake the signal thread
    ctx.stopping = true;
    kill(getpid(), SIGTERM);
  }
  signals.join();
  return 0;
}

}  // namespace cachet::serve

// What every handler of `cachet serve` shares: the engine, what is known of its model, the
// options, and the flag SIGINT/SIGTERM sets (running requests then end as aborted).
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>

#include "cachet/engine.h"
#include "serve/openai_protocol.h"
#include "serve/server_metrics.h"

namespace cachet::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string model_name;  // empty: the model directory's name
  std::string api_key;     // empty: no authentication
  std::size_t max_body_bytes = std::size_t{16} << 20;
};

struct ServerContext {
  Engine& engine;
  ModelInfo model;
  ServeOptions options;
  // Shared with the callbacks of the requests it observes, which may outlive a handler.
  std::shared_ptr<ServerMetrics> metrics = std::make_shared<ServerMetrics>(engine.info());
  std::atomic<bool> stopping{false};
  std::atomic<int> open_streams{0};  // streamed responses not yet ended
  std::atomic<std::uint64_t> next_id{1};
  std::time_t started = std::time(nullptr);

  // "cmpl-1a", "chatcmpl-1b", "msg_1c": unique for the server's lifetime.
  // Counts a streamed response open from construction to destruction.
  struct StreamOpen {
    std::atomic<int>& n;
    explicit StreamOpen(std::atomic<int>& c) : n(c) { ++n; }
    ~StreamOpen() { --n; }
    StreamOpen(const StreamOpen&) = delete;
    StreamOpen& operator=(const StreamOpen&) = delete;
  };

  std::string make_id(const char* prefix) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%llx", prefix,
                  static_cast<unsigned long long>(next_id.fetch_add(1)));
    return buf;
  }
};

// Streams `state`'s response: `step(ctx, *state, sink)` is called until it ends the sink, and
// a client that goes away (a failed write, or the connection dropped) aborts the run, which
// frees its KV blocks. `state` has a `run` (a GenerationRun) and an `open` member.
template <class State, class Step>
void stream_response(ServerContext& ctx, std::shared_ptr<State> state, httplib::Response& res,
                     Step step) {
  state->open = std::make_shared<ServerContext::StreamOpen>(ctx.open_streams);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [&ctx, state, step](std::size_t, httplib::DataSink& sink) {
        if (step(ctx, *state, sink)) return true;
        state->run->abort();
        return false;
      },
      [state](bool success) {
        if (!success) state->run->abort();
      });
}

}  // namespace cachet::serve

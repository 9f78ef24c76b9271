// `cachet serve`: an HTTP server over one Engine, speaking the OpenAI API (completions, chat
// completions, models) and cachet's own endpoints (health, tokenize, detokenize). Built on
// cpp-httplib; uses only cachet's public API, so everything it does an application can do.
#pragma once

#include "cachet/engine.h"
#include "serve/server_context.h"

namespace cachet::serve {

// Serves `engine` until SIGINT or SIGTERM (which the caller must have blocked in every
// thread, the engine's included, before creating them: serve() waits for them with
// sigwait). Then it stops accepting, aborts what is running, and returns 0; 1 when the
// address cannot be bound. Logs to stderr.
int serve(Engine& engine, const ServeOptions& options, const std::string& model_dir);

// Blocks SIGINT and SIGTERM in the calling thread (and every thread it creates from now on).
void block_stop_signals();

}  // namespace cachet::serve

// `cachet serve`: the OpenAI-compatible HTTP server (src/serve) over one engine.
#include <fmt/core.h>

#include <limits>

#include "cachet/engine.h"
#include "serve/server.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"

namespace cachet::tools {
namespace {

struct ServeArgs {
  EngineFlags engine;
  serve::ServeOptions options;
  std::int64_t max_body_mib = 16;
};

}  // namespace

Runner add_serve_command(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Serve the model over HTTP: the OpenAI API (completions, chat completions)");
  add_engine_flags(*cmd, a->engine);
  cmd->add_option("--host", a->options.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", a->options.port, "Port to listen on")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  cmd->add_option("--served-model-name", a->options.model_name,
                  "The model name requests must give (default: the model directory's name)");
  cmd->add_option("--api-key", a->options.api_key,
                  "Require 'Authorization: Bearer KEY' (or 'x-api-key: KEY') on /v1 and "
                  "/tokenize endpoints");
  cmd->add_option("--max-body-mib", a->max_body_mib, "Largest request body accepted, MiB")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  return [a] {
    // Before the engine's threads exist, so that they inherit the mask and only serve()'s
    // signal thread ever takes SIGINT / SIGTERM.
    serve::block_stop_signals();
    a->options.max_body_bytes = static_cast<std::size_t>(a->max_body_mib) << 20;
    Engine engine(engine_config(a->engine));
    return serve::serve(engine, a->options, a->engine.config.model_dir);
  };
}

}  // namespace cachet::tools

// `cachet`: generate with a model, make test models, inspect a model, tokenize, benchmark,
// serve over HTTP.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <exception>

#include "cachet/errors.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"cachet: an embeddable LLM inference runtime with automatic prefix caching"};
  app.require_subcommand(1);
  cachet::tools::Runner generate = cachet::tools::add_generate_command(app);
  cachet::tools::Runner make_model = cachet::tools::add_make_model_command(app);
  cachet::tools::Runner info = cachet::tools::add_info_command(app);
  cachet::tools::Runner tokenize = cachet::tools::add_tokenize_command(app);
  cachet::tools::Runner bench = cachet::tools::add_bench_command(app);
  cachet::tools::Runner serve = cachet::tools::add_serve_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (app.got_subcommand("generate")) return generate();
    if (app.got_subcommand("make-model")) return make_model();
    if (app.got_subcommand("info")) return info();
    if (app.got_subcommand("tokenize")) return tokenize();
    if (app.got_subcommand("bench")) return bench();
    if (app.got_subcommand("serve")) return serve();
  } catch (const cachet::Error& e) {
    fmt::print(stderr, "cachet: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "cachet: internal error: {}\n", e.what());
    return 3;
  }
  return 2;
}

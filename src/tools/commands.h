// Subcommands of the `cachet` tool. Each registers its options on the app and returns the
// function that runs it (exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace cachet::tools {

using Runner = std::function<int()>;

Runner add_generate_command(CLI::App& app);
Runner add_make_model_command(CLI::App& app);
Runner add_info_command(CLI::App& app);
Runner add_tokenize_command(CLI::App& app);
// `bench` with its subcommand `serve`.
Runner add_bench_command(CLI::App& app);
Runner add_serve_command(CLI::App& app);

}  // namespace cachet::tools

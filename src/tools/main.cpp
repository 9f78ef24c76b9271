// The `cachet` command-line tool (this build registers the tokenize command).
#include <iostream>

#include "cachet/errors.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"cachet: LLM inference runtime"};
  app.require_subcommand(1);
  const cachet::tools::Runner tokenize = cachet::tools::add_tokenize_command(app);
  CLI11_PARSE(app, argc, argv);
  try {
    return tokenize();
  } catch (const cachet::Error& e) {
    std::cerr << "cachet: error: " << e.what() << "\n";
    return 1;
  }
}

// `cachet tokenize`: one JSON string per input line -> the JSON array of its ids
// (or, with --decode, one JSON array of ids per line -> the decoded JSON string).
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cachet/errors.h"
#include "cachet/tokenizer.h"
#include "tools/commands.h"
#include "util/json_depth.h"

namespace cachet::tools {

namespace {

struct TokenizeOptions {
  std::string tokenizer_path;
  bool no_special_tokens = false;
  bool add_special_tokens = true;  // --add-special-tokens: the default, accepted for old scripts
  bool decode = false;
};

int run_tokenize(const TokenizeOptions& options) {
  const Tokenizer tokenizer = Tokenizer::from_file(options.tokenizer_path);
  std::string line;
  for (long line_number = 1; std::getline(std::cin, line); ++line_number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    nlohmann::json input;
    if (util::json_nesting_depth(line) > util::kMaxJsonDepth) {
      std::cerr << "cachet: error: stdin line " << line_number << ": JSON nested deeper than "
                << util::kMaxJsonDepth << " levels\n";
      return 1;
    }
    try {
      input = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      std::cerr << "cachet: error: stdin line " << line_number << ": malformed JSON: " << e.what()
                << "\n";
      return 1;
    }
    if (options.decode) {
      std::vector<TokenId> ids;
      bool ok = input.is_array();
      for (const auto& id : input) {
        // An id beyond 32 bits would be truncated to some other token.
        if (!ok || !id.is_number_integer() ||
            (id.is_number_unsigned()
                 ? id.get<std::uint64_t>() > INT32_MAX
                 : (id.get<std::int64_t>() < INT32_MIN || id.get<std::int64_t>() > INT32_MAX))) {
          ok = false;
          break;
        }
        ids.push_back(id.get<TokenId>());
      }
      if (!ok) {
        std::cerr << "cachet: error: stdin line " << line_number
                  << ": expected a JSON array of integer token ids (32-bit)\n";
        return 1;
      }
      const nlohmann::json text = tokenizer.decode(ids, /*skip_special_tokens=*/false);
      std::cout << text.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      if (!input.is_string()) {
        std::cerr << "cachet: error: stdin line " << line_number << ": expected a JSON string\n";
        return 1;
      }
      const nlohmann::json ids =
          tokenizer.encode(input.get<std::string>(), !options.no_special_tokens);
      std::cout << ids.dump() << "\n";
    }
    std::cout.flush();
  }
  return 0;
}

}  // namespace

Runner add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Tokenize standard input: each line a JSON string, printed back as a JSON array of ids");
  cmd->add_option("--tokenizer", options->tokenizer_path,
                  "tokenizer.json or a model directory holding one")
      ->required();
  cmd->add_flag("--no-special-tokens", options->no_special_tokens,
                "leave out what the post-processor adds (e.g. Llama's BOS); by default the ids "
                "are those of a text prompt sent to the engine (Hugging Face's tokenizer(text))");
  cmd->add_flag("--add-special-tokens", options->add_special_tokens,
                "the default; accepted for older scripts");
  cmd->add_flag("--decode", options->decode,
                "the reverse: each line a JSON array of ids, printed back as a JSON string "
                "(special tokens kept)");
  return [options, cmd]() -> int {
    if (!cmd->parsed()) return -1;
    return run_tokenize(*options);
  };
}

}  // namespace cachet::tools

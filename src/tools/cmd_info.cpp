#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "cachet/engine.h"
#include "tools/commands.h"

namespace cachet::tools {

Runner add_info_command(CLI::App& app) {
  auto config = std::make_shared<EngineConfig>();
  CLI::App* cmd =
      app.add_subcommand("info", "Load a model and print what the engine chose, as JSON");
  cmd->add_option("--model", config->model_dir, "Hugging Face model directory")->required();
  cmd->add_option("--block-size", config->block_size, "Tokens per KV block")->capture_default_str();
  return [config] {
    config->device = Device::kCpu;
    Engine engine(*config);
    const EngineInfo& i = engine.info();
    nlohmann::json j = {{"architecture", i.architecture},
                        {"backend", i.backend},
                        {"cpu_isa", i.cpu_isa},
                        {"vocab_size", i.vocab_size},
                        {"num_layers", i.num_layers},
                        {"block_size", i.block_size},
                        {"num_kv_blocks", i.num_kv_blocks},
                        {"kv_cache_bytes", i.kv_cache_bytes},
                        {"num_host_kv_blocks", i.num_host_kv_blocks},
                        {"host_kv_cache_bytes", i.host_kv_cache_bytes},
                        {"max_model_len", i.max_model_len},
                        {"max_num_seqs", i.max_num_seqs},
                        {"max_num_batched_tokens", i.max_num_batched_tokens},
                        {"num_threads", i.num_threads},
                        {"eos_token_ids", i.eos_token_ids}};
    fmt::print("{}\n", j.dump(2));
    return 0;
  };
}

}  // namespace cachet::tools

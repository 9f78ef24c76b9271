#include <fmt/core.h>

#include <chrono>
#include <map>

#include "model/make_model.h"
#include "tools/commands.h"

namespace cachet::tools {
namespace {

struct MakeModelArgs {
  std::string arch = "qwen3";
  std::string preset = "tiny";
  std::string dtype = "f32";
  std::uint64_t seed = 0;
  std::string out;
  std::string tokenizer;
  int shards = 1;
};

}  // namespace

Runner add_make_model_command(CLI::App& app) {
  auto args = std::make_shared<MakeModelArgs>();
  CLI::App* cmd =
      app.add_subcommand("make-model", "Write a random-weight Hugging Face model directory");
  cmd->add_option("--arch", args->arch, "llama | qwen2 | qwen3")
      ->check(CLI::IsMember({"llama", "qwen2", "qwen3"}))
      ->capture_default_str();
  std::string presets;
  for (const auto& p : model::model_presets()) presets += (presets.empty() ? "" : " | ") + p;
  cmd->add_option("--preset", args->preset, presets)
      ->check(CLI::IsMember(model::model_presets()))
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "f32 | bf16 | f16")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed of the weights")->capture_default_str();
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.json, or a directory with it, to copy in");
  cmd->add_option("--shards", args->shards, "Number of safetensors shards")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  return [args] {
    static const std::map<std::string, model::Arch> archs = {{"llama", model::Arch::kLlama},
                                                             {"qwen2", model::Arch::kQwen2},
                                                             {"qwen3", model::Arch::kQwen3}};
    static const std::map<std::string, model::DType> dtypes = {
        {"f32", model::DType::kF32}, {"bf16", model::DType::kBF16}, {"f16", model::DType::kF16}};
    model::MakeModelOptions options;
    options.arch = archs.at(args->arch);
    options.preset = args->preset;
    options.dtype = dtypes.at(args->dtype);
    options.seed = args->seed;
    options.out_dir = args->out;
    options.tokenizer = args->tokenizer;
    options.num_shards = args->shards;
    const auto start = std::chrono::steady_clock::now();
    model::make_model(options);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    fmt::print(stderr, "wrote {} ({} {}, {}, seed {}) in {:.1f} s\n", args->out, args->arch,
               args->preset, args->dtype, args->seed, s);
    return 0;
  };
}

}  // namespace cachet::tools

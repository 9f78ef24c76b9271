// Deterministic random-weight Hugging Face model directories for tests and benchmarks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace cachet::model {

struct MakeModelOptions {
  Arch arch = Arch::kQwen3;
  std::string preset = "tiny";
  DType dtype = DType::kF32;
  std::uint64_t seed = 0;
  std::filesystem::path out_dir;
  // A tokenizer.json (or a directory holding tokenizer.json and friends) to copy into the
  // model; its vocabulary size then sets vocab_size when larger than the preset's.
  std::filesystem::path tokenizer;
  // Split the weights into this many shards with model.safetensors.index.json (1: one file).
  std::int32_t num_shards = 1;
};

// Names of the presets, smallest first: "tiny", "small", ... "qwen3-0.6b", "llama-3.2-1b".
std::vector<std::string> model_presets();
// The config a preset gives for an architecture. Throws cachet::Error for an unknown preset.
ModelConfig preset_config(Arch arch, const std::string& preset);

// Writes config.json, generation_config.json, model.safetensors (or shards) and the
// tokenizer files. The same options give byte-identical files. Throws cachet::Error.
void make_model(const MakeModelOptions& options);

}  // namespace cachet::model

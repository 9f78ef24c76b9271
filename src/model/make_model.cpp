#include "model/make_model.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>

#include "cachet/errors.h"
#include "cachet/tokenizer.h"
#include "model/architecture.h"
#include "model/safetensors.h"
#include "util/rng.h"

namespace cachet::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Preset {
  const char* name;
  std::int32_t vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, max_pos;
  double theta, eps;
};

// Smallest first. The tiny ones run a forward pass in milliseconds on a CPU; the last three
// have the dimensions of Qwen3-0.6B, Qwen2.5-0.5B and Llama-3.2-1B for benchmarks.
constexpr Preset kPresets[] = {
    {"tiny", 512, 64, 128, 2, 4, 2, 16, 4096, 10000.0, 1e-6},
    {"small", 4096, 256, 768, 4, 8, 2, 32, 8192, 10000.0, 1e-6},
    {"medium", 32000, 512, 1536, 8, 8, 4, 64, 8192, 500000.0, 1e-5},
    {"qwen3-0.6b", 151936, 1024, 3072, 28, 16, 8, 128, 40960, 1000000.0, 1e-6},
    {"qwen2.5-0.5b", 151936, 896, 4864, 24, 14, 2, 64, 32768, 1000000.0, 1e-6},
    {"llama-3.2-1b", 128256, 2048, 8192, 16, 32, 8, 64, 131072, 500000.0, 1e-5},
};

const Preset* find_preset(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) return &p;
  return nullptr;
}

bool is_small(const Preset& p) { return p.vocab <= 32000; }

// Each tensor draws from its own stream seeded by (seed, name), so the values of a tensor do
// not depend on which tensors come before it or how the checkpoint is sharded.
std::uint64_t tensor_seed(std::uint64_t seed, const std::string& name) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return util::mix64(seed ^ util::mix64(h));
}

// Scales chosen so a random model behaves like a trained one where it matters for tests:
// unit-scale activations through every layer, and logits with a standard deviation of about
// 4 so the top-1 token has a clear margin and greedy comparisons are meaningful.
std::vector<float> random_values(const TensorSpec& spec, std::uint64_t seed, std::int32_t hidden) {
  std::int64_t numel = 1;
  for (auto d : spec.shape) numel *= d;
  util::SplitMix64 rng(tensor_seed(seed, spec.name));
  double mean = 0.0, stddev = 0.0;
  switch (spec.role) {
    case TensorRole::kEmbedding:
    case TensorRole::kLmHead:
      stddev = 4.0 / std::sqrt(static_cast<double>(hidden));
      break;
    case TensorRole::kNorm:
      mean = 1.0, stddev = 0.1;
      break;
    case TensorRole::kBias:
      stddev = 0.1;
      break;
    case TensorRole::kLinear:
      stddev = 1.0 / std::sqrt(static_cast<double>(spec.shape.at(1)));
      break;
  }
  std::vector<float> values(static_cast<std::size_t>(numel));
  for (auto& v : values) v = static_cast<float>(mean + stddev * rng.normal());
  return values;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out)
    throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: cannot write", path.string()));
}

// Copies tokenizer files and adopts their vocabulary size and special tokens. Loading the
// tokenizer checks that it is one cachet can use, and gives its ids exactly as the engine
// will see them (added tokens included, with Hugging Face's id assignment rules).
void adopt_tokenizer(const fs::path& tokenizer, const fs::path& out_dir, ModelConfig& config) {
  const Tokenizer tok = Tokenizer::from_file(tokenizer);
  const bool is_dir = fs::is_directory(tokenizer);
  const fs::path dir = is_dir ? tokenizer : tokenizer.parent_path();
  fs::copy_file(is_dir ? dir / "tokenizer.json" : tokenizer, out_dir / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  for (const char* extra :
       {"tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"}) {
    if (fs::exists(dir / extra))
      fs::copy_file(dir / extra, out_dir / extra, fs::copy_options::overwrite_existing);
  }
  const auto vocab = static_cast<std::int64_t>(tok.vocab_size());
  // Round up to a multiple of 64, as real checkpoints pad their embedding tables.
  if (vocab > config.vocab_size)
    config.vocab_size = static_cast<std::int32_t>((vocab + 63) / 64 * 64);
  config.bos_token_id = tok.bos_token_id();
  if (!tok.eos_token_ids().empty()) config.eos_token_ids = tok.eos_token_ids();
}

}  // namespace

std::vector<std::string> model_presets() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) names.emplace_back(p.name);
  return names;
}

ModelConfig preset_config(Arch arch, const std::string& preset) {
  const Preset* p = find_preset(preset);
  if (p == nullptr) {
    std::string known;
    for (const auto& name : model_presets()) known += (known.empty() ? "" : ", ") + name;
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("unknown model preset '{}' (known: {})", preset, known));
  }
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = p->vocab;
  c.hidden_size = p->hidden;
  c.intermediate_size = p->intermediate;
  c.num_layers = p->layers;
  c.num_heads = p->heads;
  c.num_kv_heads = p->kv_heads;
  c.head_dim = p->head_dim;
  c.max_position_embeddings = p->max_pos;
  c.rope_theta = p->theta;
  c.rms_norm_eps = p->eps;
  c.tie_word_embeddings = true;
  c.attention_bias = arch == Arch::kQwen2;
  c.qk_norm = arch == Arch::kQwen3;
  c.torch_dtype = DType::kF32;
  if (is_small(*p)) {
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
    // Exercise what the small presets would otherwise leave out: an lm_head of its own for
    // Llama, llama3 RoPE scaling that bends the low frequencies within the test lengths, and
    // a Qwen3 head_dim that differs from hidden_size / num_heads.
    if (arch == Arch::kLlama) {
      c.tie_word_embeddings = false;
      c.rope_scaling = Llama3RopeScaling{8.0, 1.0, 4.0, 256};
    }
    if (arch == Arch::kQwen3) c.head_dim = 2 * p->head_dim;
  } else if (preset == "llama-3.2-1b") {
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128008, 128009};
    c.rope_scaling = Llama3RopeScaling{32.0, 1.0, 4.0, 8192};
  } else {
    c.bos_token_id = 151643;
    c.eos_token_ids = {arch == Arch::kQwen3 ? 151645 : 151643};
  }
  if (arch == Arch::kQwen2 && c.head_dim * c.num_heads != c.hidden_size) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("preset '{}' has head_dim {} != hidden_size / num_heads = {}, which Qwen2 "
                    "requires; use --arch qwen3 or llama",
                    preset, c.head_dim, c.hidden_size / c.num_heads));
  }
  return c;
}

void make_model(const MakeModelOptions& options) {
  if (options.out_dir.empty())
    throw Error(ErrorCode::kInvalidArgument, "make_model: no output directory given");
  if (options.num_shards < 1 || options.num_shards > 1000)
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("make_model: num_shards must be in [1, 1000], got {}", options.num_shards));
  ModelConfig config = preset_config(options.arch, options.preset);
  config.torch_dtype = options.dtype;
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec)
    throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: cannot create directory: {}",
                                                         options.out_dir.string(), ec.message()));
  if (!options.tokenizer.empty()) adopt_tokenizer(options.tokenizer, options.out_dir, config);

  write_text(options.out_dir / "config.json", model_config_to_json(config) + "\n");
  json generation = {{"_from_model_config", true}, {"do_sample", false}};
  if (config.bos_token_id) generation["bos_token_id"] = *config.bos_token_id;
  if (config.eos_token_ids.size() == 1)
    generation["eos_token_id"] = config.eos_token_ids[0];
  else if (!config.eos_token_ids.empty())
    generation["eos_token_id"] = config.eos_token_ids;
  write_text(options.out_dir / "generation_config.json", generation.dump(2) + "\n");

  // Remove checkpoint files of an earlier run so the directory holds exactly one layout.
  for (const auto& entry : fs::directory_iterator(options.out_dir)) {
    auto name = entry.path().filename().string();
    if (name.ends_with(".safetensors") || name == "model.safetensors.index.json")
      fs::remove(entry.path());
  }

  std::vector<TensorSpec> specs = expected_tensors(config);
  std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                 {"cachet_preset", options.preset},
                                                 {"cachet_seed", std::to_string(options.seed)}};
  auto to_write = [&](const TensorSpec& spec) {
    return TensorToWrite{spec.name, options.dtype, spec.shape,
                         random_values(spec, options.seed, config.hidden_size)};
  };
  if (options.num_shards == 1) {
    std::vector<TensorToWrite> tensors;
    for (const auto& spec : specs) tensors.push_back(to_write(spec));
    write_safetensors(options.out_dir / "model.safetensors", tensors, metadata);
    return;
  }
  // Sharded: tensors in order, a new shard whenever the current one holds its share.
  std::int64_t total_bytes = 0;
  for (const auto& spec : specs) {
    std::int64_t n = 1;
    for (auto d : spec.shape) n *= d;
    total_bytes += n * static_cast<std::int64_t>(dtype_size(options.dtype));
  }
  const std::int64_t per_shard = (total_bytes + options.num_shards - 1) / options.num_shards;
  json weight_map = json::object();
  std::size_t next = 0;
  for (int shard = 0; shard < options.num_shards; ++shard) {
    std::string file =
        fmt::format("model-{:05d}-of-{:05d}.safetensors", shard + 1, options.num_shards);
    std::vector<TensorToWrite> tensors;
    std::int64_t bytes = 0;
    while (next < specs.size() && (bytes < per_shard || shard == options.num_shards - 1)) {
      tensors.push_back(to_write(specs[next]));
      bytes += static_cast<std::int64_t>(tensors.back().values.size() * dtype_size(options.dtype));
      weight_map[specs[next].name] = file;
      ++next;
    }
    write_safetensors(options.out_dir / file, tensors, metadata);
  }
  json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  write_text(options.out_dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace cachet::model

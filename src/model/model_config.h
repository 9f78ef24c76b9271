// config.json of a Hugging Face causal LM, reduced to what the forward pass needs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/dtype.h"

namespace cachet::model {

enum class Arch { kLlama, kQwen2, kQwen3 };

// "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM".
std::string_view arch_name(Arch arch);
// "llama", "qwen2", "qwen3".
std::string_view arch_model_type(Arch arch);

// rope_scaling of type "llama3" (Llama 3.1 / 3.2).
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  std::int64_t original_max_position_embeddings = 8192;

  bool operator==(const Llama3RopeScaling&) const = default;
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::int32_t vocab_size = 0;
  std::int32_t hidden_size = 0;
  std::int32_t intermediate_size = 0;
  std::int32_t num_layers = 0;    // num_hidden_layers
  std::int32_t num_heads = 0;     // num_attention_heads
  std::int32_t num_kv_heads = 0;  // num_key_value_heads (defaults to num_heads)
  std::int32_t head_dim = 0;      // explicit, else hidden_size / num_heads (Qwen3: 128)
  std::int32_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<Llama3RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projection biases (always on for Qwen2)
  bool qk_norm = false;         // per-head RMSNorm of q and k before RoPE (Qwen3)
  std::optional<std::int32_t> bos_token_id;
  std::vector<std::int32_t> eos_token_ids;  // eos_token_id: an int or a list
  std::optional<DType> torch_dtype;

  bool operator==(const ModelConfig&) const = default;
};

// Parses and validates a config.json. Throws cachet::Error naming the file and the field:
// missing file, not JSON, missing/mistyped/out-of-range field, unsupported architecture,
// unsupported rope_scaling type, hidden_act other than silu, sliding window enabled.
ModelConfig load_model_config(const std::filesystem::path& config_json);
// The same from JSON text; `origin` names the source in messages.
ModelConfig parse_model_config(std::string_view json_text, const std::string& origin);
// The config.json that Hugging Face transformers would write for `config`.
std::string model_config_to_json(const ModelConfig& config);

}  // namespace cachet::model

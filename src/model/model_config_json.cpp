// model_config_to_json: the config.json transformers would write for a ModelConfig.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cachet/errors.h"
#include "model/model_config.h"

namespace cachet::model {
namespace {

using Json = nlohmann::json;

// The transformers release whose config classes the written file targets (Qwen3 support).
constexpr const char* kTransformersVersion = "4.51.0";

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "model_config_to_json: " + what);
}

// A config that transformers would read back as a different model cannot be written.
void check_representable(const ModelConfig& c) {
  const std::pair<const char*, std::int32_t> dims[] = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& [name, value] : dims) {
    if (value <= 0) invalid(fmt::format("{} must be positive (got {})", name, value));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    invalid(fmt::format("num_key_value_heads must divide num_attention_heads (got {} and {})",
                        c.num_kv_heads, c.num_heads));
  }
  const bool qwen2 = c.arch == Arch::kQwen2;
  const bool qwen3 = c.arch == Arch::kQwen3;
  if (c.attention_bias != qwen2) {
    invalid(fmt::format("attention_bias must be {} for {} (transformers: q/k/v biases {})", qwen2,
                        arch_name(c.arch), qwen2 ? "always present" : "would include o_proj"));
  }
  if (c.qk_norm != qwen3) {
    invalid(fmt::format("qk_norm must be {} for {}", qwen3, arch_name(c.arch)));
  }
  if (qwen2 && c.head_dim * c.num_heads != c.hidden_size) {
    invalid(
        fmt::format("Qwen2 needs head_dim = hidden_size / num_attention_heads (got {}, {} / {})",
                    c.head_dim, c.hidden_size, c.num_heads));
  }
  if (const auto& s = c.rope_scaling) {
    if (!(s->factor > 0) || !(s->low_freq_factor > 0) ||
        !(s->high_freq_factor > s->low_freq_factor) || s->original_max_position_embeddings <= 0) {
      invalid(fmt::format(
          "llama3 rope_scaling needs factor > 0, 0 < low_freq_factor < "
          "high_freq_factor and original_max_position_embeddings > 0 (got {}, {}, "
          "{}, {})",
          s->factor, s->low_freq_factor, s->high_freq_factor, s->original_max_position_embeddings));
    }
  }
  if (!(c.rms_norm_eps > 0) || !(c.rope_theta > 0)) {
    invalid(fmt::format("rms_norm_eps and rope_theta must be positive (got {} and {})",
                        c.rms_norm_eps, c.rope_theta));
  }
}

}  // namespace

std::string model_config_to_json(const ModelConfig& c) {
  check_representable(c);
  // nlohmann::json keeps keys sorted, as transformers' to_json_string(sort_keys=True) does.
  Json j;
  j["architectures"] = Json::array({std::string(arch_name(c.arch))});
  j["model_type"] = std::string(arch_model_type(c.arch));
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["num_hidden_layers"] = c.num_layers;
  // Qwen2Config has no head_dim (hidden_size / num_attention_heads is implied).
  if (c.arch != Arch::kQwen2) j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling->factor},
        {"low_freq_factor", c.rope_scaling->low_freq_factor},
        {"high_freq_factor", c.rope_scaling->high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling->original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["attention_dropout"] = 0.0;
  if (c.arch == Arch::kLlama) {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  } else {
    if (c.arch == Arch::kQwen3) j["attention_bias"] = false;
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = c.num_layers;
  }
  j["bos_token_id"] = c.bos_token_id ? Json(*c.bos_token_id) : Json(nullptr);
  if (c.eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids.front();
  } else {
    j["eos_token_id"] = c.eos_token_ids;
  }
  if (c.torch_dtype) {
    switch (*c.torch_dtype) {
      case DType::kF32:
        j["torch_dtype"] = "float32";
        break;
      case DType::kF16:
        j["torch_dtype"] = "float16";
        break;
      case DType::kBF16:
        j["torch_dtype"] = "bfloat16";
        break;
    }
  }
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["transformers_version"] = kTransformersVersion;
  return j.dump(2) + "\n";
}

}  // namespace cachet::model

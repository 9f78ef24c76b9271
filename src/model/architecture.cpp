#include "model/architecture.h"

#include <fmt/format.h>

#include <string_view>

#include "model/architecture_detail.h"

namespace cachet::model {

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  const std::int64_t hidden = c.hidden_size;
  const std::int64_t q_out = std::int64_t{c.num_heads} * c.head_dim;
  const std::int64_t kv_out = std::int64_t{c.num_kv_heads} * c.head_dim;
  const std::int64_t intermediate = c.intermediate_size;
  const std::int64_t vocab = c.vocab_size;

  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {vocab, hidden}, TensorRole::kEmbedding});
  for (std::int32_t i = 0; i < c.num_layers; ++i) {
    const std::string layer = fmt::format("model.layers.{}.", i);
    const std::string attn = layer + "self_attn.";
    specs.push_back({layer + "input_layernorm.weight", {hidden}, TensorRole::kNorm});
    specs.push_back({attn + "q_proj.weight", {q_out, hidden}, TensorRole::kLinear});
    specs.push_back({attn + "k_proj.weight", {kv_out, hidden}, TensorRole::kLinear});
    specs.push_back({attn + "v_proj.weight", {kv_out, hidden}, TensorRole::kLinear});
    if (c.attention_bias) {
      specs.push_back({attn + "q_proj.bias", {q_out}, TensorRole::kBias});
      specs.push_back({attn + "k_proj.bias", {kv_out}, TensorRole::kBias});
      specs.push_back({attn + "v_proj.bias", {kv_out}, TensorRole::kBias});
    }
    if (c.qk_norm) {
      specs.push_back({attn + "q_norm.weight", {c.head_dim}, TensorRole::kNorm});
      specs.push_back({attn + "k_norm.weight", {c.head_dim}, TensorRole::kNorm});
    }
    specs.push_back({attn + "o_proj.weight", {hidden, q_out}, TensorRole::kLinear});
    specs.push_back({layer + "post_attention_layernorm.weight", {hidden}, TensorRole::kNorm});
    specs.push_back({layer + "mlp.gate_proj.weight", {intermediate, hidden}, TensorRole::kLinear});
    specs.push_back({layer + "mlp.up_proj.weight", {intermediate, hidden}, TensorRole::kLinear});
    specs.push_back({layer + "mlp.down_proj.weight", {hidden, intermediate}, TensorRole::kLinear});
  }
  specs.push_back({"model.norm.weight", {hidden}, TensorRole::kNorm});
  if (!c.tie_word_embeddings) {
    specs.push_back({"lm_head.weight", {vocab, hidden}, TensorRole::kLmHead});
  }
  return specs;
}

bool is_ignorable_tensor(const ModelConfig& config, const std::string& name) {
  // Older transformers saved the RoPE frequency buffers; cachet recomputes them.
  if (name.ends_with(".rotary_emb.inv_freq")) return true;
  return config.tie_word_embeddings && name == "lm_head.weight";
}

std::string shape_derivation(const ModelConfig& c, const std::string& name) {
  auto ends = [&](std::string_view suffix) { return name.ends_with(suffix); };
  struct Dim {
    std::string fields;
    std::string values;
  };
  const Dim hidden{"hidden_size", std::to_string(c.hidden_size)};
  const Dim vocab{"vocab_size", std::to_string(c.vocab_size)};
  const Dim intermediate{"intermediate_size", std::to_string(c.intermediate_size)};
  const Dim q_out{"num_attention_heads * head_dim",
                  fmt::format("{} * {}", c.num_heads, c.head_dim)};
  const Dim kv_out{"num_key_value_heads * head_dim",
                   fmt::format("{} * {}", c.num_kv_heads, c.head_dim)};
  const Dim head{"head_dim", std::to_string(c.head_dim)};

  std::vector<Dim> dims;
  if (ends("embed_tokens.weight") || name == "lm_head.weight") {
    dims = {vocab, hidden};
  } else if (ends("q_proj.weight")) {
    dims = {q_out, hidden};
  } else if (ends("k_proj.weight") || ends("v_proj.weight")) {
    dims = {kv_out, hidden};
  } else if (ends("q_proj.bias")) {
    dims = {q_out};
  } else if (ends("k_proj.bias") || ends("v_proj.bias")) {
    dims = {kv_out};
  } else if (ends("q_norm.weight") || ends("k_norm.weight")) {
    dims = {head};
  } else if (ends("o_proj.weight")) {
    dims = {hidden, q_out};
  } else if (ends("gate_proj.weight") || ends("up_proj.weight")) {
    dims = {intermediate, hidden};
  } else if (ends("down_proj.weight")) {
    dims = {hidden, intermediate};
  } else if (ends("norm.weight")) {
    dims = {hidden};
  } else {
    return "";
  }
  std::string fields, values;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    const char* sep = i == 0 ? "" : ", ";
    fields += sep + dims[i].fields;
    values += sep + dims[i].values;
  }
  return fmt::format("[{}] = [{}]", fields, values);
}

}  // namespace cachet::model

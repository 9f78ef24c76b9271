#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "cachet/errors.h"
#include "model/architecture.h"
#include "model/architecture_detail.h"
#include "model/safetensors.h"

namespace cachet::model {
namespace {

// A hand-built config (the file loader already guarantees this) must give real shapes.
void check_dims(const ModelConfig& c) {
  const std::pair<const char*, std::int32_t> dims[] = {{"vocab_size", c.vocab_size},
                                                       {"hidden_size", c.hidden_size},
                                                       {"intermediate_size", c.intermediate_size},
                                                       {"num_hidden_layers", c.num_layers},
                                                       {"num_attention_heads", c.num_heads},
                                                       {"num_key_value_heads", c.num_kv_heads},
                                                       {"head_dim", c.head_dim}};
  for (const auto& [name, value] : dims) {
    if (value <= 0) {
      throw Error(
          ErrorCode::kInvalidArgument,
          fmt::format("load_weights: config field '{}' must be positive (got {})", name, value));
    }
  }
}

// "FILE: " for a single-file checkpoint; for shards, the index file plus the shards searched.
struct Searched {
  std::string prefix;
  std::string suffix;
};
Searched searched_files(const WeightStore& store, const std::filesystem::path& model_dir) {
  if (store.files().size() == 1) return {store.files().front()->path().string(), ""};
  std::vector<std::string> names;
  for (const auto& file : store.files()) names.push_back(file->path().filename().string());
  return {(model_dir / "model.safetensors.index.json").string(),
          fmt::format(" (searched the {} shards: {})", names.size(), fmt::join(names, ", "))};
}

std::string quoted_list(const std::vector<std::string>& names, std::size_t limit) {
  std::string text;
  for (std::size_t i = 0; i < names.size() && i < limit; ++i) {
    text += fmt::format("{}'{}'", i == 0 ? "" : ", ", names[i]);
  }
  if (names.size() > limit) text += fmt::format(" and {} more", names.size() - limit);
  return text;
}

void check_tensor_set(const WeightStore& store, const std::filesystem::path& model_dir,
                      const ModelConfig& config, const std::vector<TensorSpec>& specs) {
  std::set<std::string> expected;
  std::vector<std::string> missing;
  for (const TensorSpec& spec : specs) {
    expected.insert(spec.name);
    if (store.find(spec.name) == nullptr) missing.push_back(spec.name);
  }
  if (!missing.empty()) {
    const Searched searched = searched_files(store, model_dir);
    throw Error(
        ErrorCode::kInvalidModel,
        fmt::format("{}: {} tensor{} that config.json implies {} missing: {}{}", searched.prefix,
                    missing.size(), missing.size() == 1 ? "" : "s",
                    missing.size() == 1 ? "is" : "are", quoted_list(missing, 8), searched.suffix));
  }
  std::vector<const TensorView*> unexpected;
  for (const auto& [name, view] : store.tensors()) {
    if (!expected.contains(name) && !is_ignorable_tensor(config, name)) unexpected.push_back(view);
  }
  if (!unexpected.empty()) {
    const TensorView& first = *unexpected.front();
    throw Error(ErrorCode::kInvalidModel,
                fmt::format("{}: unexpected tensor '{}'{} — does config.json match the checkpoint?",
                            first.file, first.name,
                            unexpected.size() > 1
                                ? fmt::format(" ({} unexpected tensors in all)", unexpected.size())
                                : ""));
  }
}

void check_shape(const ModelConfig& config, const TensorView& view,
                 const std::vector<std::int64_t>& expected) {
  if (view.shape == expected) return;
  throw Error(ErrorCode::kInvalidModel,
              fmt::format("{}: tensor '{}' has shape [{}], expected [{}] (config.json: {})",
                          view.file, view.name, fmt::join(view.shape, ", "),
                          fmt::join(expected, ", "), shape_derivation(config, view.name)));
}

// A view of the mapped bytes; `store` keeps the mapping alive.
HostTensor to_host(const TensorView& view, const std::shared_ptr<const WeightStore>& store) {
  HostTensor tensor;
  tensor.shape = view.shape;
  tensor.dtype = view.dtype;
  tensor.bytes = view.data;
  tensor.owner = store;
  return tensor;
}

}  // namespace

HostTensor HostTensor::from_f32(std::vector<std::int64_t> shape, std::vector<float> values,
                                DType dtype) {
  HostTensor t;
  t.shape = std::move(shape);
  t.dtype = dtype;
  if (t.numel() != std::ssize(values)) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("HostTensor::from_f32: shape [{}] holds {} values, given {}",
                            fmt::join(t.shape, ", "), t.numel(), values.size()));
  }
  if (dtype == DType::kF32) {
    auto owned = std::make_shared<const std::vector<float>>(std::move(values));
    t.bytes = std::as_bytes(std::span(*owned));
    t.owner = std::move(owned);
    return t;
  }
  auto owned = std::make_shared<std::vector<std::uint16_t>>(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    (*owned)[i] = dtype == DType::kBF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
  }
  t.bytes = std::as_bytes(std::span(*owned));
  t.owner = std::move(owned);
  return t;
}

std::int64_t HostTensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

bool HostTensor::has_shape(const std::vector<std::int64_t>& expected) const {
  return shape == expected &&
         std::ssize(bytes) == numel() * static_cast<std::int64_t>(dtype_size(dtype));
}

void HostTensor::to_f32(std::int64_t first, std::int64_t count, float* out) const {
  const auto size = static_cast<std::int64_t>(dtype_size(dtype));
  if (first < 0 || count < 0 || (first + count) * size > std::ssize(bytes)) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("HostTensor::to_f32: elements [{}, {}) outside the {} stored", first,
                            first + count, std::ssize(bytes) / size));
  }
  convert_to_f32(dtype, at(first), static_cast<std::size_t>(count), out);
}

std::vector<float> HostTensor::to_f32() const {
  std::vector<float> values(bytes.size() / dtype_size(dtype));
  to_f32(0, std::ssize(values), values.data());
  return values;
}

ModelWeights load_weights(const std::filesystem::path& model_dir, const ModelConfig& config,
                          WeightLoading mode) {
  check_dims(config);
  const auto shared_store = std::make_shared<const WeightStore>(WeightStore::open(model_dir, mode));
  const WeightStore& store = *shared_store;
  // Every layer has at least 9 tensors, so a config.json claiming more layers than the
  // checkpoint has tensors is wrong; say so before listing the expected names (a billion
  // layers would take hundreds of gigabytes of names).
  if (static_cast<std::size_t>(config.num_layers) > store.tensors().size()) {
    const Searched searched = searched_files(store, model_dir);
    throw Error(
        ErrorCode::kInvalidModel,
        fmt::format("{}: config.json field 'num_hidden_layers' is {}, but the checkpoint "
                    "holds only {} tensors (each layer needs at least 9){}",
                    searched.prefix, config.num_layers, store.tensors().size(), searched.suffix));
  }
  const std::vector<TensorSpec> specs = expected_tensors(config);
  check_tensor_set(store, model_dir, config, specs);
  for (const TensorSpec& spec : specs) check_shape(config, *store.find(spec.name), spec.shape);
  // An ignored lm_head of a tied model must still be the shape it would have.
  if (config.tie_word_embeddings) {
    if (const TensorView* head = store.find("lm_head.weight")) {
      check_shape(config, *head, {config.vocab_size, config.hidden_size});
    }
  }

  auto take = [&](const std::string& name) { return to_host(*store.find(name), shared_store); };
  ModelWeights weights;
  weights.embed_tokens = take("model.embed_tokens.weight");
  weights.layers.resize(static_cast<std::size_t>(config.num_layers));
  for (std::int32_t i = 0; i < config.num_layers; ++i) {
    LayerWeights& layer = weights.layers[static_cast<std::size_t>(i)];
    const std::string prefix = fmt::format("model.layers.{}.", i);
    const std::string attn = prefix + "self_attn.";
    layer.input_norm = take(prefix + "input_layernorm.weight");
    layer.q_proj = take(attn + "q_proj.weight");
    layer.k_proj = take(attn + "k_proj.weight");
    layer.v_proj = take(attn + "v_proj.weight");
    if (config.attention_bias) {
      layer.q_bias = take(attn + "q_proj.bias");
      layer.k_bias = take(attn + "k_proj.bias");
      layer.v_bias = take(attn + "v_proj.bias");
    }
    if (config.qk_norm) {
      layer.q_norm = take(attn + "q_norm.weight");
      layer.k_norm = take(attn + "k_norm.weight");
    }
    layer.o_proj = take(attn + "o_proj.weight");
    layer.post_attention_norm = take(prefix + "post_attention_layernorm.weight");
    layer.gate_proj = take(prefix + "mlp.gate_proj.weight");
    layer.up_proj = take(prefix + "mlp.up_proj.weight");
    layer.down_proj = take(prefix + "mlp.down_proj.weight");
  }
  weights.final_norm = take("model.norm.weight");
  if (!config.tie_word_embeddings) weights.lm_head = take("lm_head.weight");
  return weights;
}

}  // namespace cachet::model

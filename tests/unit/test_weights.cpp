#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cachet/errors.h"
#include "model/architecture.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "support/test_support.h"

namespace cachet::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

ModelConfig tiny_config(Arch arch, bool tied) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 37;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = arch == Arch::kQwen2 ? 4 : 6;  // Qwen2 needs hidden / heads
  c.max_position_embeddings = 128;
  c.tie_word_embeddings = tied;
  c.attention_bias = arch == Arch::kQwen2;
  c.qk_norm = arch == Arch::kQwen3;
  c.eos_token_ids = {1};
  return c;
}

// Small integers, exact in every dtype, different for every tensor and element.
std::vector<float> values_for(std::size_t tensor_index, std::int64_t numel) {
  std::vector<float> values(static_cast<std::size_t>(numel));
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>(static_cast<int>((tensor_index * 31 + i * 7) % 201) - 100);
  }
  return values;
}

std::vector<TensorToWrite> checkpoint_for(const ModelConfig& config, DType dtype = DType::kF32) {
  std::vector<TensorToWrite> tensors;
  for (const TensorSpec& spec : expected_tensors(config)) {
    std::int64_t numel = 1;
    for (std::int64_t d : spec.shape) numel *= d;
    tensors.push_back({spec.name, dtype, spec.shape, values_for(tensors.size(), numel)});
  }
  return tensors;
}

TensorToWrite& find(std::vector<TensorToWrite>& tensors, const std::string& name) {
  auto it = std::find_if(tensors.begin(), tensors.end(),
                         [&](const TensorToWrite& t) { return t.name == name; });
  if (it == tensors.end()) throw std::runtime_error("test bug: no tensor " + name);
  return *it;
}

void remove_tensor(std::vector<TensorToWrite>& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const TensorToWrite& t) { return t.name == name; });
}

void write_model(const fs::path& dir, const ModelConfig& config,
                 const std::vector<TensorToWrite>& tensors) {
  testing::write_file(dir / "config.json", model_config_to_json(config));
  write_safetensors(dir / "model.safetensors", tensors);
}

std::string load_error(const fs::path& dir, const ModelConfig& config, ErrorCode code) {
  try {
    load_weights(dir, config);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

// Every HostTensor of `weights` matches what `tensors` wrote under its Hugging Face name.
void expect_matches(const ModelWeights& weights, const ModelConfig& config,
                    std::vector<TensorToWrite>& tensors) {
  auto check = [&](const HostTensor& host, const std::string& name) {
    const TensorToWrite& written = find(tensors, name);
    EXPECT_EQ(host.shape, written.shape) << name;
    EXPECT_EQ(host.dtype, written.dtype) << name;  // kept as stored, not converted
    EXPECT_EQ(host.to_f32(), written.values) << name;
  };
  check(weights.embed_tokens, "model.embed_tokens.weight");
  ASSERT_EQ(weights.layers.size(), static_cast<std::size_t>(config.num_layers));
  for (std::size_t i = 0; i < weights.layers.size(); ++i) {
    const LayerWeights& l = weights.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    check(l.input_norm, p + "input_layernorm.weight");
    check(l.q_proj, p + "self_attn.q_proj.weight");
    check(l.k_proj, p + "self_attn.k_proj.weight");
    check(l.v_proj, p + "self_attn.v_proj.weight");
    check(l.o_proj, p + "self_attn.o_proj.weight");
    if (config.attention_bias) {
      check(l.q_bias, p + "self_attn.q_proj.bias");
      check(l.k_bias, p + "self_attn.k_proj.bias");
      check(l.v_bias, p + "self_attn.v_proj.bias");
    } else {
      EXPECT_TRUE(l.q_bias.empty() && l.k_bias.empty() && l.v_bias.empty());
    }
    if (config.qk_norm) {
      check(l.q_norm, p + "self_attn.q_norm.weight");
      check(l.k_norm, p + "self_attn.k_norm.weight");
    } else {
      EXPECT_TRUE(l.q_norm.empty() && l.k_norm.empty());
    }
    check(l.post_attention_norm, p + "post_attention_layernorm.weight");
    check(l.gate_proj, p + "mlp.gate_proj.weight");
    check(l.up_proj, p + "mlp.up_proj.weight");
    check(l.down_proj, p + "mlp.down_proj.weight");
  }
  check(weights.final_norm, "model.norm.weight");
  if (config.tie_word_embeddings) {
    EXPECT_TRUE(weights.lm_head.empty());
    EXPECT_EQ(&weights.output_embedding(), &weights.embed_tokens);
  } else {
    check(weights.lm_head, "lm_head.weight");
    EXPECT_EQ(&weights.output_embedding(), &weights.lm_head);
  }
}

TEST(Architecture, ExpectedTensors) {
  const ModelConfig llama = tiny_config(Arch::kLlama, false);
  std::vector<TensorSpec> specs = expected_tensors(llama);
  EXPECT_EQ(specs.size(), 1 + 2 * 9 + 1 + 1u);
  EXPECT_EQ(specs.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(specs.front().shape, std::vector<std::int64_t>({37, 16}));
  EXPECT_EQ(specs.front().role, TensorRole::kEmbedding);
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  EXPECT_EQ(specs.back().role, TensorRole::kLmHead);
  EXPECT_EQ(specs[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(specs[2].shape, std::vector<std::int64_t>({24, 16}));  // 4 heads * 6
  EXPECT_EQ(specs[3].shape, std::vector<std::int64_t>({12, 16}));  // 2 kv heads * 6
  EXPECT_EQ(expected_tensors(tiny_config(Arch::kLlama, true)).size(), specs.size() - 1);

  specs = expected_tensors(tiny_config(Arch::kQwen2, true));
  EXPECT_EQ(specs.size(), 1 + 2 * 12 + 1u);
  EXPECT_EQ(specs[5].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(specs[5].shape, std::vector<std::int64_t>({16}));
  EXPECT_EQ(specs[5].role, TensorRole::kBias);

  specs = expected_tensors(tiny_config(Arch::kQwen3, true));
  EXPECT_EQ(specs.size(), 1 + 2 * 11 + 1u);
  EXPECT_EQ(specs[5].name, "model.layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(specs[5].shape, std::vector<std::int64_t>({6}));
  EXPECT_EQ(specs[5].role, TensorRole::kNorm);
}

TEST(Architecture, IgnorableTensors) {
  const ModelConfig untied = tiny_config(Arch::kLlama, false);
  const ModelConfig tied = tiny_config(Arch::kLlama, true);
  EXPECT_TRUE(is_ignorable_tensor(untied, "model.layers.3.self_attn.rotary_emb.inv_freq"));
  EXPECT_TRUE(is_ignorable_tensor(untied, "model.rotary_emb.inv_freq"));
  EXPECT_FALSE(is_ignorable_tensor(untied, "lm_head.weight"));
  EXPECT_TRUE(is_ignorable_tensor(tied, "lm_head.weight"));
  EXPECT_FALSE(is_ignorable_tensor(tied, "model.layers.0.mlp.gate_proj.bias"));
}

struct ArchCase {
  Arch arch;
  bool tied;
  DType dtype;
};

class LoadWeightsTest : public ::testing::TestWithParam<ArchCase> {};

TEST_P(LoadWeightsTest, LoadsEveryTensor) {
  const auto [arch, tied, dtype] = GetParam();
  testing::TempDir dir;
  ModelConfig written = tiny_config(arch, tied);
  written.torch_dtype = dtype;
  std::vector<TensorToWrite> tensors = checkpoint_for(written, dtype);
  write_model(dir.path(), written, tensors);
  // Through config.json, as the engine does.
  const ModelConfig config = load_model_config(dir.path() / "config.json");
  const ModelWeights weights = load_weights(dir.path(), config);
  expect_matches(weights, config, tensors);
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, LoadWeightsTest,
                         ::testing::Values(ArchCase{Arch::kLlama, false, DType::kF32},
                                           ArchCase{Arch::kLlama, true, DType::kBF16},
                                           ArchCase{Arch::kQwen2, false, DType::kF16},
                                           ArchCase{Arch::kQwen2, true, DType::kF32},
                                           ArchCase{Arch::kQwen3, false, DType::kBF16},
                                           ArchCase{Arch::kQwen3, true, DType::kF32}),
                         [](const ::testing::TestParamInfo<ArchCase>& info) {
                           return std::string(arch_model_type(info.param.arch)) +
                                  (info.param.tied ? "_tied_" : "_untied_") +
                                  std::string(dtype_name(info.param.dtype));
                         });

TEST(LoadWeights, HalfPrecisionStaysStoredAndWidensExactly) {
  testing::TempDir dir;
  const ModelConfig config = tiny_config(Arch::kLlama, true);
  std::vector<TensorToWrite> tensors = checkpoint_for(config, DType::kBF16);
  find(tensors, "model.norm.weight").values[0] = 1.0f + 0x1p-7f + 0x1p-9f;  // rounds in bf16
  write_model(dir.path(), config, tensors);
  ModelWeights weights = load_weights(dir.path(), config);
  EXPECT_EQ(weights.final_norm.dtype, DType::kBF16);
  EXPECT_EQ(weights.final_norm.bytes.size(), 16u * 2);  // 16 bf16 values, in the mapping
  float first = 0;
  weights.final_norm.to_f32(0, 1, &first);
  EXPECT_EQ(first, 1.0f + 0x1p-7f);
  EXPECT_THROW(weights.final_norm.to_f32(15, 2, &first), Error);  // past the end
  // The mapping outlives everything but the tensors that use it.
  const HostTensor norm = weights.final_norm;
  weights = ModelWeights{};
  EXPECT_EQ(norm.to_f32()[0], 1.0f + 0x1p-7f);
}

// WeightLoading::kRead holds the bytes in the process's own memory: the same tensors, and a
// file rewritten in place afterwards (which would change or fault a mapping) changes nothing.
TEST(LoadWeights, ReadModeIsUnaffectedByTheFileChangingLater) {
  testing::TempDir dir;
  const ModelConfig config = tiny_config(Arch::kQwen3, false);
  std::vector<TensorToWrite> tensors = checkpoint_for(config, DType::kBF16);
  write_model(dir.path(), config, tensors);
  const ModelWeights weights = load_weights(dir.path(), config, WeightLoading::kRead);
  expect_matches(weights, config, tensors);
  const fs::path file = dir.path() / "model.safetensors";
  {
    std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
    const std::string zeros(static_cast<std::size_t>(fs::file_size(file)), '\0');
    out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  expect_matches(weights, config, tensors);
}

TEST(HostTensor, FromF32StoresEachDtype) {
  const std::vector<float> values = {1.0f, -2.5f, 1.0f + 0x1p-9f, 65504.0f};
  const HostTensor f32 = HostTensor::from_f32({2, 2}, values);
  EXPECT_EQ(f32.to_f32(), values);
  EXPECT_EQ(f32.numel(), 4);
  EXPECT_TRUE(f32.has_shape({2, 2}));
  EXPECT_FALSE(f32.has_shape({4}));
  const HostTensor bf16 = HostTensor::from_f32({4}, values, DType::kBF16);
  EXPECT_EQ(bf16.bytes.size(), 8u);
  EXPECT_EQ(bf16.to_f32(), (std::vector<float>{1.0f, -2.5f, 1.0f, 65536.0f}));
  const HostTensor f16 = HostTensor::from_f32({4}, values, DType::kF16);
  EXPECT_EQ(f16.to_f32(), (std::vector<float>{1.0f, -2.5f, 1.0f + 0x1p-9f, 65504.0f}));
  EXPECT_THROW(HostTensor::from_f32({3}, values), Error);  // 4 values for 3 elements
}

TEST(LoadWeights, Llama3RopeScalingModel) {
  testing::TempDir dir;
  ModelConfig config = tiny_config(Arch::kLlama, true);
  config.rope_theta = 500000.0;
  config.rope_scaling = Llama3RopeScaling{32.0, 1.0, 4.0, 8192};
  std::vector<TensorToWrite> tensors = checkpoint_for(config);
  write_model(dir.path(), config, tensors);
  const ModelConfig loaded = load_model_config(dir.path() / "config.json");
  ASSERT_TRUE(loaded.rope_scaling.has_value());
  EXPECT_EQ(loaded.rope_scaling->factor, 32.0);
  EXPECT_EQ(loaded.rope_theta, 500000.0);
  expect_matches(load_weights(dir.path(), loaded), loaded, tensors);
}

TEST(LoadWeights, ShardedCheckpoint) {
  testing::TempDir dir;
  const ModelConfig config = tiny_config(Arch::kQwen3, false);
  std::vector<TensorToWrite> tensors = checkpoint_for(config, DType::kBF16);
  nlohmann::json weight_map;
  std::vector<TensorToWrite> shards[3];
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string shard = "model-0000" + std::to_string(i % 3 + 1) + "-of-00003.safetensors";
    shards[i % 3].push_back(tensors[i]);
    weight_map[tensors[i].name] = shard;
  }
  for (int s = 0; s < 3; ++s) {
    write_safetensors(dir.path() / ("model-0000" + std::to_string(s + 1) + "-of-00003.safetensors"),
                      shards[s]);
  }
  testing::write_file(
      dir.path() / "model.safetensors.index.json",
      nlohmann::json{{"metadata", {{"total_size", 1}}}, {"weight_map", weight_map}}.dump());
  expect_matches(load_weights(dir.path(), config), config, tensors);

  // A tensor missing from every shard: the message names the index and the shards searched.
  shards[0].erase(shards[0].begin());
  weight_map.erase(tensors[0].name);
  write_safetensors(dir.path() / "model-00001-of-00003.safetensors", shards[0]);
  testing::write_file(dir.path() / "model.safetensors.index.json",
                      nlohmann::json{{"weight_map", weight_map}}.dump());
  const std::string message = load_error(dir.path(), config, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr((dir.path() / "model.safetensors.index.json").string()));
  EXPECT_THAT(message, HasSubstr("'" + tensors[0].name + "'"));
  EXPECT_THAT(message, HasSubstr("model-00003-of-00003.safetensors"));
}

TEST(LoadWeights, IgnorableTensorsAreSkipped) {
  testing::TempDir dir;
  const ModelConfig config = tiny_config(Arch::kLlama, true);
  std::vector<TensorToWrite> tensors = checkpoint_for(config);
  tensors.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {3}, {1, 2, 3}});
  tensors.push_back({"lm_head.weight", DType::kF32, {37, 16}, std::vector<float>(37 * 16, 0.5f)});
  write_model(dir.path(), config, tensors);
  const ModelWeights weights = load_weights(dir.path(), config);
  EXPECT_TRUE(weights.lm_head.empty());
  expect_matches(weights, config, tensors);

  // A tied model's lm_head is ignored, but only with the shape it would have.
  find(tensors, "lm_head.weight").shape = {16, 37};
  write_model(dir.path(), config, tensors);
  const std::string message = load_error(dir.path(), config, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("'lm_head.weight'"));
  EXPECT_THAT(message, HasSubstr("[16, 37]"));
  EXPECT_THAT(message, HasSubstr("[37, 16]"));
}

TEST(LoadWeights, MissingTensors) {
  testing::TempDir dir;
  const ModelConfig config = tiny_config(Arch::kQwen2, false);
  std::vector<TensorToWrite> tensors = checkpoint_for(config);
  remove_tensor(tensors, "model.layers.1.self_attn.k_proj.bias");
  write_model(dir.path(), config, tensors);
  const fs::path file = dir.path() / "model.safetensors";
  std::string message = load_error(dir.path(), config, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file.string()));
  EXPECT_THAT(message, HasSubstr("'model.layers.1.self_attn.k_proj.bias'"));
  EXPECT_THAT(message, HasSubstr("1 tensor "));

  remove_tensor(tensors, "lm_head.weight");
  remove_tensor(tensors, "model.norm.weight");
  write_model(dir.path(), config, tensors);
  message = load_error(dir.path(), config, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("3 tensors"));
  EXPECT_THAT(message, HasSubstr("'lm_head.weight'"));
  EXPECT_THAT(message, HasSubstr("'model.norm.weight'"));
}

TEST(LoadWeights, ConfigOfAnotherArchitecture) {
  testing::TempDir dir;
  // A Llama checkpoint under a Qwen2 config: the q/k/v biases are missing.
  write_model(dir.path(), tiny_config(Arch::kLlama, false),
              checkpoint_for(tiny_config(Arch::kLlama, false)));
  ModelConfig qwen2 = tiny_config(Arch::kQwen2, false);
  qwen2.head_dim = 6;
  qwen2.hidden_size = 16;
  EXPECT_THAT(load_error(dir.path(), qwen2, ErrorCode::kInvalidModel),
              HasSubstr("'model.layers.0.self_attn.q_proj.bias'"));
}

TEST(LoadWeights, UnexpectedTensors) {
  testing::TempDir dir;
  const ModelConfig config = tiny_config(Arch::kLlama, false);
  std::vector<TensorToWrite> tensors = checkpoint_for(config);
  tensors.push_back(
      {"model.layers.0.mlp.gate_proj.bias", DType::kF32, {24}, std::vector<float>(24)});
  write_model(dir.path(), config, tensors);
  std::string message = load_error(dir.path(), config, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr((dir.path() / "model.safetensors").string()));
  EXPECT_THAT(message, HasSubstr("unexpected tensor 'model.layers.0.mlp.gate_proj.bias'"));
  EXPECT_THAT(message, HasSubstr("does config.json match the checkpoint?"));

  // A checkpoint with more layers than config.json says.
  ModelConfig fewer = config;
  fewer.num_layers = 1;
  write_model(dir.path(), config, checkpoint_for(config));
  message = load_error(dir.path(), fewer, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("unexpected tensor 'model.layers.1."));
  EXPECT_THAT(message, HasSubstr("9 unexpected tensors"));
}

TEST(LoadWeights, WrongShape) {
  testing::TempDir dir;
  const ModelConfig config = tiny_config(Arch::kQwen3, true);
  std::vector<TensorToWrite> tensors = checkpoint_for(config);
  find(tensors, "model.layers.1.self_attn.q_proj.weight").shape = {16, 24};
  write_model(dir.path(), config, tensors);
  std::string message = load_error(dir.path(), config, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr((dir.path() / "model.safetensors").string() +
                                 ": tensor 'model.layers.1.self_attn.q_proj.weight' has shape "
                                 "[16, 24], expected [24, 16]"));
  EXPECT_THAT(message, HasSubstr("num_attention_heads * head_dim, hidden_size"));
  EXPECT_THAT(message, HasSubstr("4 * 6, 16"));

  tensors = checkpoint_for(config);
  find(tensors, "model.layers.0.self_attn.k_norm.weight").shape = {3, 2};
  write_model(dir.path(), config, tensors);
  message = load_error(dir.path(), config, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("'model.layers.0.self_attn.k_norm.weight' has shape [3, 2]"));
  EXPECT_THAT(message, HasSubstr("head_dim"));
}

TEST(LoadWeights, BadConfigOrDirectory) {
  testing::TempDir dir;
  ModelConfig config = tiny_config(Arch::kLlama, false);
  write_model(dir.path(), config, checkpoint_for(config));
  config.intermediate_size = 0;
  EXPECT_THAT(load_error(dir.path(), config, ErrorCode::kInvalidArgument),
              HasSubstr("intermediate_size"));
  const fs::path missing = dir.path() / "missing";
  EXPECT_THAT(load_error(missing, tiny_config(Arch::kLlama, false), ErrorCode::kNotFound),
              HasSubstr(missing.string()));
  fs::remove(dir.path() / "model.safetensors");
  EXPECT_THAT(load_error(dir.path(), tiny_config(Arch::kLlama, false), ErrorCode::kNotFound),
              HasSubstr("no model.safetensors"));
}

}  // namespace
}  // namespace cachet::model

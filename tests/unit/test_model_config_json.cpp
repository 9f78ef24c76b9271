// config.json of real Hugging Face checkpoints, and model_config_to_json round trips.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cachet/errors.h"
#include "model/model_config.h"
#include "support/test_support.h"

namespace cachet::model {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

const std::string kOrigin = "/m/config.json";

ModelConfig parse(const nlohmann::json& j) { return parse_model_config(j.dump(), kOrigin); }

void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  ASSERT_EQ(a.rope_scaling.has_value(), b.rope_scaling.has_value());
  if (a.rope_scaling) {
    EXPECT_EQ(a.rope_scaling->factor, b.rope_scaling->factor);
    EXPECT_EQ(a.rope_scaling->low_freq_factor, b.rope_scaling->low_freq_factor);
    EXPECT_EQ(a.rope_scaling->high_freq_factor, b.rope_scaling->high_freq_factor);
    EXPECT_EQ(a.rope_scaling->original_max_position_embeddings,
              b.rope_scaling->original_max_position_embeddings);
  }
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.attention_bias, b.attention_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
}

// config.json of Qwen/Qwen3-0.6B as published on the Hugging Face Hub.
constexpr const char* kQwen3_0_6B = R"({
  "architectures": [
    "Qwen3ForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// config.json of meta-llama/Llama-3.2-1B.
constexpr const char* kLlama32_1B = R"({
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// config.json of Qwen/Qwen2.5-0.5B.
constexpr const char* kQwen25_0_5B = R"({
  "architectures": [
    "Qwen2ForCausalLM"
  ],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_mrope": false,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

TEST(ModelConfig, RealQwen3_0_6B) {
  const ModelConfig c = parse_model_config(kQwen3_0_6B, kOrigin);
  EXPECT_EQ(c.arch, Arch::kQwen3);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.intermediate_size, 3072);
  EXPECT_EQ(c.num_layers, 28);
  EXPECT_EQ(c.num_heads, 16);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // not 1024 / 16
  EXPECT_EQ(c.max_position_embeddings, 40960);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.eos_token_ids, std::vector<std::int32_t>({151645}));
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
}

TEST(ModelConfig, RealLlama32_1B) {
  const ModelConfig c = parse_model_config(kLlama32_1B, kOrigin);
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.intermediate_size, 8192);
  EXPECT_EQ(c.num_layers, 16);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 500000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->factor, 32.0);
  EXPECT_EQ(c.rope_scaling->low_freq_factor, 1.0);
  EXPECT_EQ(c.rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, std::vector<std::int32_t>({128001}));
  EXPECT_EQ(c.torch_dtype, DType::kBF16);

  // The Instruct variant lists three end tokens.
  Json instruct = Json::parse(kLlama32_1B);
  instruct["eos_token_id"] = {128001, 128008, 128009};
  EXPECT_EQ(parse(instruct).eos_token_ids, std::vector<std::int32_t>({128001, 128008, 128009}));
}

TEST(ModelConfig, RealQwen25_0_5B) {
  const ModelConfig c = parse_model_config(kQwen25_0_5B, kOrigin);
  EXPECT_EQ(c.arch, Arch::kQwen2);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.intermediate_size, 4864);
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_EQ(c.num_heads, 14);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.eos_token_ids, std::vector<std::int32_t>({151643}));
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
}

TEST(ModelConfig, RealConfigsRoundTrip) {
  for (const char* text : {kQwen3_0_6B, kLlama32_1B, kQwen25_0_5B}) {
    const ModelConfig c = parse_model_config(text, kOrigin);
    expect_same(parse_model_config(model_config_to_json(c), "round trip"), c);
  }
}

ModelConfig small_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 300;
  c.hidden_size = 48;
  c.intermediate_size = 96;
  c.num_layers = 3;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = arch == Arch::kQwen2 ? 8 : 16;
  c.max_position_embeddings = 512;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 123456.5;
  c.attention_bias = arch == Arch::kQwen2;
  c.qk_norm = arch == Arch::kQwen3;
  return c;
}

TEST(ModelConfig, ToJsonRoundTrips) {
  for (Arch arch : {Arch::kLlama, Arch::kQwen2, Arch::kQwen3}) {
    ModelConfig c = small_config(arch);
    expect_same(parse_model_config(model_config_to_json(c), "round trip"), c);
    c.tie_word_embeddings = true;
    c.bos_token_id = 0;
    c.eos_token_ids = {1, 2};
    c.torch_dtype = DType::kBF16;
    c.rope_scaling = Llama3RopeScaling{8.0, 1.0, 4.0, 8192};
    expect_same(parse_model_config(model_config_to_json(c), "round trip"), c);
    c.eos_token_ids = {5};
    c.torch_dtype = DType::kF16;
    c.rms_norm_eps = 1e-6;
    expect_same(parse_model_config(model_config_to_json(c), "round trip"), c);
  }
}

TEST(ModelConfig, ToJsonWritesWhatTransformersExpects) {
  const Json llama = Json::parse(model_config_to_json(small_config(Arch::kLlama)));
  EXPECT_EQ(llama["architectures"], Json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(llama["model_type"], "llama");
  EXPECT_EQ(llama["head_dim"], 16);
  EXPECT_EQ(llama["num_key_value_heads"], 2);
  EXPECT_EQ(llama["attention_bias"], false);
  EXPECT_EQ(llama["mlp_bias"], false);
  EXPECT_EQ(llama["hidden_act"], "silu");
  EXPECT_TRUE(llama["rope_scaling"].is_null());
  EXPECT_TRUE(llama["bos_token_id"].is_null());
  EXPECT_TRUE(llama["eos_token_id"].is_null());
  EXPECT_EQ(llama["tie_word_embeddings"], false);
  EXPECT_EQ(llama["use_cache"], true);
  EXPECT_EQ(llama["initializer_range"], 0.02);
  EXPECT_EQ(llama["attention_dropout"], 0.0);
  EXPECT_TRUE(llama.contains("transformers_version"));
  EXPECT_FALSE(llama.contains("use_sliding_window"));

  ModelConfig c = small_config(Arch::kQwen2);
  c.eos_token_ids = {7};
  c.torch_dtype = DType::kF32;
  const std::string text = model_config_to_json(c);
  EXPECT_THAT(text, HasSubstr("\n  \"hidden_size\": 48,\n"));  // pretty-printed, 2 spaces
  const Json qwen2 = Json::parse(text);
  EXPECT_FALSE(qwen2.contains("head_dim"));
  EXPECT_FALSE(qwen2.contains("attention_bias"));
  EXPECT_EQ(qwen2["use_sliding_window"], false);
  EXPECT_TRUE(qwen2["sliding_window"].is_null());
  EXPECT_EQ(qwen2["max_window_layers"], 3);
  EXPECT_EQ(qwen2["eos_token_id"], 7);
  EXPECT_EQ(qwen2["torch_dtype"], "float32");

  c = small_config(Arch::kQwen3);
  c.rope_scaling = Llama3RopeScaling{};
  const Json qwen3 = Json::parse(model_config_to_json(c));
  EXPECT_EQ(qwen3["head_dim"], 16);
  EXPECT_EQ(qwen3["attention_bias"], false);
  EXPECT_EQ(qwen3["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(qwen3["rope_scaling"]["factor"], 8.0);
  EXPECT_EQ(qwen3["rope_scaling"]["original_max_position_embeddings"], 8192);
}

TEST(ModelConfig, ToJsonRejectsWhatTransformersWouldReadDifferently) {
  auto expect_invalid = [](const ModelConfig& c, const std::string& what) {
    try {
      model_config_to_json(c);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_THAT(e.what(), HasSubstr(what));
    }
  };
  ModelConfig c = small_config(Arch::kQwen2);
  c.head_dim = 16;
  expect_invalid(c, "head_dim");
  c = small_config(Arch::kQwen2);
  c.attention_bias = false;
  expect_invalid(c, "attention_bias");
  c = small_config(Arch::kLlama);
  c.attention_bias = true;
  expect_invalid(c, "attention_bias");
  c = small_config(Arch::kQwen3);
  c.qk_norm = false;
  expect_invalid(c, "qk_norm");
  c = small_config(Arch::kLlama);
  c.num_kv_heads = 4;
  expect_invalid(c, "num_key_value_heads");
  c = small_config(Arch::kLlama);
  c.vocab_size = 0;
  expect_invalid(c, "vocab_size");
}

}  // namespace
}  // namespace cachet::model

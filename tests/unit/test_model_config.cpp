// config.json parsing: defaults, architecture detection, validation and its messages.
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

Json llama_json() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"num_attention_heads", 8},
          {"num_hidden_layers", 2},
          {"vocab_size", 100}};
}

Json with_arch(Json j, const std::string& architecture, const std::string& model_type) {
  j["architectures"] = {architecture};
  j["model_type"] = model_type;
  return j;
}

ModelConfig parse(const Json& j) { return parse_model_config(j.dump(), kOrigin); }

// Parses `text`, expects a cachet::Error with `code`, and returns its message.
std::string error_of_text(const std::string& text, ErrorCode code) {
  try {
    parse_model_config(text, kOrigin);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error for " << text;
  return "";
}
std::string error_of(const Json& j, ErrorCode code) { return error_of_text(j.dump(), code); }

// The message names the file and the field.
void expect_error(const Json& j, ErrorCode code, const std::string& field) {
  const std::string message = error_of(j, code);
  EXPECT_THAT(message, HasSubstr(kOrigin));
  EXPECT_THAT(message, HasSubstr(field));
}

TEST(ModelConfig, ArchNames) {
  EXPECT_EQ(arch_name(Arch::kLlama), "LlamaForCausalLM");
  EXPECT_EQ(arch_name(Arch::kQwen2), "Qwen2ForCausalLM");
  EXPECT_EQ(arch_name(Arch::kQwen3), "Qwen3ForCausalLM");
  EXPECT_EQ(arch_model_type(Arch::kLlama), "llama");
  EXPECT_EQ(arch_model_type(Arch::kQwen2), "qwen2");
  EXPECT_EQ(arch_model_type(Arch::kQwen3), "qwen3");
}

TEST(ModelConfig, LlamaDefaults) {
  const ModelConfig c = parse(llama_json());
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.vocab_size, 100);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_FALSE(c.torch_dtype.has_value());
}

TEST(ModelConfig, NullOptionalFieldsTakeDefaults) {
  Json j = llama_json();
  for (const char* key : {"num_key_value_heads", "head_dim", "max_position_embeddings",
                          "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings",
                          "bos_token_id", "eos_token_id", "torch_dtype", "hidden_act"}) {
    j[key] = nullptr;
  }
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.max_position_embeddings, 2048);
}

TEST(ModelConfig, Qwen2AlwaysHasAttentionBias) {
  Json j = with_arch(llama_json(), "Qwen2ForCausalLM", "qwen2");
  j["attention_bias"] = false;  // ignored by transformers' Qwen2
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.arch, Arch::kQwen2);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_EQ(c.head_dim, 8);
}

TEST(ModelConfig, Qwen2HeadDimMustMatchHiddenOverHeads) {
  Json j = with_arch(llama_json(), "Qwen2ForCausalLM", "qwen2");
  j["head_dim"] = 8;
  EXPECT_EQ(parse(j).head_dim, 8);
  j["head_dim"] = 16;
  expect_error(j, ErrorCode::kUnsupported, "'head_dim'");
}

TEST(ModelConfig, Qwen3HasQkNormAndHeadDim128ByDefault) {
  Json j = with_arch(llama_json(), "Qwen3ForCausalLM", "qwen3");
  ModelConfig c = parse(j);
  EXPECT_EQ(c.arch, Arch::kQwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.head_dim, 128);  // Qwen3Config's default, not 64 / 8
  EXPECT_EQ(c.max_position_embeddings, 32768);
  j["head_dim"] = 16;
  c = parse(j);
  EXPECT_EQ(c.head_dim, 16);
}

TEST(ModelConfig, MistralWithoutSlidingWindowIsLlama) {
  Json j = with_arch(llama_json(), "MistralForCausalLM", "mistral");
  j["sliding_window"] = nullptr;
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.max_position_embeddings, 4096 * 32);
  j["sliding_window"] = 4096;
  expect_error(j, ErrorCode::kUnsupported, "'sliding_window'");
  j.erase("sliding_window");  // MistralConfig's default is 4096
  expect_error(j, ErrorCode::kUnsupported, "'sliding_window'");
}

TEST(ModelConfig, ModelTypeIsTheFallback) {
  Json j = llama_json();
  j.erase("architectures");
  j["model_type"] = "qwen3";
  EXPECT_EQ(parse(j).arch, Arch::kQwen3);
  j["architectures"] = Json::array();
  j["model_type"] = "qwen2";
  EXPECT_EQ(parse(j).arch, Arch::kQwen2);
  j["model_type"] = "gpt2";
  expect_error(j, ErrorCode::kUnsupported, "'model_type'");
  j.erase("model_type");
  const std::string message = error_of(j, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("architectures"));
  EXPECT_THAT(message, HasSubstr("model_type"));
}

TEST(ModelConfig, UnsupportedArchitectureListsSupported) {
  Json j = with_arch(llama_json(), "GPT2LMHeadModel", "gpt2");
  const std::string message = error_of(j, ErrorCode::kUnsupported);
  EXPECT_THAT(message, HasSubstr(kOrigin));
  EXPECT_THAT(message, HasSubstr("GPT2LMHeadModel"));
  EXPECT_THAT(message, HasSubstr("LlamaForCausalLM"));
  EXPECT_THAT(message, HasSubstr("Qwen2ForCausalLM"));
  EXPECT_THAT(message, HasSubstr("Qwen3ForCausalLM"));
}

TEST(ModelConfig, ArchitecturesAndModelTypeMustAgree) {
  Json j = with_arch(llama_json(), "Qwen2ForCausalLM", "llama");
  expect_error(j, ErrorCode::kInvalidModel, "'model_type'");
  j["architectures"] = "LlamaForCausalLM";
  expect_error(j, ErrorCode::kInvalidModel, "'architectures'");
  j["architectures"] = {5};
  expect_error(j, ErrorCode::kInvalidModel, "'architectures'");
}

TEST(ModelConfig, RequiredFieldsMissing) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_attention_heads",
                          "num_hidden_layers", "vocab_size"}) {
    Json j = llama_json();
    j.erase(key);
    const std::string message = error_of(j, ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr(kOrigin));
    EXPECT_THAT(message, HasSubstr(std::string("'") + key + "'"));
    EXPECT_THAT(message, HasSubstr("missing"));
  }
}

TEST(ModelConfig, WrongTypesAreNamed) {
  struct Case {
    const char* key;
    Json value;
    const char* found;
  };
  const Case cases[] = {
      {"hidden_size", "64", "string \"64\""},
      {"hidden_size", 64.5, "64.5"},
      {"hidden_size", 64.0, "64.0"},
      {"hidden_size", -64, "-64"},
      {"hidden_size", 0, "0"},
      {"hidden_size", true, "true"},
      {"vocab_size", 4294967296ull, "4294967296"},
      {"num_hidden_layers", Json::array({2}), "array"},
      {"num_key_value_heads", "2", "\"2\""},
      {"head_dim", -8, "-8"},
      {"max_position_embeddings", 1.5, "1.5"},
      {"rms_norm_eps", "1e-6", "\"1e-6\""},
      {"rms_norm_eps", 0, "0"},
      {"rope_theta", -1.0, "-1.0"},
      {"tie_word_embeddings", "true", "\"true\""},
      {"tie_word_embeddings", 1, "1"},
      {"bos_token_id", "1", "\"1\""},
      {"bos_token_id", -1, "-1"},
      {"eos_token_id", 2.0, "2.0"},
      {"eos_token_id", Json::array({1, "2"}), "\"2\""},
      {"rope_scaling", "llama3", "\"llama3\""},
      {"hidden_act", 3, "3"},
  };
  for (const Case& c : cases) {
    Json j = llama_json();
    j[c.key] = c.value;
    const std::string message = error_of(j, ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr(kOrigin));
    EXPECT_THAT(message, HasSubstr(std::string("'") + c.key + "'"));
    EXPECT_THAT(message, HasSubstr(c.found)) << c.key;
  }
}

TEST(ModelConfig, KvHeadsMustDivideHeads) {
  Json j = llama_json();
  j["num_key_value_heads"] = 3;
  EXPECT_EQ(error_of(j, ErrorCode::kInvalidModel),
            "/m/config.json: field 'num_key_value_heads' must divide 'num_attention_heads' (got 3 "
            "and 8)");
  j["num_key_value_heads"] = 2;
  EXPECT_EQ(parse(j).num_kv_heads, 2);
}

TEST(ModelConfig, HeadDimRules) {
  Json j = llama_json();
  j["num_attention_heads"] = 6;  // 64 / 6 is not whole
  const std::string message = error_of(j, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("'hidden_size'"));
  EXPECT_THAT(message, HasSubstr("num_attention_heads"));
  j["head_dim"] = 16;  // explicit head_dim needs no divisibility
  EXPECT_EQ(parse(j).head_dim, 16);
  j["head_dim"] = 15;
  expect_error(j, ErrorCode::kInvalidModel, "'head_dim'");
}

TEST(ModelConfig, UnsupportedFeatures) {
  Json j = llama_json();
  j["hidden_act"] = "gelu";
  expect_error(j, ErrorCode::kUnsupported, "'hidden_act'");
  j["hidden_act"] = "silu";
  EXPECT_NO_THROW(parse(j));
  j["mlp_bias"] = true;
  expect_error(j, ErrorCode::kUnsupported, "'mlp_bias'");
  j["mlp_bias"] = false;
  j["attention_bias"] = true;  // Llama's o_proj would have a bias too
  expect_error(j, ErrorCode::kUnsupported, "'attention_bias'");
  for (auto [arch, type] :
       {std::pair{"Qwen2ForCausalLM", "qwen2"}, {"Qwen3ForCausalLM", "qwen3"}}) {
    Json q = with_arch(llama_json(), arch, type);
    q["use_sliding_window"] = true;
    expect_error(q, ErrorCode::kUnsupported, "'use_sliding_window'");
    q["use_sliding_window"] = false;
    q["sliding_window"] = 4096;  // inactive without use_sliding_window
    EXPECT_NO_THROW(parse(q));
  }
}

Json llama3_scaling() {
  return {{"factor", 32.0},
          {"low_freq_factor", 1.0},
          {"high_freq_factor", 4.0},
          {"original_max_position_embeddings", 8192},
          {"rope_type", "llama3"}};
}

TEST(ModelConfig, RopeScalingLlama3) {
  Json j = llama_json();
  j["rope_scaling"] = llama3_scaling();
  ModelConfig c = parse(j);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->factor, 32.0);
  EXPECT_EQ(c.rope_scaling->low_freq_factor, 1.0);
  EXPECT_EQ(c.rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  // The legacy key.
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  c = parse(j);
  EXPECT_TRUE(c.rope_scaling.has_value());
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_FALSE(parse(j).rope_scaling.has_value());
}

TEST(ModelConfig, RopeScalingUnsupportedTypes) {
  for (const char* type : {"linear", "dynamic", "yarn", "longrope", "su"}) {
    Json j = llama_json();
    j["rope_scaling"] = {{"rope_type", type}, {"factor", 2.0}};
    const std::string message = error_of(j, ErrorCode::kUnsupported);
    EXPECT_THAT(message, HasSubstr(kOrigin));
    EXPECT_THAT(message, HasSubstr("'rope_scaling.rope_type'"));
    EXPECT_THAT(message, HasSubstr(type));
    j["rope_scaling"] = {{"type", type}, {"factor", 2.0}};
    EXPECT_THAT(error_of(j, ErrorCode::kUnsupported), HasSubstr("'rope_scaling.type'"));
  }
}

TEST(ModelConfig, RopeScalingLlama3Validation) {
  for (const char* key :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    Json j = llama_json();
    j["rope_scaling"] = llama3_scaling();
    j["rope_scaling"].erase(key);
    expect_error(j, ErrorCode::kInvalidModel, std::string("'rope_scaling.") + key + "'");
    j["rope_scaling"][key] = -1;
    expect_error(j, ErrorCode::kInvalidModel, std::string("'rope_scaling.") + key + "'");
  }
  Json j = llama_json();
  j["rope_scaling"] = llama3_scaling();
  j["rope_scaling"]["high_freq_factor"] = 1.0;
  expect_error(j, ErrorCode::kInvalidModel, "'rope_scaling.high_freq_factor'");
  j["rope_scaling"] = {{"factor", 2.0}};
  expect_error(j, ErrorCode::kInvalidModel, "'rope_scaling.rope_type'");
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"type", "linear"}};
  expect_error(j, ErrorCode::kInvalidModel, "'rope_scaling.rope_type'");
}

TEST(ModelConfig, RopeParametersOfNewerTransformers) {
  Json j = llama_json();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  ModelConfig c = parse(j);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_FALSE(c.rope_scaling.has_value());

  j["rope_parameters"] = llama3_scaling();
  j["rope_parameters"]["rope_theta"] = 500000.0;
  c = parse(j);
  EXPECT_EQ(c.rope_theta, 500000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->factor, 32.0);

  j["rope_parameters"]["rope_type"] = "yarn";
  expect_error(j, ErrorCode::kUnsupported, "'rope_parameters.rope_type'");
  j["rope_parameters"] = {{"rope_theta", 500000.0}};
  j["rope_theta"] = 10000.0;
  expect_error(j, ErrorCode::kInvalidModel, "'rope_theta'");
  j["rope_theta"] = 500000.0;
  EXPECT_EQ(parse(j).rope_theta, 500000.0);
}

TEST(ModelConfig, SpecialTokens) {
  Json j = llama_json();
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  ModelConfig c = parse(j);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<std::int32_t>({2}));
  j["eos_token_id"] = {2, 7, 9};
  EXPECT_EQ(parse(j).eos_token_ids, std::vector<std::int32_t>({2, 7, 9}));
  j["eos_token_id"] = Json::array();
  EXPECT_TRUE(parse(j).eos_token_ids.empty());
}

TEST(ModelConfig, TorchDtype) {
  Json j = llama_json();
  const std::pair<const char*, std::optional<DType>> cases[] = {{"float32", DType::kF32},
                                                                {"float16", DType::kF16},
                                                                {"bfloat16", DType::kBF16},
                                                                {"float64", std::nullopt},
                                                                {"int8", std::nullopt}};
  for (const auto& [name, dtype] : cases) {
    j["torch_dtype"] = name;
    EXPECT_EQ(parse(j).torch_dtype, dtype) << name;
  }
  j.erase("torch_dtype");
  j["dtype"] = "float16";  // the newer key
  EXPECT_EQ(parse(j).torch_dtype, DType::kF16);
  j["dtype"] = 3;  // informational: ignored rather than rejected
  EXPECT_EQ(parse(j).torch_dtype, std::nullopt);
}

TEST(ModelConfig, NotJsonOrNotAnObject) {
  std::string message = error_of_text("{\"hidden_size\": 64,", ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(kOrigin));
  EXPECT_THAT(message, HasSubstr("not valid JSON"));
  EXPECT_THAT(message, HasSubstr("parse error"));  // the parser's own words
  message = error_of_text("", ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(kOrigin));
  message = error_of_text("[1, 2]", ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(kOrigin));
  EXPECT_THAT(message, HasSubstr("object"));
}

TEST(ModelConfig, LoadFromFile) {
  testing::TempDir dir;
  const auto path = dir.path() / "config.json";
  try {
    load_model_config(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr(path.string()));
  }
  testing::write_file(path, llama_json().dump());
  EXPECT_EQ(load_model_config(path).hidden_size, 64);
  testing::write_file(path, "{\"hidden_size\": \"big\"}");
  try {
    load_model_config(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidModel);
    EXPECT_THAT(e.what(), HasSubstr(path.string()));
  }
}

}  // namespace
}  // namespace cachet::model

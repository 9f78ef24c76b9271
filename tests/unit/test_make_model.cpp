#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cachet/errors.h"
#include "model/make_model.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "support/test_support.h"

namespace cachet::model {
namespace {

using ::testing::HasSubstr;
using testing::read_file;
using testing::TempDir;

MakeModelOptions options_for(Arch arch, const std::filesystem::path& out, std::uint64_t seed = 1) {
  MakeModelOptions o;
  o.arch = arch;
  o.preset = "tiny";
  o.seed = seed;
  o.out_dir = out;
  return o;
}

TEST(MakeModel, SameOptionsGiveByteIdenticalFiles) {
  TempDir dir;
  make_model(options_for(Arch::kQwen3, dir.path() / "a"));
  make_model(options_for(Arch::kQwen3, dir.path() / "b"));
  EXPECT_EQ(read_file(dir.path() / "a/config.json"), read_file(dir.path() / "b/config.json"));
  EXPECT_EQ(read_file(dir.path() / "a/model.safetensors"),
            read_file(dir.path() / "b/model.safetensors"));
  make_model(options_for(Arch::kQwen3, dir.path() / "c", /*seed=*/2));
  EXPECT_NE(read_file(dir.path() / "a/model.safetensors"),
            read_file(dir.path() / "c/model.safetensors"));
}

TEST(MakeModel, EveryArchitectureLoadsBackWithItsFeatures) {
  for (Arch arch : {Arch::kLlama, Arch::kQwen2, Arch::kQwen3}) {
    SCOPED_TRACE(std::string(arch_name(arch)));
    TempDir dir;
    make_model(options_for(arch, dir.path()));
    ModelConfig config = load_model_config(dir.path() / "config.json");
    EXPECT_EQ(config.arch, arch);
    ModelConfig expected = preset_config(arch, "tiny");
    EXPECT_EQ(config.hidden_size, expected.hidden_size);
    EXPECT_EQ(config.head_dim, expected.head_dim);
    EXPECT_EQ(config.tie_word_embeddings, expected.tie_word_embeddings);
    ModelWeights w = load_weights(dir.path(), config);
    ASSERT_EQ(w.layers.size(), static_cast<std::size_t>(config.num_layers));
    EXPECT_EQ(!w.layers[0].q_bias.empty(), arch == Arch::kQwen2);
    EXPECT_EQ(!w.layers[0].q_norm.empty(), arch == Arch::kQwen3);
    EXPECT_EQ(w.lm_head.empty(), config.tie_word_embeddings);
    EXPECT_EQ(config.rope_scaling.has_value(), arch == Arch::kLlama);
  }
  // Qwen3's tiny preset has a head_dim that differs from hidden_size / num_heads.
  ModelConfig q3 = preset_config(Arch::kQwen3, "tiny");
  EXPECT_NE(q3.head_dim * q3.num_heads, q3.hidden_size);
}

TEST(MakeModel, ShardedCheckpointHoldsTheSameWeights) {
  TempDir dir;
  auto single = options_for(Arch::kLlama, dir.path() / "single");
  auto sharded = single;
  sharded.out_dir = dir.path() / "sharded";
  sharded.num_shards = 3;
  make_model(single);
  make_model(sharded);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "sharded/model.safetensors.index.json"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "sharded/model-00003-of-00003.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "sharded/model.safetensors"));
  ModelConfig config = load_model_config(dir.path() / "single/config.json");
  ModelWeights a = load_weights(dir.path() / "single", config);
  ModelWeights b = load_weights(dir.path() / "sharded", config);
  EXPECT_EQ(a.embed_tokens.to_f32(), b.embed_tokens.to_f32());
  EXPECT_EQ(a.layers[1].down_proj.to_f32(), b.layers[1].down_proj.to_f32());
  EXPECT_EQ(a.lm_head.to_f32(), b.lm_head.to_f32());
}

TEST(MakeModel, Bf16WeightsAreTheRoundedF32Weights) {
  TempDir dir;
  auto f32 = options_for(Arch::kQwen2, dir.path() / "f32");
  auto bf16 = f32;
  bf16.out_dir = dir.path() / "bf16";
  bf16.dtype = DType::kBF16;
  make_model(f32);
  make_model(bf16);
  ModelConfig config = load_model_config(dir.path() / "f32/config.json");
  ModelWeights a = load_weights(dir.path() / "f32", config);
  ModelWeights b = load_weights(dir.path() / "bf16", config);
  const std::vector<float> qa = a.layers[0].q_proj.to_f32(), qb = b.layers[0].q_proj.to_f32();
  ASSERT_EQ(qa.size(), qb.size());
  for (std::size_t i = 0; i < qa.size(); ++i) ASSERT_EQ(bf16_to_f32(f32_to_bf16(qa[i])), qb[i]);
  EXPECT_EQ(load_model_config(dir.path() / "bf16/config.json").torch_dtype, DType::kBF16);
}

TEST(MakeModel, WeightScalesAreAsDocumented) {
  TempDir dir;
  make_model(options_for(Arch::kQwen3, dir.path()));
  ModelConfig config = load_model_config(dir.path() / "config.json");
  ModelWeights w = load_weights(dir.path(), config);
  auto stats = [](const std::vector<float>& v) {
    double sum = 0, sq = 0;
    for (float x : v) sum += x, sq += double(x) * x;
    double mean = sum / v.size();
    return std::pair{mean, std::sqrt(sq / v.size() - mean * mean)};
  };
  auto [norm_mean, norm_std] = stats(w.layers[0].input_norm.to_f32());
  EXPECT_NEAR(norm_mean, 1.0, 0.05);
  EXPECT_NEAR(norm_std, 0.1, 0.05);
  auto [emb_mean, emb_std] = stats(w.embed_tokens.to_f32());
  EXPECT_NEAR(emb_std, 4.0 / std::sqrt(double(config.hidden_size)), 0.02);
  auto [q_mean, q_std] = stats(w.layers[0].q_proj.to_f32());
  EXPECT_NEAR(q_std, 1.0 / std::sqrt(double(config.hidden_size)), 0.01);
}

TEST(MakeModel, AdoptsTheTokenizersVocabularyAndSpecialTokens) {
  TempDir dir;
  auto o = options_for(Arch::kQwen3, dir.path());
  o.tokenizer = testing::test_data_dir() / "tokenizers/qwen3";
  make_model(o);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "tokenizer.json"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "tokenizer_config.json"));
  ModelConfig config = load_model_config(dir.path() / "config.json");
  EXPECT_EQ(config.vocab_size, 151680);  // 151669 ids rounded up to a multiple of 64
  ASSERT_EQ(config.eos_token_ids.size(), 1u);
  EXPECT_EQ(config.eos_token_ids[0], 151645);  // <|im_end|>
}

TEST(MakeModel, BadOptionsAreClearErrors) {
  TempDir dir;
  auto o = options_for(Arch::kQwen3, dir.path());
  o.preset = "huge";
  try {
    make_model(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("huge"));
    EXPECT_THAT(e.what(), HasSubstr("tiny"));
  }
  EXPECT_THROW(preset_config(Arch::kQwen2, "qwen3-0.6b"), Error);
  o.preset = "tiny";
  o.tokenizer = dir.path() / "no-such-tokenizer.json";
  EXPECT_THROW(make_model(o), Error);
}

TEST(MakeModel, RealisticPresetsHaveThePublishedShapes) {
  ModelConfig q = preset_config(Arch::kQwen3, "qwen3-0.6b");
  EXPECT_EQ(q.vocab_size, 151936);
  EXPECT_EQ(q.hidden_size, 1024);
  EXPECT_EQ(q.num_layers, 28);
  EXPECT_EQ(q.head_dim, 128);
  ModelConfig l = preset_config(Arch::kLlama, "llama-3.2-1b");
  EXPECT_EQ(l.hidden_size, 2048);
  EXPECT_EQ(l.intermediate_size, 8192);
  ASSERT_TRUE(l.rope_scaling.has_value());
  EXPECT_EQ(l.rope_scaling->factor, 32.0);
}

}  // namespace
}  // namespace cachet::model

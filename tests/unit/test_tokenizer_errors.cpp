// Unsupported components and malformed files fail loading with a message naming the
// component or field and the file.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cachet/errors.h"
#include "cachet/tokenizer.h"
#include "support/test_support.h"

namespace cachet {
namespace {

using nlohmann::json;

json minimal() {
  return {{"version", "1.0"},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", nullptr},
          {"post_processor", nullptr},
          {"decoder", nullptr},
          {"model",
           {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}}};
}

// Loads `contents` as tokenizer.json and returns the error it throws.
Error load_error(const std::string& contents) {
  testing::TempDir dir;
  testing::write_file(dir.path() / "tokenizer.json", contents);
  try {
    Tokenizer::from_file(dir.path());
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "loading did not fail";
  return Error(ErrorCode::kInternal, "");
}

void expect_error(const json& j, ErrorCode code, const std::vector<std::string>& mentions) {
  const Error e = load_error(j.dump());
  EXPECT_EQ(e.code(), code) << e.what();
  const std::string message = e.what();
  EXPECT_NE(message.find("tokenizer.json"), std::string::npos) << message;
  for (const auto& m : mentions) EXPECT_NE(message.find(m), std::string::npos) << message;
}

TEST(TokenizerErrors, MinimalLoads) {
  testing::TempDir dir;
  testing::write_file(dir.path() / "tokenizer.json", minimal().dump());
  const auto tok = Tokenizer::from_file(dir.path() / "tokenizer.json");
  EXPECT_EQ(tok.encode("ab"), (std::vector<TokenId>{2}));
  EXPECT_EQ(tok.vocab_size(), 3u);
  EXPECT_FALSE(tok.bos_token_id().has_value());
}

TEST(TokenizerErrors, UnsupportedComponents) {
  json j = minimal();
  j["model"] = {{"type", "WordPiece"}, {"vocab", {{"a", 0}}}};
  expect_error(j, ErrorCode::kUnsupported, {"WordPiece", "model.type"});
  j = minimal();
  j["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
  expect_error(j, ErrorCode::kUnsupported, {"Unigram"});
  j = minimal();
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", {{{"type", "NFC"}}, {{"type", "BertNormalizer"}}}}};
  expect_error(j, ErrorCode::kUnsupported, {"BertNormalizer", "normalizer.normalizers[1].type"});
  j = minimal();
  j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  expect_error(j, ErrorCode::kUnsupported, {"UnicodeScripts", "pre_tokenizer"});
  j = minimal();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j, ErrorCode::kUnsupported, {"WordPiece", "decoder"});
  j = minimal();
  j["post_processor"] = {{"type", "Mystery"}};
  expect_error(j, ErrorCode::kUnsupported, {"Mystery", "post_processor"});
  j = minimal();
  j["model"]["dropout"] = 0.1;
  expect_error(j, ErrorCode::kUnsupported, {"dropout"});
}

TEST(TokenizerErrors, MalformedFiles) {
  const Error e = load_error("{\"model\": ");
  EXPECT_EQ(e.code(), ErrorCode::kInvalidModel);
  EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos);
  json j = minimal();
  j["model"].erase("merges");
  expect_error(j, ErrorCode::kInvalidModel, {"model.merges", "missing"});
  j = minimal();
  j["model"]["merges"] = {"a c"};
  expect_error(j, ErrorCode::kInvalidModel, {"model.merges[0]"});
  j = minimal();
  j["model"]["vocab"] = {{"a", "zero"}};
  expect_error(j, ErrorCode::kInvalidModel, {"model.vocab"});
  j = minimal();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(j, ErrorCode::kInvalidModel, {"pre_tokenizer.pattern"});
  j = minimal();
  j["added_tokens"] = {{{"content", "<x>"}}};
  expect_error(j, ErrorCode::kInvalidModel, {"added_tokens[0].id"});
  j = minimal();
  j.erase("model");
  expect_error(j, ErrorCode::kInvalidModel, {"model"});
}

TEST(TokenizerErrors, MissingFile) {
  testing::TempDir dir;
  try {
    Tokenizer::from_file(dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos);
  }
}

TEST(TokenizerConfig, SpecialIdsFromConfigs) {
  testing::TempDir dir;
  json j = minimal();
  j["added_tokens"] = {{{"id", 3}, {"content", "<s>"}, {"special", true}},
                       {{"id", 4}, {"content", "</s>"}, {"special", true}},
                       {{"id", 5}, {"content", "<eot>"}, {"special", true}}};
  testing::write_file(dir.path() / "tokenizer.json", j.dump());
  testing::write_file(
      dir.path() / "tokenizer_config.json",
      json{{"add_bos_token", true}, {"bos_token", {{"content", "<s>"}}}, {"eos_token", "</s>"}}
          .dump());
  auto tok = Tokenizer::from_file(dir.path());
  EXPECT_EQ(tok.bos_token_id(), 3);
  EXPECT_EQ(tok.eos_token_ids(), (std::vector<TokenId>{4}));
  EXPECT_TRUE(tok.add_bos_token());
  EXPECT_TRUE(tok.is_special(5));
  EXPECT_EQ(tok.decode(std::vector<TokenId>{3, 0, 5}, true), "a");
  EXPECT_EQ(tok.decode(std::vector<TokenId>{3, 0, 99}, false), "<s> a");  // no decoder: joined
  testing::write_file(dir.path() / "generation_config.json",
                      json{{"bos_token_id", 3}, {"eos_token_id", {5, 4}}}.dump());
  tok = Tokenizer::from_file(dir.path());
  EXPECT_EQ(tok.eos_token_ids(), (std::vector<TokenId>{5, 4}));
  EXPECT_EQ(tok.token_to_id("<eot>"), 5);
  EXPECT_EQ(tok.id_to_token(2), "ab");
  EXPECT_FALSE(tok.id_to_token(77).has_value());
}

}  // namespace
}  // namespace cachet

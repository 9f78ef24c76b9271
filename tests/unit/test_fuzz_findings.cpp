// Regression tests for what the fuzz targets (tests/fuzz) found, one per finding, written as
// the smallest input that shows it. The inputs the fuzzers produced are also kept in
// tests/fuzz/corpus/<target>/finding-* and replayed by the fuzz_replay_* tests.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cachet/errors.h"
#include "cachet/tokenizer.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "support/test_support.h"
#include "util/json_depth.h"

namespace cachet {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::write_file;

std::string safetensors_with_header(const std::string& header) {
  std::string size(8, '\0');
  for (int i = 0; i < 8; ++i) size[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return size + header;
}

std::string nested(int depth, const std::string& inner = "") {
  return std::string(static_cast<std::size_t>(depth), '[') + inner +
         std::string(static_cast<std::size_t>(depth), ']');
}

using testing::error_of;

// ---------------------------------------------------------------------------------------
// 1. A number too large for a double ("1e309") made nlohmann throw out_of_range, which the
//    parsers did not catch: a std::exception instead of a cachet::Error (all four JSON
//    targets found it within seconds).

TEST(FuzzFindings, NumberOverflowInJsonIsAnInvalidModelError) {
  TempDir dir;
  const auto st = dir.path() / "model.safetensors";
  write_file(
      st, safetensors_with_header(R"({"w":{"dtype":"F32","shape":[1e309],"data_offsets":[0,0]}})"));
  std::string m = error_of([&] { model::SafetensorsFile::open(st); }, ErrorCode::kInvalidModel);
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;

  m = error_of([] { model::parse_model_config(R"({"vocab_size": 1e309})", "config.json"); },
               ErrorCode::kInvalidModel);
  EXPECT_NE(m.find("config.json"), std::string::npos) << m;

  write_file(dir.path() / "model.safetensors.index.json", R"({"weight_map": {"w": 1e400}})");
  m = error_of([&] { model::WeightStore::open(dir.path()); }, ErrorCode::kInvalidModel);
  EXPECT_NE(m.find("index.json"), std::string::npos) << m;

  write_file(dir.path() / "tokenizer.json", R"({"model": {"type": "BPE", "dropout": -1e999}})");
  m = error_of([&] { Tokenizer::from_file(dir.path() / "tokenizer.json"); },
               ErrorCode::kInvalidModel);
  EXPECT_NE(m.find("tokenizer.json"), std::string::npos) << m;
}

// ---------------------------------------------------------------------------------------
// 2. JSON nested a million levels deep parsed fine, but printing the offending value in an
//    error message (nlohmann's dump() recurses per level) overflowed the stack: a 4 MB
//    safetensors header crashed the process. Every parse of outside JSON now refuses more
//    than 128 levels first.

TEST(FuzzFindings, DeeplyNestedJsonIsRefusedBeforeParsing) {
  EXPECT_EQ(util::json_nesting_depth("{}"), 1);
  EXPECT_EQ(util::json_nesting_depth(R"({"a": [[1], {"b": [2]}]})"), 4);
  EXPECT_EQ(util::json_nesting_depth(R"(["[[[[", "\"[[["])"), 1) << "brackets in strings";
  EXPECT_EQ(util::json_nesting_depth(nested(128)), 128);
  EXPECT_GT(util::json_nesting_depth(nested(1000)), util::kMaxJsonDepth);

  const std::string deep = nested(1'000'000);
  TempDir dir;
  const auto st = dir.path() / "model.safetensors";
  write_file(st, safetensors_with_header(R"({"w":{"dtype":"F32","shape":)" + deep +
                                         R"(,"data_offsets":[0,0]}})"));
  std::string m = error_of([&] { model::SafetensorsFile::open(st); }, ErrorCode::kInvalidModel);
  EXPECT_NE(m.find("nests JSON deeper than 128 levels"), std::string::npos) << m;

  m = error_of([&] { model::parse_model_config(R"({"architectures": )" + deep + "}", "c.json"); },
               ErrorCode::kInvalidModel);
  EXPECT_NE(m.find("c.json: JSON nested deeper than 128"), std::string::npos) << m;

  write_file(dir.path() / "tokenizer.json", R"({"model": )" + deep + "}");
  m = error_of([&] { Tokenizer::from_file(dir.path() / "tokenizer.json"); },
               ErrorCode::kInvalidModel);
  EXPECT_NE(m.find("tokenizer.json: JSON nested deeper"), std::string::npos) << m;

  // Real files nest a few levels; 128 leaves room for anything legitimate.
  EXPECT_NO_THROW(model::parse_model_config(
      R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 8,
          "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1,
          "junk": )" +
          nested(100) + "}",
      "config.json"));
}

// ---------------------------------------------------------------------------------------
// 3. A TemplateProcessing post-processor writes its ids literally; they need not be in the
//    vocabulary, so encode(add_special_tokens) gave ids >= vocab_size(), against its
//    contract. Negative or wrapping ids were accepted too.

json tokenizer_with_template(const json& ids) {
  return {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", json::array()}}},
          {"added_tokens", json::array()},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", ids}, {"tokens", {"<s>"}}}}}}}}};
}

TEST(FuzzFindings, PostProcessorIdsAreBelowVocabSize) {
  TempDir dir;
  write_file(dir.path() / "tokenizer.json", tokenizer_with_template(json::array({500})).dump());
  const Tokenizer tok = Tokenizer::from_file(dir.path() / "tokenizer.json");
  const auto ids = tok.encode("ab", /*add_special_tokens=*/true);
  ASSERT_EQ(ids, (std::vector<TokenId>{500, 0, 1}));
  EXPECT_EQ(tok.vocab_size(), 501u);

  for (const json& bad : {json(-1), json(4294967297ll), json(1.5), json("7")}) {
    write_file(dir.path() / "tokenizer.json", tokenizer_with_template(json::array({bad})).dump());
    std::string m = error_of([&] { Tokenizer::from_file(dir.path() / "tokenizer.json"); },
                             ErrorCode::kInvalidModel);
    EXPECT_NE(m.find("special_tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("token id"), std::string::npos) << m;
  }
}

// ---------------------------------------------------------------------------------------
// 4. An added token not in the vocabulary took id = number of vocabulary entries (what
//    Hugging Face tokenizers does). With gaps in the vocabulary's ids that is the id of a
//    model token, so one id meant two tokens and decode disagreed with encode.

TEST(FuzzFindings, AddedTokensNeverTakeTheIdOfAModelToken) {
  TempDir dir;
  const json file = {
      {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 5}}}, {"merges", json::array()}}},
      {"added_tokens", {{{"id", 99}, {"content", "<x>"}, {"special", true}}}}};
  write_file(dir.path() / "tokenizer.json", file.dump());
  const Tokenizer tok = Tokenizer::from_file(dir.path() / "tokenizer.json");
  EXPECT_EQ(tok.token_to_id("<x>"), 6);  // one past the largest id, not 2 (the count)
  EXPECT_EQ(tok.token_to_id("b"), 5);
  EXPECT_EQ(tok.encode("b<x>a"), (std::vector<TokenId>{5, 6, 0}));
  EXPECT_EQ(tok.id_to_token(6), "<x>");
  EXPECT_EQ(tok.vocab_size(), 7u);
}

// ---------------------------------------------------------------------------------------
// 5. ByteFallback turns a whole run of <0xNN> tokens into U+FFFD when the run is not valid
//    UTF-8, so streamed text from the start of a run could change afterwards: "<0x61>" was
//    streamed as "a", but "<0x61><0xE4>" followed by a word decodes to two U+FFFD. A model
//    can generate such ids. The stream now holds a run back until it ends.

TEST(FuzzFindings, StreamedTextOfAByteFallbackRunEqualsDecode) {
  const Tokenizer tok =
      Tokenizer::from_file(testing::test_data_dir() / "tokenizers" / "llama2_style");
  const TokenId a = *tok.token_to_id("<0x61>");
  const TokenId e4 = *tok.token_to_id("<0xE4>");
  const std::vector<TokenId> word = tok.encode("the");
  std::vector<std::vector<TokenId>> cases = {{a, e4}, {a, a, e4}, {e4, a}, {a}};
  for (auto& ids : cases) ids.insert(ids.end(), word.begin(), word.end());
  cases.push_back({a, e4, *tok.token_to_id("<s>"), a});  // a special token inside the run
  for (const bool skip : {false, true}) {
    for (const auto& ids : cases) {
      StreamDecoder stream(tok, skip);
      std::string joined;
      for (const TokenId id : ids) joined += stream.push(id);
      joined += stream.flush();
      EXPECT_EQ(joined, tok.decode(ids, skip)) << "skip_special_tokens " << skip;
    }
  }
  // The run still streams as soon as a non-byte token settles it.
  StreamDecoder stream(tok, false);
  EXPECT_EQ(stream.push(a), "");
  EXPECT_NE(stream.push(word.front()), "");
}

// ---------------------------------------------------------------------------------------
// 6. The id -> token table is dense, so a vocabulary with one id of 2^31 - 1 asked for 2^31
//    strings (57 GB): an out-of-memory abort under ASan, a bad_alloc or worse without it.

TEST(FuzzFindings, SparseVocabularyIdsAreRefusedNotAllocated) {
  TempDir dir;
  json file = {
      {"model",
       {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 2147483647}}}, {"merges", json::array()}}}};
  write_file(dir.path() / "tokenizer.json", file.dump());
  std::string m = error_of([&] { Tokenizer::from_file(dir.path() / "tokenizer.json"); },
                           ErrorCode::kUnsupported);
  EXPECT_NE(m.find("model.vocab"), std::string::npos) << m;
  EXPECT_NE(m.find("sparse"), std::string::npos) << m;

  // Gaps of ordinary size still load.
  file["model"]["vocab"]["b"] = 70000;
  write_file(dir.path() / "tokenizer.json", file.dump());
  EXPECT_EQ(Tokenizer::from_file(dir.path() / "tokenizer.json").vocab_size(), 70001u);
}

}  // namespace
}  // namespace cachet

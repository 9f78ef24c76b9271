// Hostile model files, as an attacker or a broken download would make them: each is refused
// with a cachet::Error whose code and message name the file and the field, never a crash, a
// hang or a silently wrong value. The rows of "Bad input" in docs/reliability.md point here.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <string>

#include "cachet/errors.h"
#include "cachet/tokenizer.h"
#include "model/make_model.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "support/test_support.h"
#include "util/json_depth.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// The same for a load that reads the FIFO `fifo`: a load that blocks on it fails the test
// (and the FIFO is then opened for writing, so that the blocked reader sees end-of-file and
// the test can end).
std::string error_without_blocking(const fs::path& fifo, const std::function<void()>& f,
                                   ErrorCode code) {
  auto result = std::async(std::launch::async, [&] { return error_of(f, code); });
  if (result.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "reading " << fifo << " blocks";
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    if (fd >= 0) ::close(fd);
  }
  return result.get();
}

void make_fifo(const fs::path& path) { ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0) << path; }

// `levels` nested JSON arrays around `inner`.
std::string nested(std::size_t levels, const std::string& inner = "") {
  return std::string(levels, '[') + inner + std::string(levels, ']');
}

// A .safetensors file whose header is `header` followed by `data_bytes` zero bytes.
void write_safetensors_raw(const fs::path& path, const std::string& header,
                           std::size_t data_bytes = 0) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  bytes += header;
  bytes.append(data_bytes, '\0');
  testing::write_file(path, bytes);
}

// --- JSON nesting ---

TEST(BadInputJson, NestingBoundCountsBracketsOutsideStringsOnly) {
  EXPECT_FALSE(util::json_nests_too_deep(nested(util::kMaxJsonDepth)));
  EXPECT_TRUE(util::json_nests_too_deep(nested(util::kMaxJsonDepth + 1)));
  EXPECT_TRUE(util::json_nests_too_deep("{\"a\":" + nested(util::kMaxJsonDepth) + "}"));
  // Brackets in strings, escaped quotes included, are text.
  const std::string brackets(1000, '[');
  EXPECT_FALSE(util::json_nests_too_deep("[\"" + brackets + "\"]"));
  EXPECT_FALSE(util::json_nests_too_deep("[\"\\\"" + brackets + "\"]"));
  // Siblings do not add up: depth, not count.
  std::string wide = "[";
  for (int i = 0; i < 1000; ++i) wide += "[[]],";
  EXPECT_FALSE(util::json_nests_too_deep(wide + "1]"));
}

// --- safetensors ---

class BadInputSafetensors : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  fs::path file_ = dir_.path() / "model.safetensors";

  std::string open_error(ErrorCode code) {
    return error_of([&] { model::SafetensorsFile::open(file_); }, code);
  }
};

// Parsing is iterative, but printing a value and copying one recurse: a million levels
// used to overflow the stack (a segfault) while the message was being written.
TEST_F(BadInputSafetensors, DeeplyNestedHeaderIsRefusedBeforeParsing) {
  for (const std::string& header :
       {"{\"w\":{\"dtype\":\"F32\",\"shape\":" + nested(1000000) + ",\"data_offsets\":[0,0]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" + nested(1000000) + "}}",
        "{\"__metadata__\":{\"x\":" + nested(1000000) + "}}"}) {
    write_safetensors_raw(file_, header);
    const std::string message = open_error(ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr(file_.string()));
    EXPECT_THAT(message, HasSubstr("nests JSON deeper than 128 levels"));
  }
}

// 1e999 does not fit a double: nlohmann throws out_of_range, not parse_error, which used to
// escape as a std::exception instead of a cachet::Error.
TEST_F(BadInputSafetensors, NumberBeyondADoubleIsInvalidJson) {
  write_safetensors_raw(file_, R"({"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", 4);
  const std::string message = open_error(ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
  EXPECT_THAT(message, HasSubstr("not valid JSON"));
  EXPECT_THAT(message, HasSubstr("1e999"));
}

TEST_F(BadInputSafetensors, EmptyFileDirectoryAndFifo) {
  testing::write_file(file_, "");
  EXPECT_THAT(open_error(ErrorCode::kInvalidModel), HasSubstr("file is 0 bytes"));
  fs::remove(file_);
  fs::create_directory(file_);
  std::string message = open_error(ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
  EXPECT_THAT(message, HasSubstr("not a regular file"));
  fs::remove(file_);
  // Opening a FIFO for reading waits for a writer: this used to hang forever.
  make_fifo(file_);
  message = error_without_blocking(
      file_, [&] { model::SafetensorsFile::open(file_); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
  EXPECT_THAT(message, HasSubstr("not a regular file"));
}

// Symbolic links are followed: the Hugging Face cache is made of them (snapshot files link to
// blobs elsewhere). What they point to is checked like any file, and named by the link.
TEST_F(BadInputSafetensors, SymlinksAreFollowedAndWhatTheyReachIsChecked) {
  testing::TempDir elsewhere;
  model::write_safetensors(elsewhere.path() / "blob", {{"w", model::DType::kF32, {2}, {1, 2}}});
  fs::create_symlink(elsewhere.path() / "blob", file_);
  EXPECT_EQ(model::SafetensorsFile::open(file_)->tensors().size(), 1u);
  fs::remove(file_);
  testing::write_file(elsewhere.path() / "passwd", "root:x:0:0:root:/root:/bin/bash\n");
  fs::create_symlink(elsewhere.path() / "passwd", file_);
  const std::string message = open_error(ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
  EXPECT_THAT(message, HasSubstr("header size"));
}

TEST(BadInputWeightStore, IndexThatIsADirectoryAFifoOrTooDeep) {
  testing::TempDir dir;
  const fs::path index = dir.path() / "model.safetensors.index.json";
  fs::create_directory(index);
  std::string message =
      error_of([&] { model::WeightStore::open(dir.path()); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(index.string()));
  EXPECT_THAT(message, HasSubstr("not a regular file"));
  fs::remove(index);
  make_fifo(index);
  message = error_without_blocking(
      index, [&] { model::WeightStore::open(dir.path()); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("not a regular file"));
  fs::remove(index);
  testing::write_file(index, "{\"weight_map\": {\"a\": " + nested(100000, "1") + "}}");
  message = error_of([&] { model::WeightStore::open(dir.path()); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(index.string()));
  EXPECT_THAT(message, HasSubstr("nested deeper than 128 levels"));
  testing::write_file(index, "{\"weight_map\": {\"a\": 1e999}}");
  message = error_of([&] { model::WeightStore::open(dir.path()); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("not valid JSON"));
}

// --- config.json ---

const std::string kConfig = "/m/config.json";

Json llama_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"num_attention_heads", 8},
          {"num_hidden_layers", 2},
          {"vocab_size", 100}};
}

std::string config_error(const std::string& text, ErrorCode code) {
  return error_of([&] { model::parse_model_config(text, kConfig); }, code);
}

TEST(BadInputConfig, DeeplyNestedOrUnrepresentableNumbersAreInvalidJson) {
  std::string text = llama_config().dump();
  text.insert(text.size() - 1, ",\"extra\":" + nested(1000000));
  std::string message = config_error(text, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(kConfig));
  EXPECT_THAT(message, HasSubstr("nested deeper than 128 levels"));
  text = llama_config().dump();
  text.insert(text.size() - 1, ",\"rope_theta\":1e999");
  message = config_error(text, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(kConfig));
  EXPECT_THAT(message, HasSubstr("1e999"));
  // JSON has no NaN or infinity: Python's json.dump writes them, and they are not JSON.
  for (const char* value : {"NaN", "Infinity", "-Infinity"}) {
    text = llama_config().dump();
    text.insert(text.size() - 1, std::string(",\"rope_theta\":") + value);
    message = config_error(text, ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr(kConfig + ": not valid JSON"));
  }
}

TEST(BadInputConfig, DirectoryOrFifoInsteadOfAFile) {
  testing::TempDir dir;
  const fs::path path = dir.path() / "config.json";
  fs::create_directory(path);
  std::string message = error_of([&] { model::load_model_config(path); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(path.string()));
  EXPECT_THAT(message, HasSubstr("is a directory"));
  fs::remove(path);
  make_fifo(path);
  message = error_without_blocking(
      path, [&] { model::load_model_config(path); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(path.string()));
  EXPECT_THAT(message, HasSubstr("not a regular file"));
}

// An EOS id the model cannot produce would never end a request; one past 2^31 used to be
// refused only for being too large for an int.
TEST(BadInputConfig, SpecialTokenIdsMustBeTokensOfTheModel) {
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, Json>>{{"eos_token_id", 100},
                                                 {"eos_token_id", Json::array({2, 150})},
                                                 {"bos_token_id", 99999}}) {
    Json j = llama_config();
    j[key] = value;
    const std::string message = config_error(j.dump(), ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr(kConfig));
    EXPECT_THAT(message, HasSubstr("'" + key + "'"));
    EXPECT_THAT(message, HasSubstr("[0, 100)"));
  }
  Json j = llama_config();
  j["eos_token_id"] = 99;
  EXPECT_EQ(model::parse_model_config(j.dump(), kConfig).eos_token_ids,
            std::vector<std::int32_t>{99});
}

// 1e308 is a positive number, but the backends compute in float: it does not even convert.
TEST(BadInputConfig, RmsNormEpsMustBeBelowOne) {
  for (double eps : {1.0, 1e308}) {
    Json j = llama_config();
    j["rms_norm_eps"] = eps;
    const std::string message = config_error(j.dump(), ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr("'rms_norm_eps'"));
    EXPECT_THAT(message, HasSubstr("below 1"));
  }
}

// A billion layers fit in an int32 field; listing the names of their tensors would take
// hundreds of gigabytes before the mismatch with the checkpoint is noticed.
TEST(BadInputConfig, LayerCountBeyondTheCheckpointFailsBeforeListingTensors) {
  testing::TempDir dir;
  model::MakeModelOptions o;
  o.out_dir = dir.path();
  model::make_model(o);
  model::ModelConfig config = model::load_model_config(dir.path() / "config.json");
  config.num_layers = 2000000000;
  const std::string message =
      error_of([&] { model::load_weights(dir.path(), config); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr((dir.path() / "model.safetensors").string()));
  EXPECT_THAT(message, HasSubstr("'num_hidden_layers' is 2000000000"));
}

// --- tokenizer.json and its companions ---

Json minimal_tokenizer() {
  return {{"model",
           {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}}};
}

class BadInputTokenizer : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  fs::path file_ = dir_.path() / "tokenizer.json";

  void write(const Json& j) { testing::write_file(file_, j.dump()); }
  // Loading fails with `code`, naming the file and every one of `mentions`.
  void expect_refused(ErrorCode code, const std::vector<std::string>& mentions,
                      const fs::path& file = {}) {
    const std::string message = error_of([&] { Tokenizer::from_file(dir_.path()); }, code);
    EXPECT_THAT(message, HasSubstr(file.empty() ? file_.string() : file.string()));
    for (const auto& m : mentions) EXPECT_THAT(message, HasSubstr(m));
  }
};

// A Sequence inside a Sequence ... is read recursively: a hundred thousand levels used to
// overflow the stack.
TEST_F(BadInputTokenizer, DeeplyNestedFileIsRefusedBeforeParsing) {
  std::string text = R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":)";
  for (int i = 0; i < 100000; ++i) text += R"({"type":"Sequence","pretokenizers":[)";
  text += R"({"type":"Whitespace"})";
  for (int i = 0; i < 100000; ++i) text += "]}";
  testing::write_file(file_, text + "}");
  expect_refused(ErrorCode::kInvalidModel, {"nested deeper than 128 levels"});
}

TEST_F(BadInputTokenizer, DirectoryOrFifoInsteadOfAFile) {
  fs::create_directory(file_);
  expect_refused(ErrorCode::kInvalidModel, {"not a regular file"});
  fs::remove(file_);
  make_fifo(file_);
  const std::string message = error_without_blocking(
      file_, [&] { Tokenizer::from_file(dir_.path()); }, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
  EXPECT_THAT(message, HasSubstr("not a regular file"));
}

// BPE merges are looked up by id pair: with "a" and "b" both id 0, "a a" used to merge as
// "a b" and give silently wrong ids.
TEST_F(BadInputTokenizer, TwoTokensWithOneId) {
  Json j = minimal_tokenizer();
  j["model"]["vocab"] = {{"a", 0}, {"b", 0}, {"ab", 2}};
  write(j);
  expect_refused(ErrorCode::kInvalidModel, {"model.vocab", "both have id 0"});
}

// Ids index a table: one id of two billion in a three-token vocabulary used to end in
// std::bad_alloc (an "internal error").
TEST_F(BadInputTokenizer, IdFarBeyondTheVocabulary) {
  Json j = minimal_tokenizer();
  j["model"]["vocab"]["ab"] = 2000000000;
  write(j);
  expect_refused(ErrorCode::kUnsupported, {"model.vocab", "2000000000", "3 tokens"});
}

// Ids beyond 32 bits (or negative) used to be truncated into some other token's id.
TEST_F(BadInputTokenizer, PostProcessorIdsOutOfRange) {
  for (const Json& id : {Json(-1), Json(99999999999LL)}) {
    Json j = minimal_tokenizer();
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {id}}, {"tokens", {"<s>"}}}}}}};
    write(j);
    expect_refused(ErrorCode::kInvalidModel,
                   {"post_processor.special_tokens.<s>.ids[0]", id.dump(), "outside"});
    j["post_processor"] = {{"type", "BertProcessing"}, {"cls", {"a", id}}, {"sep", {"b", 1}}};
    write(j);
    expect_refused(ErrorCode::kInvalidModel, {"post_processor.cls[1]", id.dump()});
  }
}

TEST_F(BadInputTokenizer, GenerationConfigIdsOutOfRange) {
  write(minimal_tokenizer());
  const fs::path gen = dir_.path() / "generation_config.json";
  for (const auto& [key, value, field] : std::vector<std::tuple<std::string, Json, std::string>>{
           {"eos_token_id", -7, "eos_token_id"},
           {"eos_token_id", 99999999999LL, "eos_token_id"},
           {"eos_token_id", Json::array({1, 4294967296LL}), "eos_token_id[1]"},
           {"eos_token_id", "2", "eos_token_id"},
           {"bos_token_id", 4294967296LL, "bos_token_id"}}) {
    testing::write_file(gen, Json{{key, value}}.dump());
    expect_refused(ErrorCode::kInvalidModel, {field}, gen);
  }
  testing::write_file(gen, "{\"eos_token_id\": " + nested(1000) + "}");
  expect_refused(ErrorCode::kInvalidModel, {"nested deeper"}, gen);
  testing::write_file(gen, "{");
  expect_refused(ErrorCode::kInvalidModel, {"malformed JSON"}, gen);
}

// By design, as `tokenizers` does: the ids written for added tokens are not consulted (a
// token not in the vocabulary takes the next free id), and an empty content is skipped. A
// bos/eos token named by tokenizer_config.json that is no token at all is ignored.
TEST_F(BadInputTokenizer, AddedTokenIdsAreAssignedAndUnknownConfigTokensIgnored) {
  Json j = minimal_tokenizer();
  j["added_tokens"] = {{{"id", 2}, {"content", "<x>"}, {"special", true}},
                       {{"id", 7}, {"content", ""}, {"special", true}},
                       {{"id", 8}, {"content", std::string(100000, 'z')}, {"special", true}}};
  write(j);
  testing::write_file(dir_.path() / "tokenizer_config.json",
                      Json{{"bos_token", "<nope>"}, {"eos_token", {{"content", "<nada>"}}}}.dump());
  const Tokenizer tok = Tokenizer::from_file(dir_.path());
  EXPECT_EQ(tok.token_to_id("<x>"), 3);  // not the colliding 2 of the file
  EXPECT_EQ(tok.token_to_id("ab"), 2);
  EXPECT_EQ(tok.token_to_id(std::string(100000, 'z')), 4);
  EXPECT_EQ(tok.vocab_size(), 5u);
  EXPECT_EQ(tok.encode("<x>ab"), (std::vector<TokenId>{3, 2}));
  EXPECT_FALSE(tok.bos_token_id().has_value());
  EXPECT_TRUE(tok.eos_token_ids().empty());
}

// Malformed components beyond those of test_tokenizer_errors.cpp, each named by its path.
TEST_F(BadInputTokenizer, MalformedComponentsNameTheirPath) {
  struct Case {
    std::function<void(Json&)> change;
    ErrorCode code;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {[](Json& j) { j["model"]["vocab"]["a"] = -1; },
       ErrorCode::kInvalidModel,
       {"model.vocab", "token \"a\" has an invalid id"}},
      {[](Json& j) { j["model"]["vocab"]["a"] = 1.5; },
       ErrorCode::kInvalidModel,
       {"model.vocab", "token \"a\""}},
      {[](Json& j) {
         j["model"]["vocab"] = Json::array({Json::array({"a", 0})});
       },
       ErrorCode::kInvalidModel,
       {"model.vocab", "expected an object"}},
      {[](Json& j) { j["model"]["merges"] = {"a"}; },
       ErrorCode::kInvalidModel,
       {"model.merges[0]", "expected \"left right\", got \"a\""}},
      {[](Json& j) { j["model"]["merges"] = {"a b c"}; },
       ErrorCode::kInvalidModel,
       {"model.merges[0]", "\"a b c\""}},
      {[](Json& j) { j["model"]["merges"] = {5}; }, ErrorCode::kInvalidModel, {"model.merges[0]"}},
      {[](Json& j) { j["model"]["type"] = "Foo"; },
       ErrorCode::kUnsupported,
       {"model.type", "'Foo'"}},
      {[](Json& j) { j["model"]["unk_token"] = "<unk>"; },
       ErrorCode::kInvalidModel,
       {"model.unk_token", "not in the vocabulary"}},
      {[](Json& j) {
         j["added_tokens"] = {{{"id", -3}, {"content", "<x>"}}};
       },
       ErrorCode::kInvalidModel,
       {"added_tokens[0].id", "out of range"}},
      {[](Json& j) {
         j["added_tokens"] = {{"a", 1}};
       },
       ErrorCode::kInvalidModel,
       {"added_tokens", "expected an array"}},
      {[](Json& j) {
         j["pre_tokenizer"] = {{"type", "Split"},
                               {"pattern", {{"Regex", "a"}}},
                               {"behavior", "Weird"},
                               {"invert", false}};
       },
       ErrorCode::kUnsupported,
       {"pre_tokenizer.behavior", "'Weird'"}},
      {[](Json& j) {
         j["pre_tokenizer"] = {
             {"type", "Split"}, {"pattern", {{"Regex", "(?<=a+)b"}}}, {"behavior", "Isolated"}};
       },
       ErrorCode::kInvalidModel,
       {"pre_tokenizer.pattern", "regex does not compile", "lookbehind"}},
      {[](Json& j) {
         j["normalizer"] = {{"type", "Weird"}};
       },
       ErrorCode::kUnsupported,
       {"normalizer.type", "'Weird'"}},
      {[](Json& j) {
         j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", -5}, {"stop", 0}};
       },
       ErrorCode::kInvalidModel,
       {"decoder.start"}},
  };
  for (const Case& k : cases) {
    Json j = minimal_tokenizer();
    k.change(j);
    SCOPED_TRACE(j.dump());
    write(j);
    expect_refused(k.code, k.mentions);
  }
  for (const std::string& text : {std::string(), std::string("[1, 2]"), std::string("hello")}) {
    testing::write_file(file_, text);
    expect_refused(ErrorCode::kInvalidModel, {});
  }
  write(minimal_tokenizer());
  const fs::path config = dir_.path() / "tokenizer_config.json";
  testing::write_file(config, Json{{"bos_token", 5}}.dump());
  expect_refused(ErrorCode::kInvalidModel, {"bos_token", "expected a string or an object"}, config);
  testing::write_file(config, "nope");
  expect_refused(ErrorCode::kInvalidModel, {"malformed JSON"}, config);
}

// Searching a token for "" finds it at the same place forever: decoding used to hang.
TEST_F(BadInputTokenizer, MetaspaceDecoderWithAnEmptyReplacement) {
  Json j = minimal_tokenizer();
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", ""}, {"prepend_scheme", "always"}};
  write(j);
  expect_refused(ErrorCode::kInvalidModel, {"decoder.replacement", "empty"});
}

// A pattern with catastrophic backtracking compiles; PCRE2 then gives up on the text
// (its match limit). That used to surface as kInternal "regex match failed" without saying
// which pattern, and it terminated the engine's thread (see test_bad_input_engine.cpp).
TEST_F(BadInputTokenizer, CatastrophicRegexGivesUpNamingThePattern) {
  Json j = minimal_tokenizer();
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(a+)+$"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  j["decoder"] = {{"type", "Replace"}, {"pattern", {{"Regex", "(a+)+$"}}}, {"content", "x"}};
  j["model"]["vocab"][std::string(32, 'a') + "b"] = 3;
  write(j);
  const Tokenizer tok = Tokenizer::from_file(dir_.path());
  EXPECT_EQ(tok.encode("ab"), (std::vector<TokenId>{2}));  // short texts are fine
  std::string message =
      error_of([&] { tok.encode(std::string(32, 'a') + "b"); }, ErrorCode::kInvalidArgument);
  EXPECT_THAT(message, HasSubstr(file_.string() + ": pre_tokenizer.pattern"));
  EXPECT_THAT(message, HasSubstr("regex gave up on the text"));
  EXPECT_THAT(message, HasSubstr("match limit"));
  message = error_of([&] { tok.decode(std::vector<TokenId>{3}); }, ErrorCode::kInvalidArgument);
  EXPECT_THAT(message, HasSubstr(file_.string() + ": decoder.pattern"));
}

}  // namespace
}  // namespace cachet

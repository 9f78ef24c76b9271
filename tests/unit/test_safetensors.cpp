#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "cachet/errors.h"
#include "model/safetensors.h"
#include "support/test_support.h"

namespace cachet::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A .safetensors file from raw parts; `declared_size` overrides the header length field.
void write_raw(const fs::path& path, const std::string& header, std::size_t data_bytes,
               std::optional<std::uint64_t> declared_size = std::nullopt) {
  const std::uint64_t size = declared_size.value_or(header.size());
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((size >> (8 * i)) & 0xff);
  bytes += header;
  bytes.append(data_bytes, '\0');
  testing::write_file(path, bytes);
}

void write_json(const fs::path& path, const Json& header, std::size_t data_bytes) {
  write_raw(path, header.dump(), data_bytes);
}

Json entry(const std::string& dtype, const Json& shape, std::int64_t begin, std::int64_t end) {
  return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
}

using testing::error_of;

std::string open_error(const fs::path& path, ErrorCode code) {
  return error_of([&] { SafetensorsFile::open(path); }, code);
}

class SafetensorsTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  fs::path file_ = dir_.path() / "model.safetensors";

  // The file's header must be rejected with `code`, naming the file and every `names`.
  void expect_rejected(const Json& header, std::size_t data_bytes, ErrorCode code,
                       std::initializer_list<std::string> names) {
    write_json(file_, header, data_bytes);
    const std::string message = open_error(file_, code);
    EXPECT_THAT(message, HasSubstr(file_.string()));
    for (const std::string& name : names) EXPECT_THAT(message, HasSubstr(name)) << header.dump();
  }
};

std::vector<std::uint16_t> raw_u16(const TensorView& view) {
  std::vector<std::uint16_t> out(view.data.size() / 2);
  std::memcpy(out.data(), view.data.data(), view.data.size());
  return out;
}

TEST_F(SafetensorsTest, F32RoundTripIsExact) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<TensorToWrite> tensors = {
      {"b.weight", DType::kF32, {2, 3}, {1.0f, -2.5f, 3.25e-30f, inf, -inf, 0x1p-149f}},
      {"a.bias", DType::kF32, {3}, {0.1f, -0.0f, 65504.0f}},
      {"scalar", DType::kF32, {}, {42.0f}},
      {"empty", DType::kF32, {0, 4}, {}},
  };
  write_safetensors(file_, tensors);
  const auto file = SafetensorsFile::open(file_);
  EXPECT_EQ(file->path(), file_);
  ASSERT_EQ(file->tensors().size(), 4u);
  for (const TensorToWrite& t : tensors) {
    const TensorView& view = file->tensors().at(t.name);
    EXPECT_EQ(view.name, t.name);
    EXPECT_EQ(view.dtype, DType::kF32);
    EXPECT_EQ(view.shape, t.shape);
    EXPECT_EQ(view.file, file_.string());
    EXPECT_EQ(view.numel(), static_cast<std::int64_t>(t.values.size()));
    std::vector<float> values(t.values.size());
    convert_to_f32(view.dtype, view.data.data(), values.size(), values.data());
    // Bitwise, so that -0.0 and the subnormal are checked exactly.
    for (std::size_t i = 0; i < values.size(); ++i) {
      EXPECT_EQ(std::bit_cast<std::uint32_t>(values[i]), std::bit_cast<std::uint32_t>(t.values[i]))
          << t.name << "[" << i << "]";
    }
  }
}

TEST_F(SafetensorsTest, HalfPrecisionBitsAreRoundedToNearestEven) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> values = {1.0f,
                                     1.0f + 0x1p-11f,
                                     1.0f + 3 * 0x1p-11f,
                                     0x1p-24f,
                                     0x1p-25f,
                                     3 * 0x1p-25f,
                                     65520.0f,
                                     -inf,
                                     nan,
                                     -2.0f,
                                     0x1p-14f,
                                     1.0f + 0x1p-8f};
  write_safetensors(file_, {{"h", DType::kF16, {12}, values}, {"b", DType::kBF16, {12}, values}});
  const auto file = SafetensorsFile::open(file_);
  const std::vector<std::uint16_t> f16 = raw_u16(file->tensors().at("h"));
  const std::vector<std::uint16_t> f16_expected = {0x3c00, 0x3c00, 0x3c02, 0x0001, 0x0000, 0x0002,
                                                   0x7c00, 0xfc00, 0x7e00, 0xc000, 0x0400, 0x3c04};
  EXPECT_EQ(f16, f16_expected);
  const std::vector<std::uint16_t> bf16 = raw_u16(file->tensors().at("b"));
  // 1 + 2^-8 is a tie for bf16 (7 mantissa bits), to even 0x3f80; 1 + 3*2^-11 rounds down.
  const std::vector<std::uint16_t> bf16_expected = {0x3f80, 0x3f80, 0x3f80, 0x3380, 0x3300, 0x33c0,
                                                    0x4780, 0xff80, 0x7fc0, 0xc000, 0x3880, 0x3f80};
  EXPECT_EQ(bf16, bf16_expected);
}

TEST_F(SafetensorsTest, WrittenLayout) {
  write_safetensors(file_, {{"z", DType::kBF16, {3}, {1, 2, 3}}, {"a", DType::kF32, {1}, {5}}},
                    {{"source", "test"}});
  const std::string bytes = testing::read_file(file_);
  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i)
    header_size = (header_size << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + header_size) % 8, 0u);  // data starts 8-byte aligned
  const Json header = Json::parse(bytes.substr(8, header_size));
  EXPECT_EQ(header["__metadata__"], Json({{"format", "pt"}, {"source", "test"}}));
  // Sorted by name and packed: a first, then z.
  EXPECT_EQ(header["a"]["data_offsets"], Json({0, 4}));
  EXPECT_EQ(header["z"]["data_offsets"], Json({4, 10}));
  EXPECT_EQ(header["z"]["dtype"], "BF16");
  EXPECT_EQ(header["z"]["shape"], Json({3}));
  EXPECT_EQ(bytes.size(), 8 + header_size + 10);
  // Metadata given by the caller wins over the default.
  write_safetensors(file_, {}, {{"format", "np"}});
  const std::string again = testing::read_file(file_);
  EXPECT_THAT(again, HasSubstr("\"format\":\"np\""));
}

TEST_F(SafetensorsTest, FileWithoutTensorsOpens) {
  write_safetensors(file_, {});
  EXPECT_TRUE(SafetensorsFile::open(file_)->tensors().empty());
  write_raw(file_, "{}", 0);
  EXPECT_TRUE(SafetensorsFile::open(file_)->tensors().empty());
}

TEST_F(SafetensorsTest, WriteRejectsBadInput) {
  std::string message = error_of(
      [&] {
        write_safetensors(file_, {{"w", DType::kF32, {2, 3}, {1, 2, 3}}});
      },
      ErrorCode::kInvalidArgument);
  EXPECT_THAT(message, HasSubstr("'w'"));
  EXPECT_THAT(message, HasSubstr(file_.string()));
  message = error_of(
      [&] {
        write_safetensors(file_, {{"w", DType::kF32, {-1}, {}}});
      },
      ErrorCode::kInvalidArgument);
  EXPECT_THAT(message, HasSubstr("'w'"));
  message = error_of(
      [&] {
        write_safetensors(file_, {{"w", DType::kF32, {1}, {1}}, {"w", DType::kF16, {1}, {1}}});
      },
      ErrorCode::kInvalidArgument);
  EXPECT_THAT(message, HasSubstr("'w'"));
}

TEST_F(SafetensorsTest, MissingFile) {
  const std::string message = open_error(file_, ErrorCode::kNotFound);
  EXPECT_THAT(message, HasSubstr(file_.string()));
}

TEST_F(SafetensorsTest, ShorterThanHeaderSize) {
  testing::write_file(file_, "abc");
  EXPECT_THAT(open_error(file_, ErrorCode::kInvalidModel), HasSubstr(file_.string()));
}

TEST_F(SafetensorsTest, HeaderSizePastEndOfFile) {
  write_raw(file_, "{}", 0, 1000);
  std::string message = open_error(file_, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
  EXPECT_THAT(message, HasSubstr("1000"));
  write_raw(file_, "{}", 0, std::uint64_t{1} << 62);
  message = open_error(file_, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
}

TEST_F(SafetensorsTest, HeaderNotJsonObject) {
  write_raw(file_, "{\"a\": ", 0);
  EXPECT_THAT(open_error(file_, ErrorCode::kInvalidModel), HasSubstr(file_.string()));
  write_raw(file_, "[1, 2]", 0);
  std::string message = open_error(file_, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
  EXPECT_THAT(message, HasSubstr("object"));
  expect_rejected({{"w", 5}}, 0, ErrorCode::kInvalidModel, {"'w'"});
  expect_rejected({{"__metadata__", {{"format", 1}}}}, 0, ErrorCode::kInvalidModel,
                  {"__metadata__", "format"});
}

TEST_F(SafetensorsTest, DuplicateTensorName) {
  const std::string entry_text = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  write_raw(file_, "{\"w\":" + entry_text + ",\"w\":" + entry_text + "}", 4);
  const std::string message = open_error(file_, ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(file_.string()));
  EXPECT_THAT(message, HasSubstr("'w'"));
  EXPECT_THAT(message, HasSubstr("twice"));
  // The same keys inside different entries are fine.
  const std::string other = R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
  write_raw(file_, "{\"v\":" + entry_text + ",\"w\":" + other + "}", 8);
  EXPECT_EQ(SafetensorsFile::open(file_)->tensors().size(), 2u);
}

TEST_F(SafetensorsTest, BadDtype) {
  expect_rejected({{"w", {{"shape", {1}}, {"data_offsets", {0, 4}}}}}, 4, ErrorCode::kInvalidModel,
                  {"'w'", "dtype"});
  expect_rejected({{"w", entry("F32", {1}, 0, 4)},
                   {"v", {{"dtype", 32}, {"shape", {1}}, {"data_offsets", {4, 8}}}}},
                  8, ErrorCode::kInvalidModel, {"'v'", "dtype"});
  // Valid safetensors dtypes cachet does not load are unsupported; unknown names invalid.
  expect_rejected({{"w", entry("I64", {1}, 0, 8)}}, 8, ErrorCode::kUnsupported, {"'w'", "I64"});
  expect_rejected({{"w", entry("F8_E4M3", {1}, 0, 1)}}, 1, ErrorCode::kUnsupported,
                  {"'w'", "F8_E4M3"});
  expect_rejected({{"w", entry("F33", {1}, 0, 4)}}, 4, ErrorCode::kInvalidModel, {"'w'", "F33"});
}

TEST_F(SafetensorsTest, BadShape) {
  expect_rejected({{"w", {{"dtype", "F32"}, {"data_offsets", {0, 4}}}}}, 4,
                  ErrorCode::kInvalidModel, {"'w'", "shape"});
  expect_rejected({{"w", entry("F32", 1, 0, 4)}}, 4, ErrorCode::kInvalidModel, {"'w'", "shape"});
  expect_rejected({{"w", entry("F32", {-1}, 0, 4)}}, 4, ErrorCode::kInvalidModel, {"'w'", "shape"});
  expect_rejected({{"w", entry("F32", {1.5}, 0, 4)}}, 4, ErrorCode::kInvalidModel,
                  {"'w'", "shape"});
  expect_rejected({{"w", entry("F32", {"1"}, 0, 4)}}, 4, ErrorCode::kInvalidModel,
                  {"'w'", "shape"});
  // numel * 4 overflows 64 bits: an error, not a wrapped size that happens to match.
  expect_rejected({{"w", entry("F32", {std::int64_t{1} << 62, 4}, 0, 0)}}, 0,
                  ErrorCode::kInvalidModel, {"'w'", "shape"});
}

TEST_F(SafetensorsTest, BadDataOffsets) {
  auto with_offsets = [](const Json& offsets) {
    return Json{{"w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", offsets}}}};
  };
  expect_rejected({{"w", {{"dtype", "F32"}, {"shape", {2}}}}}, 8, ErrorCode::kInvalidModel,
                  {"'w'", "data_offsets"});
  expect_rejected(with_offsets({0}), 8, ErrorCode::kInvalidModel, {"'w'", "data_offsets"});
  expect_rejected(with_offsets({0, 4, 8}), 8, ErrorCode::kInvalidModel, {"'w'", "data_offsets"});
  expect_rejected(with_offsets({-8, 0}), 8, ErrorCode::kInvalidModel, {"'w'", "data_offsets"});
  expect_rejected(with_offsets({0, "8"}), 8, ErrorCode::kInvalidModel, {"'w'", "data_offsets"});
  expect_rejected(with_offsets({8, 0}), 8, ErrorCode::kInvalidModel, {"'w'", "data_offsets"});
  expect_rejected(with_offsets({0, 8}), 7, ErrorCode::kInvalidModel, {"'w'", "past"});
  expect_rejected(with_offsets({0, 12}), 12, ErrorCode::kInvalidModel, {"'w'", "12 bytes", "[2]"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const Json header = {{"first", entry("F32", {4}, 0, 16)},
                       {"second", entry("F32", {2}, 8, 16)},
                       {"empty", entry("F32", {0}, 8, 8)}};
  expect_rejected(header, 16, ErrorCode::kInvalidModel, {"'first'", "'second'", "overlap"});
  // Touching ranges and empty tensors inside others are fine.
  write_json(file_,
             Json{{"first", entry("F32", {2}, 0, 8)},
                  {"second", entry("F32", {2}, 8, 16)},
                  {"empty", entry("F32", {0}, 4, 4)}},
             16);
  EXPECT_EQ(SafetensorsFile::open(file_)->tensors().size(), 3u);
}

TEST_F(SafetensorsTest, UnalignedDataIsReadable) {
  // A header of odd length leaves the data unaligned; views must still convert correctly.
  const std::string header = Json{{"w", entry("F32", {2}, 0, 8)}}.dump() + " ";
  ASSERT_NE(header.size() % 4, 0u);
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(header.size());
  bytes += header;
  const float values[2] = {1.5f, -7.0f};
  bytes.append(reinterpret_cast<const char*>(values), sizeof values);
  testing::write_file(file_, bytes);
  const auto file = SafetensorsFile::open(file_);
  float out[2];
  const TensorView& view = file->tensors().at("w");
  convert_to_f32(view.dtype, view.data.data(), 2, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -7.0f);
}

// --- WeightStore ---

class WeightStoreTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  fs::path index_ = dir_.path() / "model.safetensors.index.json";

  void write_shard(const std::string& name, const std::vector<std::string>& tensors) {
    std::vector<TensorToWrite> out;
    float v = 0;
    for (const std::string& t : tensors) out.push_back({t, DType::kF32, {2}, {v++, v++}});
    write_safetensors(dir_.path() / name, out);
  }

  void write_index(const Json& weight_map) {
    testing::write_file(
        index_, Json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2));
  }

  std::string store_error(ErrorCode code) {
    return error_of([&] { WeightStore::open(dir_.path()); }, code);
  }
};

TEST_F(WeightStoreTest, SingleFile) {
  write_shard("model.safetensors", {"a", "b"});
  const WeightStore store = WeightStore::open(dir_.path());
  EXPECT_EQ(store.tensors().size(), 2u);
  ASSERT_NE(store.find("a"), nullptr);
  EXPECT_EQ(store.find("a")->file, (dir_.path() / "model.safetensors").string());
  EXPECT_EQ(store.find("nope"), nullptr);
  EXPECT_EQ(store.files().size(), 1u);
}

TEST_F(WeightStoreTest, Sharded) {
  write_shard("model-00001-of-00002.safetensors", {"a", "b"});
  write_shard("model-00002-of-00002.safetensors", {"c", "extra"});
  // A stray single file is ignored when the index exists.
  write_shard("model.safetensors", {"zzz"});
  write_index({{"a", "model-00001-of-00002.safetensors"},
               {"b", "model-00001-of-00002.safetensors"},
               {"c", "./model-00002-of-00002.safetensors"}});
  const WeightStore store = WeightStore::open(dir_.path());
  EXPECT_EQ(store.files().size(), 2u);
  EXPECT_EQ(store.tensors().size(), 4u);  // "extra" is in a shard but not in the index
  ASSERT_NE(store.find("c"), nullptr);
  EXPECT_EQ(store.find("c")->file, (dir_.path() / "model-00002-of-00002.safetensors").string());
  std::vector<float> values(2);
  convert_to_f32(DType::kF32, store.find("c")->data.data(), 2, values.data());
  EXPECT_EQ(values, std::vector<float>({0, 1}));
  EXPECT_NE(store.find("extra"), nullptr);
  EXPECT_EQ(store.find("zzz"), nullptr);
}

TEST_F(WeightStoreTest, MissingDirectoryOrFiles) {
  const fs::path missing = dir_.path() / "nope";
  std::string message = error_of([&] { WeightStore::open(missing); }, ErrorCode::kNotFound);
  EXPECT_THAT(message, HasSubstr(missing.string()));
  message = store_error(ErrorCode::kNotFound);
  EXPECT_THAT(message, HasSubstr("no model.safetensors or model.safetensors.index.json in " +
                                 dir_.path().string()));
}

TEST_F(WeightStoreTest, IndexNotJson) {
  testing::write_file(index_, "{\"weight_map\": ");
  std::string message = store_error(ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(index_.string()));
  EXPECT_THAT(message, HasSubstr("JSON"));
  testing::write_file(index_, "{\"metadata\": {}}");
  message = store_error(ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(index_.string()));
  EXPECT_THAT(message, HasSubstr("weight_map"));
  write_index({{"a", 3}});
  message = store_error(ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(index_.string()));
  EXPECT_THAT(message, HasSubstr("'a'"));
}

TEST_F(WeightStoreTest, MissingShard) {
  write_shard("one.safetensors", {"a"});
  write_index({{"a", "one.safetensors"}, {"b", "two.safetensors"}});
  const std::string message = store_error(ErrorCode::kNotFound);
  EXPECT_THAT(message, HasSubstr(index_.string()));
  EXPECT_THAT(message, HasSubstr("'two.safetensors'"));
  EXPECT_THAT(message, HasSubstr("'b'"));
}

TEST_F(WeightStoreTest, ShardOutsideDirectory) {
  for (const char* shard :
       {"../x.safetensors", "sub/../../x.safetensors", "/etc/passwd", "", "."}) {
    write_index({{"a", shard}});
    const std::string message = store_error(ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr(index_.string()));
    EXPECT_THAT(message, HasSubstr("'a'"));
    EXPECT_THAT(message, HasSubstr(std::string("'") + shard + "'"));
  }
}

TEST_F(WeightStoreTest, TensorNotInItsShard) {
  write_shard("one.safetensors", {"a"});
  write_shard("two.safetensors", {"b"});
  write_index({{"a", "one.safetensors"}, {"b", "one.safetensors"}, {"c", "two.safetensors"}});
  const std::string message = store_error(ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr(index_.string()));
  EXPECT_THAT(message, HasSubstr("'b'"));
  EXPECT_THAT(message, HasSubstr("'one.safetensors'"));
  EXPECT_THAT(message, HasSubstr("two.safetensors"));  // where it actually is
  write_index({{"a", "one.safetensors"}, {"b", "two.safetensors"}, {"c", "two.safetensors"}});
  EXPECT_THAT(store_error(ErrorCode::kInvalidModel), HasSubstr("'c'"));
}

TEST_F(WeightStoreTest, TensorInTwoShards) {
  write_shard("one.safetensors", {"a", "dup"});
  write_shard("two.safetensors", {"b", "dup"});
  write_index({{"a", "one.safetensors"}, {"b", "two.safetensors"}});
  const std::string message = store_error(ErrorCode::kInvalidModel);
  EXPECT_THAT(message, HasSubstr("'dup'"));
  EXPECT_THAT(message, HasSubstr("one.safetensors"));
  EXPECT_THAT(message, HasSubstr("two.safetensors"));
}

TEST_F(WeightStoreTest, BadShardReportsShardFile) {
  write_shard("one.safetensors", {"a"});
  testing::write_file(dir_.path() / "two.safetensors", "garbage!garbage");
  write_index({{"a", "one.safetensors"}, {"b", "two.safetensors"}});
  EXPECT_THAT(store_error(ErrorCode::kInvalidModel),
              HasSubstr((dir_.path() / "two.safetensors").string()));
}

}  // namespace
}  // namespace cachet::model

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "model/dtype.h"

namespace cachet::model {
namespace {

float from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::uint32_t to_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

bool is_f16_nan(std::uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool is_bf16_nan(std::uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

TEST(DType, NamesAndSizes) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    EXPECT_EQ(parse_dtype(dtype_name(d)), d);
  }
  EXPECT_EQ(dtype_name(DType::kBF16), "BF16");
  EXPECT_EQ(dtype_size(DType::kF32), 4u);
  EXPECT_EQ(dtype_size(DType::kF16), 2u);
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(parse_dtype("f32"), std::nullopt);
  EXPECT_EQ(parse_dtype("I64"), std::nullopt);
  EXPECT_EQ(parse_dtype(""), std::nullopt);
}

TEST(DType, F32ToF16HandComputed) {
  struct Case {
    float value;
    std::uint16_t bits;
  };
  const Case cases[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {0.5f, 0x3800},
      {65504.0f, 0x7bff},                                // largest finite half
      {65519.0f, 0x7bff},                                // rounds down
      {65520.0f, 0x7c00},                                // tie, odd mantissa: up to inf
      {1e6f, 0x7c00},                                    // overflow
      {-1e6f, 0xfc00},                                   //
      {std::numeric_limits<float>::infinity(), 0x7c00},  //
      {-std::numeric_limits<float>::infinity(), 0xfc00},
      {1.0f + 0x1p-11f, 0x3c00},             // tie between 0x3c00 and 0x3c01: even
      {1.0f + 3 * 0x1p-11f, 0x3c02},         // tie between 0x3c01 and 0x3c02: even
      {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},  // just above the tie
      {0x1p-14f, 0x0400},                    // smallest normal
      {0x1p-24f, 0x0001},                    // smallest subnormal
      {1023 * 0x1p-24f, 0x03ff},             // largest subnormal
      {0x1p-25f, 0x0000},                    // tie between 0 and 2^-24: even (0)
      {-0x1p-25f, 0x8000},                   //
      {1.5f * 0x1p-25f, 0x0001},             // above the tie
      {3 * 0x1p-25f, 0x0002},                // 1.5 * 2^-24: tie to even 2
      {5 * 0x1p-25f, 0x0002},                // 2.5 * 2^-24: tie to even 2
      {1023.5f * 0x1p-24f, 0x0400},          // tie between largest subnormal and smallest normal
      {0x1p-30f, 0x0000},                    // underflow
      {from_bits(0x00000001), 0x0000},       // fp32 subnormal
      {0.333333343f, 0x3555},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(f32_to_f16(c.value), c.bits)
        << "value " << c.value << " bits 0x" << std::hex << to_bits(c.value);
  }
  EXPECT_TRUE(is_f16_nan(f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
  // A signalling NaN whose payload lives only in the low bits must not become infinity.
  EXPECT_TRUE(is_f16_nan(f32_to_f16(from_bits(0x7f800001))));
  EXPECT_TRUE(is_f16_nan(f32_to_f16(from_bits(0xff800001))));
}

TEST(DType, F16ToF32HandComputed) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0400), 0x1p-14f);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x8001), -0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));
  const float negative_zero = f16_to_f32(0x8000);
  EXPECT_EQ(negative_zero, 0.0f);
  EXPECT_TRUE(std::signbit(negative_zero));
}

TEST(DType, F16RoundTripsEveryBitPattern) {
  for (std::uint32_t b = 0; b <= 0xffff; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float f = f16_to_f32(bits);
    if (is_f16_nan(bits)) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_TRUE(is_f16_nan(f32_to_f16(f)));
    } else {
      ASSERT_EQ(f32_to_f16(f), bits) << std::hex << b;
    }
  }
}

TEST(DType, BF16RoundTripsEveryBitPattern) {
  for (std::uint32_t b = 0; b <= 0xffff; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float f = bf16_to_f32(bits);
    if (is_bf16_nan(bits)) {
      EXPECT_TRUE(is_bf16_nan(f32_to_bf16(f)));
    } else {
      ASSERT_EQ(f32_to_bf16(f), bits) << std::hex << b;
    }
  }
}

TEST(DType, BF16HandComputed) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001)), 0x3f81);  // above the tie
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80);  // max float rounds to inf
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x00000001)), 0x0000);  // tiny subnormal
  EXPECT_EQ(f32_to_bf16(from_bits(0x00018000)), 0x0002);  // subnormal tie, odd rounds up
  EXPECT_TRUE(is_bf16_nan(f32_to_bf16(from_bits(0x7f800001))));
}

// Every finite float in half range rounds to the nearest half, ties to even.
TEST(DType, F32ToF16IsNearestEven) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<std::uint32_t> bits(0, 0x477fefffu);  // below the inf threshold
  for (int i = 0; i < 200000; ++i) {
    const std::uint32_t u = bits(rng) | (i % 2 ? 0x80000000u : 0);
    const float x = from_bits(u);
    const std::uint16_t h = f32_to_f16(x);
    const double exact = x;
    const double got = f16_to_f32(h);
    const double error = std::fabs(exact - got);
    for (int delta : {-1, 1}) {
      const auto neighbor_bits = static_cast<std::uint16_t>((h & 0x7fff) + delta);
      if ((h & 0x7fff) == 0 && delta < 0) continue;
      if (neighbor_bits >= 0x7c00) continue;
      const double neighbor = f16_to_f32(static_cast<std::uint16_t>(neighbor_bits | (h & 0x8000)));
      const double other = std::fabs(exact - neighbor);
      ASSERT_LE(error, other) << std::hex << u;
      if (error == other) {
        ASSERT_EQ(h & 1, 0) << "tie not to even for 0x" << std::hex << u;
      }
    }
  }
}

TEST(DType, ConvertToF32AtAnyAlignment) {
  const std::vector<float> values = {1.0f, -2.5f, 0.333333343f, 65504.0f, 0x1p-24f};
  for (std::size_t offset = 0; offset < 4; ++offset) {
    std::vector<std::byte> buffer(offset + values.size() * 4);
    // F32: plain copy.
    std::memcpy(buffer.data() + offset, values.data(), values.size() * 4);
    std::vector<float> out(values.size());
    convert_to_f32(DType::kF32, buffer.data() + offset, values.size(), out.data());
    EXPECT_EQ(out, values);
    // F16 and BF16: through the bit conversions.
    for (DType dtype : {DType::kF16, DType::kBF16}) {
      for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint16_t h =
            dtype == DType::kF16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
        std::memcpy(buffer.data() + offset + 2 * i, &h, 2);
      }
      convert_to_f32(dtype, buffer.data() + offset, values.size(), out.data());
      for (std::size_t i = 0; i < values.size(); ++i) {
        const float expected = dtype == DType::kF16 ? f16_to_f32(f32_to_f16(values[i]))
                                                    : bf16_to_f32(f32_to_bf16(values[i]));
        EXPECT_EQ(out[i], expected) << dtype_name(dtype) << " offset " << offset << " i " << i;
      }
    }
  }
  convert_to_f32(DType::kF32, nullptr, 0, nullptr);  // nothing to do, nothing touched
}

}  // namespace
}  // namespace cachet::model

// Element types of safetensors tensors and conversions to fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace cachet::model {

enum class DType { kF32, kF16, kBF16 };

// "F32", "F16", "BF16" (the safetensors spellings).
std::string_view dtype_name(DType dtype);
std::optional<DType> parse_dtype(std::string_view safetensors_name);
std::size_t dtype_size(DType dtype);

inline float bf16_to_f32(std::uint16_t bits) {
  std::uint32_t u = std::uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

float f16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_f16(float f);

// Converts `count` elements of `dtype` at `src` (any alignment) to fp32.
void convert_to_f32(DType dtype, const std::byte* src, std::size_t count, float* dst);

}  // namespace cachet::model

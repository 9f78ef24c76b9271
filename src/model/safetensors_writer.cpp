// write_safetensors: fp32 values to a .safetensors file in F32, F16 or BF16.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cachet/errors.h"
#include "model/safetensors.h"

namespace cachet::model {
namespace {

using Json = nlohmann::json;

[[noreturn]] void invalid(const std::filesystem::path& path, const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("write_safetensors {}: {}", path.string(), what));
}

// Checked numel; negative dimensions and overflow are errors.
std::uint64_t checked_numel(const std::filesystem::path& path, const TensorToWrite& t) {
  std::uint64_t numel = 1;
  for (std::int64_t dim : t.shape) {
    if (dim < 0 || __builtin_mul_overflow(numel, static_cast<std::uint64_t>(dim), &numel)) {
      invalid(path,
              fmt::format("tensor '{}' has invalid shape [{}]", t.name, fmt::join(t.shape, ", ")));
    }
  }
  return numel;
}

void append_converted(DType dtype, const float* values, std::size_t count, std::vector<char>& out) {
  const std::size_t start = out.size();
  out.resize(start + count * dtype_size(dtype));
  char* dst = out.data() + start;
  for (std::size_t i = 0; i < count; ++i) {
    switch (dtype) {
      case DType::kF32:
        std::memcpy(dst + 4 * i, &values[i], 4);
        break;
      case DType::kF16: {
        const std::uint16_t bits = f32_to_f16(values[i]);
        std::memcpy(dst + 2 * i, &bits, 2);
        break;
      }
      case DType::kBF16: {
        const std::uint16_t bits = f32_to_bf16(values[i]);
        std::memcpy(dst + 2 * i, &bits, 2);
        break;
      }
    }
  }
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> sorted;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      invalid(path, fmt::format("'{}' is not a valid tensor name", t.name));
    }
    const std::uint64_t numel = checked_numel(path, t);
    if (t.values.size() != numel) {
      invalid(path, fmt::format("tensor '{}' has {} values, but shape [{}] needs {}", t.name,
                                t.values.size(), fmt::join(t.shape, ", "), numel));
    }
    sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i]->name == sorted[i - 1]->name) {
      invalid(path, fmt::format("tensor '{}' is given twice", sorted[i]->name));
    }
  }

  Json header = Json::object();
  Json meta = {{"format", "pt"}};
  for (const auto& [key, value] : metadata) meta[key] = value;
  header["__metadata__"] = meta;
  // Tensors are packed back to back: safetensors readers reject holes between them.
  std::uint64_t offset = 0;
  for (const TensorToWrite* t : sorted) {
    const std::uint64_t bytes = t->values.size() * dtype_size(t->dtype);
    header[t->name] = {{"dtype", std::string(dtype_name(t->dtype))},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const Json::type_error& e) {
    invalid(path, fmt::format("tensor names and metadata must be valid UTF-8 ({})", e.what()));
  }
  // Pad with spaces so the data starts 8-byte aligned, which lets readers cast in place.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out.is_open())
    invalid(path, fmt::format("cannot create the file: {}", std::strerror(errno)));
  const std::uint64_t header_size = header_text.size();
  char size_bytes[8];
  for (int i = 0; i < 8; ++i) size_bytes[i] = static_cast<char>((header_size >> (8 * i)) & 0xff);
  out.write(size_bytes, sizeof size_bytes);
  out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));

  // Convert in chunks so writing a large model does not need a second full copy in memory.
  constexpr std::size_t kChunk = 1 << 16;
  std::vector<char> buffer;
  for (const TensorToWrite* t : sorted) {
    for (std::size_t i = 0; i < t->values.size(); i += kChunk) {
      buffer.clear();
      append_converted(t->dtype, t->values.data() + i, std::min(kChunk, t->values.size() - i),
                       buffer);
      out.write(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    }
  }
  out.flush();
  if (!out) invalid(path, "writing the file failed");
}

}  // namespace cachet::model

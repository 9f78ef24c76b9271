#include "model/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "cachet/errors.h"
#include "util/json_depth.h"

namespace cachet::model {
namespace {

using Json = nlohmann::json;

// Real headers are a few MiB at most; a larger size means a corrupt or foreign file.
constexpr std::uint64_t kMaxHeaderSize = 100ull * 1024 * 1024;

// Valid safetensors dtypes that cachet does not load (reported as unsupported, not invalid).
constexpr std::array<std::string_view, 17> kOtherSafetensorsDtypes = {
    "BOOL", "U8",      "I8",      "I16",     "U16", "I32",     "U32",     "I64", "U64",
    "F64",  "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};

[[noreturn]] void fail(ErrorCode code, const std::string& file, const std::string& what) {
  throw Error(code, fmt::format("{}: {}", file, what));
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// A JSON integer in [0, INT64_MAX], or nullopt.
std::optional<std::int64_t> non_negative_int(const Json& value) {
  if (value.is_number_unsigned()) {
    auto u = value.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (value.is_number_integer()) {
    auto i = value.get<std::int64_t>();
    if (i >= 0) return i;
  }
  return std::nullopt;
}

// numel * element_size, or nullopt when it does not fit in 64 bits.
std::optional<std::uint64_t> byte_size(const std::vector<std::int64_t>& shape,
                                       std::size_t element_size) {
  std::uint64_t total = element_size;
  for (std::int64_t dim : shape) {
    if (__builtin_mul_overflow(total, static_cast<std::uint64_t>(dim), &total)) return std::nullopt;
  }
  return total;
}

struct ByteRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  const std::string* name = nullptr;
};

// Parses one header entry into a TensorView over `data` (the bytes after the header).
TensorView parse_entry(const std::string& file, const std::string& name, const Json& entry,
                       std::span<const std::byte> data, ByteRange& range) {
  const std::string where = fmt::format("tensor '{}'", name);
  if (!entry.is_object()) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("{}: header entry must be an object with dtype, shape and data_offsets",
                     where));
  }
  TensorView view;
  view.name = name;
  view.file = file;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("{}: 'dtype' is missing or not a string", where));
  }
  const auto& dtype_name_str = dtype_it->get_ref<const std::string&>();
  std::optional<DType> dtype = parse_dtype(dtype_name_str);
  if (!dtype) {
    const bool known = std::find(kOtherSafetensorsDtypes.begin(), kOtherSafetensorsDtypes.end(),
                                 dtype_name_str) != kOtherSafetensorsDtypes.end();
    fail(known ? ErrorCode::kUnsupported : ErrorCode::kInvalidModel, file,
         fmt::format("{} has {} dtype '{}' (cachet loads F32, F16 and BF16)", where,
                     known ? "unsupported" : "unknown", dtype_name_str));
  }
  view.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("{}: 'shape' is missing or not an array of non-negative integers", where));
  }
  for (const Json& dim : *shape_it) {
    std::optional<std::int64_t> value = non_negative_int(dim);
    if (!value) {
      fail(ErrorCode::kInvalidModel, file,
           fmt::format("{}: 'shape' {} must hold non-negative integers", where, shape_it->dump()));
    }
    view.shape.push_back(*value);
  }
  std::optional<std::uint64_t> expected_bytes = byte_size(view.shape, dtype_size(view.dtype));
  if (!expected_bytes) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("{}: shape {} is too large (its byte size overflows 64 bits)", where,
                     shape_string(view.shape)));
  }

  auto offsets_it = entry.find("data_offsets");
  std::optional<std::int64_t> begin, end;
  if (offsets_it != entry.end() && offsets_it->is_array() && offsets_it->size() == 2) {
    begin = non_negative_int((*offsets_it)[0]);
    end = non_negative_int((*offsets_it)[1]);
  }
  if (!begin || !end || *begin > *end) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("{}: 'data_offsets' must be [begin, end] with 0 <= begin <= end (got {})",
                     where, offsets_it == entry.end() ? "nothing" : offsets_it->dump()));
  }
  range = {static_cast<std::uint64_t>(*begin), static_cast<std::uint64_t>(*end), nullptr};
  if (range.end > data.size()) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("{}: data_offsets [{}, {}] end past the {} data bytes of the file", where,
                     range.begin, range.end, data.size()));
  }
  if (range.end - range.begin != *expected_bytes) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("{}: data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {}", where,
                     range.begin, range.end, range.end - range.begin, shape_string(view.shape),
                     dtype_name(view.dtype), *expected_bytes));
  }
  view.data = data.subspan(range.begin, range.end - range.begin);
  return view;
}

void check_metadata(const std::string& file, const Json& metadata) {
  if (!metadata.is_object()) {
    fail(ErrorCode::kInvalidModel, file, "'__metadata__' must be an object of strings");
  }
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string()) {
      fail(ErrorCode::kInvalidModel, file,
           fmt::format("'__metadata__' entry '{}' must be a string (got {})", key, value.dump()));
    }
  }
}

// Empty tensors occupy no bytes and overlap nothing.
void check_no_overlap(const std::string& file, std::vector<ByteRange> ranges) {
  std::erase_if(ranges, [](const ByteRange& r) { return r.begin == r.end; });
  std::sort(ranges.begin(), ranges.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  const ByteRange* furthest = nullptr;
  for (const ByteRange& r : ranges) {
    if (furthest != nullptr && r.begin < furthest->end) {
      fail(ErrorCode::kInvalidModel, file,
           fmt::format("tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) overlap",
                       *furthest->name, furthest->begin, furthest->end, *r.name, r.begin, r.end));
    }
    if (furthest == nullptr || r.end > furthest->end) furthest = &r;
  }
}

// The file's bytes: its read-only mapping, or (kRead) an anonymous mapping the file is read
// into, which no later change to the file can affect.
void* map_bytes(int fd, std::uint64_t size, WeightLoading mode, const std::string& file) {
  if (mode == WeightLoading::kMap) {
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      fail(ErrorCode::kInvalidModel, file, fmt::format("mmap failed: {}", std::strerror(errno)));
    }
    return m;
  }
  void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    throw Error(ErrorCode::kOutOfMemory,
                fmt::format("{}: cannot allocate {} bytes to read the file into: {}", file, size,
                            std::strerror(errno)));
  }
  for (std::uint64_t done = 0; done < size;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(size - done, 1u << 30));
    const ssize_t n = ::pread(fd, static_cast<char*>(m) + done, want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n == 0 ? "the file shrank while it was read"
                                     : fmt::format("read failed: {}", std::strerror(errno));
      ::munmap(m, size);
      fail(ErrorCode::kInvalidModel, file, why);
    }
    done += static_cast<std::uint64_t>(n);
  }
  ::mprotect(m, size, PROT_READ);
  return m;
}

}  // namespace

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (std::int64_t dim : shape) n *= dim;
  return n;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path,
                                                       WeightLoading mode) {
  const std::string file = path.string();
  std::unique_ptr<SafetensorsFile> result(new SafetensorsFile());
  result->path_ = path;

  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; the file type is
  // checked right after (O_NONBLOCK does not change reads of a regular file).
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    fail(err == ENOENT || err == ENOTDIR ? ErrorCode::kNotFound : ErrorCode::kInvalidModel, file,
         fmt::format("cannot open: {}", std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::kInvalidModel, file, "not a regular file");
  }
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("file is {} bytes, too short for the 8-byte header size", file_size));
  }
  void* mapping = nullptr;
  try {
    mapping = map_bytes(fd, file_size, mode, file);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);  // a mapping keeps the file alive
  result->mapping_ = mapping;
  result->mapping_size_ = file_size;
  const auto* bytes = static_cast<const std::byte*>(mapping);

  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i)
    header_size = (header_size << 8) | std::to_integer<std::uint64_t>(bytes[i]);
  if (header_size > kMaxHeaderSize || header_size > file_size - 8) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("header size {} exceeds the file ({} bytes) or the {} byte limit", header_size,
                     file_size, kMaxHeaderSize));
  }
  const auto* header_begin = reinterpret_cast<const char*>(bytes + 8);
  Json header;
  // nlohmann keeps the last of duplicate keys silently; a repeated tensor name would hide one.
  std::set<std::string> top_level_keys;
  std::optional<std::string> duplicate;
  auto find_duplicates = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth == 1 && event == Json::parse_event_t::key && !duplicate &&
        !top_level_keys.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  if (util::json_nests_too_deep(std::string_view(header_begin, header_size))) {
    fail(ErrorCode::kInvalidModel, file,
         fmt::format("header nests JSON deeper than {} levels", util::kMaxJsonDepth));
  }
  try {
    header = Json::parse(header_begin, header_begin + header_size, find_duplicates);
  } catch (const Json::exception& e) {
    fail(ErrorCode::kInvalidModel, file, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (duplicate) {
    fail(ErrorCode::kInvalidModel, file, fmt::format("header lists tensor '{}' twice", *duplicate));
  }
  if (!header.is_object()) fail(ErrorCode::kInvalidModel, file, "header is not a JSON object");

  const std::span<const std::byte> data(bytes + 8 + header_size, file_size - 8 - header_size);
  std::vector<ByteRange> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      check_metadata(file, entry);
      continue;
    }
    ByteRange range;
    TensorView view = parse_entry(file, name, entry, data, range);
    auto [it, inserted] = result->tensors_.emplace(name, std::move(view));
    range.name = &it->first;
    ranges.push_back(range);
  }
  check_no_overlap(file, std::move(ranges));
  return result;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

}  // namespace cachet::model

#include "engine/kv_fingerprint.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "cachet/errors.h"
#include "cachet/version.h"
#include "kv/disk_record.h"
#include "kv/disk_tier.h"

namespace cachet::engine {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

[[noreturn]] void unreadable(const fs::path& file, const char* what) {
  throw Error(ErrorCode::kInvalidModel,
              fmt::format("{}: cannot read it for the KV disk tier's fingerprint ({})",
                          file.string(), what));
}

std::string digest_hex(const void* data, std::size_t n) {
  const XXH128_hash_t h = XXH3_128bits(data, n);
  return kv::hash_hex({h.low64, h.high64});
}

// The first `limit` bytes of a file (all of it by default).
std::string read_bytes(const fs::path& file, std::uint64_t limit = UINT64_MAX) {
  std::ifstream in(file, std::ios::binary);
  if (!in) unreadable(file, "cannot open");
  std::string bytes;
  char buf[65536];
  while (bytes.size() < limit && in.read(buf, sizeof buf).gcount() > 0)
    bytes.append(buf, static_cast<std::size_t>(in.gcount()));
  if (bytes.size() > limit) bytes.resize(limit);
  return bytes;
}

// A safetensors file by its name, size, mtime and header (8-byte length, then the JSON).
Json describe_weights(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) unreadable(file, std::strerror(errno));
  const std::string prefix = read_bytes(file, 8);
  if (prefix.size() != 8) unreadable(file, "shorter than a safetensors header");
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, prefix.data(), 8);
  const std::string header = read_bytes(file, 8 + std::min<std::uint64_t>(header_len, 1u << 30));
  return {{"name", file.filename().string()},
          {"bytes", static_cast<std::int64_t>(st.st_size)},
          {"mtime_ns",
           static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec},
          {"header_xxh3_128", digest_hex(header.data(), header.size())}};
}

}  // namespace

KvFingerprint kv_fingerprint(const fs::path& model_dir, std::int32_t block_size,
                             std::string_view kv_format) {
  Json j;
  j["record_format"] = kv::kDiskRecordVersion;
  j["cachet"] = CACHET_VERSION_STRING;
  j["block_size"] = block_size;
  j["kv_format"] = kv_format;
  j["byte_order"] = std::endian::native == std::endian::little ? "little" : "big";
  std::error_code ec;
  for (const char* name : {"config.json", "tokenizer.json", "model.safetensors.index.json"}) {
    if (!fs::exists(model_dir / name, ec)) continue;
    const std::string bytes = read_bytes(model_dir / name);
    j["files"][name] = digest_hex(bytes.data(), bytes.size());
  }
  std::vector<fs::path> weights;
  for (fs::directory_iterator it(model_dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".safetensors") weights.push_back(it->path());
  std::sort(weights.begin(), weights.end());
  j["weights"] = Json::array();
  for (const fs::path& file : weights) j["weights"].push_back(describe_weights(file));
  KvFingerprint f;
  f.json = j.dump(2);
  const XXH128_hash_t h = XXH3_128bits(f.json.data(), f.json.size());
  f.hash = {h.low64, h.high64};
  return f;
}

}  // namespace cachet::engine

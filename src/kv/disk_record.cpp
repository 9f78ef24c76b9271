#include "kv/disk_record.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace cachet::kv {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'C', 'A', 'C', 'H', 'E', 'T', 'K', 'V'};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct HashState {
  XXH3_state_t* state = XXH3_createState();
  HashState() { XXH3_64bits_reset(state); }
  ~HashState() { XXH3_freeState(state); }
  void update(const void* data, std::size_t n) { XXH3_64bits_update(state, data, n); }
  std::uint64_t digest() const { return XXH3_64bits_digest(state); }
};

std::string errno_text(const char* what, const fs::path& path) {
  return fmt::format("{} {}: {}", what, path.string(), std::strerror(errno));
}

template <class T>
void put(std::vector<std::byte>& buf, std::size_t at, T value) {
  std::memcpy(buf.data() + at, &value, sizeof value);
}

template <class T>
T get(const std::byte* buf, std::size_t at) {
  T value;
  std::memcpy(&value, buf + at, sizeof value);
  return value;
}

// Header, salt and prefix tokens: everything before the payload.
std::vector<std::byte> encode_head(const RecordFormat& format, const RecordKey& key) {
  std::vector<std::byte> buf(kDiskRecordHeaderBytes + key.salt.size() + key.prefix.size_bytes());
  std::memcpy(buf.data(), kMagic, sizeof kMagic);
  put(buf, 8, kDiskRecordVersion);
  put(buf, 12, static_cast<std::uint32_t>(format.block_size));
  put(buf, 16, format.fingerprint.low);
  put(buf, 24, format.fingerprint.high);
  put(buf, 32, key.hash.low);
  put(buf, 40, key.hash.high);
  put(buf, 48, static_cast<std::uint32_t>(key.prefix.size()));
  put(buf, 52, static_cast<std::uint32_t>(key.salt.size()));
  put(buf, 56, format.payload_bytes);
  std::memcpy(buf.data() + kDiskRecordHeaderBytes, key.salt.data(), key.salt.size());
  std::memcpy(buf.data() + kDiskRecordHeaderBytes + key.salt.size(), key.prefix.data(),
              key.prefix.size_bytes());
  return buf;
}

bool write_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const std::byte*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// false with errno set, or with errno 0 when the file ends early.
bool read_all(int fd, void* data, std::size_t n, std::uint64_t offset) {
  auto* p = static_cast<std::byte*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = 0;
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
  return true;
}

RecordRead fail(RecordStatus status, std::string why, const struct stat& st) {
  return {status, std::move(why), st.st_dev, st.st_ino};
}

// What the header must say for `expected`, or "" when it does.
std::string check_header(const std::byte* h, const RecordFormat& format, const RecordKey& expected,
                         std::uint64_t file_bytes) {
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) return "not a cachet KV record (bad magic)";
  if (get<std::uint32_t>(h, 8) != kDiskRecordVersion)
    return fmt::format("record format version {}, expected {}", get<std::uint32_t>(h, 8),
                       kDiskRecordVersion);
  if (get<std::uint32_t>(h, 12) != static_cast<std::uint32_t>(format.block_size) ||
      get<std::uint64_t>(h, 16) != format.fingerprint.low ||
      get<std::uint64_t>(h, 24) != format.fingerprint.high ||
      get<std::uint64_t>(h, 56) != format.payload_bytes)
    return "written for another model fingerprint, block size or K/V layout";
  if (get<std::uint64_t>(h, 32) != expected.hash.low ||
      get<std::uint64_t>(h, 40) != expected.hash.high)
    return "the record's block hash differs from its file name";
  const std::uint64_t want = kDiskRecordHeaderBytes + get<std::uint32_t>(h, 52) +
                             std::uint64_t{4} * get<std::uint32_t>(h, 48) + format.payload_bytes +
                             sizeof(std::uint64_t);
  if (file_bytes != want)
    return fmt::format("{} bytes, the header says {} (truncated or written partly)", file_bytes,
                       want);
  return {};
}

}  // namespace

std::uint64_t record_file_bytes(const RecordFormat& format, const RecordKey& key) {
  return kDiskRecordHeaderBytes + key.salt.size() + key.prefix.size_bytes() + format.payload_bytes +
         sizeof(std::uint64_t);
}

std::string write_record(const fs::path& path, const fs::path& tmp, const RecordFormat& format,
                         const RecordKey& key, std::span<const std::byte> payload) {
  if (payload.size() != format.payload_bytes)
    return fmt::format("{}: payload of {} bytes, the format says {}", path.string(), payload.size(),
                       format.payload_bytes);
  const std::vector<std::byte> head = encode_head(format, key);
  HashState sum;
  sum.update(head.data(), head.size());
  sum.update(payload.data(), payload.size());
  const std::uint64_t checksum = sum.digest();
  std::string error;
  {
    Fd out{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (out.fd < 0) return errno_text("cannot create", tmp);
    if (!write_all(out.fd, head.data(), head.size()) ||
        !write_all(out.fd, payload.data(), payload.size()) ||
        !write_all(out.fd, &checksum, sizeof checksum))
      error = errno_text("cannot write", tmp);
    else if (::fsync(out.fd) != 0)
      error = errno_text("cannot flush", tmp);
  }
  if (error.empty() && ::rename(tmp.c_str(), path.c_str()) != 0)
    error = errno_text("cannot rename into place", path);
  if (!error.empty()) ::unlink(tmp.c_str());
  return error;
}

RecordRead read_record(const fs::path& path, const RecordFormat& format, const RecordKey& expected,
                       std::span<std::byte> payload) {
  Fd in{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (in.fd < 0) {
    if (errno == ENOENT) return {RecordStatus::kMissing, {}};
    return {RecordStatus::kIoError, errno_text("cannot open", path)};
  }
  struct stat st {};
  if (::fstat(in.fd, &st) != 0) return {RecordStatus::kIoError, errno_text("cannot stat", path)};
  const auto file_bytes = static_cast<std::uint64_t>(st.st_size);
  if (!S_ISREG(st.st_mode) || payload.size() != format.payload_bytes)
    return fail(RecordStatus::kCorrupt, "not a regular file of the right size", st);
  std::byte header[kDiskRecordHeaderBytes];
  if (file_bytes < sizeof header || !read_all(in.fd, header, sizeof header, 0))
    return fail(RecordStatus::kCorrupt, fmt::format("{}: shorter than a header", path.string()),
                st);
  if (std::string why = check_header(header, format, expected, file_bytes); !why.empty())
    return fail(RecordStatus::kCorrupt, fmt::format("{}: {}", path.string(), why), st);

  const std::size_t salt_bytes = get<std::uint32_t>(header, 52);
  const std::size_t prefix_tokens = get<std::uint32_t>(header, 48);
  std::vector<std::byte> keys(salt_bytes + 4 * prefix_tokens);
  std::uint64_t checksum = 0;
  const std::uint64_t payload_at = sizeof header + keys.size();
  if (!read_all(in.fd, keys.data(), keys.size(), sizeof header) ||
      !read_all(in.fd, payload.data(), payload.size(), payload_at) ||
      !read_all(in.fd, &checksum, sizeof checksum, payload_at + payload.size())) {
    if (errno != 0) return fail(RecordStatus::kIoError, errno_text("cannot read", path), st);
    return fail(RecordStatus::kCorrupt, fmt::format("{}: ends early", path.string()), st);
  }
  HashState sum;
  sum.update(header, sizeof header);
  sum.update(keys.data(), keys.size());
  sum.update(payload.data(), payload.size());
  if (sum.digest() != checksum)
    return fail(RecordStatus::kCorrupt, fmt::format("{}: checksum mismatch", path.string()), st);
  const bool same_salt = salt_bytes == expected.salt.size() &&
                         std::memcmp(keys.data(), expected.salt.data(), salt_bytes) == 0;
  const bool same_prefix = prefix_tokens == expected.prefix.size() &&
                           std::memcmp(keys.data() + salt_bytes, expected.prefix.data(),
                                       expected.prefix.size_bytes()) == 0;
  if (!same_salt || !same_prefix)
    return fail(RecordStatus::kOtherContent,
                fmt::format("{}: another prefix or salt under the same hash", path.string()), st);
  return {RecordStatus::kOk, {}, st.st_dev, st.st_ino};
}

void remove_if_same_file(const fs::path& path, dev_t dev, ino_t ino) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino)
    ::unlink(path.c_str());
}

}  // namespace cachet::kv

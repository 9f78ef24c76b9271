// One block of the prefix cache's disk tier as a file: the block's K/V bytes (opaque: what
// the backend keeps in a host-tier slot) behind a header that says exactly which prefix
// they were computed for, and a checksum over everything. Free of tensors and threads.
//
// A record is self-verifying: it stores its chain's cache salt and every token of the prefix
// it ends, so a record read back is used only for a request with the same salt and the same
// tokens at every position up to the end of the block, whatever the hash. A record written
// partly, truncated or corrupted fails its size or checksum check; one written for another
// model, block size or K/V layout fails its header check.
//
// Layout (integers little-endian, as the host; the fingerprint directory pins the host):
//   offset  size  field
//   0       8     magic "CACHETKV"
//   8       4     format version (kDiskRecordVersion)
//   12      4     block_size
//   16      16    model fingerprint (RecordFormat::fingerprint: low, high)
//   32      16    block hash (low, high)
//   48      4     prefix tokens n = (block index + 1) * block_size
//   52      4     salt bytes s
//   56      8     payload bytes p
//   64      s     the cache salt
//   64+s    4n    the prefix's token ids
//   ...     p     payload: the block's K/V as its host-tier slot holds it
//   end-8   8     XXH3-64 of every byte before it
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "cachet/types.h"
#include "kv/block_hash.h"

namespace cachet::kv {

inline constexpr std::uint32_t kDiskRecordVersion = 1;
inline constexpr std::size_t kDiskRecordHeaderBytes = 64;

// What every record of one directory agrees on.
struct RecordFormat {
  BlockHash fingerprint;  // of the model, its tokenizer, block size and K/V numeric format
  std::int32_t block_size = 16;
  std::uint64_t payload_bytes = 0;  // one host-tier slot
};

// What a record holds the K/V of: the last block of `prefix`, computed under `salt`.
struct RecordKey {
  BlockHash hash;
  std::string_view salt;
  std::span<const TokenId> prefix;  // (block index + 1) * block_size tokens
};

// The file size of a record of `key` in `format`.
std::uint64_t record_file_bytes(const RecordFormat& format, const RecordKey& key);

// Writes the record to `tmp` (created, must not exist), flushes it to the device (fsync) and
// renames it to `path`, so `path` either does not exist or holds a whole record, whatever
// happens to the process meanwhile. Returns "" on success or why not (naming the file); the
// temporary file is removed on failure.
std::string write_record(const std::filesystem::path& path, const std::filesystem::path& tmp,
                         const RecordFormat& format, const RecordKey& key,
                         std::span<const std::byte> payload);

enum class RecordStatus {
  kOk,            // verified; the payload is in `payload`
  kMissing,       // no file at the path
  kCorrupt,       // not a whole, intact record of this format and hash: to be removed
  kOtherContent,  // an intact record of another prefix or salt under the same hash: kept
  kIoError,       // the file could not be read (permissions, an I/O error): kept
};

struct RecordRead {
  RecordStatus status = RecordStatus::kMissing;
  std::string why;  // for every status but kOk and kMissing
  // The file that was opened, so that a corrupt one is removed only if still the same file.
  dev_t dev = 0;
  ino_t ino = 0;
};

// Reads and verifies the record at `path` against `expected`; its payload goes to `payload`
// (exactly format.payload_bytes; overwritten whatever the outcome).
RecordRead read_record(const std::filesystem::path& path, const RecordFormat& format,
                       const RecordKey& expected, std::span<std::byte> payload);

// Removes `path` if it is still the file (dev, ino) names: a record found corrupt is not
// removed after another process has replaced it with a good one.
void remove_if_same_file(const std::filesystem::path& path, dev_t dev, ino_t ino);

}  // namespace cachet::kv

// The prefix cache's disk tier: block records (kv/disk_record.h) in a directory of their own
// per model fingerprint, <kv_cache_dir>/cachet-kv-<fingerprint>/, written and read by an I/O
// thread of the tier's own, so that no engine step waits for the disk.
//
// Records are named by their block hash (<first two hex digits>/<hash>.kvb), so any process
// on the same model finds what any other wrote: a lookup is one stat() of the file. Writes go
// to a temporary file first and are renamed into place once flushed, so a name never holds a
// partial record; a reader verifies every record (size, checksum, fingerprint, hash, salt and
// the whole token prefix) and removes what fails. Nothing here is fatal: a directory that
// cannot be created or written logs a warning and the tier goes on reading (or does nothing);
// a failed write or read is counted, and the blocks are computed instead.
//
// The tier keeps the directory under a size cap: it knows each record's size and last use (a
// scan at start, its own writes and reads) and removes the least recently used when over the
// cap. Several processes sharing a directory each enforce the cap on what they know, rescanning
// before they remove anything (at most every 30 s). A hit refreshes the file's mtime, which
// is what the scan orders by.
//
// The payloads are host-tier slots (kv/host_tier.h): the caller keeps a slot reserved or held
// until the job that reads or writes its bytes is reported done by take_done().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cachet/types.h"
#include "kv/block_hash.h"
#include "kv/disk_record.h"
#include "util/log.h"

namespace cachet::kv {

struct DiskTierOptions {
  std::filesystem::path root;    // EngineConfig::kv_cache_dir
  BlockHash fingerprint;         // of the model and the backend's K/V format
  std::string fingerprint_json;  // what the fingerprint covers, written beside the records
  std::int32_t block_size = 16;
  std::uint64_t payload_bytes = 0;  // one block's K/V: a host-tier slot
  std::int64_t capacity_bytes = 0;  // the most record bytes kept in the directory
  std::size_t max_queued_writes = 64;
  // Run each job within the call that queues it, on the caller's thread (deterministic tests).
  bool inline_io = false;
};

// One block to write: the last block of `prefix` under `salt`, whose K/V is in `payload`
// (host-tier slot `slot`).
struct DiskWrite {
  BlockHash hash;
  std::string salt;
  std::vector<TokenId> prefix;
  std::int64_t slot = 0;
  std::span<const std::byte> payload;
};

// Consecutive blocks of one chain to read, from block `first_block` on, into host-tier slots.
// Reading stops at the first block that is missing or fails verification.
struct DiskRead {
  std::uint64_t ticket = 0;
  std::string salt;
  std::vector<TokenId> tokens;    // the chain's tokens, through the last block to read
  std::size_t first_block = 0;    // index in the chain of hashes[0]
  std::vector<BlockHash> hashes;  // one per block to read
  std::vector<std::span<std::byte>> payloads;
};

struct DiskReadDone {
  std::uint64_t ticket = 0;
  std::size_t num_ok = 0;  // blocks [0, num_ok) of the job were read and verified
};

// Jobs finished since the last take_done().
struct DiskDone {
  std::vector<std::int64_t> written_slots;  // writes done, successful or not: slots to release
  std::vector<DiskReadDone> reads;
};

// What the tier did since it opened (the record counts: now).
struct DiskTierCounters {
  std::int64_t blocks_written = 0;
  std::int64_t write_failures = 0;  // I/O errors (a full disk, a read-only directory)
  std::int64_t writes_dropped = 0;  // not queued: the queue was full or the tier is read-only
  std::int64_t blocks_read = 0;     // read and verified
  std::int64_t read_failures = 0;   // found but unusable: corrupt (then removed) or unreadable
  std::int64_t evictions = 0;       // records removed for the size cap
  std::int64_t records = 0;         // records this engine knows in the directory
  std::int64_t bytes = 0;           // and their bytes
};

class DiskTier {
 public:
  DiskTier(DiskTierOptions options, const util::Logger& log);
  // Finishes the queued writes (so a process that exits after its engine leaves them on disk)
  // and drops the queued reads.
  ~DiskTier();
  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  // <root>/cachet-kv-<fingerprint hex>
  const std::filesystem::path& dir() const { return dir_; }
  const RecordFormat& format() const { return format_; }
  bool writable() const { return writable_; }
  // Whether a record of this hash is in the directory (written by any process; verified only
  // when read).
  bool contains(const BlockHash& hash) const;
  // Queues a write; false when it is not queued (the tier is read-only, or the queue is full).
  bool write(DiskWrite job);
  void read(DiskRead job);
  DiskDone take_done();
  // Waits until a job is done (take_done() has something) or `timeout` has passed.
  void wait_done(std::chrono::milliseconds timeout);
  DiskTierCounters counters() const;

  std::filesystem::path record_path(const BlockHash& hash) const;

 private:
  struct Known {
    std::int64_t bytes = 0;
    std::int64_t last_use_ns = 0;
  };
  struct Key {
    std::uint64_t low, high;
    friend auto operator<=>(const Key&, const Key&) = default;
  };

  void open_directory();
  void run();
  void do_write(const DiskWrite& job);
  void do_read(const DiskRead& job);
  void scan();
  void remember(const BlockHash& hash, std::int64_t bytes, std::int64_t last_use_ns);
  void forget(const BlockHash& hash);
  void enforce_capacity();
  template <class... Args>
  void warn_once_per_minute(fmt::format_string<Args...> format, Args&&... args);

  DiskTierOptions options_;
  const util::Logger& log_;
  RecordFormat format_;
  std::filesystem::path dir_;
  bool writable_ = false;

  // Shared with the I/O thread, under mutex_.
  std::mutex mutex_;
  std::condition_variable wake_;       // the I/O thread: a job or stop
  std::condition_variable done_wake_;  // wait_done(): a job is done
  std::deque<DiskRead> reads_;
  std::deque<DiskWrite> writes_;
  DiskDone done_;
  bool stop_ = false;

  // The I/O thread's own (or the caller's, with inline_io).
  std::unordered_map<BlockHash, Known, BlockHashHasher> known_;
  std::map<std::pair<std::int64_t, Key>, BlockHash> by_use_;  // (last use, hash) -> hash
  std::int64_t known_bytes_ = 0;
  std::int64_t last_scan_ns_ = 0;
  std::int64_t last_warning_ns_ = 0;
  std::uint64_t tmp_counter_ = 0;

  std::atomic<std::int64_t> blocks_written_{0}, write_failures_{0}, writes_dropped_{0},
      blocks_read_{0}, read_failures_{0}, evictions_{0}, records_{0}, bytes_{0};
  std::thread thread_;  // last: starts after everything above is built
};

// "<high><low>" as 32 lowercase hex digits.
std::string hash_hex(const BlockHash& hash);

}  // namespace cachet::kv

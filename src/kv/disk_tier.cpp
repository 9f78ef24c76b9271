#include "kv/disk_tier.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <utility>

namespace cachet::kv {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kRescanIntervalNs = 30'000'000'000;
constexpr std::int64_t kStaleTmpNs = 3'600'000'000'000;  // an hour: no write takes that long
constexpr std::int64_t kWarningIntervalNs = 60'000'000'000;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// The hash a record's file name spells, or nullopt for any other name.
std::optional<BlockHash> parse_record_name(const std::string& name) {
  if (name.size() != 36 || name.substr(32) != ".kvb") return std::nullopt;
  std::uint64_t high = 0, low = 0;
  const char* p = name.data();
  if (std::from_chars(p, p + 16, high, 16).ptr != p + 16) return std::nullopt;
  if (std::from_chars(p + 16, p + 32, low, 16).ptr != p + 32) return std::nullopt;
  return BlockHash{low, high};
}

bool make_dir(const fs::path& dir) { return ::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST; }

}  // namespace

std::string hash_hex(const BlockHash& hash) {
  return fmt::format("{:016x}{:016x}", hash.high, hash.low);
}

DiskTier::DiskTier(DiskTierOptions options, const util::Logger& log)
    : options_(std::move(options)),
      log_(log),
      format_{options_.fingerprint, options_.block_size, options_.payload_bytes},
      dir_(options_.root / ("cachet-kv-" + hash_hex(options_.fingerprint))) {
  open_directory();
  if (options_.inline_io) {
    scan();
  } else {
    thread_ = std::thread([this] { run(); });
  }
}

DiskTier::~DiskTier() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    reads_.clear();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DiskTier::open_directory() {
  std::error_code ec;
  fs::create_directories(options_.root, ec);
  writable_ = make_dir(dir_) && make_dir(dir_ / "tmp") && ::access(dir_.c_str(), W_OK) == 0 &&
              ::access((dir_ / "tmp").c_str(), W_OK) == 0;
  if (!writable_) {
    log_.warn(
        "kv_cache_dir {}: cannot create or write {} ({}): the disk tier only reads what is "
        "there",
        options_.root.string(), dir_.string(), std::strerror(errno));
    return;
  }
  const fs::path about = dir_ / "fingerprint.json";
  if (fs::exists(about, ec)) return;
  const fs::path tmp = dir_ / "tmp" / fmt::format("fingerprint.{}.tmp", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << options_.fingerprint_json << '\n';
  }
  fs::rename(tmp, about, ec);
  if (ec) fs::remove(tmp, ec);
}

fs::path DiskTier::record_path(const BlockHash& hash) const {
  const std::string hex = hash_hex(hash);
  return dir_ / hex.substr(0, 2) / (hex + ".kvb");
}

bool DiskTier::contains(const BlockHash& hash) const {
  return ::access(record_path(hash).c_str(), F_OK) == 0;
}

bool DiskTier::write(DiskWrite job) {
  if (!writable_) {
    ++writes_dropped_;
    return false;
  }
  if (options_.inline_io) {
    do_write(job);
    std::lock_guard lock(mutex_);
    done_.written_slots.push_back(job.slot);
    return true;
  }
  {
    std::lock_guard lock(mutex_);
    if (writes_.size() >= options_.max_queued_writes) {
      ++writes_dropped_;
      return false;
    }
    writes_.push_back(std::move(job));
  }
  wake_.notify_one();
  return true;
}

void DiskTier::read(DiskRead job) {
  if (options_.inline_io) {
    do_read(job);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    reads_.push_back(std::move(job));
  }
  wake_.notify_one();
}

DiskDone DiskTier::take_done() {
  std::lock_guard lock(mutex_);
  return std::exchange(done_, {});
}

void DiskTier::wait_done(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  done_wake_.wait_for(lock, timeout,
                      [&] { return !done_.written_slots.empty() || !done_.reads.empty(); });
}

DiskTierCounters DiskTier::counters() const {
  return {blocks_written_, write_failures_, writes_dropped_, blocks_read_,
          read_failures_,  evictions_,      records_,        bytes_};
}

// Reads first (a request waits for them), then writes; on stop, the writes left.
void DiskTier::run() {
  scan();
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !reads_.empty() || !writes_.empty(); });
    if (!reads_.empty()) {
      DiskRead job = std::move(reads_.front());
      reads_.pop_front();
      lock.unlock();
      do_read(job);
      lock.lock();
    } else if (!writes_.empty()) {
      DiskWrite job = std::move(writes_.front());
      writes_.pop_front();
      lock.unlock();
      do_write(job);
      lock.lock();
      done_.written_slots.push_back(job.slot);
      done_wake_.notify_all();
    } else if (stop_) {
      return;
    }
  }
}

void DiskTier::do_write(const DiskWrite& job) {
  const fs::path path = record_path(job.hash);
  if (::access(path.c_str(), F_OK) == 0) return;  // another engine wrote it meanwhile
  const fs::path tmp =
      dir_ / "tmp" / fmt::format("{}.{}.{}.tmp", hash_hex(job.hash), ::getpid(), tmp_counter_++);
  const RecordKey key{job.hash, job.salt, job.prefix};
  std::string error;
  if (!make_dir(path.parent_path()))
    error = fmt::format("cannot create {}: {}", path.parent_path().string(), std::strerror(errno));
  else
    error = write_record(path, tmp, format_, key, job.payload);
  if (!error.empty()) {
    ++write_failures_;
    warn_once_per_minute("disk tier: {} (the block stays computable; serving goes on)", error);
    return;
  }
  ++blocks_written_;
  remember(job.hash, static_cast<std::int64_t>(record_file_bytes(format_, key)), now_ns());
  enforce_capacity();
}

void DiskTier::do_read(const DiskRead& job) {
  std::size_t ok = 0;
  const auto block = static_cast<std::size_t>(format_.block_size);
  for (; ok < job.hashes.size(); ++ok) {
    const fs::path path = record_path(job.hashes[ok]);
    const std::size_t end = (job.first_block + ok + 1) * block;
    if (end > job.tokens.size()) break;
    const RecordKey key{job.hashes[ok], job.salt, std::span(job.tokens).first(end)};
    const RecordRead r = read_record(path, format_, key, job.payloads[ok]);
    if (r.status == RecordStatus::kOk) {
      ++blocks_read_;
      ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // the last use, for every process
      remember(job.hashes[ok], static_cast<std::int64_t>(record_file_bytes(format_, key)),
               now_ns());
      continue;
    }
    if (r.status == RecordStatus::kMissing) {
      forget(job.hashes[ok]);  // removed by another process (its cap) since the lookup
    } else {
      ++read_failures_;
      if (r.status == RecordStatus::kCorrupt) {
        remove_if_same_file(path, r.dev, r.ino);
        forget(job.hashes[ok]);
      }
      warn_once_per_minute("disk tier: {}{}", r.why,
                           r.status == RecordStatus::kCorrupt ? " (removed; recomputed)" : "");
    }
    break;
  }
  std::lock_guard lock(mutex_);
  done_.reads.push_back({job.ticket, ok});
  done_wake_.notify_all();
}

// Everything the directory holds now: its records' sizes and mtimes, and stale temporary
// files (a writer killed mid-write) removed.
void DiskTier::scan() {
  known_.clear();
  by_use_.clear();
  known_bytes_ = 0;
  last_scan_ns_ = now_ns();
  std::error_code ec;
  for (fs::directory_iterator sub(dir_, ec), end; !ec && sub != end; sub.increment(ec)) {
    const std::string name = sub->path().filename().string();
    if (name == "tmp") {
      for (fs::directory_iterator t(sub->path(), ec); !ec && t != end; t.increment(ec)) {
        struct stat st {};
        if (::stat(t->path().c_str(), &st) == 0 && last_scan_ns_ - mtime_ns(st) > kStaleTmpNs)
          ::unlink(t->path().c_str());
      }
      ec.clear();
      continue;
    }
    if (name.size() != 2 || !sub->is_directory(ec)) continue;
    for (fs::directory_iterator f(sub->path(), ec); !ec && f != end; f.increment(ec)) {
      const auto hash = parse_record_name(f->path().filename().string());
      struct stat st {};
      if (hash && ::stat(f->path().c_str(), &st) == 0 && S_ISREG(st.st_mode))
        remember(*hash, static_cast<std::int64_t>(st.st_size), mtime_ns(st));
    }
    ec.clear();
  }
  enforce_capacity();
}

void DiskTier::remember(const BlockHash& hash, std::int64_t bytes, std::int64_t last_use_ns) {
  forget(hash);
  known_.emplace(hash, Known{bytes, last_use_ns});
  by_use_.emplace(std::pair{last_use_ns, Key{hash.low, hash.high}}, hash);
  known_bytes_ += bytes;
  records_ = static_cast<std::int64_t>(known_.size());
  bytes_ = known_bytes_;
}

void DiskTier::forget(const BlockHash& hash) {
  auto it = known_.find(hash);
  if (it == known_.end()) return;
  by_use_.erase({it->second.last_use_ns, Key{hash.low, hash.high}});
  known_bytes_ -= it->second.bytes;
  known_.erase(it);
  records_ = static_cast<std::int64_t>(known_.size());
  bytes_ = known_bytes_;
}

// Least recently used records out until the directory is within its cap; what other engines
// wrote or removed is learned by a rescan first (at most every kRescanIntervalNs).
void DiskTier::enforce_capacity() {
  if (known_bytes_ <= options_.capacity_bytes || !writable_) return;
  if (now_ns() - last_scan_ns_ > kRescanIntervalNs) {
    scan();
    return;
  }
  while (known_bytes_ > options_.capacity_bytes && !by_use_.empty()) {
    const BlockHash victim = by_use_.begin()->second;
    ::unlink(record_path(victim).c_str());
    forget(victim);
    ++evictions_;
  }
}

template <class... Args>
void DiskTier::warn_once_per_minute(fmt::format_string<Args...> format, Args&&... args) {
  const std::int64_t now = now_ns();
  if (last_warning_ns_ != 0 && now - last_warning_ns_ < kWarningIntervalNs) return;
  last_warning_ns_ = now;
  log_.warn(format, std::forward<Args>(args)...);
}

}  // namespace cachet::kv

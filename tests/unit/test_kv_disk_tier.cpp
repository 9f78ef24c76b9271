// The prefix cache's disk tier: the record format (every kind of damage detected, a record of
// another prefix or salt never taken for this one), DiskTier (its I/O thread, the size cap,
// the scan a new process starts with, a directory it cannot write, several writers at once,
// processes included), HostTier's reserved slots, and KvCacheManager's write-through and
// reads across a "restart". The randomized test (support/kv_tier_fuzz.h) runs every tier at
// once, with records corrupted and the manager restarted on the same directory.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cachet/errors.h"
#include "kv/disk_record.h"
#include "kv/disk_tier.h"
#include "kv/host_tier.h"
#include "kv/kv_cache_manager.h"
#include "support/kv_steps.h"
#include "support/kv_tier_fuzz.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;
using kv::BlockHash;
using kv::DiskTier;
using kv::RecordStatus;
using testing::admit_all;
using testing::tokens_from;

constexpr std::int32_t kBs = 4;
constexpr std::size_t kPayload = 256;

// A fresh temporary directory, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("cachet-disk-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<std::byte> payload_of(int seed) {
  std::vector<std::byte> p(kPayload);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::byte>((seed * 31 + i) & 0xff);
  return p;
}

// A logger that says nothing, alive for the whole test (a DiskTier keeps a reference).
const util::Logger& quiet() {
  static const util::Logger log(LogLevel::kOff);
  return log;
}

const kv::RecordFormat kFormat{{0x1234, 0x5678}, kBs, kPayload};

struct Record {
  std::string salt;
  std::vector<TokenId> prefix;
  BlockHash hash;
  kv::RecordKey key() const { return {hash, salt, prefix}; }
};

// The chain hash of prefix's last block, as KvCacheManager computes it.
Record record_of(std::vector<TokenId> prefix, std::string salt = "") {
  BlockHash h = kv::hash_first_block(std::span(prefix).first(kBs), salt);
  for (std::size_t at = kBs; at < prefix.size(); at += kBs)
    h = kv::hash_next_block(h, std::span(prefix).subspan(at, kBs));
  return {std::move(salt), std::move(prefix), h};
}

std::vector<char> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& p, const std::vector<char>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// ---------------------------------------------------------------------------------------
// The record format.

TEST(DiskRecord, RoundTripsItsPayloadAndKnowsItsSize) {
  TempDir dir;
  const Record r = record_of(tokens_from(10, 8), "tenant");
  const auto payload = payload_of(1);
  ASSERT_EQ(kv::write_record(dir.path / "r.kvb", dir.path / "r.tmp", kFormat, r.key(), payload),
            "");
  EXPECT_FALSE(fs::exists(dir.path / "r.tmp")) << "renamed into place";
  EXPECT_EQ(fs::file_size(dir.path / "r.kvb"), kv::record_file_bytes(kFormat, r.key()));
  EXPECT_EQ(fs::status(dir.path / "r.kvb").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  std::vector<std::byte> out(kPayload);
  const kv::RecordRead read = kv::read_record(dir.path / "r.kvb", kFormat, r.key(), out);
  EXPECT_EQ(read.status, RecordStatus::kOk) << read.why;
  EXPECT_EQ(out, payload);
  EXPECT_EQ(kv::read_record(dir.path / "none.kvb", kFormat, r.key(), out).status,
            RecordStatus::kMissing);
}

TEST(DiskRecord, EveryFlippedByteAndEveryTruncationIsCorrupt) {
  TempDir dir;
  const Record r = record_of(tokens_from(10, 8), "s");
  const fs::path path = dir.path / "r.kvb";
  ASSERT_EQ(kv::write_record(path, dir.path / "t", kFormat, r.key(), payload_of(2)), "");
  const std::vector<char> good = read_file(path);
  std::vector<std::byte> out(kPayload);
  for (std::size_t at = 0; at < good.size(); ++at) {
    std::vector<char> bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x01);
    write_file(path, bad);
    const kv::RecordRead read = kv::read_record(path, kFormat, r.key(), out);
    ASSERT_EQ(read.status, RecordStatus::kCorrupt) << "byte " << at << " flipped";
  }
  for (std::size_t size : {std::size_t{0}, std::size_t{7}, std::size_t{63}, std::size_t{64},
                           std::size_t{100}, good.size() - 9, good.size() - 1}) {
    write_file(path, std::vector<char>(good.begin(), good.begin() + static_cast<long>(size)));
    EXPECT_EQ(kv::read_record(path, kFormat, r.key(), out).status, RecordStatus::kCorrupt)
        << "cut to " << size << " bytes";
  }
  std::vector<char> longer = good;
  longer.push_back(0);
  write_file(path, longer);
  EXPECT_EQ(kv::read_record(path, kFormat, r.key(), out).status, RecordStatus::kCorrupt);
}

TEST(DiskRecord, AnotherModelBlockSizeOrLayoutIsCorrupt) {
  TempDir dir;
  const Record r = record_of(tokens_from(10, 8));
  const fs::path path = dir.path / "r.kvb";
  ASSERT_EQ(kv::write_record(path, dir.path / "t", kFormat, r.key(), payload_of(3)), "");
  std::vector<std::byte> out(kPayload);
  kv::RecordFormat other = kFormat;
  other.fingerprint.low ^= 1;
  EXPECT_EQ(kv::read_record(path, other, r.key(), out).status, RecordStatus::kCorrupt);
  other = kFormat;
  other.block_size = 8;
  EXPECT_EQ(kv::read_record(path, other, r.key(), out).status, RecordStatus::kCorrupt);
  other = kFormat;
  other.payload_bytes = kPayload * 2;
  std::vector<std::byte> out2(kPayload * 2);
  EXPECT_EQ(kv::read_record(path, other, r.key(), out2).status, RecordStatus::kCorrupt);
  // The same file under another block's name (its hash).
  Record renamed = r;
  renamed.hash.high ^= 1;
  EXPECT_EQ(kv::read_record(path, kFormat, renamed.key(), out).status, RecordStatus::kCorrupt);
}

// A record whose hash is the request's but whose salt or tokens are not (a collision, or a
// forged file) is intact, kept, and never taken for the request's block.
TEST(DiskRecord, AnotherPrefixOrSaltUnderTheSameHashIsNeverServed) {
  TempDir dir;
  const Record wanted = record_of(tokens_from(10, 8), "tenant-a");
  const fs::path path = dir.path / "r.kvb";
  std::vector<std::byte> out(kPayload);
  for (const auto& [salt, prefix] : std::vector<std::pair<std::string, std::vector<TokenId>>>{
           {"tenant-b", tokens_from(10, 8)},
           {"", tokens_from(10, 8)},
           {"tenant-a", tokens_from(11, 8)},
           {"tenant-a", tokens_from(10, 4)},
           {"tenant-a", tokens_from(10, 12)}}) {
    const kv::RecordKey forged{wanted.hash, salt, prefix};  // the wanted block's hash
    fs::remove(path);
    ASSERT_EQ(kv::write_record(path, dir.path / "t", kFormat, forged, payload_of(4)), "");
    const kv::RecordRead read = kv::read_record(path, kFormat, wanted.key(), out);
    EXPECT_EQ(read.status, RecordStatus::kOtherContent) << "salt '" << salt << "'";
  }
}

TEST(DiskRecord, AFailedWriteLeavesNothingBehind) {
  TempDir dir;
  const Record r = record_of(tokens_from(10, 4));
  // The temporary file exists already (O_EXCL): nothing is written or renamed.
  write_file(dir.path / "t", {'x'});
  EXPECT_NE(kv::write_record(dir.path / "r.kvb", dir.path / "t", kFormat, r.key(), payload_of(5)),
            "");
  EXPECT_FALSE(fs::exists(dir.path / "r.kvb"));
  // A directory that does not exist.
  const std::string error = kv::write_record(dir.path / "no" / "r.kvb", dir.path / "no" / "t",
                                             kFormat, r.key(), payload_of(5));
  EXPECT_NE(error.find("cannot create"), std::string::npos) << error;
}

// A file "full" at 100 KiB (RLIMIT_FSIZE, as a full disk: the write fails partway).
TEST(DiskRecord, AWriteThatRunsOutOfSpaceFailsCleanly) {
  TempDir dir;
  const Record r = record_of(tokens_from(10, 4));
  kv::RecordFormat big = kFormat;
  big.payload_bytes = 1 << 20;
  const std::vector<std::byte> payload(big.payload_bytes, std::byte{7});
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto previous = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 100 << 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string error =
      kv::write_record(dir.path / "r.kvb", dir.path / "t", big, r.key(), payload);
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, previous);
  EXPECT_NE(error.find("cannot write"), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(dir.path / "r.kvb"));
  EXPECT_FALSE(fs::exists(dir.path / "t"));
}

TEST(DiskRecord, ACorruptFileIsRemovedOnlyIfNobodyReplacedIt) {
  TempDir dir;
  const fs::path path = dir.path / "r.kvb";
  write_file(path, {'b', 'a', 'd'});
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  write_file(dir.path / "new", {'g', 'o', 'o', 'd'});
  fs::rename(dir.path / "new", path);  // another process put a good record there
  kv::remove_if_same_file(path, st.st_dev, st.st_ino);
  EXPECT_TRUE(fs::exists(path));
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  kv::remove_if_same_file(path, st.st_dev, st.st_ino);
  EXPECT_FALSE(fs::exists(path));
}

// ---------------------------------------------------------------------------------------
// DiskTier.

kv::DiskTierOptions options(const fs::path& root, bool inline_io, std::int64_t capacity = 1 << 30) {
  kv::DiskTierOptions o;
  o.root = root;
  o.fingerprint = kFormat.fingerprint;
  o.fingerprint_json = "{\"test\": true}";
  o.block_size = kBs;
  o.payload_bytes = kPayload;
  o.capacity_bytes = capacity;
  o.inline_io = inline_io;
  return o;
}

// Writes `r` with `payload` and waits until the tier reports it done.
void write_and_wait(DiskTier& tier, const Record& r, const std::vector<std::byte>& payload,
                    std::int64_t slot = 0) {
  ASSERT_TRUE(tier.write({r.hash, r.salt, r.prefix, slot, payload}));
  for (int i = 0; i < 1000; ++i) {
    if (!tier.take_done().written_slots.empty()) return;
    tier.wait_done(std::chrono::milliseconds(10));
  }
  FAIL() << "the write never finished";
}

// Reads the chain's blocks from `first` on into `out` (one buffer per block); the count read.
std::size_t read_and_wait(DiskTier& tier, const std::vector<Record>& chain, std::size_t first,
                          std::vector<std::vector<std::byte>>& out) {
  kv::DiskRead job;
  job.ticket = 7;
  job.salt = chain.back().salt;
  job.tokens = chain.back().prefix;
  job.first_block = first;
  out.assign(chain.size() - first, std::vector<std::byte>(kPayload));
  for (std::size_t i = first; i < chain.size(); ++i) {
    job.hashes.push_back(chain[i].hash);
    job.payloads.push_back(out[i - first]);
  }
  tier.read(std::move(job));
  for (int i = 0; i < 1000; ++i) {
    kv::DiskDone done = tier.take_done();
    if (!done.reads.empty()) {
      EXPECT_EQ(done.reads[0].ticket, 7u);
      return done.reads[0].num_ok;
    }
    tier.wait_done(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "the read never finished";
  return 0;
}

// The records of the blocks of one 16-token chain.
std::vector<Record> chain_of(TokenId first, std::string salt = "") {
  std::vector<Record> chain;
  const auto tokens = tokens_from(first, 16);
  for (int b = 1; b <= 4; ++b)
    chain.push_back(record_of({tokens.begin(), tokens.begin() + b * kBs}, salt));
  return chain;
}

TEST(DiskTier, WritesOnItsOwnThreadAndReadsAChainBack) {
  TempDir dir;
  DiskTier tier(options(dir.path, false), quiet());
  EXPECT_TRUE(tier.writable());
  EXPECT_EQ(tier.dir(), dir.path / ("cachet-kv-" + kv::hash_hex(kFormat.fingerprint)));
  EXPECT_TRUE(fs::exists(tier.dir() / "fingerprint.json"));
  const auto chain = chain_of(100, "t");
  for (std::size_t i = 0; i < chain.size(); ++i) {
    EXPECT_FALSE(tier.contains(chain[i].hash));
    write_and_wait(tier, chain[i], payload_of(static_cast<int>(i)));
    EXPECT_TRUE(tier.contains(chain[i].hash));
  }
  std::vector<std::vector<std::byte>> out;
  EXPECT_EQ(read_and_wait(tier, chain, 1, out), 3u);
  for (std::size_t i = 1; i < chain.size(); ++i)
    EXPECT_EQ(out[i - 1], payload_of(static_cast<int>(i)));
  const kv::DiskTierCounters c = tier.counters();
  EXPECT_EQ(c.blocks_written, 4);
  EXPECT_EQ(c.blocks_read, 3);
  EXPECT_EQ(c.records, 4);
  EXPECT_EQ(c.bytes, static_cast<std::int64_t>(fs::file_size(tier.record_path(chain[0].hash)) +
                                               fs::file_size(tier.record_path(chain[1].hash)) +
                                               fs::file_size(tier.record_path(chain[2].hash)) +
                                               fs::file_size(tier.record_path(chain[3].hash))));
}

TEST(DiskTier, AReadStopsAtAMissingOrCorruptBlockAndRemovesTheCorruptOne) {
  TempDir dir;
  DiskTier tier(options(dir.path, true), quiet());
  const auto chain = chain_of(100);
  for (std::size_t i = 0; i < chain.size(); ++i) write_and_wait(tier, chain[i], payload_of(1));
  // Block 2 cut short, as a writer killed mid-write without the rename would never leave.
  fs::resize_file(tier.record_path(chain[2].hash), 50);
  std::vector<std::vector<std::byte>> out;
  EXPECT_EQ(read_and_wait(tier, chain, 0, out), 2u);
  EXPECT_FALSE(fs::exists(tier.record_path(chain[2].hash))) << "removed";
  EXPECT_EQ(tier.counters().read_failures, 1);
  EXPECT_EQ(tier.counters().records, 3);
  fs::remove(tier.record_path(chain[0].hash));
  EXPECT_EQ(read_and_wait(tier, chain, 0, out), 0u) << "a missing first block";
  EXPECT_EQ(tier.counters().read_failures, 1) << "missing is not a failure";
}

TEST(DiskTier, ARecordOfAnotherSaltUnderTheRequestedHashIsNotReadAndIsKept) {
  TempDir dir;
  DiskTier tier(options(dir.path, true), quiet());
  const auto chain = chain_of(100, "tenant-a");
  Record forged = chain[0];
  forged.salt = "tenant-b";
  write_and_wait(tier, forged, payload_of(9));
  std::vector<std::vector<std::byte>> out;
  EXPECT_EQ(read_and_wait(tier, {chain[0]}, 0, out), 0u);
  EXPECT_TRUE(fs::exists(tier.record_path(chain[0].hash)));
  EXPECT_EQ(tier.counters().read_failures, 1);
}

TEST(DiskTier, KeepsTheDirectoryUnderItsCapLeastRecentlyUsedFirst) {
  TempDir dir;
  const auto chain = chain_of(100);
  const auto record = static_cast<std::int64_t>(kv::record_file_bytes(kFormat, chain[3].key()));
  DiskTier tier(options(dir.path, true, 5 * record), quiet());
  const auto other = chain_of(500);
  for (const Record& r : other) write_and_wait(tier, r, payload_of(1));
  std::vector<std::vector<std::byte>> out;
  EXPECT_EQ(read_and_wait(tier, other, 0, out), 4u);  // used in chain order just now
  for (const Record& r : chain) write_and_wait(tier, r, payload_of(2));
  EXPECT_LE(tier.counters().bytes, 5 * record);
  EXPECT_EQ(tier.counters().evictions, 3);
  EXPECT_EQ(tier.counters().records, 5);
  for (const Record& r : chain) EXPECT_TRUE(tier.contains(r.hash)) << "the newest stay";
  EXPECT_FALSE(tier.contains(other[0].hash)) << "the least recently used went first";
  EXPECT_FALSE(tier.contains(other[2].hash));
  EXPECT_TRUE(tier.contains(other[3].hash));
}

TEST(DiskTier, ANewTierFindsWhatAnEarlierOneWroteAndRemovesStaleTemporaryFiles) {
  TempDir dir;
  const auto chain = chain_of(100);
  fs::path tmp_dir;
  {
    DiskTier tier(options(dir.path, false), quiet());
    for (const Record& r : chain) write_and_wait(tier, r, payload_of(3));
    tmp_dir = tier.dir() / "tmp";
  }
  // A writer killed mid-write an hour ago, and one writing now.
  write_file(tmp_dir / "stale.1.0.tmp", {'x'});
  write_file(tmp_dir / "fresh.2.0.tmp", {'y'});
  const auto hour_ago = fs::file_time_type::clock::now() - std::chrono::hours(2);
  fs::last_write_time(tmp_dir / "stale.1.0.tmp", hour_ago);
  DiskTier tier(options(dir.path, true), quiet());
  EXPECT_EQ(tier.counters().records, 4);
  EXPECT_FALSE(fs::exists(tmp_dir / "stale.1.0.tmp"));
  EXPECT_TRUE(fs::exists(tmp_dir / "fresh.2.0.tmp"));
  std::vector<std::vector<std::byte>> out;
  EXPECT_EQ(read_and_wait(tier, chain, 0, out), 4u);
  EXPECT_EQ(out[3], payload_of(3));
}

TEST(DiskTier, ADirectoryItCannotCreateOnlyWarnsAndWritesNothing) {
  TempDir dir;
  write_file(dir.path / "file", {'x'});
  std::vector<std::string> warnings;
  util::Logger log(LogLevel::kWarn,
                   [&](LogLevel, std::string_view m) { warnings.emplace_back(m); });
  DiskTier tier(options(dir.path / "file" / "cache", false), log);
  EXPECT_FALSE(tier.writable());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("cannot create or write"), std::string::npos) << warnings[0];
  const auto chain = chain_of(100);
  const auto payload = payload_of(1);
  EXPECT_FALSE(tier.write({chain[0].hash, "", chain[0].prefix, 0, payload}));
  EXPECT_EQ(tier.counters().writes_dropped, 1);
  EXPECT_FALSE(tier.contains(chain[0].hash));
}

TEST(DiskTier, AWriteThatFailsIsCountedAndWarnedOnce) {
  TempDir dir;
  std::vector<std::string> warnings;
  util::Logger log(LogLevel::kWarn,
                   [&](LogLevel, std::string_view m) { warnings.emplace_back(m); });
  DiskTier tier(options(dir.path, true), log);
  // The temporary directory replaced by a file: every write fails at its first step.
  fs::remove_all(tier.dir() / "tmp");
  write_file(tier.dir() / "tmp", {'x'});
  for (const Record& r : chain_of(100)) write_and_wait(tier, r, payload_of(1));
  EXPECT_EQ(tier.counters().write_failures, 4);
  EXPECT_EQ(tier.counters().blocks_written, 0);
  EXPECT_EQ(warnings.size(), 1u) << "at most one warning a minute";
}

// Two tiers (as two engines) and four processes writing the same records at once: every
// record is whole and reads back.
TEST(DiskTier, ConcurrentWritersOfOneDirectoryNeverCorruptARecord) {
  TempDir dir;
  std::vector<std::vector<Record>> chains;
  for (int c = 0; c < 6; ++c) chains.push_back(chain_of(1000 * (c + 1)));
  std::vector<pid_t> children;
  for (int p = 0; p < 4; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // No gtest assertions in the child: its exit code says how it went.
      DiskTier tier(options(dir.path, true), quiet());
      for (int round = 0; round < 3; ++round)
        for (const auto& chain : chains)
          for (std::size_t i = 0; i < chain.size(); ++i) {
            const auto payload = payload_of(static_cast<int>(i));
            tier.write({chain[i].hash, "", chain[i].prefix, 0, payload});
            if (tier.counters().write_failures > 0) ::_exit(1);
            fs::remove(tier.record_path(chain[(i + p) % chain.size()].hash));
          }
      ::_exit(0);
    }
    children.push_back(pid);
  }
  {
    DiskTier a(options(dir.path, false), quiet());
    DiskTier b(options(dir.path, false), quiet());
    for (const auto& chain : chains)
      for (std::size_t i = 0; i < chain.size(); ++i) {
        write_and_wait(a, chain[i], payload_of(static_cast<int>(i)));
        write_and_wait(b, chain[i], payload_of(static_cast<int>(i)));
      }
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  DiskTier tier(options(dir.path, true), quiet());
  for (const auto& chain : chains)
    for (std::size_t i = 0; i < chain.size(); ++i) {
      if (!tier.contains(chain[i].hash)) write_and_wait(tier, chain[i], payload_of(int(i)));
    }
  for (const auto& chain : chains) {
    std::vector<std::vector<std::byte>> out;
    ASSERT_EQ(read_and_wait(tier, chain, 0, out), 4u);
    for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(out[i], payload_of(static_cast<int>(i)));
  }
  EXPECT_EQ(tier.counters().read_failures, 0);
}

// ---------------------------------------------------------------------------------------
// HostTier's reserved slots.

TEST(HostTierReserve, AReservedSlotIsNeitherFreeNorFoundUntilPublished) {
  kv::HostTier tier(2, kBs);
  const auto a = tokens_from(10, kBs);
  const BlockHash h = kv::hash_first_block(a, "");
  const auto slot = tier.reserve();
  ASSERT_TRUE(slot);
  EXPECT_EQ(tier.num_reserved(), 1);
  EXPECT_EQ(tier.num_used(), 0);
  EXPECT_FALSE(tier.lookup(h, kv::ChainLink::first(""), a));
  tier.check_integrity();
  EXPECT_EQ(tier.publish(*slot, h, kv::ChainLink::first(""), a, kv::ContentId{5}), *slot);
  EXPECT_TRUE(tier.from_disk(*slot));
  EXPECT_EQ(tier.lookup(h, kv::ChainLink::first(""), a), slot);
  EXPECT_EQ(tier.num_reserved(), 0);
  tier.check_integrity();
  // The same contents read again: the second slot is freed and the first entry returned.
  const auto again = tier.reserve();
  ASSERT_TRUE(again);
  EXPECT_NE(*again, *slot);
  EXPECT_EQ(tier.publish(*again, h, kv::ChainLink::first(""), a, kv::ContentId{6}), *slot);
  EXPECT_EQ(tier.num_used(), 1);
  tier.check_integrity();
  const auto cancelled = tier.reserve();
  tier.cancel(*cancelled);
  EXPECT_EQ(tier.num_reserved(), 0);
  tier.check_integrity();
  EXPECT_THROW(tier.cancel(*cancelled), Error);
}

TEST(HostTierReserve, EveryHeldOrReservedSlotMeansNoReservation) {
  kv::HostTier tier(2, kBs);
  const auto r1 = tier.reserve(), r2 = tier.reserve();
  ASSERT_TRUE(r1 && r2);
  EXPECT_FALSE(tier.reserve());
  tier.check_integrity();
}

// ---------------------------------------------------------------------------------------
// KvCacheManager with a disk tier.

kv::DiskTierOptions manager_options(const fs::path& root) {
  kv::DiskTierOptions o = options(root, true);
  o.payload_bytes = kPayload;
  return o;
}

// Runs the step's copies and disk jobs the way EngineCore does, with one byte buffer per host
// slot standing in for the backend's memory.
void run_disk_jobs(kv::KvCacheManager& kv, DiskTier& disk,
                   std::vector<std::vector<std::byte>>& slots) {
  kv::Transfers t = kv.take_transfers();
  kv::DiskDone refused;
  for (kv::DiskWrite& w : t.disk_writes) {
    w.payload = slots.at(static_cast<std::size_t>(w.slot));
    const auto s = w.slot;
    if (!disk.write(std::move(w))) refused.written_slots.push_back(s);
  }
  for (std::size_t i = 0; i < t.disk_reads.size(); ++i) {
    for (std::int64_t s : t.disk_read_slots[i])
      t.disk_reads[i].payloads.push_back(slots.at(static_cast<std::size_t>(s)));
    disk.read(std::move(t.disk_reads[i]));
  }
  kv.finish_disk_jobs(refused);
  kv.finish_disk_jobs(disk.take_done());
}

TEST(KvCacheManagerDiskTier, ComputedBlocksAreWrittenThroughAndARestartReadsThemBack) {
  TempDir dir;
  const auto a = tokens_from(100, 16);
  std::vector<std::vector<std::byte>> slots(8, std::vector<std::byte>(kPayload));
  {
    DiskTier disk(manager_options(dir.path), quiet());
    kv::KvCacheManager kv(8, kBs, true, 8);
    kv.set_disk_tier(&disk);
    kv::SeqBlocks s = admit_all(kv, a, "salt");
    const kv::Transfers t = kv.take_transfers();
    EXPECT_EQ(t.saves.size(), 4u) << "every computed block goes to a host slot first";
    EXPECT_EQ(t.disk_writes.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(t.disk_writes[i].slot, t.saves[i].host_slot);
      EXPECT_EQ(t.disk_writes[i].prefix.size(), (i + 1) * kBs);
      EXPECT_EQ(t.disk_writes[i].salt, "salt");
    }
    EXPECT_EQ(kv.host_tier().num_used(), 4);
    // Run them (the payload: a byte per slot, so the read below can tell them apart).
    kv::DiskDone refused;
    for (const kv::DiskWrite& w : t.disk_writes) {
      auto& bytes = slots[static_cast<std::size_t>(w.slot)];
      std::fill(bytes.begin(), bytes.end(), static_cast<std::byte>(w.prefix.size()));
      ASSERT_TRUE(disk.write({w.hash, w.salt, w.prefix, w.slot, bytes}));
    }
    kv.finish_disk_jobs(disk.take_done());
    kv.check_integrity(std::vector<const std::vector<kv::BlockId>*>{&s.blocks});
    EXPECT_EQ(disk.counters().blocks_written, 4);
    // A hit writes nothing.
    kv::SeqBlocks again = admit_all(kv, a, "salt");
    EXPECT_TRUE(kv.take_transfers().disk_writes.empty());
    kv.free(s);
    kv.free(again);
  }
  // A new process: an empty pool and host tier; the disk has the chain.
  DiskTier disk(manager_options(dir.path), quiet());
  kv::KvCacheManager kv(8, kBs, true, 8);
  kv.set_disk_tier(&disk);
  std::fill(slots.begin(), slots.end(), std::vector<std::byte>(kPayload));
  kv::SeqBlocks seq;
  seq.salt = "salt";
  kv.update_hashes(seq, a);
  kv::PrefixMatch m = kv.match(seq, a, 15);
  EXPECT_EQ(m.num_tokens, 0);
  ASSERT_TRUE(kv.start_disk_read(seq, a, m, 15));
  EXPECT_TRUE(kv.disk_read_pending(seq));
  EXPECT_FALSE(kv.start_disk_read(seq, a, m, 15)) << "once per sequence";
  EXPECT_EQ(kv.host_tier().num_reserved(), 3) << "blocks 0-2: the last token is computed";
  run_disk_jobs(kv, disk, slots);
  EXPECT_FALSE(kv.disk_read_pending(seq));
  EXPECT_EQ(kv.host_tier().num_used(), 3);
  m = kv.match(seq, a, 15);
  EXPECT_EQ(m.host_slots.size(), 3u);
  EXPECT_EQ(m.num_from_disk, 3u);
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_EQ(slots[static_cast<std::size_t>(m.host_slots[i])][0],
              static_cast<std::byte>((i + 1) * kBs))
        << "block " << i << " read into its slot";
  ASSERT_TRUE(kv.admit(seq, m, 16));
  EXPECT_EQ(kv.host_counters().disk_hit_blocks, 3);
  EXPECT_EQ(kv.take_transfers().loads.size(), 3u);
  kv.check_integrity(std::vector<const std::vector<kv::BlockId>*>{&seq.blocks});
  // Another salt finds nothing on disk.
  kv::SeqBlocks other;
  other.salt = "other";
  kv.update_hashes(other, a);
  EXPECT_FALSE(kv.start_disk_read(other, a, kv.match(other, a, 15), 15));
}

TEST(KvCacheManagerDiskTier, AReadWhoseParentWasEvictedMeanwhileIsDropped) {
  TempDir dir;
  const auto a = tokens_from(100, 16);
  std::vector<std::vector<std::byte>> slots(8, std::vector<std::byte>(kPayload));
  DiskTier disk(manager_options(dir.path), quiet());
  {
    kv::KvCacheManager writer(8, kBs, true, 8);
    writer.set_disk_tier(&disk);
    kv::SeqBlocks s = admit_all(writer, a);
    run_disk_jobs(writer, disk, slots);
  }
  // A pool of 4 blocks and a host tier of 3 slots; block 0 of `a` cached on the device.
  kv::KvCacheManager kv(4, kBs, true, 3);
  kv.set_disk_tier(&disk);
  kv::SeqBlocks s0 = admit_all(kv, std::vector<TokenId>(a.begin(), a.begin() + kBs + 1));
  run_disk_jobs(kv, disk, slots);
  kv.free(s0);
  kv::SeqBlocks seq;
  kv.update_hashes(seq, a);
  const kv::PrefixMatch m = kv.match(seq, a, 15);
  ASSERT_EQ(m.blocks.size(), 1u);
  ASSERT_TRUE(kv.start_disk_read(seq, a, m, 15));
  EXPECT_EQ(kv.host_tier().num_reserved(), 2);
  // Before the read is published, block 0 leaves the device, and the host tier (full of
  // reservations) cannot keep it: blocks 1 and 2 then follow nothing cached.
  kv::SeqBlocks evictor = admit_all(kv, tokens_from(900, 16));
  run_disk_jobs(kv, disk, slots);
  EXPECT_EQ(kv.host_tier().num_reserved(), 0);
  EXPECT_EQ(kv.match(seq, a, 15).num_full_blocks(), 0u) << "nothing published";
  EXPECT_FALSE(kv.disk_read_pending(seq));
  kv.check_integrity(std::vector<const std::vector<kv::BlockId>*>{&evictor.blocks});
}

// ---------------------------------------------------------------------------------------
// Randomized, every tier at once.

TEST(KvCacheManagerDiskTier, RandomStepsReadTheRightContentThroughEveryTierAndRestarts) {
  const testing::TierStats stats = testing::run_fuzz(0xd15c0000u, true, -1, true, 150);
  // Each path taken often (one run: 4,460 writes, 418 of 738 host hits from disk, 259
  // restarts, 436 corruptions, 156 prefix copies).
  EXPECT_GT(stats.disk_writes, 2500);
  EXPECT_GT(stats.disk_hit_blocks, 250);
  EXPECT_GT(stats.loads, 450);
  EXPECT_GT(stats.restarts, 150);
  EXPECT_GT(stats.corruptions, 250);
  EXPECT_GT(stats.prefix_copies, 90);
}

}  // namespace
}  // namespace cachet

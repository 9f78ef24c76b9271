// The prefix cache's disk tier: writing and reading KV block records of the Qwen3-0.6B shape
// on the CPU backend (28 layers, 8 KV heads, head_dim 128, block size 16: 3.5 MiB of fp32 K
// and V per block), against plain file I/O of the same bytes in the same run (the floors).
//   BM_DiskTierWrite/N: N records through DiskTier (temporary file, fsync, rename each; the
//     checksum), one thread, as its I/O thread does.
//   BM_WriteFsync/N: one file of N blocks' bytes written and fsynced once.
//   BM_DiskTierRead/N: N records of a chain read and verified (checksum, salt, prefix) into
//     N buffers, as a disk hit is.
//   BM_SequentialRead/N: one file of N blocks' bytes read with pread, a block at a time into N
//     buffers.
// The files are read back from the page cache (written just before); see docs/benchmarks.md
// for a read from the device. bytes_per_second counts the K/V bytes. Directory: $TMPDIR, or
// CACHET_BENCH_DIR.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "kv/block_hash.h"
#include "kv/disk_tier.h"
#include "util/log.h"

namespace {

namespace fs = std::filesystem;
using namespace cachet;

constexpr std::int32_t kBlockSize = 16;
constexpr std::uint64_t kBlockBytes = std::uint64_t{28} * 2 * 8 * 16 * 128 * 4;  // 3.5 MiB

fs::path bench_dir(const std::string& name) {
  const char* env = std::getenv("CACHET_BENCH_DIR");
  return (env != nullptr ? fs::path(env) : fs::temp_directory_path()) /
         ("cachet-bench-" + std::to_string(::getpid()) + "-" + name);
}

kv::DiskTierOptions options(const fs::path& root) {
  kv::DiskTierOptions o;
  o.root = root;
  o.fingerprint = {1, 2};
  o.block_size = kBlockSize;
  o.payload_bytes = kBlockBytes;
  o.capacity_bytes = std::int64_t{1} << 40;
  o.inline_io = true;
  return o;
}

// A chain of n blocks: its tokens and each block's hash.
struct Chain {
  std::vector<TokenId> tokens;
  std::vector<kv::BlockHash> hashes;
};

Chain chain_of(std::int64_t n) {
  Chain c;
  for (std::int64_t i = 0; i < n * kBlockSize; ++i) c.tokens.push_back(static_cast<TokenId>(i));
  std::span<const TokenId> all(c.tokens);
  for (std::int64_t b = 0; b < n; ++b) {
    const auto block = all.subspan(static_cast<std::size_t>(b * kBlockSize), kBlockSize);
    c.hashes.push_back(b == 0 ? kv::hash_first_block(block, "")
                              : kv::hash_next_block(c.hashes.back(), block));
  }
  return c;
}

void write_chain(kv::DiskTier& tier, const Chain& c, const std::vector<std::byte>& payload) {
  for (std::size_t b = 0; b < c.hashes.size(); ++b) {
    const auto end = static_cast<std::ptrdiff_t>((b + 1) * kBlockSize);
    tier.write({c.hashes[b], "", {c.tokens.begin(), c.tokens.begin() + end}, 0, payload});
  }
  tier.take_done();
}

void BM_DiskTierWrite(benchmark::State& state) {
  const fs::path root = bench_dir("write");
  const Chain c = chain_of(state.range(0));
  const std::vector<std::byte> payload(kBlockBytes, std::byte{3});
  const util::Logger log(LogLevel::kOff);
  for (auto _ : state) {
    state.PauseTiming();
    fs::remove_all(root);
    kv::DiskTier tier(options(root), log);
    state.ResumeTiming();
    write_chain(tier, c, payload);
  }
  fs::remove_all(root);
  state.SetBytesProcessed(state.iterations() * state.range(0) *
                          static_cast<std::int64_t>(kBlockBytes));
}
BENCHMARK(BM_DiskTierWrite)->Arg(16)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_WriteFsync(benchmark::State& state) {
  const fs::path root = bench_dir("fsync");
  fs::create_directories(root);
  const std::vector<std::byte> data(kBlockBytes * static_cast<std::uint64_t>(state.range(0)),
                                    std::byte{3});
  for (auto _ : state) {
    const int fd = ::open((root / "f").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
      state.SkipWithError("write failed");
    ::fsync(fd);
    ::close(fd);
  }
  fs::remove_all(root);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}
BENCHMARK(BM_WriteFsync)->Arg(16)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_DiskTierRead(benchmark::State& state) {
  const fs::path root = bench_dir("read");
  fs::remove_all(root);
  const util::Logger log(LogLevel::kOff);
  const Chain c = chain_of(state.range(0));
  kv::DiskTier tier(options(root), log);
  write_chain(tier, c, std::vector<std::byte>(kBlockBytes, std::byte{5}));
  std::vector<std::vector<std::byte>> slots(c.hashes.size(), std::vector<std::byte>(kBlockBytes));
  for (auto _ : state) {
    kv::DiskRead job{1, "", c.tokens, 0, c.hashes, {}};
    for (auto& s : slots) job.payloads.push_back(s);
    tier.read(std::move(job));
    if (tier.take_done().reads.at(0).num_ok != c.hashes.size()) state.SkipWithError("read failed");
  }
  fs::remove_all(root);
  state.SetBytesProcessed(state.iterations() * state.range(0) *
                          static_cast<std::int64_t>(kBlockBytes));
}
BENCHMARK(BM_DiskTierRead)->Arg(16)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_SequentialRead(benchmark::State& state) {
  const fs::path root = bench_dir("seq");
  fs::create_directories(root);
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<std::vector<std::byte>> blocks(n, std::vector<std::byte>(kBlockBytes, std::byte{5}));
  {
    const int fd = ::open((root / "f").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    for (const auto& b : blocks)
      if (::write(fd, b.data(), b.size()) != static_cast<ssize_t>(b.size()))
        state.SkipWithError("write failed");
    ::close(fd);
  }
  for (auto _ : state) {
    const int fd = ::open((root / "f").c_str(), O_RDONLY);
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t done = 0;
      while (done < kBlockBytes) {
        const ssize_t r = ::pread(fd, blocks[i].data() + done, kBlockBytes - done,
                                  static_cast<off_t>(i * kBlockBytes + done));
        if (r <= 0) break;
        done += static_cast<std::size_t>(r);
      }
    }
    ::close(fd);
    benchmark::DoNotOptimize(blocks.data());
  }
  fs::remove_all(root);
  state.SetBytesProcessed(state.iterations() * state.range(0) *
                          static_cast<std::int64_t>(kBlockBytes));
}
BENCHMARK(BM_SequentialRead)->Arg(16)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

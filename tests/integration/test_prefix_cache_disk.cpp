// The prefix cache's disk tier end to end on the CPU backend: what one engine computed, a
// later engine (a restarted process) on the same model and directory reads back instead of
// computing, with outputs bit-identical to an engine without the cache; records that are
// corrupt, truncated, of another model, another salt or another prefix are never served;
// a directory that cannot be written only costs the tier. debug_poison_kv and
// check_kv_integrity are on in every test engine (TinyModel::engine_config).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "cachet/engine.h"
#include "kv/block_hash.h"
#include "kv/disk_record.h"
#include "kv/disk_tier.h"
#include "support/prefix_cache_workload.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::TinyModel;
using namespace testing::workload;

// An engine on `m` with a disk tier in `dir` under a host tier of `host_blocks` blocks.
EngineConfig disk_config(const TinyModel& m, const fs::path& dir, std::int32_t block_size = 4,
                         std::int64_t host_blocks = 64) {
  EngineConfig c = m.engine_config(block_size);
  c.host_kv_cache_bytes = host_tier_bytes(m, block_size, host_blocks);
  c.kv_cache_dir = dir.string();
  return c;
}

// The record files under an engine's disk directory.
std::vector<fs::path> records(const std::string& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ".kvb") out.push_back(e.path());
  return out;
}

// The record of block `index` of `tokens` (no salt) in the directory `dir`.
fs::path record_of_block(const std::string& dir, const std::vector<TokenId>& tokens,
                         std::int32_t block_size, std::size_t index, const std::string& salt = "") {
  std::span<const TokenId> all(tokens);
  kv::BlockHash h = kv::hash_first_block(all.first(static_cast<std::size_t>(block_size)), salt);
  for (std::size_t b = 1; b <= index; ++b)
    h = kv::hash_next_block(h, all.subspan(b * block_size, static_cast<std::size_t>(block_size)));
  const std::string hex = kv::hash_hex(h);
  return fs::path(dir) / hex.substr(0, 2) / (hex + ".kvb");
}

RequestOutput cache_off(const TinyModel& m, const Request& r, std::int32_t block_size = 4) {
  Engine off(m.engine_config(block_size, false));
  return off.generate({r})[0];
}

// ----------------------------------------------------------------------------------------
// A restarted engine reads what an earlier one wrote.

// The case: a 4k-token prompt whose prefix an earlier process computed is served
// from disk by a new engine, and gives the output of an engine without any cache.
TEST(PrefixCacheDisk, AFourThousandTokenPromptOfAnEarlierEngineIsReadFromDisk) {
  TinyModel m(model::Arch::kQwen3);
  TempDir dir;
  const Request r{prompt(2100, 4000, m.vocab()), greedy(4), {}};
  std::string disk_dir;
  {
    // A host tier of 600 blocks: the 250 blocks' writes all fit in its queue (half of it),
    // however far the disk falls behind the prefill.
    Engine first(disk_config(m, dir.path(), 16, 600));
    EXPECT_EQ(first.generate({r})[0].num_cached_tokens, 0);
    disk_dir = first.info().disk_kv_cache_dir;
    EXPECT_TRUE(first.info().disk_kv_cache_writable);
  }  // destroying the engine finishes its writes
  EXPECT_EQ(records(disk_dir).size(), 250u) << "every full block, prompt and output";
  Engine second(disk_config(m, dir.path(), 16, 600));
  EXPECT_EQ(second.info().disk_kv_cache_dir, disk_dir) << "the same model, the same directory";
  const RequestOutput out = second.generate({r})[0];
  EXPECT_EQ(out.num_cached_tokens, 3984) << "249 blocks; the last token is computed";
  EXPECT_EQ(diff(out, cache_off(m, r, 16)), "");
  const EngineStats s = second.stats();
  EXPECT_EQ(s.prefix_cache_disk_hit_tokens, 3984);
  EXPECT_EQ(s.prefix_cache_host_hit_tokens, 0) << "disk hits are not counted as host hits";
  EXPECT_EQ(s.disk_blocks_read, 249);
  EXPECT_EQ(s.disk_read_failures, 0);
  EXPECT_EQ(s.host_blocks_loaded, 249);
  expect_blocks_released(second);
}

TEST(PrefixCacheDisk, ACorruptOrTruncatedRecordIsRemovedAndItsBlocksComputed) {
  TinyModel m(model::Arch::kLlama);
  for (bool truncate : {false, true}) {
    SCOPED_TRACE(truncate ? "truncated" : "a byte flipped");
    TempDir dir;
    const Request r{prompt(2200, 60, m.vocab()), greedy(3), {}};
    std::string disk_dir;
    {
      Engine first(disk_config(m, dir.path()));
      first.generate({r});
      disk_dir = first.info().disk_kv_cache_dir;
    }
    const fs::path bad = record_of_block(disk_dir, r.prompt_token_ids, 4, 5);
    ASSERT_TRUE(fs::exists(bad));
    if (truncate) {
      fs::resize_file(bad, fs::file_size(bad) / 2);
    } else {
      std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(fs::file_size(bad) - 100));
      f.put('\x7f');
    }
    std::vector<std::string> warnings;
    EngineConfig c = disk_config(m, dir.path());
    c.log_sink = [&](LogLevel, std::string_view msg) { warnings.emplace_back(msg); };
    Engine second(c);
    const RequestOutput out = second.generate({r})[0];
    EXPECT_EQ(out.num_cached_tokens, 20) << "blocks 0-4 from disk, the rest computed";
    EXPECT_EQ(diff(out, cache_off(m, r)), "");
    EXPECT_EQ(second.stats().disk_read_failures, 1);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_THAT(warnings[0], ::testing::HasSubstr(truncate ? "truncated" : "checksum"));
    EXPECT_THAT(warnings[0], ::testing::HasSubstr("removed"));
    second.generate({{prompt(1, 1, m.vocab()), greedy(1), {}}});  // a step: writes land
  }
}

TEST(PrefixCacheDisk, AnotherModelOrBlockSizeUsesAnotherDirectory) {
  TinyModel m(model::Arch::kQwen2), other(model::Arch::kQwen2, 12);
  TempDir dir;
  const Request r{prompt(2300, 40, m.vocab()), greedy(2), {}};
  std::string disk_dir;
  {
    Engine first(disk_config(m, dir.path()));
    first.generate({r});
    disk_dir = first.info().disk_kv_cache_dir;
  }
  // The same architecture and shapes, other weights: never the first model's blocks.
  Engine e2(disk_config(other, dir.path()));
  EXPECT_NE(e2.info().disk_kv_cache_dir, disk_dir);
  const RequestOutput out = e2.generate({r})[0];
  EXPECT_EQ(out.num_cached_tokens, 0);
  EXPECT_EQ(diff(out, cache_off(other, r)), "");
  Engine e8(disk_config(m, dir.path(), 8));
  EXPECT_NE(e8.info().disk_kv_cache_dir, disk_dir);
  EXPECT_EQ(e8.generate({r})[0].num_cached_tokens, 0);
  // A record copied into another model's directory fails its header check there.
  const fs::path src = record_of_block(disk_dir, r.prompt_token_ids, 4, 0);
  const fs::path dst = record_of_block(e2.info().disk_kv_cache_dir, r.prompt_token_ids, 4, 0);
  fs::create_directories(dst.parent_path());
  fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
  Engine e2b(disk_config(other, dir.path()));
  const RequestOutput again = e2b.generate({r})[0];
  EXPECT_EQ(diff(again, cache_off(other, r)), "");
}

TEST(PrefixCacheDisk, ASaltIsolatesRecordsOnDiskToo) {
  TinyModel m(model::Arch::kQwen3);
  TempDir dir;
  const auto p = prompt(2400, 30, m.vocab());  // 7 full blocks of 4, then 2 tokens
  {
    Engine first(disk_config(m, dir.path()));
    first.generate({{p, greedy(2), "tenant-a"}});
  }
  Engine second(disk_config(m, dir.path()));
  EXPECT_EQ(second.generate({{p, greedy(2), "tenant-b"}})[0].num_cached_tokens, 0);
  EXPECT_EQ(second.generate({{p, greedy(2), ""}})[0].num_cached_tokens, 0);
  EXPECT_EQ(second.stats().prefix_cache_disk_hit_tokens, 0);
  const RequestOutput a = second.generate({{p, greedy(2), "tenant-a"}})[0];
  EXPECT_EQ(a.num_cached_tokens, 28);
  EXPECT_EQ(second.stats().prefix_cache_disk_hit_tokens, 28);
  EXPECT_EQ(diff(a, cache_off(m, {p, greedy(2), "tenant-a"})), "");
}

// A record under the very hash a request's first block has, intact (a valid checksum), but
// computed for another salt or other tokens: what a hash collision, or a file planted by
// another tenant, would look like. Verified against the request, it is never served (the
// request computes the block), and it is kept (it is a good record of its own prefix).
TEST(PrefixCacheDisk, ARecordOfAnotherSaltOrPrefixUnderTheRequestsHashIsNeverServed) {
  TinyModel m(model::Arch::kQwen3);
  const auto victim = prompt(2500, 21, m.vocab());
  const auto other = prompt(2501, 21, m.vocab());
  struct Case {
    std::string name;
    std::vector<TokenId> tokens;  // the request's
    std::string salt;
  };
  for (const Case& k :
       {Case{"another salt", victim, "attacker"}, Case{"other tokens", other, "victim"}}) {
    SCOPED_TRACE(k.name);
    TempDir dir;
    std::string disk_dir;
    {
      Engine first(disk_config(m, dir.path()));
      first.generate({{victim, greedy(2), "victim"}});
      disk_dir = first.info().disk_kv_cache_dir;
    }
    // The victim's first block as a record named by the request's first-block hash.
    const fs::path from = record_of_block(disk_dir, victim, 4, 0, "victim");
    const fs::path to = record_of_block(disk_dir, k.tokens, 4, 0, k.salt);
    std::string bytes = testing::read_file(from);
    const std::string hex = to.stem().string();
    const std::uint64_t high = std::stoull(hex.substr(0, 16), nullptr, 16);
    const std::uint64_t low = std::stoull(hex.substr(16), nullptr, 16);
    std::memcpy(bytes.data() + 32, &low, 8);
    std::memcpy(bytes.data() + 40, &high, 8);
    const std::uint64_t sum = XXH3_64bits(bytes.data(), bytes.size() - 8);
    std::memcpy(bytes.data() + bytes.size() - 8, &sum, 8);
    fs::create_directories(to.parent_path());
    testing::write_file(to, bytes);

    Engine second(disk_config(m, dir.path()));
    const Request r{k.tokens, greedy(2), k.salt};
    const RequestOutput out = second.generate({r})[0];
    EXPECT_EQ(out.num_cached_tokens, 0);
    EXPECT_EQ(diff(out, cache_off(m, r)), "");
    EXPECT_EQ(second.stats().disk_read_failures, 1);
    EXPECT_EQ(second.stats().prefix_cache_disk_hit_tokens, 0);
    EXPECT_TRUE(fs::exists(to)) << "an intact record of another prefix is kept";
  }
}

TEST(PrefixCacheDisk, ADirectoryThatCannotBeWrittenOnlyWarns) {
  TinyModel m(model::Arch::kQwen3);
  TempDir dir;
  testing::write_file(dir.path() / "file", "x");
  std::vector<std::string> warnings;
  EngineConfig c = disk_config(m, dir.path() / "file" / "cache");
  c.log_sink = [&](LogLevel, std::string_view msg) { warnings.emplace_back(msg); };
  Engine engine(c);
  EXPECT_FALSE(engine.info().disk_kv_cache_writable);
  ASSERT_FALSE(warnings.empty());
  EXPECT_THAT(warnings[0], ::testing::HasSubstr("cannot create or write"));
  const Request r{prompt(2600, 30, m.vocab()), greedy(3), {}};
  EXPECT_EQ(diff(engine.generate({r})[0], cache_off(m, r)), "");
  EXPECT_EQ(engine.stats().disk_blocks_written, 0);
  EXPECT_TRUE(engine.health().ok);
}

TEST(PrefixCacheDisk, BadOptionsAreClearErrors) {
  TinyModel m(model::Arch::kQwen3);
  TempDir dir;
  EngineConfig c = m.engine_config(4);
  c.kv_cache_dir = dir.path().string();
  EXPECT_THAT(testing::error_of([&] { Engine e(c); }, ErrorCode::kInvalidArgument),
              ::testing::AllOf(::testing::HasSubstr("kv_cache_dir"),
                               ::testing::HasSubstr("host_kv_cache_bytes")));
  c = disk_config(m, dir.path());
  c.disk_kv_cache_bytes = 100;
  EXPECT_THAT(testing::error_of([&] { Engine e(c); }, ErrorCode::kInvalidArgument),
              ::testing::HasSubstr("disk_kv_cache_bytes"));
  c.disk_kv_cache_bytes = -1;
  EXPECT_THAT(testing::error_of([&] { Engine e(c); }, ErrorCode::kInvalidArgument),
              ::testing::HasSubstr("disk_kv_cache_bytes"));
  c = disk_config(m, dir.path());
  c.enable_prefix_caching = false;
  EXPECT_EQ(Engine(c).info().disk_kv_cache_dir, "") << "no tier without prefix caching";
}

// ----------------------------------------------------------------------------------------
// Random workloads through every tier: outputs equal to an engine without the cache.

class PrefixCacheDiskArchTest : public ::testing::TestWithParam<model::Arch> {};

TEST_P(PrefixCacheDiskArchTest, EveryTierUnderEvictionIsBitIdenticalToCacheOff) {
  TinyModel m(GetParam());
  TempDir dir;
  WorkloadOptions o;
  o.num_waves = 6;
  const auto waves = make_workload(90, m.vocab(), 4, o);
  Engine off(m.engine_config(4, false));
  const auto want = run_workload(off, waves);
  // A device pool and host tier too small for a wave: blocks go to disk and come back. (How
  // many hits this first engine gets from disk depends on how soon its writes land, which
  // the disk tier's own thread decides: only the outputs are checked.)
  EngineConfig c = disk_config(m, dir.path(), 4, 24);
  c.num_kv_blocks = 40;
  {
    Engine on(c);
    expect_same_outputs(run_workload(on, waves), want);
    EXPECT_EQ(on.stats().disk_read_failures, 0);
    expect_blocks_released(on);
  }  // its writes are all on disk now
  // The same workload again in a new engine: its first wave reads from disk at once.
  Engine again(c);
  expect_same_outputs(run_workload(again, waves), want);
  EXPECT_GT(again.stats().prefix_cache_disk_hit_tokens, 0) << "the disk tier must serve hits";
  EXPECT_EQ(again.stats().disk_read_failures, 0);
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, PrefixCacheDiskArchTest,
                         ::testing::Values(model::Arch::kLlama, model::Arch::kQwen2,
                                           model::Arch::kQwen3),
                         [](const auto& info) {
                           return std::string(info.param == model::Arch::kLlama   ? "Llama"
                                              : info.param == model::Arch::kQwen2 ? "Qwen2"
                                                                                  : "Qwen3");
                         });

// Two engines of one process on one directory at once, with preemption and eviction: each
// equals the requests run alone, and neither ever reads a bad record.
TEST(PrefixCacheDisk, TwoEnginesSharingADirectoryAtOnceStayExact) {
  TinyModel m(model::Arch::kLlama);
  TempDir dir;
  WorkloadOptions o;
  o.num_waves = 3;
  o.requests_per_wave = 8;
  std::vector<std::vector<Wave>> workloads = {make_workload(4100, m.vocab(), 4, o),
                                              make_workload(4100, m.vocab(), 4, o)};
  std::vector<std::vector<RequestOutput>> got(2);
  EngineConfig c = disk_config(m, dir.path(), 4, 16);
  c.num_kv_blocks = 30;
  std::vector<EngineStats> stats(2);
  std::vector<std::thread> threads;
  for (int e = 0; e < 2; ++e)
    threads.emplace_back([&, e] {
      Engine engine(c);
      got[e] = run_workload(engine, workloads[e]);
      stats[e] = engine.stats();
    });
  for (auto& t : threads) t.join();
  std::vector<Request> all;
  for (const auto& w : workloads[0]) all.insert(all.end(), w.requests.begin(), w.requests.end());
  const auto want = alone_outputs(m, 4, all);
  for (int e = 0; e < 2; ++e) {
    SCOPED_TRACE("engine " + std::to_string(e));
    expect_same_outputs(got[e], want);
    EXPECT_EQ(stats[e].disk_read_failures, 0);
  }
}

}  // namespace
}  // namespace cachet

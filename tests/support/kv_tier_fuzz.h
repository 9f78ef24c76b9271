// The randomized test of the KV cache manager across its tiers: steps of admissions, growth,
// pins and frees on a tiny pool and host tier (and, optionally, a real disk tier in a
// temporary directory, its records corrupted and its engine "restarted" now and then), with
// a stand-in for the K/V (what each block should hold) moved exactly as the backend's
// copies and the disk tier's reads and writes would move it, and checked after every step:
// each sequence's table reads the right content from every block, whichever tier it came
// through.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kv/disk_tier.h"
#include "kv/kv_cache_manager.h"
#include "support/kv_fuzz.h"
#include "util/log.h"

namespace cachet::testing {

struct TierStats {
  std::int64_t steps = 0, saves = 0, loads = 0, prefix_copies = 0, host_hit_blocks = 0,
               device_hit_blocks = 0, partial_hit_tokens = 0, host_evictions = 0, pinned = 0,
               disk_writes = 0, disk_blocks_read = 0, disk_hit_blocks = 0, disk_failures = 0,
               restarts = 0, corruptions = 0, host_pinned = 0;
};

// What a block holds: the K/V of positions [first, tokens.size()) computed after
// tokens[0, position] under `salt`.
struct Held {
  std::string salt;
  std::vector<TokenId> tokens;
  std::int32_t first = 0;
};

// A Held as the bytes of a disk record's payload, and back (nullopt for anything else).
inline constexpr std::size_t kHeldBytes = 4096;
inline void put_held(const std::optional<Held>& h, std::span<std::byte> out) {
  std::fill(out.begin(), out.end(), std::byte{0});
  if (!h) return;
  const std::uint32_t salt = static_cast<std::uint32_t>(h->salt.size());
  const std::uint32_t n = static_cast<std::uint32_t>(h->tokens.size());
  const std::uint32_t words[3] = {1u + salt, static_cast<std::uint32_t>(h->first), n};
  ASSERT_LE(sizeof words + salt + 4 * n, out.size());
  std::memcpy(out.data(), words, sizeof words);
  std::memcpy(out.data() + sizeof words, h->salt.data(), salt);
  std::memcpy(out.data() + sizeof words + salt, h->tokens.data(), 4 * n);
}
inline std::optional<Held> get_held(std::span<const std::byte> in) {
  std::uint32_t words[3];
  std::memcpy(words, in.data(), sizeof words);
  if (words[0] == 0 || sizeof words + words[0] - 1 + 4 * std::size_t{words[2]} > in.size())
    return std::nullopt;
  Held h;
  h.salt.assign(reinterpret_cast<const char*>(in.data()) + sizeof words, words[0] - 1);
  h.first = static_cast<std::int32_t>(words[1]);
  h.tokens.resize(words[2]);
  std::memcpy(h.tokens.data(), in.data() + sizeof words + words[0] - 1, 4 * std::size_t{words[2]});
  return h;
}

class TierFuzz {
 public:
  // host_slots < 0: a random size. `disk`: a disk tier in a fresh temporary directory.
  TierFuzz(std::uint64_t seed, bool partial, std::int64_t host_slots, TierStats& stats,
           bool disk = false)
      : rng_(seed),
        bs_(uniform(rng_, 1, 4)),
        num_blocks_(uniform(rng_, 4, 12)),
        host_slots_(host_slots < 0 ? uniform(rng_, 1, 16) : host_slots),
        partial_(partial),
        pin_budget_(uniform(rng_, 0, 6)),
        stats_(stats) {
    host_pin_budget_ = uniform(rng_, 0, static_cast<int>(host_slots_));
    if (disk) {
      dir_ = std::filesystem::temp_directory_path() /
             ("cachet-tier-fuzz-" + std::to_string(::getpid()) + "-" + std::to_string(seed));
      std::filesystem::remove_all(dir_);
      disk_capacity_ = uniform(rng_, 4, 40);
    }
    start_engine();
    for (int f = 0; f < 3; ++f) {
      std::vector<TokenId> doc;
      for (int i = 0; i < 40; ++i) doc.push_back(uniform(rng_, 0, 999));
      docs_.push_back(doc);
    }
  }
  ~TierFuzz() {
    disk_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void run(int steps) {
    for (int s = 0; s < steps && !::testing::Test::HasFatalFailure(); ++s) step();
  }

 private:
  struct Seq {
    kv::SeqBlocks kv;
    std::vector<TokenId> tokens;
    std::int32_t computed = 0;
    bool admitted = false;
  };

  // A fresh manager (and disk tier on the same directory): what a new engine process sees.
  void start_engine() {
    seqs_.clear();
    kv_.reset();
    disk_.reset();
    kv_ = std::make_unique<kv::KvCacheManager>(num_blocks_, bs_, true, host_slots_, partial_);
    kv_->set_pin_budget(pin_budget_);
    kv_->set_host_pin_budget(host_pin_budget_);
    device_.assign(static_cast<std::size_t>(num_blocks_), std::nullopt);
    host_.assign(static_cast<std::size_t>(kv_->host_tier().num_slots()), std::nullopt);
    if (dir_.empty()) return;
    host_bytes_.assign(host_.size(), std::vector<std::byte>(kHeldBytes));
    kv::DiskTierOptions o;
    o.root = dir_;
    o.fingerprint = {0x5eed, static_cast<std::uint64_t>(bs_)};
    o.block_size = bs_;
    o.payload_bytes = kHeldBytes;
    o.capacity_bytes = disk_capacity_ * static_cast<std::int64_t>(kHeldBytes + 512);
    o.inline_io = true;
    disk_ = std::make_unique<kv::DiskTier>(std::move(o), log_);
    kv_->set_disk_tier(disk_.get());
  }

  std::vector<TokenId> make_prompt() {
    const auto& doc = docs_[static_cast<std::size_t>(uniform(rng_, 0, 2))];
    const int shared = chance(rng_, 0.5) ? 4 * uniform(rng_, 1, 9) : uniform(rng_, 0, 36);
    std::vector<TokenId> t(doc.begin(), doc.begin() + shared);
    const int own = uniform(rng_, 1, 6);
    for (int i = 0; i < own; ++i) t.push_back(uniform(rng_, 1000, 100000));
    return t;
  }

  void step() {
    ++stats_.steps;
    kv_->set_time(static_cast<double>(++clock_));
    if (disk_) {
      if (chance(rng_, 0.03)) restart();
      if (chance(rng_, 0.05)) corrupt_a_record();
      kv_->finish_disk_jobs(disk_->take_done());
    }
    const int ops = uniform(rng_, 1, 4);
    for (int i = 0; i < ops; ++i) operate();
    run_copies();
    compute();
    kv_->check_integrity(tables());
    ASSERT_LE(kv_->pool().num_pinned(), pin_budget_);
    ASSERT_LE(kv_->host_tier().num_pinned(), host_pin_budget_);
    stats_.pinned = std::max(stats_.pinned, kv_->pool().num_pinned());
    stats_.host_pinned = std::max(stats_.host_pinned, kv_->host_tier().num_pinned());
    check_tables();
  }

  void restart() {
    stats_.disk_blocks_read += disk_->counters().blocks_read;
    stats_.disk_failures += disk_->counters().read_failures;
    start_engine();
    ++stats_.restarts;
  }

  // A byte of a random record flipped, or the record cut short: its next read must fail.
  void corrupt_a_record() {
    std::vector<std::filesystem::path> records;
    for (const auto& e : std::filesystem::recursive_directory_iterator(disk_->dir()))
      if (e.path().extension() == ".kvb") records.push_back(e.path());
    if (records.empty()) return;
    const auto& path =
        records[static_cast<std::size_t>(uniform(rng_, 0, static_cast<int>(records.size()) - 1))];
    const auto size = std::filesystem::file_size(path);
    if (chance(rng_, 0.5)) {
      std::filesystem::resize_file(path, static_cast<std::uintmax_t>(uniform(rng_, 0, 200)));
    } else {
      FILE* f = std::fopen(path.c_str(), "r+b");
      ASSERT_NE(f, nullptr);
      std::fseek(f, uniform(rng_, 0, static_cast<int>(size) - 1), SEEK_SET);
      const int c = std::fgetc(f);
      std::fseek(f, -1, SEEK_CUR);
      std::fputc(c ^ 0x5a, f);
      std::fclose(f);
    }
    ++stats_.corruptions;
  }

  void operate() {
    const int op = uniform(rng_, 0, 9);
    if (op < 4 || seqs_.empty()) {
      Seq s;
      s.tokens = make_prompt();
      s.kv.salt = chance(rng_, 0.2) ? "salted" : "";
      seqs_.push_back(std::move(s));
      admit(seqs_.back());
    } else if (op == 4) {
      // A pin of some of an admitted sequence's blocks, for a few steps (or an unpin).
      Seq& s =
          seqs_[static_cast<std::size_t>(uniform(rng_, 0, static_cast<int>(seqs_.size()) - 1))];
      if (s.admitted) kv_->pin_prefix(s.kv, uniform(rng_, 0, 6), uniform(rng_, 0, 8));
    } else if (op < 6) {
      Seq& s =
          seqs_[static_cast<std::size_t>(uniform(rng_, 0, static_cast<int>(seqs_.size()) - 1))];
      if (!s.admitted) return admit(s);
      const int more = uniform(rng_, 1, 2 * bs_);
      const std::size_t before = s.tokens.size();
      for (int k = 0; k < more; ++k) s.tokens.push_back(uniform(rng_, 1000, 100000));
      if (!kv_->grow(s.kv, static_cast<std::int32_t>(s.tokens.size()))) s.tokens.resize(before);
    } else {
      const auto at =
          static_cast<std::size_t>(uniform(rng_, 0, static_cast<int>(seqs_.size()) - 1));
      kv_->free(seqs_[at].kv);
      seqs_.erase(seqs_.begin() + static_cast<std::ptrdiff_t>(at));
    }
  }

  // As the scheduler admits: not while its disk read runs; after starting one, not yet.
  void admit(Seq& s) {
    if (kv_->disk_read_pending(s.kv)) return;
    kv_->update_hashes(s.kv, s.tokens);
    const auto max = static_cast<std::int32_t>(s.tokens.size()) - 1;
    const kv::PrefixMatch m = kv_->match(s.kv, s.tokens, max);
    if (kv_->start_disk_read(s.kv, s.tokens, m, max)) return;
    if (!kv_->admit(s.kv, m, static_cast<std::int32_t>(s.tokens.size()))) return;
    s.admitted = true;
    s.computed = m.num_tokens;
    stats_.device_hit_blocks += static_cast<std::int64_t>(m.blocks.size());
    stats_.host_hit_blocks += static_cast<std::int64_t>(m.host_slots.size());
    stats_.disk_hit_blocks += static_cast<std::int64_t>(m.num_from_disk);
    stats_.partial_hit_tokens += m.partial_tokens;
  }

  // What the backend does with the step's copies: every save, then every load, then every
  // prefix copy (the first positions of one block into another); then the disk tier's jobs,
  // as EngineCore queues them (a payload is its host slot's bytes).
  void run_copies() {
    kv::Transfers t = kv_->take_transfers();
    for (const auto& c : t.saves) {
      host_.at(slot(c.host_slot)) = device_.at(idx(c.device));
      if (disk_) put_held(host_.at(slot(c.host_slot)), host_bytes_.at(slot(c.host_slot)));
    }
    for (const auto& c : t.loads) device_.at(idx(c.device)) = host_.at(slot(c.host_slot));
    for (const auto& c : t.prefix_copies) {
      std::optional<Held> from = device_.at(idx(c.from));
      if (from) {
        const auto end = std::min<std::size_t>(
            from->tokens.size(), static_cast<std::size_t>(from->first + c.num_tokens));
        from->tokens.resize(end);
      }
      device_.at(idx(c.to)) = from;
    }
    stats_.saves += static_cast<std::int64_t>(t.saves.size());
    stats_.loads += static_cast<std::int64_t>(t.loads.size());
    stats_.prefix_copies += static_cast<std::int64_t>(t.prefix_copies.size());
    if (disk_) run_disk_jobs(t);
  }

  void run_disk_jobs(kv::Transfers& t) {
    kv::DiskDone refused;
    for (kv::DiskWrite& w : t.disk_writes) {
      w.payload = host_bytes_.at(slot(w.slot));
      const std::int64_t s = w.slot;
      if (!disk_->write(std::move(w))) refused.written_slots.push_back(s);
      ++stats_.disk_writes;
    }
    for (std::size_t i = 0; i < t.disk_reads.size(); ++i) {
      for (std::int64_t s : t.disk_read_slots[i])
        t.disk_reads[i].payloads.push_back(host_bytes_.at(slot(s)));
      disk_->read(std::move(t.disk_reads[i]));  // inline: done now
      for (std::int64_t s : t.disk_read_slots[i])
        host_.at(slot(s)) = get_held(host_bytes_.at(slot(s)));
    }
    kv_->finish_disk_jobs(refused);
  }

  // Whether `held` is what block `b` of `s` must hold for its positions before `end`.
  bool holds(const std::optional<Held>& held, const Seq& s, std::int32_t b,
             std::int32_t end) const {
    return held && held->salt == s.kv.salt && held->first == b * bs_ &&
           static_cast<std::int32_t>(held->tokens.size()) >= end &&
           std::equal(s.tokens.begin(), s.tokens.begin() + end, held->tokens.begin());
  }

  // The forward pass: every admitted sequence computes its remaining tokens, writing each
  // block's content, then commits.
  void compute() {
    for (Seq& s : seqs_) {
      if (!s.admitted) continue;
      const auto size = static_cast<std::int32_t>(s.tokens.size());
      for (std::int32_t b = s.computed / bs_; b * bs_ < size; ++b) {
        auto& held = device_.at(idx(s.kv.blocks.at(static_cast<std::size_t>(b))));
        // The positions before `computed` are read, not written: they must be right already.
        if (s.computed > b * bs_) {
          ASSERT_TRUE(holds(held, s, b, s.computed))
              << "block " << b << " read before position " << s.computed << " holds other K/V";
        }
        const std::int32_t end = std::min(size, (b + 1) * bs_);
        held = Held{s.kv.salt, std::vector<TokenId>(s.tokens.begin(), s.tokens.begin() + end),
                    b * bs_};
      }
      s.computed = size;
      kv_->commit(s.kv, s.tokens, size);
    }
    stats_.host_evictions = std::max(stats_.host_evictions, kv_->host_tier().num_evictions());
  }

  // Every block of every admitted sequence holds its content, loaded, copied or computed.
  void check_tables() {
    for (const Seq& s : seqs_) {
      if (!s.admitted) continue;
      const auto size = static_cast<std::int32_t>(s.tokens.size());
      for (std::int32_t b = 0; b * bs_ < size; ++b) {
        ASSERT_TRUE(holds(device_.at(idx(s.kv.blocks.at(static_cast<std::size_t>(b)))), s, b,
                          std::min(size, (b + 1) * bs_)))
            << "block " << b << " of a sequence holds other K/V";
      }
    }
  }

  std::vector<const std::vector<kv::BlockId>*> tables() const {
    std::vector<const std::vector<kv::BlockId>*> t;
    for (const Seq& s : seqs_) t.push_back(&s.kv.blocks);
    return t;
  }
  static std::size_t idx(kv::BlockId id) { return static_cast<std::size_t>(id.value); }
  static std::size_t slot(std::int64_t s) { return static_cast<std::size_t>(s); }

  std::mt19937_64 rng_;
  std::int32_t bs_;
  std::int64_t num_blocks_, host_slots_;
  bool partial_;
  std::int64_t pin_budget_;
  std::int64_t host_pin_budget_ = 0;
  std::filesystem::path dir_;       // the disk tier's; empty: none
  std::int64_t disk_capacity_ = 0;  // in records
  util::Logger log_{LogLevel::kOff};
  std::unique_ptr<kv::DiskTier> disk_;  // before kv_, which points to it
  std::unique_ptr<kv::KvCacheManager> kv_;
  std::vector<std::optional<Held>> device_;         // what each device block holds
  std::vector<std::optional<Held>> host_;           // what each host slot holds
  std::vector<std::vector<std::byte>> host_bytes_;  // each host slot's bytes, for the disk
  std::vector<std::vector<TokenId>> docs_;
  std::vector<Seq> seqs_;
  TierStats& stats_;
  std::int64_t clock_ = 0;
};

inline void print_stats(const TierStats& stats) {
  std::printf(
      "[ stats    ] %lld steps, %lld saves, %lld loads, %lld prefix copies, %lld device / %lld "
      "host (%lld from disk) hit blocks, %lld partial hit tokens, %lld disk writes, %lld "
      "restarts, %lld corruptions\n",
      static_cast<long long>(stats.steps), static_cast<long long>(stats.saves),
      static_cast<long long>(stats.loads), static_cast<long long>(stats.prefix_copies),
      static_cast<long long>(stats.device_hit_blocks),
      static_cast<long long>(stats.host_hit_blocks), static_cast<long long>(stats.disk_hit_blocks),
      static_cast<long long>(stats.partial_hit_tokens), static_cast<long long>(stats.disk_writes),
      static_cast<long long>(stats.restarts), static_cast<long long>(stats.corruptions));
}

inline TierStats run_fuzz(std::uint64_t first_seed, bool partial, std::int64_t host_slots,
                          bool disk = false, int runs = 600) {
  constexpr int kSteps = 60;
  TierStats stats;
  const bool failed_before = ::testing::Test::HasFailure();
  for (int i = 0; i < runs; ++i) {
    const std::uint64_t seed = first_seed + static_cast<std::uint64_t>(i);
    SCOPED_TRACE("seed " + std::to_string(seed));
    TierFuzz(seed, partial, host_slots, stats, disk).run(kSteps);
    if (::testing::Test::HasFailure() && !failed_before) break;  // the first failing seed
  }
  print_stats(stats);
  return stats;
}

}  // namespace cachet::testing

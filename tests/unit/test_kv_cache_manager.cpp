// Property tests of KvCacheManager. Seeded random operations (create, match, admit, grow,
// append, commit, free) on tiny pools, each followed by check_integrity() and a comparison
// with an independent model: which (salt, token prefix) every block was registered with,
// and the order of the LRU. Focused tests pin the LRU order, salt isolation, collision
// safety and the roll-back of failed calls. The Scheduler on top of it:
// test_scheduler_random.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kv/kv_cache_manager.h"
#include "support/kv_fuzz.h"

namespace cachet {
namespace {

using kv::BlockHash;
using kv::BlockId;
using kv::BlockPool;
using kv::KvCacheManager;
using kv::PrefixMatch;
using kv::SeqBlocks;
using testing::chain_hash;
using testing::chance;
using testing::counting;
using testing::Key;
using testing::key_of;
using testing::TokenSource;
using testing::uniform;
using Tables = std::vector<const std::vector<BlockId>*>;

std::size_t idx(BlockId id) { return static_cast<std::size_t>(id.value); }

// ---------------------------------------------------------------------------------------
// The independent model of the cache.

class CacheModel {
 public:
  explicit CacheModel(const KvCacheManager& kv)
      : kv_(kv), reg_(static_cast<std::size_t>(kv.pool().num_blocks())) {}

  const std::vector<BlockId>& lru() const { return lru_; }
  const std::optional<Key>& registered(BlockId id) const { return reg_[idx(id)]; }
  bool contains(const Key& key) const { return index_.contains(key); }

  // What match() must return: the longest run of leading full blocks whose keys are all
  // registered, within the first `max_tokens` tokens.
  std::vector<BlockId> expected_match(const std::string& salt, const std::vector<TokenId>& tokens,
                                      std::int32_t max_tokens) const {
    std::vector<BlockId> out;
    if (!kv_.caching_enabled()) return out;
    const std::size_t bs = static_cast<std::size_t>(kv_.block_size());
    const std::size_t limit =
        std::min(tokens.size() / bs, static_cast<std::size_t>(std::max(0, max_tokens)) / bs);
    for (std::size_t b = 1; b <= limit; ++b) {
      auto it = index_.find(key_of(salt, tokens, b, kv_.block_size()));
      if (it == index_.end()) break;
      out.push_back(it->second);
    }
    return out;
  }

  void on_registered(BlockId id, Key key) {
    ASSERT_FALSE(reg_[idx(id)].has_value()) << "block " << id.value << " registered twice";
    ASSERT_TRUE(index_.emplace(key, id).second) << "two blocks registered with one content";
    reg_[idx(id)] = std::move(key);
  }
  // Matched blocks leave the LRU (they are referenced now).
  void on_ref(BlockId id) { std::erase(lru_, id); }
  // allocate(n) with `free_before` free blocks: the first ones come off the free stack, the
  // rest are evicted from the LRU's head in order. Checks that and forgets the evicted.
  void on_allocate(const std::vector<BlockId>& out, std::int64_t free_before,
                   const std::vector<bool>& was_free) {
    const std::size_t from_free =
        std::min(out.size(), static_cast<std::size_t>(std::max<std::int64_t>(0, free_before)));
    for (std::size_t i = 0; i < from_free; ++i)
      ASSERT_TRUE(was_free[idx(out[i])]) << "allocated block " << out[i].value << " was not free";
    const std::size_t evicted = out.size() - from_free;
    ASSERT_LE(evicted, lru_.size());
    for (std::size_t k = 0; k < evicted; ++k) {
      ASSERT_EQ(out[from_free + k], lru_[k])
          << "eviction " << k << " is not the least recently used cached block";
      index_.erase(*reg_[idx(lru_[k])]);
      reg_[idx(lru_[k])].reset();
    }
    lru_.erase(lru_.begin(), lru_.begin() + static_cast<std::ptrdiff_t>(evicted));
  }
  // release(chain) walks from the chain's end; registered blocks it leaves unreferenced join
  // the LRU's most-recent end, deepest first.
  void on_release(const std::vector<BlockId>& chain) {
    for (auto it = chain.rbegin(); it != chain.rend(); ++it)
      if (kv_.pool().ref_count(*it) == 0 && reg_[idx(*it)]) lru_.push_back(*it);
  }

  // The pool agrees with the model: registered blocks and their hashes, the cached set.
  void check() const {
    const BlockPool& pool = kv_.pool();
    std::set<BlockId> cached;
    for (std::int32_t i = 0; i < pool.num_blocks(); ++i) {
      const BlockId id{i};
      ASSERT_EQ(pool.hash(id).has_value(), reg_[idx(id)].has_value()) << "block " << i;
      if (reg_[idx(id)]) {
        ASSERT_EQ(*pool.hash(id), chain_hash(*reg_[idx(id)], kv_.block_size())) << "block " << i;
      }
      if (pool.is_cached(id)) cached.insert(id);
    }
    ASSERT_EQ(static_cast<std::int64_t>(lru_.size()), pool.num_cached());
    ASSERT_EQ(std::set<BlockId>(lru_.begin(), lru_.end()), cached);
  }

 private:
  const KvCacheManager& kv_;
  std::vector<std::optional<Key>> reg_;  // [num_blocks]: what each registered block holds
  std::map<Key, BlockId> index_;
  std::vector<BlockId> lru_;  // cached blocks, least recently used first
};

// Every observable count of the pool and of one sequence, to show a failed call changed
// nothing.
struct Snapshot {
  std::int64_t free, cached, in_use, evictions;
  std::vector<std::int32_t> refs;
  std::vector<std::optional<BlockHash>> hashes;
  std::vector<BlockId> blocks;
  std::int32_t num_registered;

  Snapshot(const KvCacheManager& kv, const SeqBlocks& seq)
      : free(kv.pool().num_free()),
        cached(kv.pool().num_cached()),
        in_use(kv.pool().num_in_use()),
        evictions(kv.pool().num_evictions()),
        blocks(seq.blocks),
        num_registered(seq.num_registered) {
    for (std::int32_t i = 0; i < kv.pool().num_blocks(); ++i) {
      refs.push_back(kv.pool().ref_count(BlockId{i}));
      hashes.push_back(kv.pool().hash(BlockId{i}));
    }
  }
  bool operator==(const Snapshot&) const = default;
};

std::vector<bool> free_blocks(const BlockPool& pool) {
  std::vector<bool> out;
  for (std::int32_t i = 0; i < pool.num_blocks(); ++i)
    out.push_back(pool.ref_count(BlockId{i}) == 0 && !pool.hash(BlockId{i}));
  return out;
}

// ---------------------------------------------------------------------------------------
// KvCacheManager under random operations.

struct ModelSeq {
  std::vector<TokenId> tokens;
  SeqBlocks kv;
  bool admitted = false;
  std::int32_t computed = 0;  // tokens whose K/V are written (and committed)
};

struct OpStats {
  std::int64_t ops = 0, admits_failed = 0, grows_failed = 0, hit_blocks = 0, registered = 0,
               duplicates = 0, evictions = 0;
};

class ManagerFuzz {
 public:
  ManagerFuzz(std::uint64_t seed, OpStats& stats)
      : rng_(seed),
        bs_(std::vector<int>{1, 2, 4, 16}[static_cast<std::size_t>(uniform(rng_, 0, 3))]),
        kv_(uniform(rng_, 8, 32), bs_, /*enable_caching=*/!chance(rng_, 0.1)),
        model_(kv_),
        source_(rng_, 3, 64 * bs_),
        stats_(stats) {}

  void run(int num_ops) {
    for (int op = 0; op < num_ops; ++op) {
      SCOPED_TRACE("op " + std::to_string(op));
      const int kind = uniform(rng_, 0, 99);
      if (kind < 14)
        create();
      else if (kind < 34)
        admit();
      else if (kind < 46)
        grow();
      else if (kind < 54)
        append();
      else if (kind < 74)
        commit();
      else if (kind < 90)
        release();
      else
        probe();
      if (::testing::Test::HasFatalFailure()) return;
      check();
      if (::testing::Test::HasFatalFailure()) return;
      ++stats_.ops;
    }
    stats_.evictions += kv_.pool().num_evictions();
  }

 private:
  ModelSeq* pick(bool admitted) {
    std::vector<ModelSeq*> c;
    for (auto& s : seqs_)
      if (s.admitted == admitted) c.push_back(&s);
    if (c.empty()) return nullptr;
    return c[static_cast<std::size_t>(uniform(rng_, 0, static_cast<int>(c.size()) - 1))];
  }

  void create() {
    if (seqs_.size() >= 8) return;
    // Up to the whole pool and a bit beyond, so that some admissions cannot succeed.
    const int max_blocks = static_cast<int>(kv_.pool().num_blocks()) * 5 / 4;
    ModelSeq s;
    s.tokens = source_.make(source_.length(bs_, max_blocks));
    static const std::string kSalts[] = {"", "", "", "tenant-a", "tenant-b"};
    s.kv.salt = kSalts[uniform(rng_, 0, 4)];
    seqs_.push_back(std::move(s));
  }

  // update_hashes + match against the model; returns the match.
  PrefixMatch match(ModelSeq& s, std::int32_t max_tokens) {
    kv_.update_hashes(s.kv, s.tokens);
    EXPECT_EQ(s.kv.hashes.size(), s.tokens.size() / static_cast<std::size_t>(bs_));
    PrefixMatch m = kv_.match(s.kv, s.tokens, max_tokens);
    EXPECT_EQ(m.blocks, model_.expected_match(s.kv.salt, s.tokens, max_tokens))
        << "match is not the longest registered prefix";
    EXPECT_EQ(m.num_tokens, static_cast<std::int32_t>(m.blocks.size()) * bs_);
    // Never a block whose stored content differs from the sequence's tokens.
    for (std::size_t b = 0; b < m.blocks.size(); ++b) {
      const auto& reg = model_.registered(m.blocks[b]);
      EXPECT_TRUE(reg && *reg == key_of(s.kv.salt, s.tokens, b + 1, bs_))
          << "matched block " << m.blocks[b].value << " holds other content";
    }
    return m;
  }

  std::int32_t random_max_tokens(const ModelSeq& s) {
    const auto size = static_cast<std::int32_t>(s.tokens.size());
    switch (uniform(rng_, 0, 2)) {
      case 0:
        return size;
      case 1:
        return size - 1;  // what the scheduler asks: the last token is always computed
      default:
        return uniform(rng_, 0, size);
    }
  }

  void probe() {
    if (seqs_.empty()) return;
    auto& s = seqs_[static_cast<std::size_t>(uniform(rng_, 0, static_cast<int>(seqs_.size()) - 1))];
    match(s, random_max_tokens(s));
  }

  void admit() {
    ModelSeq* s = pick(false);
    if (!s) return;
    PrefixMatch m = match(*s, random_max_tokens(*s));
    const auto size = static_cast<std::int32_t>(s->tokens.size());
    const std::int32_t total = uniform(rng_, std::max(1, m.num_tokens), std::max(1, size));
    const Snapshot before(kv_, s->kv);
    const auto was_free = free_blocks(kv_.pool());
    const std::int64_t need = (total + bs_ - 1) / bs_ - static_cast<std::int64_t>(m.blocks.size());
    std::int64_t from_lru = 0;
    for (BlockId id : m.blocks) from_lru += kv_.pool().is_cached(id);
    const bool fits = std::max<std::int64_t>(0, need) <= kv_.pool().num_allocatable() - from_lru;
    const bool ok = kv_.admit(s->kv, m, total);
    ASSERT_EQ(ok, fits) << "admit disagrees with the free and evictable block count";
    if (!ok) {
      ++stats_.admits_failed;
      ASSERT_TRUE(Snapshot(kv_, s->kv) == before) << "a failed admit changed the pool";
      return;
    }
    for (BlockId id : m.blocks) model_.on_ref(id);
    ASSERT_EQ(s->kv.blocks.size(), static_cast<std::size_t>((total + bs_ - 1) / bs_));
    ASSERT_TRUE(std::equal(m.blocks.begin(), m.blocks.end(), s->kv.blocks.begin()));
    ASSERT_EQ(s->kv.num_registered, static_cast<std::int32_t>(m.blocks.size()));
    model_.on_allocate(
        {s->kv.blocks.begin() + static_cast<std::ptrdiff_t>(m.blocks.size()), s->kv.blocks.end()},
        before.free, was_free);
    s->admitted = true;
    s->computed = m.num_tokens;
    stats_.hit_blocks += static_cast<std::int64_t>(m.blocks.size());
  }

  void grow() {
    ModelSeq* s = pick(true);
    if (!s) return;
    const auto covered = static_cast<std::int32_t>(s->kv.blocks.size()) * bs_;
    const std::int32_t total = covered + uniform(rng_, -bs_, 3 * bs_);
    const Snapshot before(kv_, s->kv);
    const auto was_free = free_blocks(kv_.pool());
    const std::int64_t need = kv_.blocks_needed(s->kv, total);
    const bool ok = kv_.grow(s->kv, total);
    ASSERT_EQ(ok, need <= before.free + before.cached);
    if (!ok) {
      ++stats_.grows_failed;
      ASSERT_TRUE(Snapshot(kv_, s->kv) == before) << "a failed grow changed the pool";
      return;
    }
    ASSERT_EQ(static_cast<std::int64_t>(s->kv.blocks.size()),
              static_cast<std::int64_t>(before.blocks.size()) + need);
    model_.on_allocate({s->kv.blocks.begin() + static_cast<std::ptrdiff_t>(before.blocks.size()),
                        s->kv.blocks.end()},
                       before.free, was_free);
  }

  void append() {  // a decode step's new tokens, sometimes a family's continuation
    if (seqs_.empty()) return;
    auto& s = seqs_[static_cast<std::size_t>(uniform(rng_, 0, static_cast<int>(seqs_.size()) - 1))];
    for (int n = uniform(rng_, 1, 2 * bs_); n > 0; --n) s.tokens.push_back(uniform(rng_, 0, 999));
  }

  void commit() {
    ModelSeq* s = pick(true);
    if (!s) return;
    const auto cover = static_cast<std::int32_t>(
        std::min(s->tokens.size(), s->kv.blocks.size() * static_cast<std::size_t>(bs_)));
    if (cover < s->computed) return;
    const std::int32_t n = uniform(rng_, s->computed, cover);
    const std::int32_t old_registered = s->kv.num_registered;
    std::vector<bool> had_hash;
    for (BlockId id : s->kv.blocks) had_hash.push_back(kv_.pool().hash(id).has_value());
    // Which blocks registration must take: those not already held under the same content.
    const std::size_t full = std::min<std::size_t>(n / bs_, s->kv.blocks.size());
    std::vector<bool> expect_new(s->kv.blocks.size(), false);
    for (std::size_t b = static_cast<std::size_t>(old_registered); b < full; ++b) {
      ASSERT_FALSE(had_hash[b]) << "an unregistered table entry already has a hash";
      expect_new[b] =
          kv_.caching_enabled() && !model_.contains(key_of(s->kv.salt, s->tokens, b + 1, bs_));
    }
    const std::vector<BlockId> table_before = s->kv.blocks;
    kv_.commit(s->kv, s->tokens, n);
    s->computed = n;
    // The content of table entry b (only full blocks within the tokens have one).
    const auto key = [&](std::size_t b) { return key_of(s->kv.salt, s->tokens, b + 1, bs_); };
    for (std::size_t b = 0; b < s->kv.blocks.size(); ++b) {
      if (s->kv.blocks[b] != table_before[b]) {
        // A duplicate: the table now holds the block registered with this content.
        ASSERT_TRUE(b >= static_cast<std::size_t>(old_registered) && b < full && !expect_new[b])
            << "table entry " << b << " was swapped but is not a duplicate";
        ASSERT_EQ(model_.registered(s->kv.blocks[b]), key(b)) << "swapped for other content";
        model_.on_ref(s->kv.blocks[b]);
        ++stats_.duplicates;
        continue;
      }
      const bool is_new = !had_hash[b] && kv_.pool().hash(s->kv.blocks[b]).has_value();
      ASSERT_EQ(is_new, expect_new[b]) << "block index " << b << " of the table";
      if (is_new) {
        model_.on_registered(s->kv.blocks[b], key(b));
        ++stats_.registered;
      }
    }
    if (kv_.caching_enabled()) {
      ASSERT_EQ(s->kv.num_registered, std::max<std::int32_t>(old_registered, full));
    }
  }

  void release() {
    ModelSeq* s = pick(true);
    if (!s) return;
    const auto chain = s->kv.blocks;
    kv_.free(s->kv);
    model_.on_release(chain);
    s->admitted = false;
    s->computed = 0;
    // Sometimes the request is done; otherwise it stays to come back (a preemption).
    if (chance(rng_, 0.5)) std::erase_if(seqs_, [&](const ModelSeq& x) { return &x == s; });
  }

  void check() {
    Tables tables;
    for (const auto& s : seqs_) {
      if (s.admitted) {
        tables.push_back(&s.kv.blocks);
      } else {
        ASSERT_TRUE(s.kv.blocks.empty());
      }
    }
    kv_.check_integrity(tables);
    model_.check();
    if (::testing::Test::HasFatalFailure()) return;
    // Every block a table holds that is registered holds this sequence's tokens.
    for (const auto& s : seqs_) {
      if (!s.admitted) continue;
      ASSERT_GE(static_cast<std::int64_t>(s.kv.blocks.size()) * bs_, s.computed);
      for (std::size_t b = 0; b < s.kv.blocks.size(); ++b) {
        const auto& reg = model_.registered(s.kv.blocks[b]);
        if (reg) {
          ASSERT_EQ(*reg, key_of(s.kv.salt, s.tokens, b + 1, bs_)) << "table entry " << b;
        }
      }
    }
  }

  std::mt19937_64 rng_;
  std::int32_t bs_;
  KvCacheManager kv_;
  CacheModel model_;
  TokenSource source_;
  std::vector<ModelSeq> seqs_;
  OpStats& stats_;
};

TEST(KvCacheManagerProperty, RandomOperationsKeepIntegrityAndMatchTheModel) {
  constexpr int kSequences = 2000, kOpsEach = 100;
  OpStats stats;
  for (int i = 0; i < kSequences; ++i) {
    const std::uint64_t seed = 0x5eed0000u + static_cast<std::uint64_t>(i);
    SCOPED_TRACE("seed " + std::to_string(seed));
    ManagerFuzz(seed, stats).run(kOpsEach);
    if (HasFatalFailure() || HasFailure()) return;
  }
  // The operations must really have exercised what the properties are about.
  EXPECT_EQ(stats.ops, std::int64_t{kSequences} * kOpsEach);
  EXPECT_GT(stats.hit_blocks, 5000);
  EXPECT_GT(stats.evictions, 10000);
  EXPECT_GT(stats.duplicates, 100);
  EXPECT_GT(stats.admits_failed, 100);
  EXPECT_GT(stats.grows_failed, 100);
  std::printf(
      "[ stats    ] %lld ops, %lld registrations, %lld duplicates, %lld hit blocks, "
      "%lld evictions, %lld failed admits, %lld failed grows\n",
      static_cast<long long>(stats.ops), static_cast<long long>(stats.registered),
      static_cast<long long>(stats.duplicates), static_cast<long long>(stats.hit_blocks),
      static_cast<long long>(stats.evictions), static_cast<long long>(stats.admits_failed),
      static_cast<long long>(stats.grows_failed));
}

// ---------------------------------------------------------------------------------------
// Focused tests.

SeqBlocks admit_all(KvCacheManager& kv, const std::vector<TokenId>& tokens, std::string salt = "") {
  SeqBlocks seq;
  seq.salt = std::move(salt);
  kv.update_hashes(seq, tokens);
  PrefixMatch m = kv.match(seq, tokens, static_cast<std::int32_t>(tokens.size()));
  EXPECT_TRUE(kv.admit(seq, m, static_cast<std::int32_t>(tokens.size())));
  kv.commit(seq, tokens, static_cast<std::int32_t>(tokens.size()));
  return seq;
}

// Evicts one block by allocating it to a throwaway table; returns which block it was.
BlockId evict_one(KvCacheManager& kv, SeqBlocks& sink) {
  EXPECT_EQ(kv.pool().num_free(), 0);
  const std::size_t before = sink.blocks.size();
  EXPECT_TRUE(kv.grow(sink, static_cast<std::int32_t>(before + 1) * kv.block_size()));
  return sink.blocks.back();
}

TEST(KvCacheManagerLru, EvictsLeastRecentlyReleasedFirstAndDeepestFirstWithinARelease) {
  constexpr std::int32_t kBs = 4;
  KvCacheManager kv(9, kBs, true);
  // a and b share their first two blocks; c is unrelated: 3 + 1 + 3 = 7 blocks, 2 free.
  const auto ta = counting(12, 0);
  auto tb = counting(8, 0);
  for (TokenId t : counting(4, 500)) tb.push_back(t);
  const auto tc = counting(12, 900);
  SeqBlocks a = admit_all(kv, ta), b = admit_all(kv, tb), c = admit_all(kv, tc);
  const auto ba = a.blocks, bb = b.blocks, bc = c.blocks;  // free() clears the tables
  ASSERT_EQ(b.num_registered, 3);
  ASSERT_EQ(bb[0], ba[0]);
  ASSERT_EQ(bb[1], ba[1]);
  ASSERT_EQ(kv.pool().num_free(), 2);
  // Release order c, a, b. When a goes only its own tail becomes unreferenced; the shared
  // blocks follow b's tail when b goes, deepest first.
  kv.free(c);
  kv.free(a);
  kv.free(b);
  kv.check_integrity(Tables{});
  ASSERT_EQ(kv.pool().num_cached(), 7);
  SeqBlocks sink;
  ASSERT_TRUE(kv.grow(sink, 2 * kBs));  // the two free blocks: no eviction yet
  EXPECT_EQ(kv.pool().num_evictions(), 0);
  const std::vector<BlockId> expected = {bc[2], bc[1], bc[0], ba[2], bb[2], bb[1], bb[0]};
  for (std::size_t k = 0; k < expected.size(); ++k) {
    EXPECT_EQ(evict_one(kv, sink), expected[k]) << "eviction " << k;
    EXPECT_FALSE(kv.pool().hash(expected[k]).has_value());
    kv.check_integrity(Tables{&sink.blocks});
  }
  EXPECT_EQ(kv.pool().num_evictions(), 7);
  EXPECT_FALSE(kv.grow(sink, 10 * kBs));
}

TEST(KvCacheManagerLru, AHitMakesTheWholeMatchedChainMostRecent) {
  constexpr std::int32_t kBs = 2;
  KvCacheManager kv(6, kBs, true);
  SeqBlocks a = admit_all(kv, counting(6, 0)), b = admit_all(kv, counting(6, 100));
  const auto ba = a.blocks, bb = b.blocks;
  kv.free(a);
  kv.free(b);  // LRU: a2 a1 a0 b2 b1 b0
  // A hit on a's first two blocks (not the third) and a release puts them after b's.
  SeqBlocks again = admit_all(kv, counting(4, 0));
  ASSERT_EQ(again.blocks, std::vector<BlockId>(ba.begin(), ba.begin() + 2));
  kv.free(again);  // LRU: a2 b2 b1 b0 a1 a0
  SeqBlocks sink;
  const std::vector<BlockId> expected = {ba[2], bb[2], bb[1], bb[0], ba[1], ba[0]};
  for (std::size_t k = 0; k < expected.size(); ++k) EXPECT_EQ(evict_one(kv, sink), expected[k]);
}

TEST(KvCacheManagerLru, PartialBlocksAreFreedAndADuplicateIsSwappedForTheCachedBlock) {
  constexpr std::int32_t kBs = 4;
  KvCacheManager kv(8, kBs, true);
  // Two sequences admitted before either commits compute the same full block twice: the
  // second commit finds the first's block holding that content, takes it into its table and
  // frees its own copy; partial blocks are freed on release.
  const auto t = counting(6, 0);
  SeqBlocks a, b;
  kv.update_hashes(a, t);
  kv.update_hashes(b, t);
  ASSERT_TRUE(kv.admit(a, kv.match(a, t, 6), 6));
  ASSERT_TRUE(kv.admit(b, kv.match(b, t, 6), 6));
  const BlockId b_copy = b.blocks[0];
  kv.commit(a, t, 6);
  kv.commit(b, t, 6);
  EXPECT_TRUE(kv.pool().hash(a.blocks[0]).has_value());
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_EQ(kv.pool().ref_count(a.blocks[0]), 2);
  EXPECT_FALSE(kv.pool().hash(b_copy).has_value());
  EXPECT_EQ(b.num_registered, 1);  // registered: the table's block is the registered one
  EXPECT_EQ(kv.pool().num_free(), 5);
  kv.check_integrity(Tables{&a.blocks, &b.blocks});
  kv.free(b);
  EXPECT_EQ(kv.pool().num_cached(), 0);
  EXPECT_EQ(kv.pool().num_free(), 6);
  kv.free(a);
  EXPECT_EQ(kv.pool().num_cached(), 1);
  kv.check_integrity(Tables{});
}

TEST(KvCacheManagerSalt, SameTokensShareOnlyUnderTheSameSalt) {
  constexpr std::int32_t kBs = 4;
  KvCacheManager kv(32, kBs, true);
  const auto t = counting(12, 0);
  SeqBlocks owner = admit_all(kv, t, "tenant-a");
  kv.free(owner);
  for (const std::string salt : {"", "tenant-b", "tenant-a "}) {
    SeqBlocks other;
    other.salt = salt;
    kv.update_hashes(other, t);
    EXPECT_TRUE(kv.match(other, t, 12).blocks.empty()) << "salt '" << salt << "'";
  }
  SeqBlocks same;
  same.salt = "tenant-a";
  kv.update_hashes(same, t);
  EXPECT_EQ(kv.match(same, t, 12).blocks.size(), 3u);
  // An unsalted owner is not visible to salted requests either.
  SeqBlocks plain = admit_all(kv, counting(8, 50));
  kv.free(plain);
  SeqBlocks salted;
  salted.salt = "x";
  const auto t2 = counting(8, 50);
  kv.update_hashes(salted, t2);
  EXPECT_TRUE(kv.match(salted, t2, 8).blocks.empty());
}

TEST(KvCacheManagerCollision, AForgedHashWithOtherContentNeverHits) {
  constexpr std::int32_t kBs = 4;
  KvCacheManager kv(16, kBs, true);
  const auto t = counting(12, 0);
  SeqBlocks owner = admit_all(kv, t);
  const auto hashes = owner.hashes;
  const auto blocks = owner.blocks;
  kv.free(owner);
  const BlockPool& pool = kv.pool();
  const std::span<const TokenId> all(t);
  const auto first = kv::ChainLink::first("");
  const auto after = [&](BlockId id) { return kv::ChainLink::after(pool.content_of(id)); };
  // Right hash and parent: hit. Right hash, other tokens or another parent: no hit.
  EXPECT_EQ(pool.lookup(hashes[1], after(blocks[0]), all.subspan(4, 4)), blocks[1]);
  auto other = counting(4, 4);
  other[3] = 999;
  EXPECT_FALSE(pool.lookup(hashes[1], after(blocks[0]), other).has_value());
  EXPECT_FALSE(pool.lookup(hashes[1], after(blocks[2]), all.subspan(4, 4)).has_value());
  EXPECT_FALSE(pool.lookup(hashes[1], first, all.subspan(4, 4)).has_value());
  EXPECT_FALSE(pool.lookup(hashes[0], after(blocks[0]), all.first(4)).has_value());
  EXPECT_FALSE(pool.lookup(hashes[0], first, all.subspan(1, 4)).has_value());
  EXPECT_FALSE(pool.lookup(hashes[0], first, all.first(3)).has_value());  // short block
  // Through the manager: a sequence whose hashes collide with the owner's (forged) but whose
  // tokens differ in block 1 gets block 0 only; differing in block 0, nothing.
  auto t1 = t;
  t1[5] = 777;
  SeqBlocks forged;
  forged.hashes = hashes;
  EXPECT_EQ(kv.match(forged, t1, 12).blocks, std::vector<BlockId>{blocks[0]});
  auto t0 = t;
  t0[0] = 777;
  EXPECT_TRUE(kv.match(forged, t0, 12).blocks.empty());
  kv.check_integrity(Tables{});
}

// First blocks X and Y with the same hash H (forged), Y registered first, then X's child Z:
// a request [Y, Z] must not get Z, whose K/V attended to X. Before the fix, X's refused
// registration was passed over and Z registered under H, so the request matched [Y, Z].
TEST(KvCacheManagerCollision, AChildIsNeverServedAfterACollidingParent) {
  constexpr std::int32_t kBs = 4;
  KvCacheManager kv(16, kBs, true);
  const auto ty = counting(4, 0), tx = counting(4, 100), tz = counting(4, 200);
  const BlockHash h{7, 7}, hz{9, 9};
  auto commit_forged = [&](std::vector<TokenId> t, std::vector<BlockHash> hashes) {
    SeqBlocks s;
    s.hashes = std::move(hashes);
    EXPECT_TRUE(kv.admit(s, {}, static_cast<std::int32_t>(t.size())));
    kv.commit(s, t, static_cast<std::int32_t>(t.size()));
    return s;
  };
  SeqBlocks y = commit_forged(ty, {h});
  auto x_then_z = tx;
  x_then_z.insert(x_then_z.end(), tz.begin(), tz.end());
  SeqBlocks x = commit_forged(x_then_z, {h, hz});
  auto y_then_z = ty;
  y_then_z.insert(y_then_z.end(), tz.begin(), tz.end());
  SeqBlocks request;
  request.hashes = {h, hz};
  EXPECT_EQ(kv.match(request, y_then_z, 8).blocks, std::vector<BlockId>{y.blocks[0]});
}

TEST(KvCacheManagerFailure, FailedAdmitWithCachedMatchLeavesEverythingAsItWas) {
  constexpr std::int32_t kBs = 4;
  KvCacheManager kv(4, kBs, true);
  SeqBlocks a = admit_all(kv, counting(8, 0));
  kv.free(a);  // 2 cached, 2 free
  // Matching the 2 cached blocks makes them unevictable: 2 allocatable remain for 3 fresh.
  SeqBlocks b;
  const auto t = counting(20, 0);
  kv.update_hashes(b, t);
  PrefixMatch m = kv.match(b, t, 20);
  ASSERT_EQ(m.blocks.size(), 2u);
  const Snapshot before(kv, b);
  EXPECT_FALSE(kv.admit(b, m, 20));
  EXPECT_TRUE(Snapshot(kv, b) == before);
  EXPECT_TRUE(kv.admit(b, m, 16));
  kv.check_integrity(Tables{&b.blocks});
}

}  // namespace
}  // namespace cachet

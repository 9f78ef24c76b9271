// The KV block manager (Scheduler over KvCacheManager over BlockPool) driven by a
// fuzzer-chosen sequence of operations: submit requests with random shared prefixes and
// salts, step (schedule, commit, append a decoded token or finish), finish or abort any
// request at any time, in a pool of 2-24 blocks so eviction and preemption happen all the
// time. After every operation:
//  - BlockPool::check_integrity over every block table (it aborts on a violation);
//  - free + cached + in use = all blocks;
//  - every registered block still has the hash of the content it was registered with, and
//    every block a request holds that is registered holds that request's own tokens (the
//    prefix cache never serves foreign or stale K/V);
//  - a scheduled request runs with blocks for every token it computes, within the budgets.
// At the end, once every request is ended, no block is in use.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "fuzz_util.h"
#include "kv/block_hash.h"
#include "kv/kv_cache_manager.h"
#include "support/kv_fuzz.h"

using namespace cachet;

namespace {

using cachet::testing::chain_hash;
using cachet::testing::Key;

// Whether block `b` of `s` (its tokens up to the end of that block) is `key`, without a copy.
bool holds(const engine::Sequence& s, std::size_t b, std::int32_t bs, const Key& key) {
  const std::size_t end = (b + 1) * static_cast<std::size_t>(bs);
  return key.first == s.kv.salt && key.second.size() == end && s.tokens.size() >= end &&
         std::equal(key.second.begin(), key.second.end(), s.tokens.begin());
}

// The token a "model" emits next: a function of the recent tokens, so requests with equal
// prompts decode equal text and share decode blocks too.
TokenId next_token(const std::vector<TokenId>& t) {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = t.size() > 6 ? t.size() - 6 : 0; i < t.size(); ++i)
    h = (h ^ static_cast<std::uint32_t>(t[i])) * 16777619u;
  return static_cast<TokenId>(h % 7);
}

class Driver {
 public:
  explicit Driver(fuzz::ByteReader& in)
      : in_(in),
        bs_(std::vector<int>{1, 2, 4, 16}[static_cast<std::size_t>(in.range(0, 3))]),
        num_blocks_(in.range(2, 24)),
        kv_(num_blocks_, bs_, /*enable_caching=*/in.byte() % 8 != 0),
        config_{in.range(1, 8), in.range(1, 64),
                in.flag() ? SchedulePolicy::kFcfs : SchedulePolicy::kCacheAware, in.range(1, 4)},
        scheduler_(config_, kv_) {
    // Three "system prompts" that requests share prefixes of; tokens 0..6 like decodes.
    for (int f = 0; f < 3; ++f) {
      families_.emplace_back();
      for (int i = 0; i < 48; ++i) families_.back().push_back((f * 31 + i * 7) % 9);
    }
  }

  void run() {
    for (int op = 0; op < 1000 && !in_.empty(); ++op) {
      switch (in_.range(0, 5)) {
        case 0:
        case 1:
          submit();
          break;
        case 2:
        case 3:
          step();
          break;
        case 4:
          end_one();
          break;
        default:
          for (int n = in_.range(1, 16); n > 0 && scheduler_.has_work(); --n) step();
      }
      check();
    }
    for (auto& s : seqs_)
      if (live(*s)) end(*s);
    check();
    fuzz::require(kv_.pool().num_in_use() == 0, "blocks still in use after every request ended");
  }

 private:
  bool live(const engine::Sequence& s) const { return !ended_.contains(s.id); }

  void submit() {
    auto s = std::make_unique<engine::Sequence>();
    s->id = seqs_.size();
    s->arrival = seqs_.size();
    const auto& family = families_[static_cast<std::size_t>(in_.range(0, 2))];
    const int len = in_.range(1, 60);
    const int shared = std::min(in_.range(0, len), static_cast<int>(family.size()));
    s->tokens.assign(family.begin(), family.begin() + shared);
    while (s->size() < len) s->tokens.push_back(in_.range(0, 9));
    s->num_prompt_tokens = s->size();
    if (in_.byte() % 5 == 0) s->kv.salt = "salt";
    if (in_.byte() % 7 == 0) s->params.prompt_logprobs = 1;
    max_len_.push_back(s->size() + in_.range(0, 24));
    scheduler_.add(s.get());
    seqs_.push_back(std::move(s));
  }

  void end(engine::Sequence& s) {
    scheduler_.finish(&s);
    ended_.insert(s.id);
  }

  // Finish or abort: the same call, at any point of a request's life.
  void end_one() {
    if (seqs_.empty()) return;
    auto& s = *seqs_[static_cast<std::size_t>(in_.range(0, 255)) % seqs_.size()];
    if (live(s)) end(s);
  }

  void step() {
    if (!scheduler_.has_work()) return;
    engine::Step step = scheduler_.schedule();
    fuzz::require(!step.empty() || !step.unservable.empty(), "schedule() made no progress");
    for (engine::Sequence* u : step.unservable) {
      fuzz::require(u->size() > num_blocks_ * bs_,
                    "a request that fits the pool alone was reported unservable");
      end(*u);
    }
    std::int32_t tokens = 0;
    for (const auto& e : step.seqs) {
      const engine::Sequence& s = *e.seq;
      fuzz::require(live(s), "an ended request was scheduled");
      fuzz::require(e.num_tokens >= 1 && s.num_computed + e.num_tokens <= s.size(),
                    "scheduled token range outside the request");
      fuzz::require(
          static_cast<std::int64_t>(s.kv.blocks.size()) * bs_ >= s.num_computed + e.num_tokens,
          "request scheduled without blocks for its tokens");
      tokens += e.num_tokens;
    }
    fuzz::require(tokens <= config_.max_num_batched_tokens, "token budget exceeded");
    fuzz::require(static_cast<std::int32_t>(step.seqs.size()) <= config_.max_num_seqs,
                  "sequence budget exceeded");
    forget_evicted();
    check();

    scheduler_.commit(step);
    for (const auto& e : step.seqs) {
      engine::Sequence& s = *e.seq;
      for (std::size_t b = 0; b < s.kv.blocks.size(); ++b) {
        const kv::BlockId id = s.kv.blocks[b];
        if (kv_.pool().hash(id) && !content_.contains(id.value)) {
          Key key = cachet::testing::key_of(s.kv.salt, s.tokens, b + 1, bs_);
          const kv::BlockHash hash = chain_hash(key, bs_);
          content_.emplace(id.value, Registered{std::move(key), hash});
        }
      }
      if (s.num_computed != s.size()) continue;
      if (s.size() >= max_len_[s.id])
        end(s);
      else
        s.tokens.push_back(next_token(s.tokens));
    }
  }

  // Eviction drops a block's hash; what we knew of its content goes with it.
  void forget_evicted() {
    for (auto it = content_.begin(); it != content_.end();) {
      if (!kv_.pool().hash(kv::BlockId{it->first}))
        it = content_.erase(it);
      else
        ++it;
    }
  }

  void check() {
    const auto tables = scheduler_.block_tables();
    kv_.check_integrity(tables);
    const auto& pool = kv_.pool();
    fuzz::require(pool.num_free() + pool.num_cached() + pool.num_in_use() == num_blocks_,
                  "free + cached + in use != all blocks");
    forget_evicted();
    for (std::int32_t i = 0; i < num_blocks_; ++i) {
      const auto& h = pool.hash(kv::BlockId{i});
      if (!h) continue;
      auto it = content_.find(i);
      fuzz::require(it != content_.end(), "a block got a hash without a commit");
      fuzz::require(*h == it->second.hash, "a block's hash differs from its content");
    }
    for (const auto& s : seqs_) {
      if (!live(*s)) continue;
      for (std::size_t b = 0; b < s->kv.blocks.size(); ++b) {
        auto it = content_.find(s->kv.blocks[b].value);
        if (it == content_.end()) continue;
        fuzz::require(holds(*s, b, bs_, it->second.key),
                      "request " + std::to_string(s->id) + " holds a block with other content");
      }
    }
  }

  fuzz::ByteReader& in_;
  std::int32_t bs_;
  std::int32_t num_blocks_;
  kv::KvCacheManager kv_;
  engine::SchedulerConfig config_;
  engine::Scheduler scheduler_;
  std::vector<std::vector<TokenId>> families_;
  std::vector<std::unique_ptr<engine::Sequence>> seqs_;
  std::vector<std::int32_t> max_len_;
  std::set<RequestId> ended_;
  // Registered block -> what it holds, and the chain hash of that, computed from scratch.
  struct Registered {
    Key key;
    kv::BlockHash hash;
  };
  std::map<std::int32_t, Registered> content_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::ByteReader in(data, size);
  try {
    Driver(in).run();
  } catch (const std::exception& e) {
    fuzz::bug(std::string("the block manager threw: ") + e.what());
  }
  return 0;
}

// Prefix-cache bookkeeping costs on the CPU, per block and per engine step: block hashing,
// prefix matching, allocation with eviction, and one scheduler step over hundreds of
// decoding requests. Targets: well under 1 us per block, under 100 us per step at 256
// running requests. The `per_block` / `per_step` counters are CPU time per item.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "cachet/config.h"
#include "engine/scheduler.h"
#include "kv/block_hash.h"
#include "kv/kv_cache_manager.h"

namespace {

using cachet::SchedulePolicy;
using cachet::TokenId;
using cachet::engine::Scheduler;
using cachet::engine::SchedulerConfig;
using cachet::engine::Sequence;
using cachet::engine::Step;
using cachet::kv::BlockHash;
using cachet::kv::KvCacheManager;
using cachet::kv::PrefixMatch;
using cachet::kv::SeqBlocks;

constexpr std::int32_t kBlockSize = 16;

std::vector<TokenId> random_tokens(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<TokenId> dist(0, 127999);
  std::vector<TokenId> t(n);
  for (auto& x : t) x = dist(rng);
  return t;
}

// CPU time per item (block, request or step): an inverted rate, printed in seconds with an
// SI prefix ("22.5ns").
benchmark::Counter time_per(double count) {
  return benchmark::Counter(count, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Computes and commits `tokens` as one request, then releases it: its full blocks stay cached.
void cache_prefix(KvCacheManager& kv, const std::vector<TokenId>& tokens) {
  SeqBlocks s;
  const auto n = static_cast<std::int32_t>(tokens.size());
  kv.update_hashes(s, tokens);
  if (!kv.admit(s, kv.match(s, tokens, n), n)) std::abort();
  kv.commit(s, tokens, n);
  kv.free(s);
}

// --- hashing and lookup -----------------------------------------------------------------

void BM_HashNextBlock(benchmark::State& state) {
  const auto tokens = random_tokens(kBlockSize, 1);
  BlockHash h = cachet::kv::hash_first_block(tokens, "");
  for (auto _ : state) {
    h = cachet::kv::hash_next_block(h, tokens);
    benchmark::DoNotOptimize(h);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["per_block"] = time_per(static_cast<double>(state.iterations()));
}
BENCHMARK(BM_HashNextBlock);

// match() over a 64-block prefix that is entirely cached: one exact lookup per block.
void BM_Match64(benchmark::State& state) {
  constexpr int kBlocks = 64;
  KvCacheManager kv(4096, kBlockSize, true);
  const auto tokens = random_tokens(kBlocks * kBlockSize, 2);
  cache_prefix(kv, tokens);
  SeqBlocks q;
  kv.update_hashes(q, tokens);
  for (auto _ : state) {
    PrefixMatch m = kv.match(q, tokens, kBlocks * kBlockSize);
    if (m.blocks.size() != kBlocks) state.SkipWithError("prefix not fully cached");
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations() * kBlocks);
  state.counters["per_block"] = time_per(static_cast<double>(state.iterations()) * kBlocks);
}
BENCHMARK(BM_Match64);

// What admission costs a new request with a 64-block cached prefix: hash it, then match it.
void BM_HashAndMatch64(benchmark::State& state) {
  constexpr int kBlocks = 64;
  KvCacheManager kv(4096, kBlockSize, true);
  const auto tokens = random_tokens(kBlocks * kBlockSize, 3);
  cache_prefix(kv, tokens);
  SeqBlocks q;
  for (auto _ : state) {
    q.hashes.clear();
    kv.update_hashes(q, tokens);
    PrefixMatch m = kv.match(q, tokens, kBlocks * kBlockSize);
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations() * kBlocks);
  state.counters["per_block"] = time_per(static_cast<double>(state.iterations()) * kBlocks);
}
BENCHMARK(BM_HashAndMatch64);

// --- allocation -------------------------------------------------------------------------

// A pool whose every block is cached (a warm cache): 4096 blocks of registered content.
std::unique_ptr<KvCacheManager> warm_pool() {
  auto kv = std::make_unique<KvCacheManager>(4096, kBlockSize, true);
  for (int i = 0; i < 64; ++i) cache_prefix(*kv, random_tokens(64 * kBlockSize, 100 + i));
  return kv;
}

// admit + free of an N-block request with nothing to hit. The first admissions evict from
// the LRU; later ones reuse the freed (unregistered) blocks from the free stack.
void BM_AdmitFree(benchmark::State& state) {
  const auto n = static_cast<std::int32_t>(state.range(0));
  auto kv = warm_pool();
  const std::int64_t evictions_before = kv->pool().num_evictions();
  PrefixMatch none;
  for (auto _ : state) {
    SeqBlocks s;
    if (!kv->admit(s, none, n * kBlockSize)) state.SkipWithError("admit failed");
    kv->free(s);
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["per_block"] = time_per(static_cast<double>(state.iterations()) * n);
  state.counters["evictions"] = static_cast<double>(kv->pool().num_evictions() - evictions_before);
}
BENCHMARK(BM_AdmitFree)->Arg(1)->Arg(8)->Arg(64);

// The whole life of N blocks of new content in a full cache: hash, match (a miss), admit
// (evicting N least recently used blocks), commit (register N), free (N join the LRU).
void BM_AdmitCommitFree(benchmark::State& state) {
  const auto n = static_cast<std::int32_t>(state.range(0));
  auto kv = warm_pool();
  auto tokens = random_tokens(static_cast<std::size_t>(n) * kBlockSize, 4);
  const std::int64_t evictions_before = kv->pool().num_evictions();
  TokenId unique = 200000;
  for (auto _ : state) {
    tokens[0] = unique++;  // new content: every block's chain hash differs
    SeqBlocks s;
    kv->update_hashes(s, tokens);
    PrefixMatch m = kv->match(s, tokens, n * kBlockSize);
    if (!kv->admit(s, m, n * kBlockSize)) state.SkipWithError("admit failed");
    kv->commit(s, tokens, n * kBlockSize);
    kv->free(s);
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["per_block"] = time_per(static_cast<double>(state.iterations()) * n);
  state.counters["evictions_per_block"] =
      benchmark::Counter(static_cast<double>(kv->pool().num_evictions() - evictions_before) /
                         static_cast<double>(std::max<std::int64_t>(1, state.iterations() * n)));
}
BENCHMARK(BM_AdmitCommitFree)->Arg(1)->Arg(8)->Arg(64);

// --- one scheduler step -----------------------------------------------------------------

// `running` requests of ~500 tokens (a 384-token prefix shared by groups of requests, then
// 116 of their own), all past their prefill and decoding; optionally `waiting` more that
// cannot be admitted (max_num_seqs is reached), as under a sustained load.
class DecodeWorld {
 public:
  static constexpr int kPrefix = 384, kOwn = 116, kFamilies = 8;

  DecodeWorld(int running, int waiting, SchedulePolicy policy)
      : kv_(static_cast<std::int64_t>(running) * 56 + 1024, kBlockSize, true),
        scheduler_(SchedulerConfig{running, 16384, policy, 64}, kv_),
        seqs_(static_cast<std::size_t>(running + waiting)) {
    std::vector<std::vector<TokenId>> families;
    for (int f = 0; f < kFamilies; ++f) families.push_back(random_tokens(kPrefix, 1000 + f));
    for (std::size_t i = 0; i < seqs_.size(); ++i) {
      Sequence& s = seqs_[i];
      s.id = i;
      s.arrival = i;
      s.tokens = families[i % kFamilies];
      const auto own = random_tokens(kOwn, 5000 + i);
      s.tokens.insert(s.tokens.end(), own.begin(), own.end());
      s.num_prompt_tokens = s.size();
    }
    for (int i = 0; i < running; ++i) scheduler_.add(&seqs_[static_cast<std::size_t>(i)]);
    // Prefill until every request decodes: the last prompt token is computed and one
    // generated token waits to run.
    while (true) {
      Step step = scheduler_.schedule();
      if (!step.unservable.empty()) std::abort();
      bool all_decoding = true;
      for (const auto& e : step.seqs)
        all_decoding &= e.num_tokens == 1 && e.seq->num_generated() > 0;
      if (all_decoding && static_cast<int>(step.seqs.size()) == running) break;
      forward(step);
    }
    for (int i = running; i < running + waiting; ++i)
      scheduler_.add(&seqs_[static_cast<std::size_t>(i)]);
  }

  Scheduler& scheduler() { return scheduler_; }
  const KvCacheManager& kv() const { return kv_; }

  // What the engine does around the model: commit the step, append a sampled token to
  // every request whose tokens are all computed.
  void forward(const Step& step) {
    scheduler_.commit(step);
    for (const auto& e : step.seqs)
      if (e.seq->num_computed == e.seq->size()) e.seq->tokens.push_back(e.seq->size() % 1000);
  }

 private:
  KvCacheManager kv_;
  Scheduler scheduler_;
  std::vector<Sequence> seqs_;  // never resized: the scheduler holds pointers
};

// schedule() + commit() + one appended token per request, per step. Every 256 steps the
// world is rebuilt (untimed) so the requests stay at ~500-750 tokens.
void BM_SchedulerDecodeStep(benchmark::State& state) {
  const auto running = static_cast<int>(state.range(0));
  const auto waiting = static_cast<int>(state.range(1));
  const auto policy = state.range(2) ? SchedulePolicy::kCacheAware : SchedulePolicy::kFcfs;
  auto world = std::make_unique<DecodeWorld>(running, waiting, policy);
  int steps = 0;
  for (auto _ : state) {
    Step step = world->scheduler().schedule();
    if (static_cast<int>(step.seqs.size()) != running) state.SkipWithError("not all decoding");
    world->forward(step);
    if (++steps == 256) {
      state.PauseTiming();
      world.reset();
      world = std::make_unique<DecodeWorld>(running, waiting, policy);
      steps = 0;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations() * running);
  state.counters["per_step"] = time_per(static_cast<double>(state.iterations()));
  state.counters["per_request"] = time_per(static_cast<double>(state.iterations()) * running);
}
// {running, waiting, cache-aware}
BENCHMARK(BM_SchedulerDecodeStep)
    ->ArgNames({"running", "waiting", "cache_aware"})
    ->Args({256, 0, 0})
    ->Args({1024, 0, 0})
    ->Args({256, 64, 0})
    ->Args({1024, 64, 0})
    ->Args({256, 64, 1})
    ->Args({1024, 64, 1})
    ->Unit(benchmark::kMicrosecond);

// The KV block-accounting check the engine runs after a step when
// EngineConfig::check_kv_integrity is on: `running` decoding requests of ~500 tokens in a
// pool of running * 56 + 1024 blocks (most of them registered: shared prefixes, cached tails).
void BM_IntegrityCheck(benchmark::State& state) {
  const auto running = static_cast<int>(state.range(0));
  DecodeWorld world(running, 0, SchedulePolicy::kFcfs);
  const auto tables = world.scheduler().block_tables();
  for (auto _ : state) world.kv().check_integrity(tables);
  state.counters["blocks"] = static_cast<double>(world.kv().pool().num_blocks());
  state.counters["per_block"] =
      time_per(static_cast<double>(state.iterations()) * world.kv().pool().num_blocks());
}
BENCHMARK(BM_IntegrityCheck)
    ->ArgName("running")
    ->Arg(16)
    ->Arg(256)
    ->Arg(1024)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();

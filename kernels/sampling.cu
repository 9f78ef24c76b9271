// On-device sampling: one CTA per row of logits, no sort of the vocabulary.
//
// Every token gets a 64-bit "composite" rank key: the order-preserving uint32 image of its
// cleaned logit (NaN -> -inf, -0 -> +0) in the high word and ~id in the low word. Higher
// composite = earlier in the host's rank order (higher logit, ties lower id), and composites
// are distinct, so every question the host answers by sorting ("the k-th token", "the first
// token whose cumulative mass reaches q") becomes a search for one composite value:
//
//   search(scope, goal): histogram the in-scope tokens of the current composite range
//   [lo, hi] into kBins bins by (hi - c) >> shift (bin 0 ranks first), with each bin's count
//   and exact fixed-point mass; a block scan finds the first bin whose inclusive totals meet
//   the goal; the range narrows to that bin (or, when everything from the scope's top
//   through that bin fits, to that whole prefix), and once the range holds <= kCap tokens
//   they are gathered into shared memory, sorted, and scanned exactly.
//
// A typical row needs one histogram pass and one gather pass per search; ties (equal logits)
// fall apart by id in the low word, so they cost nothing special. Once a filter leaves
// <= kCap tokens (top_k <= 2048, or a small top_p nucleus) the survivors stay sorted in
// shared memory and the remaining filters and the draw never touch the logits again.
//
// Masses are the host's ExactSum: each weight w = exp((x - max) / T) (double) rounded to a
// multiple of 2^-63 and summed exactly in 128 bits, so the device's totals and prefix sums
// equal the host's whenever the weights do. The host compares sequential double cumulative
// sums where the device compares these exact prefix sums: that rounding (and the last bit of
// exp) is the only way the two can disagree.
//
// Log-probabilities (and the non-finite count) always come from the raw row. A row with
// logits processing draws its token from its processed copy instead: pass 1 runs a second
// time, on that copy, and the draw (or the argmax) uses the copy's statistics. Rows without
// processing take no extra pass.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "sampling.h"
#include "sampling/rng.h"

namespace cachet::kernels {
namespace {

using u32 = std::uint32_t;
using u64 = std::uint64_t;
using u128 = unsigned __int128;

// 512 threads leave 128 registers per thread: the double and 128-bit arithmetic of the
// passes does not fit in the 64 that 1024 threads would get.
constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = kThreads;     // one histogram bin per thread in the scans
constexpr int kBinBits = 9;         // log2(kBins)
constexpr int kCap = 2 * kThreads;  // tokens gathered into shared memory, two per thread
static_assert(kBins == 1 << kBinBits && kWarps <= 32);

constexpr float kInf = __builtin_huge_valf();
constexpr float kNaN = __builtin_nanf("");
constexpr u64 kOne = u64{1} << 63;  // weight 1 in the 2^-63 fixed point

// ---------------------------------------------------------------------------------------------
// Keys

// NaN counts as -inf everywhere (as on the host), and -0 as +0 so that equal logits get
// equal keys (the host compares floats: -0 == +0 ties and goes by id).
__device__ __forceinline__ float clean(float x) {
  if (isnan(x)) return -kInf;
  return x == 0.0f ? 0.0f : x;
}

__device__ __forceinline__ u32 key_of(float x) {
  const u32 u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float x_of_key(u32 k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ u64 composite(float x, std::int32_t id) {
  return (u64{key_of(x)} << 32) | (0xffffffffu - static_cast<u32>(id));
}

__device__ __forceinline__ std::int32_t id_of(u64 c) {
  return static_cast<std::int32_t>(0xffffffffu - static_cast<u32>(c));
}
__device__ __forceinline__ float x_of(u64 c) { return x_of_key(static_cast<u32>(c >> 32)); }

// ExactSum::value() of a 128-bit sum of 2^-63 units: the host's formula, bit for bit.
__device__ __forceinline__ double to_double(u128 s) {
  return static_cast<double>(static_cast<u64>(s >> 64)) * 2.0 +
         static_cast<double>(static_cast<u64>(s)) * 0x1.0p-63;
}

// ---------------------------------------------------------------------------------------------
// Block-wide collectives (all threads of the CTA call them, with uniform control flow)

__device__ __forceinline__ u128 shfl_up128(u128 v, int o) {
  const u64 lo = __shfl_up_sync(0xffffffffu, static_cast<u64>(v), o);
  const u64 hi = __shfl_up_sync(0xffffffffu, static_cast<u64>(v >> 64), o);
  return (u128{hi} << 64) | lo;
}
template <typename V>
__device__ __forceinline__ V shfl_xor(V v, int o) {
  return __shfl_xor_sync(0xffffffffu, v, o);
}

struct MaxOp {
  template <typename V>
  __device__ V operator()(V a, V b) const {
    return a > b ? a : b;
  }
};
struct MinOp {
  template <typename V>
  __device__ V operator()(V a, V b) const {
    return a < b ? a : b;
  }
};
struct SumOp {
  template <typename V>
  __device__ V operator()(V a, V b) const {
    return a + b;
  }
};

// The reduction of v over the block, returned to every thread. Integer operations are exact
// and order-free; the one double sum (logsumexp) only needs to be accurate.
template <typename V, typename Op>
__device__ V block_reduce(V v, Op op) {
  __shared__ V buf[kWarps];
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  __syncthreads();  // buf may still be read by a previous call
  if (threadIdx.x % 32 == 0) buf[threadIdx.x / 32] = v;
  __syncthreads();
  // Each aligned group of kWarps lanes reduces all kWarps partial results.
  v = buf[threadIdx.x % kWarps];
  for (int o = kWarps / 2; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  return v;
}

// Inclusive scan of (count, mass) in thread order; also returns the block totals.
__device__ void block_scan(u32& c, u128& s, u32& total_c, u128& total_s) {
  __shared__ u32 warp_c[kWarps];
  __shared__ u128 warp_s[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int o = 1; o < 32; o <<= 1) {
    const u32 oc = __shfl_up_sync(0xffffffffu, c, o);
    const u128 os = shfl_up128(s, o);
    if (lane >= o) c += oc, s += os;
  }
  __syncthreads();
  if (lane == 31) warp_c[warp] = c, warp_s[warp] = s;
  __syncthreads();
  total_c = 0;
  total_s = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w == warp) c += total_c, s += total_s;
    total_c += warp_c[w];
    total_s += warp_s[w];
  }
}

// ---------------------------------------------------------------------------------------------
// Rows, scopes, goals

struct Row {
  const float* x;
  std::int32_t vocab;
  bool vec;       // 16-byte aligned row: float4 loads
  float m;        // the largest cleaned logit
  double temp;    // temperature (> 0 when sampling)
  u64 top_c;      // composite of the first token in rank order (the argmax)
  u64 min_c;      // the smallest composite of the row
  u64 min_fin_c;  // the smallest composite of a logit > -inf
};

// f(id, raw logit) for every token of the row, strided over the block.
template <typename F>
__device__ __forceinline__ void for_each_token(const Row& r, F&& f) {
  std::int32_t done = 0;
  if (r.vec) {
    const std::int32_t n4 = r.vocab / 4;
    const float4* x4 = reinterpret_cast<const float4*>(r.x);
    for (std::int32_t i = threadIdx.x; i < n4; i += kThreads) {
      const float4 v = __ldg(x4 + i);
      f(4 * i, v.x);
      f(4 * i + 1, v.y);
      f(4 * i + 2, v.z);
      f(4 * i + 3, v.w);
    }
    done = n4 * 4;
  }
  for (std::int32_t i = done + threadIdx.x; i < r.vocab; i += kThreads) f(i, __ldg(r.x + i));
}

// The host's weigh(): w = exp((x - max) / T) in double, exactly 1 for the top logit (also
// when it is +inf). Returns false when the token is out: w == 0 (-inf logit, a finite logit
// under a +inf max, exp underflow) or w < min_w. *v gets round(w * 2^63) (ExactSum::add's
// rounding) when `need_v`. exp() is only evaluated where its value can matter: below
// d = -44.5 the weight is < 2^-64 and rounds to 0 units, and above d = -744 it is > 0.
__device__ __forceinline__ bool weigh(float x, const Row& r, bool need_v, double min_w, u64* v) {
  *v = 0;
  if (x == r.m) {
    *v = kOne;
    return true;  // w = 1 >= min_w (min_w <= 1)
  }
  const double d = (static_cast<double>(x) - static_cast<double>(r.m)) / r.temp;
  if (!(d >= -746.0)) return false;  // -inf, or exp(d) == 0 in any faithful exp
  if (d < -744.0 || min_w > 0.0 || (need_v && d >= -44.5)) {
    const double w = exp(d);
    if (!(w > 0.0) || w < min_w) return false;
    if (need_v) *v = static_cast<u64>(w * 0x1.0p63 + 0.5);
  }
  return true;
}

// Which tokens a search looks at.
struct Scope {
  bool weighted;  // sampling: tokens with w > 0 (and >= min_w); else every token (logprobs)
  u64 c_lo;       // composite >= c_lo (the top_k / top_p cut so far)
  double min_w;   // 0: off
};

enum class GoalKind { kCount, kMassGe, kMassGt };
// The first token in rank order whose inclusive count reaches k (kCount), or whose inclusive
// mass / total is >= frac (kMassGe: top_p's last kept token) or > frac (kMassGt: the draw).
struct Goal {
  GoalKind kind;
  u32 k;
  double frac;
};

__device__ __forceinline__ bool holds(const Goal& g, u32 c_incl, u128 s_incl, u128 s_total) {
  if (g.kind == GoalKind::kCount) return c_incl >= g.k;
  const double ratio = to_double(s_incl) / to_double(s_total);
  return g.kind == GoalKind::kMassGe ? ratio >= g.frac : ratio > g.frac;
}

struct Found {
  bool found;   // a token meets the goal (always, for the mass goals)
  u64 c;        // its composite
  u32 c_incl;   // its 1-based position in the scope's rank order
  int idx;      // its index in the shared list
  bool prefix;  // the shared list holds the scope's first list_n tokens, ranked
  int list_n;
};

struct Smem {
  u64 list[kCap];
  u32 hist_c[kBins];
  u64 hist_lo[kBins];  // 128-bit masses as two words: the carry of lo goes to hi
  u64 hist_hi[kBins];
  u32 n;
  u32 bin_incl_c, bin_own_c;
  u128 bin_incl_s, bin_own_s;
};

// Sorts list[0, n) descending (rank order) by a bitonic network over the next power of two.
__device__ void sort_list(Smem& sm, int n) {
  int n2 = 2;
  while (n2 < n) n2 <<= 1;
  for (int i = n + threadIdx.x; i < n2; i += kThreads) sm.list[i] = 0;  // below every token
  __syncthreads();
  for (int k = 2; k <= n2; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < n2; i += kThreads) {
        const int ixj = i ^ j;
        if (ixj > i) {
          const u64 a = sm.list[i], b = sm.list[ixj];
          if (((i & k) == 0) ? a < b : a > b) sm.list[i] = b, sm.list[ixj] = a;
        }
      }
      __syncthreads();
    }
  }
}

// Gathers the in-scope tokens with composites in [lo, hi] (<= kCap of them) into the list,
// ranked; returns their number.
__device__ int gather(Smem& sm, const Row& r, const Scope& sc, u64 lo, u64 hi) {
  __syncthreads();  // the list and n may still be read
  if (threadIdx.x == 0) sm.n = 0;
  __syncthreads();
  for_each_token(r, [&](std::int32_t id, float raw) {
    const float x = clean(raw);
    const u64 c = composite(x, id);
    if (c < lo || c > hi) return;
    u64 v;
    if (sc.weighted && (c < sc.c_lo || !weigh(x, r, false, sc.min_w, &v))) return;
    const u32 i = atomicAdd(&sm.n, 1u);
    if (i < kCap) sm.list[i] = c;
  });
  __syncthreads();
  const int n = static_cast<int>(min(sm.n, static_cast<u32>(kCap)));
  sort_list(sm, n);
  return n;
}

// The goal's token among list[0, n) (ranked, in scope, all after `base_c` tokens of mass
// `base_s`). `total_s` is the scope's total mass, or, when !have_total, the list's own.
__device__ Found finish(Smem& sm, const Row& r, int n, u32 base_c, u128 base_s, bool have_total,
                        u128 total_s, Goal g) {
  const bool need_v = g.kind != GoalKind::kCount;
  const int j0 = 2 * threadIdx.x, j1 = j0 + 1;
  const u32 c0 = j0 < n, c1 = j1 < n;
  u64 v0 = 0, v1 = 0;
  if (need_v) {
    if (c0) weigh(x_of(sm.list[j0]), r, true, 0.0, &v0);
    if (c1) weigh(x_of(sm.list[j1]), r, true, 0.0, &v1);
  }
  u32 c = c0 + c1, tc;
  u128 s = u128{v0} + v1, ts;
  block_scan(c, s, tc, ts);
  if (!have_total) total_s = ts;
  // Inclusive totals at j0 and j1.
  const u32 in_c1 = base_c + c, in_c0 = in_c1 - c1;
  const u128 in_s1 = base_s + s, in_s0 = in_s1 - v1;
  int first = INT_MAX;
  if (c0 && holds(g, in_c0, in_s0, total_s)) {
    first = j0;
  } else if (c1 && holds(g, in_c1, in_s1, total_s)) {
    first = j1;
  }
  first = block_reduce(first, MinOp{});
  Found f{};
  f.found = first < n;
  // A mass goal always holds at the scope's last token (its inclusive mass is the total);
  // the fallback only guards the arithmetic.
  if (!f.found && need_v && n > 0) first = n - 1;
  if (first < n) {
    f.idx = first;
    f.c = sm.list[first];
    f.c_incl = base_c + static_cast<u32>(first) + 1;
  }
  f.list_n = n;
  __syncthreads();
  return f;
}

__device__ __forceinline__ void add128(u64* lo, u64* hi, u64 v) {
  const u64 old =
      atomicAdd(reinterpret_cast<unsigned long long*>(lo), static_cast<unsigned long long>(v));
  if (old + v < old) atomicAdd(reinterpret_cast<unsigned long long*>(hi), 1ull);
}

// The goal's token in the scope, by histogram passes over the logits (see the top comment).
__device__ Found search(Smem& sm, const Row& r, const Scope& sc, Goal g) {
  const u64 top = r.top_c;
  const u64 floor_c = sc.weighted ? r.min_fin_c : r.min_c;
  u64 lo = sc.c_lo > floor_c ? sc.c_lo : floor_c, hi = top;
  u32 base_c = 0;
  u128 base_s = 0, total_s = 0;
  u32 range_count = UINT_MAX;
  bool first_pass = true;
  const bool need_v = g.kind != GoalKind::kCount;
  for (;;) {
    if (range_count <= static_cast<u32>(kCap)) {
      const int n = gather(sm, r, sc, lo, hi);
      Found f = finish(sm, r, n, base_c, base_s, true, total_s, g);
      f.prefix = hi == top && base_c == 0;
      return f;
    }
    const u64 span = hi - lo;
    const int bits = span == 0 ? 0 : 64 - __clzll(static_cast<long long>(span));
    const int shift = bits > kBinBits ? bits - kBinBits : 0;
    __syncthreads();  // the previous pass's scan may still read the bins
    sm.hist_c[threadIdx.x] = 0;
    sm.hist_lo[threadIdx.x] = 0;
    sm.hist_hi[threadIdx.x] = 0;
    __syncthreads();
    for_each_token(r, [&](std::int32_t id, float raw) {
      const float x = clean(raw);
      const u64 c = composite(x, id);
      if (c < lo || c > hi) return;
      u64 v = 0;
      if (sc.weighted && (c < sc.c_lo || !weigh(x, r, need_v, sc.min_w, &v))) return;
      const u32 b = static_cast<u32>((hi - c) >> shift);
      atomicAdd(&sm.hist_c[b], 1u);
      if (v != 0) add128(&sm.hist_lo[b], &sm.hist_hi[b], v);
    });
    __syncthreads();
    const u32 own_c = sm.hist_c[threadIdx.x];
    const u128 own_s = (u128{sm.hist_hi[threadIdx.x]} << 64) | sm.hist_lo[threadIdx.x];
    u32 c = own_c, tc;
    u128 s = own_s, ts;
    block_scan(c, s, tc, ts);
    if (first_pass) {
      first_pass = false;
      total_s = ts;
      if (tc <= static_cast<u32>(kCap)) {  // the whole scope fits: gather it
        range_count = tc;
        continue;
      }
    }
    int b = block_reduce(
        holds(g, base_c + c, base_s + s, total_s) ? static_cast<int>(threadIdx.x) : kBins, MinOp{});
    if (b == kBins) {
      // Only on the first pass: the scope's total does not meet the goal. A count goal has
      // no token (fewer than k); a mass goal falls back to the last token (the host's draw
      // does the same when rounding leaves u beyond the total).
      if (g.kind == GoalKind::kCount) return Found{};
      g = Goal{GoalKind::kCount, base_c + tc, 0.0};
      b = block_reduce(
          holds(g, base_c + c, base_s + s, total_s) ? static_cast<int>(threadIdx.x) : kBins,
          MinOp{});
    }
    if (static_cast<int>(threadIdx.x) == b) {
      sm.bin_incl_c = c;
      sm.bin_own_c = own_c;
      sm.bin_incl_s = s;
      sm.bin_own_s = own_s;
    }
    __syncthreads();
    const u32 incl_c = sm.bin_incl_c, bin_c = sm.bin_own_c;
    const u128 incl_s = sm.bin_incl_s, bin_s = sm.bin_own_s;
    // Bin b holds composites (hi - (b + 1) * 2^shift, hi - b * 2^shift] within [lo, hi].
    const u64 width_m1 = (u64{1} << shift) - 1;
    const u64 new_hi = hi - (static_cast<u64>(b) << shift);
    const u64 new_lo = new_hi - lo > width_m1 ? new_hi - width_m1 : lo;
    if (base_c + incl_c <= static_cast<u32>(kCap)) {
      // Everything from the scope's top through this bin fits: gather that ranked prefix,
      // which later filters can keep using.
      range_count = base_c + incl_c;
      lo = new_lo;
      hi = top;
      base_c = 0;
      base_s = 0;
    } else {
      base_c += incl_c - bin_c;
      base_s += incl_s - bin_s;
      lo = new_lo;
      hi = new_hi;
      range_count = bin_c;
    }
  }
}

// Keeps the list entries with w >= min_w, in order (min_p on gathered survivors).
__device__ int compact_min_p(Smem& sm, const Row& r, int n, double min_w) {
  const int j0 = 2 * threadIdx.x, j1 = j0 + 1;
  const u64 e0 = j0 < n ? sm.list[j0] : 0, e1 = j1 < n ? sm.list[j1] : 0;
  u64 v;
  const u32 k0 = j0 < n && weigh(x_of(e0), r, false, min_w, &v);
  const u32 k1 = j1 < n && weigh(x_of(e1), r, false, min_w, &v);
  u32 c = k0 + k1, tc;
  u128 s = 0, ts;
  block_scan(c, s, tc, ts);  // its barriers also order the reads above before the writes
  u32 at = c - k0 - k1;
  if (k0) sm.list[at++] = e0;
  if (k1) sm.list[at] = e1;
  __syncthreads();
  return static_cast<int>(tc);
}

// The host's Filtered(...).draw(u) for a row with some logit > -inf and temperature > 0.
__device__ std::int32_t sample_row(Smem& sm, const Row& r, const SamplingRow& p) {
  Scope sc{true, 0, 0.0};
  bool gathered = false;  // the list holds the whole current scope, ranked
  int n = 0;

  if (p.top_k > 0) {
    const Found f = search(sm, r, sc, Goal{GoalKind::kCount, static_cast<u32>(p.top_k), 0.0});
    if (f.found) {
      sc.c_lo = f.c;
      if (f.prefix) {
        gathered = true;
        n = f.idx + 1;
      } else if (p.top_k <= kCap) {
        n = gather(sm, r, sc, f.c, r.top_c);
        gathered = true;
      }
    } else if (f.prefix) {  // fewer survivors than k, all gathered
      gathered = true;
      n = f.list_n;
    }
  }

  if (p.top_p < 1.0f) {  // 1 (or NaN) keeps everything
    const Goal g{GoalKind::kMassGe, 0, static_cast<double>(p.top_p)};
    if (gathered) {
      if (n > 1) n = finish(sm, r, n, 0, 0, false, 0, g).idx + 1;
    } else {
      const Found f = search(sm, r, sc, g);
      sc.c_lo = f.c;
      if (f.prefix) {
        gathered = true;
        n = f.idx + 1;
      } else if (f.c_incl <= static_cast<u32>(kCap)) {
        n = gather(sm, r, sc, f.c, r.top_c);
        gathered = true;
      }
    }
  }

  if (p.min_p > 0.0f) {
    // p >= min_p * p_max <=> w >= min_p (the top token's weight is exactly 1).
    const double min_w = fmin(static_cast<double>(p.min_p), 1.0);
    if (gathered) {
      n = compact_min_p(sm, r, n, min_w);
    } else {
      sc.min_w = min_w;
    }
  }

  const Goal draw{GoalKind::kMassGt, 0, cachet::sampling::philox_uniform(p.seed, p.counter)};
  const Found f = gathered ? finish(sm, r, n, 0, 0, false, 0, draw) : search(sm, r, sc, draw);
  return id_of(f.c);
}

struct LogprobCtx {
  float m;
  std::int32_t top_id;
  u32 num_pos_inf;
  double lse;
};

// top_logprobs()'s value for token `id` with cleaned logit x.
__device__ float logprob_of(const LogprobCtx& l, float x, std::int32_t id) {
  if (l.m == -kInf) return id == l.top_id ? 0.0f : -kInf;
  if (l.num_pos_inf > 0) {
    return x == kInf ? static_cast<float>(-log(static_cast<double>(l.num_pos_inf))) : -kInf;
  }
  if (x == -kInf) return -kInf;
  return static_cast<float>(static_cast<double>(x) - l.lse);
}

// What pass 1 counts besides the composites it leaves in the Row.
struct RowCounts {
  u32 num_fin;        // logits > -inf (NaN is -inf)
  u32 num_pos_inf;    // +inf logits
  u32 num_nonfinite;  // NaN or +-inf raw logits
};

// A row of `vocab` logits at x; the statistics are filled in by scan_row().
__device__ __forceinline__ Row make_row(const float* x, std::int32_t vocab, float temperature) {
  Row r{};
  r.x = x;
  r.vocab = vocab;
  r.vec = reinterpret_cast<std::uintptr_t>(x) % 16 == 0;
  r.temp = static_cast<double>(temperature);
  return r;
}

// Pass 1: the argmax (the largest composite), the composite range, +inf, finite and
// non-finite counts. Fills r.top_c, r.min_c, r.min_fin_c and r.m.
__device__ RowCounts scan_row(Row& r) {
  u64 top = 0, min_c = ~u64{0}, min_fin = ~u64{0};
  u32 num_fin = 0, num_pos_inf = 0, num_nonfinite = 0;
  for_each_token(r, [&](std::int32_t id, float raw) {
    num_nonfinite += !isfinite(raw);
    const float x = clean(raw);
    const u64 c = composite(x, id);
    top = c > top ? c : top;
    min_c = c < min_c ? c : min_c;
    if (x != -kInf) {
      ++num_fin;
      min_fin = c < min_fin ? c : min_fin;
      num_pos_inf += x == kInf;
    }
  });
  r.top_c = block_reduce(top, MaxOp{});
  r.min_c = block_reduce(min_c, MinOp{});
  r.min_fin_c = block_reduce(min_fin, MinOp{});
  r.m = x_of(r.top_c);
  RowCounts n;
  n.num_fin = block_reduce(num_fin, SumOp{});
  n.num_pos_inf = block_reduce(num_pos_inf, SumOp{});
  n.num_nonfinite = block_reduce(num_nonfinite, SumOp{});
  return n;
}

__global__ void __launch_bounds__(kThreads, 1) sample_kernel(SampleParams p) {
  __shared__ Smem sm;
  const std::int64_t row = blockIdx.x;
  const SamplingRow rp = p.rows[row];

  // The raw row: the non-finite count and every log-probability.
  Row r = make_row(p.logits + row * p.row_stride, p.vocab, rp.temperature);
  const RowCounts counts = scan_row(r);
  if (p.nonfinite != nullptr && threadIdx.x == 0)
    p.nonfinite[row] = static_cast<std::int32_t>(counts.num_nonfinite);

  const bool want_logprobs = rp.num_logprobs >= 0;
  LogprobCtx lp{r.m, id_of(r.top_c), counts.num_pos_inf, 0.0};
  if (want_logprobs && r.m != -kInf && r.m != kInf) {
    // logsumexp = max + log(sum exp(x - max)): fp32 exp terms summed in double. Each term is
    // within a few fp32 ulps, so the log-probabilities are good to ~1e-7.
    double sum = 0.0;
    for_each_token(r, [&](std::int32_t, float raw) {
      const float x = clean(raw);
      if (x != -kInf) sum += static_cast<double>(expf(x - r.m));
    });
    sum = block_reduce(sum, SumOp{});
    lp.lse = static_cast<double>(r.m) + log(sum);
  }

  if (p.max_logprobs > 0) {
    std::int32_t* ids = p.top_ids + row * p.max_logprobs;
    float* values = p.top_logprobs + row * p.max_logprobs;
    const int k = want_logprobs ? min(min(rp.num_logprobs, p.max_logprobs), p.vocab) : 0;
    int n = 0;
    if (k > 0) {
      // The first k tokens in rank order, -inf ones included (the host's select_top with
      // keep_neg_inf).
      const Scope all{false, 0, 0.0};
      const Found f = search(sm, r, all, Goal{GoalKind::kCount, static_cast<u32>(k), 0.0});
      if (f.prefix) {
        n = f.found ? f.idx + 1 : f.list_n;
      } else {
        n = gather(sm, r, all, f.c, r.top_c);
      }
    }
    for (int j = threadIdx.x; j < p.max_logprobs; j += kThreads) {
      if (j < n && j < k) {
        const u64 c = sm.list[j];
        ids[j] = id_of(c);
        values[j] = logprob_of(lp, x_of(c), id_of(c));
      } else {
        ids[j] = -1;
        values[j] = kNaN;
      }
    }
    __syncthreads();  // the list is reused below
  }

  // The token is drawn from the raw row, or from its processed copy: then r becomes that row,
  // by a second pass 1 (processed_row is uniform over the block, so its collectives are too).
  const float* const raw = r.x;
  u32 num_fin = counts.num_fin;
  if (rp.processed_row >= 0) {
    r = make_row(p.processed + static_cast<std::int64_t>(rp.processed_row) * p.vocab, p.vocab,
                 rp.temperature);
    num_fin = scan_row(r).num_fin;
  }
  const bool greedy = !(rp.temperature > 0.0f);
  // Greedy, or nothing has probability: the argmax (token 0 for a row of -inf / NaN).
  const std::int32_t token = greedy || num_fin == 0 ? id_of(r.top_c) : sample_row(sm, r, rp);
  if (threadIdx.x == 0) {
    p.tokens[row] = token;
    if (p.token_logprob != nullptr) {
      p.token_logprob[row] = want_logprobs ? logprob_of(lp, clean(raw[token]), token) : kNaN;
    }
  }
}

}  // namespace

cudaError_t launch_sample(const SampleParams& p, cudaStream_t stream) {
  if (p.num_rows < 0 || p.vocab <= 0 || p.row_stride < p.vocab || p.max_logprobs < 0 ||
      p.max_logprobs > kMaxSampleLogprobs) {
    return cudaErrorInvalidValue;
  }
  if (p.num_rows == 0) return cudaGetLastError();
  if (p.logits == nullptr || p.rows == nullptr || p.tokens == nullptr ||
      (p.max_logprobs > 0 && (p.top_ids == nullptr || p.top_logprobs == nullptr))) {
    return cudaErrorInvalidValue;
  }
  sample_kernel<<<p.num_rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace cachet::kernels

// Paged attention on tensor cores; see attention.h for the semantics and the two paths.
//
// One kernel template serves both paths. A CTA of 4 warps owns `kTileM` rows, each row one
// (token, query head) pair of one sequence and one GQA group (head fastest), and sweeps the
// K/V positions that its rows can see in `kTileN`-token tiles gathered through the block
// table with 16-byte cp.async copies into a kStages-deep shared-memory ring. Per tile each
// warp computes S = Q.K^T for its 16 rows against its share of the tile's tokens with
// mma.sync m16n8k16 (fp32 accumulation), applies the causal mask, updates the online softmax
// (fp32, base 2) and accumulates P.V, again on tensor cores.
//  - prefill: kWarpsM = 4 warps along rows (64 rows), each sweeping whole tiles; split-KV
//    over CTAs (same partials + merge as decode) when the grid is small and the prefix long;
//  - decode: kWarpsN = 4 warps along the tile's tokens sharing the same 16 rows (the heads of
//    the group, padded), merged through shared memory at the end; split-K over CTAs on top.
// Rows past the sequence's last (token, head) are zero-filled and never stored; positions
// past the rows' last position are zero-filled (never read from the cache, whose block
// table entries past the sequence are garbage) and masked.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "attention.h"

namespace cachet::kernels {
namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------------------------------
// PTX wrappers

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; with valid == false the 16 bytes are zero-filled and
// nothing is read (src must still be a valid-looking address).
__device__ __forceinline__ void cp_async_16(std::uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a . b for a 16x16 (row) by 16x8 (col) tile, fp32 accumulation.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const std::uint32_t (&a)[4],
                                          std::uint32_t b0, std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats as a packed pair of T, `lo` in the low half (the lower column / address).
template <typename T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  std::uint32_t u;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    std::memcpy(&u, &v, sizeof(u));
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    std::memcpy(&u, &v, sizeof(u));
  }
  return u;
}

// Stores 4 consecutive outputs (8 bytes, 8-byte aligned since d % 4 == 0).
template <typename T>
__device__ __forceinline__ void store4(T* dst, float4 v) {
  uint2 u;
  u.x = pack2<T>(v.x, v.y);
  u.y = pack2<T>(v.z, v.w);
  *reinterpret_cast<uint2*>(dst) = u;
}

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows, D] shared tile. The chunk
// index is XORed with row % 8 so that the 8 rows an ldmatrix reads at one logical column,
// and the consecutive chunks a cp.async row writes, fall in 8 different bank groups.
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// ---------------------------------------------------------------------------------------
// The attention kernel

struct Args {
  const void* q;
  const void* k_cache;
  const void* v_cache;
  void* out;
  const std::int32_t* query_start;
  const std::int32_t* context_lens;
  const std::int32_t* block_tables;
  float* ws_o;    // [num_splits, num_tokens, num_heads, D] split partials (normalized)
  float* ws_lse;  // [num_splits, num_tokens, num_heads], base 2, -inf for an empty split
  std::int32_t max_blocks_per_seq;
  std::int32_t num_tokens;
  std::int32_t num_heads;
  std::int32_t num_kv_heads;
  std::int32_t group;    // num_heads / num_kv_heads
  std::int32_t log2_bs;  // block_size = 1 << log2_bs
  std::int32_t num_splits;
  float scale_log2;  // scale * log2(e): the softmax runs on exp2
};

template <typename T, int D, int kWarpsM, int kWarpsN, int kTileN, int kStages>
struct Config {
  static constexpr int kTileM = 16 * kWarpsM;           // rows per CTA
  static constexpr int kWarpTokens = kTileN / kWarpsN;  // tokens per warp per tile
  static constexpr int kChunks = D / 8;                 // 16-byte chunks per row
  static constexpr bool kQInRegs = D <= 128;            // else ldmatrix Q per use
  static constexpr int kKvElems = kTileN * D;           // one of K or V, one stage
  static constexpr int kOStride = D + 8;                // fp32 staging row (bank offset)
  static constexpr std::size_t kQBytes = std::size_t{kTileM} * D * sizeof(T);
  static constexpr std::size_t kKvBytes = std::size_t{kStages} * 2 * kKvElems * sizeof(T);
  static constexpr std::size_t kEpiBytes =
      (std::size_t{kWarpsN} * kTileM * kOStride + 2 * kWarpsN * kTileM) * sizeof(float);
  static constexpr std::size_t kSmemBytes = kQBytes + (kKvBytes > kEpiBytes ? kKvBytes : kEpiBytes);

  static_assert(kWarpsM * kWarpsN * 32 == kThreads);
  static_assert(kWarpTokens % 16 == 0, "P.V consumes 16 tokens per mma");
  static_assert(D % 64 == 0, "the swizzle needs >= 8 chunks per row");
  static_assert((kTileN * kChunks) % kThreads == 0 && (kTileM * kChunks) % kThreads == 0);
  static_assert(kStages >= 2);
};

template <typename T, int D, int kWarpsM, int kWarpsN, int kTileN, int kStages>
__global__ void __launch_bounds__(kThreads) paged_attention_kernel(const Args a) {
  using C = Config<T, D, kWarpsM, kWarpsN, kTileN, kStages>;
  constexpr int kTileM = C::kTileM;
  constexpr int kWarpTokens = C::kWarpTokens;
  constexpr int kChunks = C::kChunks;

  extern __shared__ __align__(128) unsigned char smem[];
  T* s_q = reinterpret_cast<T*>(smem);
  T* s_kv = reinterpret_cast<T*>(smem + C::kQBytes);  // stage i: K at 2i, V at 2i + 1
  // After the sweep the K/V ring is reused to stage each warp's fp32 output, max and sum.
  float* s_o = reinterpret_cast<float*>(smem + C::kQBytes);
  float* s_m = s_o + kWarpsN * kTileM * C::kOStride;
  float* s_l = s_m + kWarpsN * kTileM;

  const int seq = blockIdx.z;
  const int kv_head = blockIdx.y;
  const int split = blockIdx.x % a.num_splits;
  // Latest row tiles (the most positions to sweep) are scheduled first.
  const int row_tile = gridDim.x / a.num_splits - 1 - blockIdx.x / a.num_splits;

  const int ctx = a.context_lens[seq];
  const int q_begin = a.query_start[seq];
  const int q_len = a.query_start[seq + 1] - q_begin;
  if (ctx <= 0 || q_len <= 0) return;  // padding: nothing read, nothing written
  const int group = a.group;
  const int rows = q_len * group;
  const int row0 = row_tile * kTileM;
  if (row0 >= rows) return;  // the grid is sized for the longest sequence

  const int pos0 = ctx - q_len;  // position of the sequence's first new token
  const int min_pos = pos0 + row0 / group;
  const int max_pos = pos0 + (min(row0 + kTileM, rows) - 1) / group;
  const int kv_end = max_pos + 1;  // positions this CTA's rows can see
  const int num_tiles = (kv_end + kTileN - 1) / kTileN;
  const int per_split = (num_tiles + a.num_splits - 1) / a.num_splits;
  const int t_begin = min(split * per_split, num_tiles);
  const int t_end = min(t_begin + per_split, num_tiles);

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wm = warp / kWarpsN;  // row slice of this warp
  const int wn = warp % kWarpsN;  // token slice of this warp within a tile
  const int g = lane >> 2;        // mma fragment row (and row + 8)
  const int tq = lane & 3;        // mma fragment column pair

  // Q rows -> shared (its own cp.async group, the first).
  const T* q = static_cast<const T*>(a.q);
#pragma unroll
  for (int c = tid; c < kTileM * kChunks; c += kThreads) {
    const int r = c / kChunks, ch = c % kChunks;
    const int i = row0 + r;
    const bool valid = i < rows;
    const T* src = q;
    if (valid) {
      const std::int64_t row =
          std::int64_t{q_begin + i / group} * a.num_heads + kv_head * group + i % group;
      src = q + row * D + ch * 8;
    }
    cp_async_16(smem_addr(s_q + swz<D>(r, ch)), src, valid);
  }
  cp_async_commit();

  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);
  const std::int32_t* block_table = a.block_tables + std::int64_t{seq} * a.max_blocks_per_seq;
  const int bs_mask = (1 << a.log2_bs) - 1;
  // Tile `tile` of K and V (positions tile * kTileN ...) -> ring stage `stage`.
  const auto load_kv = [&](int tile, int stage) {
    T* s_k = s_kv + stage * 2 * C::kKvElems;
    T* s_v = s_k + C::kKvElems;
#pragma unroll
    for (int c = tid; c < kTileN * kChunks; c += kThreads) {
      const int r = c / kChunks, ch = c % kChunks;
      const int pos = tile * kTileN + r;
      const bool valid = pos < kv_end;
      std::int64_t off = 0;
      if (valid) {
        const std::int64_t block = block_table[pos >> a.log2_bs];
        off = ((block * a.num_kv_heads + kv_head) * (bs_mask + 1) + (pos & bs_mask)) * D + ch * 8;
      }
      const int dst = swz<D>(r, ch);
      cp_async_16(smem_addr(s_k + dst), k_cache + off, valid);
      cp_async_16(smem_addr(s_v + dst), v_cache + off, valid);
    }
  };

  // Prologue: kStages - 1 tiles in flight (empty groups keep the group count uniform).
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (t_begin + s < t_end) load_kv(t_begin + s, s);
    cp_async_commit();
  }
  cp_async_wait<kStages - 1>();  // the Q group has landed
  __syncthreads();

  // A fragments of this warp's 16 Q rows, one per 16-wide slice of D.
  std::uint32_t q_frag[C::kQInRegs ? D / 16 : 1][4];
  const auto q_frag_addr = [&](int ks) {
    return smem_addr(s_q + swz<D>(wm * 16 + (lane & 15), ks * 2 + (lane >> 4)));
  };
  if constexpr (C::kQInRegs) {
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) ldmatrix_x4(q_frag[ks], q_frag_addr(ks));
  }

  // Positions of this thread's two fragment rows (padding rows take the CTA's last
  // position: they see the same positions as some real row and are never stored).
  int row_pos[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = row0 + wm * 16 + g + 8 * h;
    row_pos[h] = i < rows ? pos0 + i / group : max_pos;
  }

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};  // running max (base-2 scaled scores)
  float l[2] = {0.0f, 0.0f};            // running sum, this thread's columns only

  for (int t = t_begin; t < t_end; ++t) {
    const int it = t - t_begin;
    cp_async_wait<kStages - 2>();  // tile t has landed (for this thread's copies) ...
    __syncthreads();               // ... for everyone's, and stage it - 1 is free again
    if (t + kStages - 1 < t_end) load_kv(t + kStages - 1, (it + kStages - 1) % kStages);
    cp_async_commit();

    const T* s_k = s_kv + (it % kStages) * 2 * C::kKvElems;
    const T* s_v = s_k + C::kKvElems;

    // S = Q . K^T over this warp's kWarpTokens tokens.
    float s[kWarpTokens / 8][4];
#pragma unroll
    for (int nt = 0; nt < kWarpTokens / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      std::uint32_t qa[4];
      if constexpr (C::kQInRegs) {
#pragma unroll
        for (int e = 0; e < 4; ++e) qa[e] = q_frag[ks][e];
      } else {
        ldmatrix_x4(qa, q_frag_addr(ks));
      }
#pragma unroll
      for (int j = 0; j < kWarpTokens / 16; ++j) {
        // Matrices: tokens +0..7 / d +0..7, tokens +0..7 / d +8..15, tokens +8..15 / d +0..7,
        // tokens +8..15 / d +8..15: the B fragments of token tiles 2j and 2j + 1.
        const int r = wn * kWarpTokens + j * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int ch = ks * 2 + ((lane >> 3) & 1);
        std::uint32_t kb[4];
        ldmatrix_x4(kb, smem_addr(s_k + swz<D>(r, ch)));
        mma_16816<T>(s[2 * j], qa, kb[0], kb[1]);
        mma_16816<T>(s[2 * j + 1], qa, kb[2], kb[3]);
      }
    }

    // Scale to base 2 and mask positions past each row's own (only tiles reaching past the
    // CTA's first row position need it: the diagonal and the zero-filled tail).
    const bool need_mask = t * kTileN + kTileN - 1 > min_pos;
    const int pos_base = t * kTileN + wn * kWarpTokens + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < kWarpTokens / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * a.scale_log2;
        if (need_mask && pos_base + nt * 8 + (e & 1) > row_pos[e >> 1]) x = -INFINITY;
        s[nt][e] = x;
      }
    }

    // Online softmax; a quad of lanes shares each row.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kWarpTokens / 8; ++nt)
        mx = fmaxf(mx, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[h], mx);
      // A row that has seen only masked positions keeps m = -inf; exponentiate against 0
      // then so that exp2(-inf - -inf) never makes a NaN.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m[h] - m_use);
      m[h] = m_new;
      l[h] *= alpha;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        o[dt][2 * h] *= alpha;
        o[dt][2 * h + 1] *= alpha;
      }
#pragma unroll
      for (int nt = 0; nt < kWarpTokens / 8; ++nt) {
        s[nt][2 * h] = exp2f(s[nt][2 * h] - m_use);
        s[nt][2 * h + 1] = exp2f(s[nt][2 * h + 1] - m_use);
        l[h] += s[nt][2 * h] + s[nt][2 * h + 1];
      }
    }

    // O += P . V: the accumulators of token tiles 2j, 2j + 1 are the A fragment of k-step j.
#pragma unroll
    for (int j = 0; j < kWarpTokens / 16; ++j) {
      const std::uint32_t pa[4] = {
          pack2<T>(s[2 * j][0], s[2 * j][1]), pack2<T>(s[2 * j][2], s[2 * j][3]),
          pack2<T>(s[2 * j + 1][0], s[2 * j + 1][1]), pack2<T>(s[2 * j + 1][2], s[2 * j + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        // Transposed matrices: tokens +0..7 / d +0..7, tokens +8..15 / d +0..7,
        // tokens +0..7 / d +8..15, tokens +8..15 / d +8..15: B of d tiles 2dp and 2dp + 1.
        const int r = wn * kWarpTokens + j * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        const int ch = dp * 2 + (lane >> 4);
        std::uint32_t vb[4];
        ldmatrix_x4_trans(vb, smem_addr(s_v + swz<D>(r, ch)));
        mma_16816<T>(o[2 * dp], pa, vb[0], vb[1]);
        mma_16816<T>(o[2 * dp + 1], pa, vb[2], vb[3]);
      }
    }
  }

  // Epilogue: stage every warp's unnormalized rows, max and sum; then the CTA merges the
  // kWarpsN token slices per row and stores coalesced.
  cp_async_wait<0>();
  __syncthreads();  // everyone is done with the ring
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
  const int srow = wn * kTileM + wm * 16 + g;
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      *reinterpret_cast<float2*>(s_o + (srow + 8 * h) * C::kOStride + dt * 8 + 2 * tq) =
          make_float2(o[dt][2 * h], o[dt][2 * h + 1]);
    }
  }
  if (tq == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      s_m[srow + 8 * h] = m[h];
      s_l[srow + 8 * h] = l[h];
    }
  }
  __syncthreads();

  const std::int64_t split_stride = std::int64_t{a.num_tokens} * a.num_heads;
#pragma unroll 2
  for (int c = tid; c < kTileM * (D / 4); c += kThreads) {
    const int r = c / (D / 4);
    const int d = (c % (D / 4)) * 4;
    const int i = row0 + r;
    if (i >= rows) continue;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarpsN; ++w) mx = fmaxf(mx, s_m[w * kTileM + r]);
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float sum = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kWarpsN; ++w) {
        const float wt = exp2f(s_m[w * kTileM + r] - mx);  // 0 for an empty slice
        sum += wt * s_l[w * kTileM + r];
        const float4 v = *reinterpret_cast<const float4*>(s_o + (w * kTileM + r) * C::kOStride + d);
        acc.x += wt * v.x;
        acc.y += wt * v.y;
        acc.z += wt * v.z;
        acc.w += wt * v.w;
      }
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    acc.x *= inv;
    acc.y *= inv;
    acc.z *= inv;
    acc.w *= inv;
    const std::int64_t out_row =
        std::int64_t{q_begin + i / group} * a.num_heads + kv_head * group + i % group;
    if (a.num_splits == 1) {
      store4(static_cast<T*>(a.out) + out_row * D + d, acc);
    } else {
      const std::int64_t ws_row = split * split_stride + out_row;
      *reinterpret_cast<float4*>(a.ws_o + ws_row * D + d) = acc;
      if (d == 0) a.ws_lse[ws_row] = sum > 0.0f ? mx + log2f(sum) : -INFINITY;
    }
  }
}

// Combines the splits: out = sum_s 2^(lse_s - lse) o_s, lse = log2 sum_s 2^lse_s, per
// (token, head) row. One warp per (sequence, head), blockIdx.y strides over the sequence's
// tokens (gridDim.y == 1 for decode, so each warp walks its single token); a padded sequence
// is skipped like in the main kernel.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) merge_splits_kernel(const Args a, int num_seqs) {
  const int item = blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (item >= num_seqs * a.num_heads) return;
  const int seq = item / a.num_heads;
  const int head = item % a.num_heads;
  const int ctx = a.context_lens[seq];
  const int q_begin = a.query_start[seq];
  const int q_end = a.query_start[seq + 1];
  if (ctx <= 0 || q_end <= q_begin) return;
  const std::int64_t split_stride = std::int64_t{a.num_tokens} * a.num_heads;
  for (int token = q_begin + static_cast<int>(blockIdx.y); token < q_end;
       token += static_cast<int>(gridDim.y)) {
    const std::int64_t row = std::int64_t{token} * a.num_heads + head;
    float mx = -INFINITY;
    for (int s = lane; s < a.num_splits; s += 32) mx = fmaxf(mx, a.ws_lse[s * split_stride + row]);
    mx = warp_max(mx);
    float sum = 0.0f;
    if (mx != -INFINITY) {
      for (int s = lane; s < a.num_splits; s += 32)
        sum += exp2f(a.ws_lse[s * split_stride + row] - mx);
    }
    sum = warp_sum(sum);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int d = lane * 4; d < D; d += 32 * 4) {
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      for (int s = 0; s < a.num_splits; ++s) {
        const float lse = a.ws_lse[s * split_stride + row];
        if (lse == -INFINITY) continue;  // an empty split: its partial is zeros anyway
        const float wt = exp2f(lse - mx) * inv;
        const float4 v =
            *reinterpret_cast<const float4*>(a.ws_o + (s * split_stride + row) * D + d);
        acc.x += wt * v.x;
        acc.y += wt * v.y;
        acc.z += wt * v.z;
        acc.w += wt * v.w;
      }
      store4(static_cast<T*>(a.out) + row * D + d, acc);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Launchers

template <typename T, int D, int kWarpsM, int kWarpsN, int kTileN, int kStages>
cudaError_t launch_attention(const Args& args, int max_query_len, int num_seqs,
                             cudaStream_t stream) {
  using C = Config<T, D, kWarpsM, kWarpsN, kTileN, kStages>;
  const auto kernel = paged_attention_kernel<T, D, kWarpsM, kWarpsN, kTileN, kStages>;
  // Not a stream operation, so it is legal while a graph is being captured.
  cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(C::kSmemBytes));
  if (status != cudaSuccess) return status;
  const std::int64_t row_tiles =
      (std::int64_t{max_query_len} * args.group + C::kTileM - 1) / C::kTileM;
  if (row_tiles * args.num_splits > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(row_tiles * args.num_splits),
                  static_cast<unsigned>(args.num_kv_heads), static_cast<unsigned>(num_seqs));
  kernel<<<grid, kThreads, C::kSmemBytes, stream>>>(args);
  return cudaGetLastError();
}

template <typename T, int D>
cudaError_t launch_merge(const Args& args, int max_query_len, int num_seqs, cudaStream_t stream) {
  const std::int64_t items = std::int64_t{num_seqs} * args.num_heads;
  const std::int64_t blocks = (items + kThreads / 32 - 1) / (kThreads / 32);
  // Token stride of the merge: one block row per token of the longest sequence (capped by
  // the grid limit; the warps loop past it).
  const int token_blocks = std::clamp(max_query_len, 1, 65535);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(token_blocks));
  merge_splits_kernel<T, D><<<grid, kThreads, 0, stream>>>(args, num_seqs);
  return cudaGetLastError();
}

template <typename T, int D>
cudaError_t run(const Args& args, int max_query_len, int num_seqs, cudaStream_t stream) {
  if (max_query_len == 1) {
    // Decode: 4 warps over the tokens of each 64-token tile; 3 stages (2 for D = 256, whose
    // stage is 64 KiB) keep 32-64 KiB of K/V in flight per CTA at 2 CTAs per SM.
    constexpr int kStages = D == 256 ? 2 : 3;
    cudaError_t status = launch_attention<T, D, 1, 4, 64, kStages>(args, 1, num_seqs, stream);
    if (status != cudaSuccess || args.num_splits == 1) return status;
    return launch_merge<T, D>(args, 1, num_seqs, stream);
  }
  // Prefill: 64 rows per CTA, 64-token tiles (32 for D = 256 to bound registers). With
  // num_splits > 1 (split-KV, see paged_attention_prefill_num_splits) every CTA sweeps its
  // share of the tiles its rows can see and the merge combines the partials.
  const cudaError_t status = launch_attention < T, D, 4, 1, D == 256 ? 32 : 64,
                    2 > (args, max_query_len, num_seqs, stream);
  if (status != cudaSuccess || args.num_splits == 1) return status;
  return launch_merge<T, D>(args, max_query_len, num_seqs, stream);
}

template <typename T>
cudaError_t run_dtype(const Args& args, int head_dim, int max_query_len, int num_seqs,
                      cudaStream_t stream) {
  switch (head_dim) {
    case 64:
      return run<T, 64>(args, max_query_len, num_seqs, stream);
    case 128:
      return run<T, 128>(args, max_query_len, num_seqs, stream);
    case 256:
      return run<T, 256>(args, max_query_len, num_seqs, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

std::size_t split_bytes(std::int32_t num_tokens, std::int32_t num_heads, std::int32_t head_dim) {
  // Partial output plus one lse per (token, head).
  return std::size_t(num_tokens) * std::size_t(num_heads) * (std::size_t(head_dim) + 1) *
         sizeof(float);
}

// Prefill split-KV tuning: the prefill CTA covers 64 rows (Config::kTileM with kWarpsM = 4);
// the automatic split aims at about kPrefillCtasPerSm CTAs per SM, each split at least
// kMinSplitLen positions.
constexpr std::int32_t kPrefillRowsPerCta = 64;
constexpr std::int32_t kPrefillCtasPerSm = 2;
constexpr std::int32_t kMaxSplits = 32;          // automatic, decode and prefill
constexpr std::int32_t kMaxPrefillSplits = 256;  // explicit prefill requests are capped here
constexpr std::int32_t kMinSplitLen = 256;

// The SM count for the heuristics: p.num_sms, else the current device's.
cudaError_t heuristic_sms(std::int32_t num_sms, std::int32_t* sms) {
  *sms = num_sms;
  if (num_sms > 0) return cudaSuccess;
  int device = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status == cudaSuccess)
    status = cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, device);
  return status;
}

// The prefill split count paged_attention uses for p (1: unsplit): the request (explicit or
// automatic over `sms`), lowered to what the workspace holds and to the grid limit.
std::int32_t prefill_splits(const PagedAttentionParams& p, std::int32_t sms) {
  if (p.max_query_len <= 1) return 1;
  std::int64_t want = p.prefill_num_splits > 0 ? std::min(p.prefill_num_splits, kMaxPrefillSplits)
                                               : paged_attention_prefill_num_splits(
                                                     p.num_seqs, p.num_heads, p.num_kv_heads,
                                                     p.max_query_len, p.max_context_len, sms);
  if (want <= 1) return 1;
  if (p.workspace == nullptr || reinterpret_cast<std::uintptr_t>(p.workspace) % 16 != 0) return 1;
  const std::size_t per_split = split_bytes(p.num_tokens, p.num_heads, p.head_dim);
  want = std::min<std::int64_t>(want, static_cast<std::int64_t>(std::min<std::size_t>(
                                          p.workspace_bytes / per_split, kMaxPrefillSplits)));
  const std::int64_t row_tiles =
      (std::int64_t{p.max_query_len} * (p.num_heads / p.num_kv_heads) + kPrefillRowsPerCta - 1) /
      kPrefillRowsPerCta;
  want = std::min<std::int64_t>(want, 0x7fffffff / std::max<std::int64_t>(row_tiles, 1));
  return want >= 2 ? static_cast<std::int32_t>(want) : 1;
}

}  // namespace

std::size_t paged_attention_workspace_bytes(std::int32_t num_tokens, std::int32_t num_heads,
                                            std::int32_t head_dim, std::int32_t num_splits) {
  if (num_splits <= 1 || num_tokens <= 0 || num_heads <= 0 || head_dim <= 0) return 0;
  return std::size_t(num_splits) * split_bytes(num_tokens, num_heads, head_dim);
}

std::int32_t paged_attention_num_splits(std::int32_t num_seqs, std::int32_t num_kv_heads,
                                        std::int32_t max_context_len, std::int32_t num_sms) {
  const std::int64_t ctas = std::max<std::int64_t>(1, std::int64_t{num_seqs} * num_kv_heads);
  const std::int64_t target = 2 * std::int64_t{num_sms > 0 ? num_sms : 132};
  std::int64_t splits = (target + ctas - 1) / ctas;
  splits = std::min<std::int64_t>(splits, std::max(1, max_context_len / kMinSplitLen));
  return static_cast<std::int32_t>(std::clamp<std::int64_t>(splits, 1, kMaxSplits));
}

std::int32_t paged_attention_prefill_num_splits(std::int32_t num_seqs, std::int32_t num_heads,
                                                std::int32_t num_kv_heads,
                                                std::int32_t max_query_len,
                                                std::int32_t max_context_len,
                                                std::int32_t num_sms) {
  if (num_seqs <= 0 || num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 ||
      max_query_len <= 1)
    return 1;
  // Only a long cached prefix: without one the causal sweep is short next to the row count.
  if (max_context_len < 2 * std::int64_t{max_query_len}) return 1;
  const std::int64_t sms = num_sms > 0 ? num_sms : 132;
  const std::int64_t row_tiles =
      (std::int64_t{max_query_len} * (num_heads / num_kv_heads) + kPrefillRowsPerCta - 1) /
      kPrefillRowsPerCta;
  const std::int64_t ctas = std::int64_t{num_seqs} * row_tiles * num_kv_heads;
  if (ctas >= sms) return 1;
  // Rounded down, so that ctas * splits <= kPrefillCtasPerSm * sms (the workspace bound).
  std::int64_t splits = kPrefillCtasPerSm * sms / ctas;
  splits = std::min<std::int64_t>(splits, max_context_len / kMinSplitLen);
  return static_cast<std::int32_t>(std::clamp<std::int64_t>(splits, 1, kMaxSplits));
}

std::size_t paged_attention_prefill_workspace_bytes(std::int32_t head_dim, std::int32_t num_sms) {
  if (head_dim <= 0) return 0;
  const std::size_t sms = num_sms > 0 ? std::size_t(num_sms) : 132;
  // splits * num_tokens * num_heads <= splits * ctas * 64 <= kPrefillCtasPerSm * sms * 64.
  return std::size_t{kPrefillCtasPerSm} * sms * kPrefillRowsPerCta * split_bytes(1, 1, head_dim);
}

std::int32_t paged_attention_prefill_splits_used(const PagedAttentionParams& p) {
  if (p.max_query_len <= 1 || p.num_heads <= 0 || p.num_kv_heads <= 0 ||
      p.num_heads % p.num_kv_heads != 0 || p.num_tokens <= 0 || p.head_dim <= 0)
    return 1;
  std::int32_t sms = 0;
  if (p.prefill_num_splits <= 0 && heuristic_sms(p.num_sms, &sms) != cudaSuccess) return 1;
  return prefill_splits(p, sms);
}

cudaError_t paged_attention(const PagedAttentionParams& p, cudaStream_t stream) {
  if (p.dtype != DType::kBF16 && p.dtype != DType::kFP16) return cudaErrorInvalidValue;
  if (p.head_dim != 64 && p.head_dim != 128 && p.head_dim != 256) return cudaErrorInvalidValue;
  if (p.block_size < 8 || p.block_size > 128 || (p.block_size & (p.block_size - 1)) != 0)
    return cudaErrorInvalidValue;
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0 ||
      p.num_kv_heads > 65535)
    return cudaErrorInvalidValue;
  if (p.num_seqs < 0 || p.num_tokens < 0 || p.max_query_len < 0 || p.num_seqs > 65535 ||
      p.max_blocks_per_seq < 0)
    return cudaErrorInvalidValue;
  if (p.num_seqs == 0 || p.num_tokens == 0 || p.max_query_len == 0) return cudaSuccess;
  if (p.q == nullptr || p.k_cache == nullptr || p.v_cache == nullptr || p.out == nullptr ||
      p.query_start == nullptr || p.context_lens == nullptr || p.block_tables == nullptr)
    return cudaErrorInvalidValue;

  std::int32_t splits = 1;
  if (p.max_query_len == 1) {
    if (p.num_splits > 0) {
      splits = p.num_splits;
    } else {
      std::int32_t sms = 0;
      if (heuristic_sms(p.num_sms, &sms) != cudaSuccess) return cudaGetLastError();
      splits = paged_attention_num_splits(p.num_seqs, p.num_kv_heads, p.max_context_len, sms);
      // Automatic: as many as the workspace holds.
      const std::size_t per_split = split_bytes(p.num_tokens, p.num_heads, p.head_dim);
      const std::size_t fit = p.workspace == nullptr ? 0 : p.workspace_bytes / per_split;
      splits =
          static_cast<std::int32_t>(std::min<std::size_t>(splits, std::max<std::size_t>(fit, 1)));
    }
    if (splits > 1) {
      if (p.workspace == nullptr || reinterpret_cast<std::uintptr_t>(p.workspace) % 16 != 0 ||
          p.workspace_bytes <
              paged_attention_workspace_bytes(p.num_tokens, p.num_heads, p.head_dim, splits))
        return cudaErrorInvalidValue;
    }
  } else {
    // Prefill split-KV: never an error; no SM count (device query failed) means no split.
    std::int32_t sms = 0;
    if (p.prefill_num_splits > 0 || heuristic_sms(p.num_sms, &sms) == cudaSuccess)
      splits = prefill_splits(p, sms);
  }

  Args args{};
  args.q = p.q;
  args.k_cache = p.k_cache;
  args.v_cache = p.v_cache;
  args.out = p.out;
  args.query_start = p.query_start;
  args.context_lens = p.context_lens;
  args.block_tables = p.block_tables;
  args.ws_o = static_cast<float*>(p.workspace);
  args.ws_lse = splits > 1 ? args.ws_o + std::size_t(splits) * p.num_tokens * p.num_heads *
                                             std::size_t(p.head_dim)
                           : nullptr;
  args.max_blocks_per_seq = p.max_blocks_per_seq;
  args.num_tokens = p.num_tokens;
  args.num_heads = p.num_heads;
  args.num_kv_heads = p.num_kv_heads;
  args.group = p.num_heads / p.num_kv_heads;
  args.log2_bs = 0;
  while ((1 << args.log2_bs) < p.block_size) ++args.log2_bs;
  args.num_splits = splits;
  args.scale_log2 = p.scale * kLog2e;

  if (p.dtype == DType::kBF16)
    return run_dtype<__nv_bfloat16>(args, p.head_dim, p.max_query_len, p.num_seqs, stream);
  return run_dtype<__half>(args, p.head_dim, p.max_query_len, p.num_seqs, stream);
}

}  // namespace cachet::kernels

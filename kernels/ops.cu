// Elementwise and normalization kernels (see ops.h for what each computes and why).
//
// Every product and sum that the CPU reference spells as separate operations is written with
// the _rn intrinsics: nvcc contracts a * b + c into one FMA by default, which would round
// differently from the CPU wherever the CPU does not fuse. The intrinsics also keep the
// results IEEE under -use_fast_math.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "ops.h"

namespace cachet::kernels {
namespace {

template <typename T>
struct Cvt;
template <>
struct Cvt<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float v) {
    return __float2bfloat16_rn(v);
  }
};
template <>
struct Cvt<__half> {
  static __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
};

template <typename T>
__device__ __forceinline__ float to_f(T v) {
  return Cvt<T>::to_float(v);
}
template <typename T>
__device__ __forceinline__ T from_f(float v) {
  return Cvt<T>::from_float(v);
}

// N elements of T moved as one aligned access (8 bytes for 4 x 16-bit, 16 bytes for 8).
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

inline bool aligned(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

constexpr float kNaN = __builtin_nanf("");

// Sum over the block; every thread gets the result. `scratch` holds one float per warp.
// blockDim.x must be a multiple of 32.
__device__ float block_sum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int num_warps = blockDim.x / 32;
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < num_warps ? scratch[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---------------------------------------------------------------------------------------------
// embedding

template <typename T, bool kVec>
__global__ void embedding_kernel(EmbeddingParams p) {
  const std::int64_t t = blockIdx.x;
  float* out = p.out + t * p.hidden;
  const std::int32_t id = p.ids[t];
  if (id < 0 || id >= p.vocab) {
    for (std::int32_t i = threadIdx.x; i < p.hidden; i += blockDim.x) out[i] = kNaN;
    return;
  }
  const T* row = static_cast<const T*>(p.table) + std::int64_t{id} * p.hidden;
  std::int32_t done = 0;
  if constexpr (kVec) {
    // 8 elements (16 bytes of T) in, two float4 out.
    const std::int32_t chunks = p.hidden / 8;
    for (std::int32_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      const Pack<T, 8> in = reinterpret_cast<const Pack<T, 8>*>(row)[c];
      float4* o = reinterpret_cast<float4*>(out + 8 * c);
      o[0] = make_float4(to_f(in.v[0]), to_f(in.v[1]), to_f(in.v[2]), to_f(in.v[3]));
      o[1] = make_float4(to_f(in.v[4]), to_f(in.v[5]), to_f(in.v[6]), to_f(in.v[7]));
    }
    done = chunks * 8;
  }
  for (std::int32_t i = done + threadIdx.x; i < p.hidden; i += blockDim.x) out[i] = to_f(row[i]);
}

template <typename T>
void embedding_launch(const EmbeddingParams& p, cudaStream_t stream) {
  const bool vec = p.hidden % 8 == 0 && aligned(p.table, 16) && aligned(p.out, 16);
  constexpr int kThreads = 256;
  if (vec) {
    embedding_kernel<T, true><<<p.num_tokens, kThreads, 0, stream>>>(p);
  } else {
    embedding_kernel<T, false><<<p.num_tokens, kThreads, 0, stream>>>(p);
  }
}

// ---------------------------------------------------------------------------------------------
// rmsnorm

constexpr int kNormThreads = 256;

// kVec: 4 fp32 in (16 bytes), 4 T weights and outputs (8 bytes) per access.
template <typename T, bool kVec>
__global__ void __launch_bounds__(kNormThreads) rmsnorm_kernel(RmsNormParams p) {
  __shared__ float scratch[32];
  const std::int64_t r = blockIdx.x;
  const std::int64_t src_row = p.rows != nullptr ? p.rows[r] : r;
  const float* x = p.in + src_row * p.in_stride;
  const T* w = static_cast<const T*>(p.weight);
  T* y = static_cast<T*>(p.out) + r * p.hidden;
  const std::int32_t n = p.hidden;
  const std::int32_t vec_end = kVec ? n / 4 * 4 : 0;

  // Mean of squares in fp32, as HF does after .to(torch.float32) (and cpu::rmsnorm_row).
  float sum_sq = 0.0f;
  if constexpr (kVec) {
    for (std::int32_t c = threadIdx.x; c < n / 4; c += blockDim.x) {
      const float4 v = reinterpret_cast<const float4*>(x)[c];
      sum_sq = __fmaf_rn(v.x, v.x, sum_sq);
      sum_sq = __fmaf_rn(v.y, v.y, sum_sq);
      sum_sq = __fmaf_rn(v.z, v.z, sum_sq);
      sum_sq = __fmaf_rn(v.w, v.w, sum_sq);
    }
  }
  for (std::int32_t i = vec_end + threadIdx.x; i < n; i += blockDim.x) {
    sum_sq = __fmaf_rn(x[i], x[i], sum_sq);
  }
  sum_sq = block_sum(sum_sq, scratch);
  const float inv_rms =
      __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(sum_sq, static_cast<float>(n)), p.eps)));

  // y = w * (x * inv_rms): the CPU's order (normalize, then scale by the weight).
  if constexpr (kVec) {
    for (std::int32_t c = threadIdx.x; c < n / 4; c += blockDim.x) {
      const float4 v = reinterpret_cast<const float4*>(x)[c];
      const Pack<T, 4> wv = reinterpret_cast<const Pack<T, 4>*>(w)[c];
      Pack<T, 4> o;
      o.v[0] = from_f<T>(__fmul_rn(to_f(wv.v[0]), __fmul_rn(v.x, inv_rms)));
      o.v[1] = from_f<T>(__fmul_rn(to_f(wv.v[1]), __fmul_rn(v.y, inv_rms)));
      o.v[2] = from_f<T>(__fmul_rn(to_f(wv.v[2]), __fmul_rn(v.z, inv_rms)));
      o.v[3] = from_f<T>(__fmul_rn(to_f(wv.v[3]), __fmul_rn(v.w, inv_rms)));
      reinterpret_cast<Pack<T, 4>*>(y)[c] = o;
    }
  }
  for (std::int32_t i = vec_end + threadIdx.x; i < n; i += blockDim.x) {
    y[i] = from_f<T>(__fmul_rn(to_f(w[i]), __fmul_rn(x[i], inv_rms)));
  }
}

template <typename T>
void rmsnorm_launch(const RmsNormParams& p, cudaStream_t stream) {
  const bool vec = p.hidden % 4 == 0 && p.in_stride % 4 == 0 && aligned(p.in, 16) &&
                   aligned(p.weight, 8) && aligned(p.out, 8);
  if (vec) {
    rmsnorm_kernel<T, true><<<p.num_rows, kNormThreads, 0, stream>>>(p);
  } else {
    rmsnorm_kernel<T, false><<<p.num_rows, kNormThreads, 0, stream>>>(p);
  }
}

// ---------------------------------------------------------------------------------------------
// qkv_post

constexpr int kQkvWarps = 4;  // warps per CTA; one warp per (token, q head or kv head)

// kPair elements per lane access: 2 (float2 in, 2 x T out) when every offset is even, else 1.
template <int kPair>
struct F;
template <>
struct F<1> {
  float v[1];
  static __device__ __forceinline__ F load(const float* p) { return {{*p}}; }
};
template <>
struct F<2> {
  float v[2];
  static __device__ __forceinline__ F load(const float* p) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    return {{t.x, t.y}};
  }
};

template <typename T, int kPair>
__device__ __forceinline__ void load_t(const T* p, float (&out)[kPair]) {
  if constexpr (kPair == 2) {
    const Pack<T, 2> t = *reinterpret_cast<const Pack<T, 2>*>(p);
    out[0] = to_f(t.v[0]);
    out[1] = to_f(t.v[1]);
  } else {
    out[0] = to_f(p[0]);
  }
}

template <typename T, int kPair>
__device__ __forceinline__ void store_t(T* p, const float (&v)[kPair]) {
  if constexpr (kPair == 2) {
    Pack<T, 2> t;
    t.v[0] = from_f<T>(v[0]);
    t.v[1] = from_f<T>(v[1]);
    *reinterpret_cast<Pack<T, 2>*>(p) = t;
  } else {
    p[0] = from_f<T>(v[0]);
  }
}

// x (+ bias) at [i, i + kPair).
template <typename T, int kPair>
__device__ __forceinline__ void load_x(const float* x, const T* bias, std::int32_t i,
                                       float (&out)[kPair]) {
  const F<kPair> v = F<kPair>::load(x + i);
  for (int j = 0; j < kPair; ++j) out[j] = v.v[j];
  if (bias != nullptr) {
    float b[kPair];
    load_t<T, kPair>(bias + i, b);
    for (int j = 0; j < kPair; ++j) out[j] = __fadd_rn(out[j], b[j]);
  }
}

template <typename T, int kPair>
__global__ void __launch_bounds__(kQkvWarps * 32) qkv_post_kernel(QkvPostParams p) {
  const std::int32_t lane = threadIdx.x % 32;
  const std::int64_t heads_per_token = p.num_heads + p.num_kv_heads;
  const std::int64_t item = std::int64_t{blockIdx.x} * kQkvWarps + threadIdx.x / 32;
  if (item >= std::int64_t{p.num_tokens} * heads_per_token) return;  // whole warp
  const std::int64_t t = item / heads_per_token;
  const std::int32_t h = static_cast<std::int32_t>(item % heads_per_token);
  const bool is_q = h < p.num_heads;
  const std::int32_t head = is_q ? h : h - p.num_heads;
  const std::int32_t hd = p.head_dim, half = hd / 2;
  const std::int64_t q_dim = std::int64_t{p.num_heads} * hd;
  const std::int64_t kv_dim = std::int64_t{p.num_kv_heads} * hd;
  const float* row = p.qkv + t * (q_dim + 2 * kv_dim);
  const T* bias = static_cast<const T*>(p.bias);

  T* dst;
  if (is_q) {
    dst = static_cast<T*>(p.q_out) + (t * p.num_heads + head) * hd;
  } else {
    const std::int64_t slot = p.slot_mapping[t];
    // Padding (or, defensively, a slot beyond the cache): no K/V write at all.
    if (slot < 0 || slot >= p.num_blocks * p.block_size) return;
    const std::int64_t block = slot / p.block_size, offset = slot % p.block_size;
    const std::int64_t at = ((block * p.num_kv_heads + head) * p.block_size + offset) * hd;
    dst = static_cast<T*>(p.k_cache) + at;
    // V: bias only, then stored.
    const float* v = row + q_dim + kv_dim + std::int64_t{head} * hd;
    const T* v_bias = bias != nullptr ? bias + q_dim + kv_dim + std::int64_t{head} * hd : nullptr;
    T* v_dst = static_cast<T*>(p.v_cache) + at;
    for (std::int32_t i = lane * kPair; i < hd; i += 32 * kPair) {
      float x[kPair];
      load_x<T, kPair>(v, v_bias, i, x);
      store_t<T, kPair>(v_dst + i, x);
    }
  }

  const std::int64_t col = is_q ? std::int64_t{head} * hd : q_dim + std::int64_t{head} * hd;
  const float* x = row + col;
  const T* b = bias != nullptr ? bias + col : nullptr;
  const T* norm_w = static_cast<const T*>(is_q ? p.q_norm : p.k_norm);

  // Per-head RMSNorm (Qwen3), after the bias and before RoPE: cpu::rmsnorm_row on the head.
  float inv_rms = 1.0f;
  if (norm_w != nullptr) {
    float sum_sq = 0.0f;
    for (std::int32_t i = lane * kPair; i < hd; i += 32 * kPair) {
      float v[kPair];
      load_x<T, kPair>(x, b, i, v);
      for (int j = 0; j < kPair; ++j) sum_sq = __fmaf_rn(v[j], v[j], sum_sq);
    }
    for (int o = 16; o > 0; o >>= 1) {
      sum_sq = __fadd_rn(sum_sq, __shfl_xor_sync(0xffffffffu, sum_sq, o));
    }
    inv_rms =
        __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(sum_sq, static_cast<float>(hd)), p.eps)));
  }

  const std::int32_t pos = p.positions[t];
  const bool pos_ok = pos >= 0 && pos < p.rope_positions;
  const float* cos = p.rope_cos + std::int64_t{pos_ok ? pos : 0} * half;
  const float* sin = p.rope_sin + std::int64_t{pos_ok ? pos : 0} * half;
  for (std::int32_t i = lane * kPair; i < half; i += 32 * kPair) {
    float a[kPair], c[kPair];  // x[i], x[i + half]
    load_x<T, kPair>(x, b, i, a);
    load_x<T, kPair>(x, b, i + half, c);
    if (norm_w != nullptr) {
      float wa[kPair], wc[kPair];
      load_t<T, kPair>(norm_w + i, wa);
      load_t<T, kPair>(norm_w + i + half, wc);
      for (int j = 0; j < kPair; ++j) {
        a[j] = __fmul_rn(wa[j], __fmul_rn(a[j], inv_rms));
        c[j] = __fmul_rn(wc[j], __fmul_rn(c[j], inv_rms));
      }
    }
    const F<kPair> cs = F<kPair>::load(cos + i);
    const F<kPair> sn = F<kPair>::load(sin + i);
    float lo[kPair], hi[kPair];
    for (int j = 0; j < kPair; ++j) {
      // cpu::rope_apply: x1 = a cos - b sin, x2 = b cos + a sin, each product rounded.
      lo[j] = __fsub_rn(__fmul_rn(a[j], cs.v[j]), __fmul_rn(c[j], sn.v[j]));
      hi[j] = __fadd_rn(__fmul_rn(c[j], cs.v[j]), __fmul_rn(a[j], sn.v[j]));
      if (!pos_ok) lo[j] = hi[j] = kNaN;
    }
    store_t<T, kPair>(dst + i, lo);
    store_t<T, kPair>(dst + i + half, hi);
  }
}

template <typename T>
void qkv_post_launch(const QkvPostParams& p, cudaStream_t stream) {
  const std::int64_t items = std::int64_t{p.num_tokens} * (p.num_heads + p.num_kv_heads);
  const auto blocks = static_cast<unsigned>((items + kQkvWarps - 1) / kQkvWarps);
  // Pairs of elements need every offset even (head_dim is; half must be too) and 8-byte
  // aligned fp32 bases, 4-byte aligned T bases.
  const bool pair = (p.head_dim / 2) % 2 == 0 && aligned(p.qkv, 8) && aligned(p.rope_cos, 8) &&
                    aligned(p.rope_sin, 8) && aligned(p.q_out, 4) && aligned(p.k_cache, 4) &&
                    aligned(p.v_cache, 4) && aligned(p.bias, 4) && aligned(p.q_norm, 4) &&
                    aligned(p.k_norm, 4);
  if (pair) {
    qkv_post_kernel<T, 2><<<blocks, kQkvWarps * 32, 0, stream>>>(p);
  } else {
    qkv_post_kernel<T, 1><<<blocks, kQkvWarps * 32, 0, stream>>>(p);
  }
}

// ---------------------------------------------------------------------------------------------
// silu_mul

__device__ __forceinline__ float silu_times(float g, float u) {
  // cpu::silu_mul: g / (1 + exp(-g)) * up, each step rounded.
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kNormThreads) silu_mul_kernel(SiluMulParams p) {
  const std::int64_t t = blockIdx.x;
  const float* gate = p.in + t * 2 * p.inter;
  const float* up = gate + p.inter;
  T* out = static_cast<T*>(p.out) + t * p.inter;
  std::int32_t done = 0;
  if constexpr (kVec) {
    const std::int32_t chunks = p.inter / 4;
    for (std::int32_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      const float4 g = reinterpret_cast<const float4*>(gate)[c];
      const float4 u = reinterpret_cast<const float4*>(up)[c];
      Pack<T, 4> o;
      o.v[0] = from_f<T>(silu_times(g.x, u.x));
      o.v[1] = from_f<T>(silu_times(g.y, u.y));
      o.v[2] = from_f<T>(silu_times(g.z, u.z));
      o.v[3] = from_f<T>(silu_times(g.w, u.w));
      reinterpret_cast<Pack<T, 4>*>(out)[c] = o;
    }
    done = chunks * 4;
  }
  for (std::int32_t i = done + threadIdx.x; i < p.inter; i += blockDim.x) {
    out[i] = from_f<T>(silu_times(gate[i], up[i]));
  }
}

template <typename T>
void silu_mul_launch(const SiluMulParams& p, cudaStream_t stream) {
  const bool vec = p.inter % 4 == 0 && aligned(p.in, 16) && aligned(p.out, 8);
  if (vec) {
    silu_mul_kernel<T, true><<<p.num_tokens, kNormThreads, 0, stream>>>(p);
  } else {
    silu_mul_kernel<T, false><<<p.num_tokens, kNormThreads, 0, stream>>>(p);
  }
}

template <template <typename> class Launch, typename P>
cudaError_t dispatch(const P& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kBF16:
      Launch<__nv_bfloat16>::run(p, stream);
      break;
    case DType::kFP16:
      Launch<__half>::run(p, stream);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

template <typename T>
struct EmbeddingLaunch {
  static void run(const EmbeddingParams& p, cudaStream_t s) { embedding_launch<T>(p, s); }
};
template <typename T>
struct RmsNormLaunch {
  static void run(const RmsNormParams& p, cudaStream_t s) { rmsnorm_launch<T>(p, s); }
};
template <typename T>
struct QkvPostLaunch {
  static void run(const QkvPostParams& p, cudaStream_t s) { qkv_post_launch<T>(p, s); }
};
template <typename T>
struct SiluMulLaunch {
  static void run(const SiluMulParams& p, cudaStream_t s) { silu_mul_launch<T>(p, s); }
};

}  // namespace

cudaError_t launch_embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.hidden <= 0 || p.vocab <= 0) return cudaErrorInvalidValue;
  if (p.num_tokens == 0) return cudaGetLastError();
  if (p.table == nullptr || p.ids == nullptr || p.out == nullptr) return cudaErrorInvalidValue;
  return dispatch<EmbeddingLaunch>(p, stream);
}

cudaError_t launch_rmsnorm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.num_rows < 0 || p.hidden <= 0 || p.in_stride < p.hidden) return cudaErrorInvalidValue;
  if (p.num_rows == 0) return cudaGetLastError();
  if (p.in == nullptr || p.weight == nullptr || p.out == nullptr) return cudaErrorInvalidValue;
  return dispatch<RmsNormLaunch>(p, stream);
}

cudaError_t launch_qkv_post(const QkvPostParams& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.num_heads <= 0 || p.num_kv_heads <= 0 || p.head_dim <= 0 ||
      p.head_dim % 2 != 0 || p.block_size <= 0 || p.num_blocks < 0 || p.rope_positions < 0 ||
      (p.q_norm == nullptr) != (p.k_norm == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (p.num_tokens == 0) return cudaGetLastError();
  if (p.qkv == nullptr || p.rope_cos == nullptr || p.rope_sin == nullptr ||
      p.positions == nullptr || p.slot_mapping == nullptr || p.q_out == nullptr ||
      p.k_cache == nullptr || p.v_cache == nullptr) {
    return cudaErrorInvalidValue;
  }
  return dispatch<QkvPostLaunch>(p, stream);
}

cudaError_t launch_silu_mul(const SiluMulParams& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.inter <= 0) return cudaErrorInvalidValue;
  if (p.num_tokens == 0) return cudaGetLastError();
  if (p.in == nullptr || p.out == nullptr) return cudaErrorInvalidValue;
  return dispatch<SiluMulLaunch>(p, stream);
}

namespace {

__global__ void __launch_bounds__(256)
    l2_flush_kernel(const uint4* data, std::size_t n, std::uint32_t* sink) {
  std::uint32_t x = 0;
  const std::size_t stride = std::size_t{gridDim.x} * blockDim.x;
  for (std::size_t i = std::size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint4 v = __ldcg(data + i);  // L2 only: the point is to fill L2, not L1
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (x == 0x9e3779b9u) *sink = x;
}

}  // namespace

cudaError_t launch_l2_flush(const L2FlushParams& p, cudaStream_t stream) {
  if (reinterpret_cast<std::uintptr_t>(p.data) % 16 != 0) return cudaErrorInvalidValue;
  const std::size_t n = p.bytes / 16;
  if (n == 0) return cudaGetLastError();
  if (p.data == nullptr || p.sink == nullptr) return cudaErrorInvalidValue;
  const std::size_t blocks = std::min<std::size_t>((n + 255) / 256, 4096);
  l2_flush_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
      static_cast<const uint4*>(p.data), n, p.sink);
  return cudaGetLastError();
}

}  // namespace cachet::kernels

// Paged attention kernels (kernels/attention.cu) against an fp64 host reference computed from
// the same rounded q/K/V values laid out contiguously per sequence, so the reference knows
// nothing of the paged layout. The cache is reached through shuffled block tables; unused
// cache blocks hold large (finite) garbage, unused block-table entries out-of-range indices,
// and the output starts NaN-poisoned, so every row must be written and no stray position
// may leak in. Rows of padded sequences (context_len 0) hold a sentinel that must survive.
#include <gtest/gtest.h>

#include "support/gpu_test.h"

#if CACHET_WITH_CUDA

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "attention.h"

namespace cachet::kernels {
namespace {

#define CACHET_CUDA_OK(call)                                                                       \
  do {                                                                                             \
    const cudaError_t cachet_status_ = (call);                                                     \
    ASSERT_EQ(cachet_status_, cudaSuccess) << #call << ": " << cudaGetErrorString(cachet_status_); \
  } while (0)

constexpr std::uint16_t kPoison = 0x7fff;    // NaN in both bf16 and fp16
constexpr std::uint16_t kSentinel = 0x1234;  // a finite value in both

// Through the _raw structs: the conversion types themselves hide their bits.
std::uint16_t to_bits(DType dtype, float x) {
  if (dtype == DType::kBF16) return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(x)).x;
  return static_cast<__half_raw>(__float2half_rn(x)).x;
}

float from_bits(DType dtype, std::uint16_t u) {
  if (dtype == DType::kBF16) {
    __nv_bfloat16_raw r;
    r.x = u;
    return __bfloat162float(__nv_bfloat16(r));
  }
  __half_raw r;
  r.x = u;
  return __half2float(__half(r));
}

// A device allocation freed on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
};

template <class T>
void upload(DeviceBuffer& buf, const std::vector<T>& host) {
  CACHET_CUDA_OK(cudaMalloc(&buf.ptr, std::max<std::size_t>(host.size() * sizeof(T), 16)));
  if (!host.empty())
    CACHET_CUDA_OK(
        cudaMemcpy(buf.ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
}

struct Seq {
  std::int32_t context_len;
  std::int32_t query_len;
};

struct Case {
  std::string name;
  DType dtype = DType::kBF16;
  std::int32_t head_dim = 128;
  std::int32_t num_kv_heads = 2;
  std::int32_t group = 4;  // query heads per KV head
  std::int32_t block_size = 16;
  std::vector<Seq> seqs;
  std::int32_t num_splits = 1;  // decode only; 0 = automatic
  std::int32_t num_sms = 0;     // 0: the launcher asks the device
  bool capture_graph = false;   // run the launch through a captured CUDA graph
  // Prefill split-KV (PagedAttentionParams::prefill_num_splits: 0 automatic, 1 off).
  std::int32_t prefill_splits = 0;
  // Workspace: >= 0 exactly this many bytes, else paged_attention_workspace_bytes for
  // num_splits splits (32 when automatic), as the decode tests always had.
  std::int64_t workspace_bytes = -1;
  bool misalign_workspace = false;         // pass workspace + 4 bytes (must disable splitting)
  std::int32_t expect_prefill_splits = 0;  // > 0: paged_attention_prefill_splits_used must match
  std::uint32_t seed = 1;
};

std::string describe(const Case& c) {
  std::ostringstream s;
  s << c.name << " " << dtype_name(c.dtype) << " d" << c.head_dim << " kv" << c.num_kv_heads << " g"
    << c.group << " bs" << c.block_size << " splits" << c.num_splits << " prefill splits "
    << c.prefill_splits << " ws " << c.workspace_bytes << " sms " << c.num_sms << " seqs "
    << c.seqs.size() << " seed " << c.seed;
  return s.str();
}

void run_case(const Case& c) {
  SCOPED_TRACE(describe(c));
  const std::int32_t num_seqs = static_cast<std::int32_t>(c.seqs.size());
  const std::int32_t D = c.head_dim, hkv = c.num_kv_heads, bs = c.block_size;
  const std::int32_t H = hkv * c.group;
  std::mt19937 rng(c.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> garbage(1.0e4f, 3.0e4f);
  std::bernoulli_distribution coin(0.5);

  std::vector<std::int32_t> query_start(num_seqs + 1, 0), context_lens(num_seqs);
  std::int32_t max_query_len = 0, max_context_len = 0, max_blocks = 0, total_blocks = 0;
  for (std::int32_t s = 0; s < num_seqs; ++s) {
    query_start[s + 1] = query_start[s] + c.seqs[s].query_len;
    context_lens[s] = c.seqs[s].context_len;
    max_query_len = std::max(max_query_len, c.seqs[s].query_len);
    max_context_len = std::max(max_context_len, c.seqs[s].context_len);
    const std::int32_t blocks = (c.seqs[s].context_len + bs - 1) / bs;
    max_blocks = std::max(max_blocks, blocks);
    total_blocks += blocks;
  }
  const std::int32_t num_tokens = query_start[num_seqs];
  const std::int32_t max_blocks_per_seq = max_blocks + 2;  // trailing entries are garbage
  const std::int32_t pool_blocks = total_blocks + 5;       // unused blocks hold garbage

  // Cache blocks in shuffled order; pool and tables start as garbage.
  std::vector<std::int32_t> block_ids(pool_blocks);
  std::iota(block_ids.begin(), block_ids.end(), 0);
  std::shuffle(block_ids.begin(), block_ids.end(), rng);
  const std::size_t block_elems = std::size_t(hkv) * bs * D;
  std::vector<std::uint16_t> k_pool(pool_blocks * block_elems), v_pool(k_pool.size());
  for (auto* pool : {&k_pool, &v_pool}) {
    for (auto& x : *pool) x = to_bits(c.dtype, coin(rng) ? garbage(rng) : -garbage(rng));
  }
  std::vector<std::int32_t> block_tables(std::size_t(num_seqs) * max_blocks_per_seq);
  for (std::size_t i = 0; i < block_tables.size(); ++i)
    block_tables[i] = pool_blocks + 100000 + static_cast<std::int32_t>(i);

  // Per sequence contiguous K/V [context_len, hkv, D] (rounded), scattered into the pool.
  std::vector<std::vector<float>> k_ref(num_seqs), v_ref(num_seqs);
  std::int32_t next_block = 0;
  for (std::int32_t s = 0; s < num_seqs; ++s) {
    const std::int32_t ctx = context_lens[s];
    k_ref[s].resize(std::size_t(ctx) * hkv * D);
    v_ref[s].resize(k_ref[s].size());
    for (std::int32_t b = 0; b < (ctx + bs - 1) / bs; ++b)
      block_tables[std::size_t(s) * max_blocks_per_seq + b] = block_ids[next_block++];
    for (std::int32_t p = 0; p < ctx; ++p) {
      const std::int32_t block = block_tables[std::size_t(s) * max_blocks_per_seq + p / bs];
      for (std::int32_t h = 0; h < hkv; ++h) {
        for (std::int32_t d = 0; d < D; ++d) {
          const std::size_t ref = (std::size_t(p) * hkv + h) * D + d;
          const std::size_t cache =
              std::size_t(block) * block_elems + (std::size_t(h) * bs + p % bs) * D + d;
          k_pool[cache] = to_bits(c.dtype, normal(rng));
          v_pool[cache] = to_bits(c.dtype, normal(rng));
          k_ref[s][ref] = from_bits(c.dtype, k_pool[cache]);
          v_ref[s][ref] = from_bits(c.dtype, v_pool[cache]);
        }
      }
    }
  }

  // q scaled up a little so that the softmax is peaked rather than nearly uniform.
  std::vector<std::uint16_t> q(std::size_t(num_tokens) * H * D);
  for (auto& x : q) x = to_bits(c.dtype, 1.5f * normal(rng));
  std::vector<std::uint16_t> out(q.size(), kPoison);
  for (std::int32_t s = 0; s < num_seqs; ++s) {
    if (context_lens[s] != 0) continue;
    std::fill(out.begin() + std::size_t(query_start[s]) * H * D,
              out.begin() + std::size_t(query_start[s + 1]) * H * D, kSentinel);
  }

  DeviceBuffer d_q, d_k, d_v, d_out, d_qs, d_ctx, d_bt, d_ws;
  upload(d_q, q);
  upload(d_k, k_pool);
  upload(d_v, v_pool);
  upload(d_out, out);
  upload(d_qs, query_start);
  upload(d_ctx, context_lens);
  upload(d_bt, block_tables);
  const std::int32_t ws_splits = c.num_splits > 0 ? c.num_splits : 32;
  const std::size_t ws_bytes = c.workspace_bytes >= 0
                                   ? static_cast<std::size_t>(c.workspace_bytes)
                                   : paged_attention_workspace_bytes(num_tokens, H, D, ws_splits);
  if (ws_bytes > 0) {
    // NaN-poisoned (all ones), so that a merged partial that was never written shows.
    CACHET_CUDA_OK(cudaMalloc(&d_ws.ptr, ws_bytes + 16));
    CACHET_CUDA_OK(cudaMemset(d_ws.ptr, 0xff, ws_bytes + 16));
  }

  PagedAttentionParams p;
  p.dtype = c.dtype;
  p.q = d_q.ptr;
  p.k_cache = d_k.ptr;
  p.v_cache = d_v.ptr;
  p.out = d_out.ptr;
  p.query_start = static_cast<const std::int32_t*>(d_qs.ptr);
  p.context_lens = static_cast<const std::int32_t*>(d_ctx.ptr);
  p.block_tables = static_cast<const std::int32_t*>(d_bt.ptr);
  p.max_blocks_per_seq = max_blocks_per_seq;
  p.num_seqs = num_seqs;
  p.num_tokens = num_tokens;
  p.num_heads = H;
  p.num_kv_heads = hkv;
  p.head_dim = D;
  p.block_size = bs;
  p.scale = 1.0f / std::sqrt(static_cast<float>(D));
  p.max_query_len = max_query_len;
  p.max_context_len = max_context_len;
  p.num_splits = c.num_splits;
  p.workspace = c.misalign_workspace && d_ws.ptr != nullptr
                    ? static_cast<void*>(static_cast<char*>(d_ws.ptr) + 4)
                    : d_ws.ptr;
  p.workspace_bytes = ws_bytes;
  p.num_sms = c.num_sms;
  p.prefill_num_splits = c.prefill_splits;
  const std::int32_t used_splits = paged_attention_prefill_splits_used(p);
  SCOPED_TRACE("prefill splits used " + std::to_string(used_splits));
  if (c.expect_prefill_splits > 0) {
    EXPECT_EQ(used_splits, c.expect_prefill_splits);
  }

  cudaStream_t stream = nullptr;
  CACHET_CUDA_OK(cudaStreamCreate(&stream));
  if (c.capture_graph) {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    CACHET_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    const cudaError_t launched = paged_attention(p, stream);
    CACHET_CUDA_OK(cudaStreamEndCapture(stream, &graph));
    CACHET_CUDA_OK(launched);
    CACHET_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    CACHET_CUDA_OK(cudaGraphLaunch(exec, stream));
    CACHET_CUDA_OK(cudaStreamSynchronize(stream));
    CACHET_CUDA_OK(cudaGraphExecDestroy(exec));
    CACHET_CUDA_OK(cudaGraphDestroy(graph));
  } else {
    CACHET_CUDA_OK(paged_attention(p, stream));
  }
  CACHET_CUDA_OK(cudaStreamSynchronize(stream));
  CACHET_CUDA_OK(cudaStreamDestroy(stream));
  CACHET_CUDA_OK(cudaMemcpy(out.data(), d_out.ptr, out.size() * sizeof(std::uint16_t),
                            cudaMemcpyDeviceToHost));

  const double rel_tol = c.dtype == DType::kBF16 ? 1e-2 : 2e-3;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  int failures = 0;
  for (std::int32_t s = 0; s < num_seqs && failures < 10; ++s) {
    const std::int32_t ctx = context_lens[s], qlen = c.seqs[s].query_len;
    if (ctx == 0) {
      for (std::size_t i = std::size_t(query_start[s]) * H * D;
           i < std::size_t(query_start[s + 1]) * H * D; ++i) {
        if (out[i] != kSentinel) {
          ADD_FAILURE() << "padded seq " << s << " output element " << i << " was written";
          ++failures;
          break;
        }
      }
      continue;
    }
    double err2 = 0, ref2 = 0, max_err = 0, max_ref = 0;
    bool finite = true;
    std::vector<double> w(ctx), o(D);
    for (std::int32_t t = 0; t < qlen && finite; ++t) {
      const std::int32_t token = query_start[s] + t;
      const std::int32_t pos = ctx - qlen + t;
      for (std::int32_t h = 0; h < H && finite; ++h) {
        const std::int32_t kvh = h / c.group;
        const std::uint16_t* qv = q.data() + (std::size_t(token) * H + h) * D;
        std::vector<double> qd(D);
        for (std::int32_t d = 0; d < D; ++d) qd[d] = from_bits(c.dtype, qv[d]);
        double mx = -INFINITY;
        for (std::int32_t j = 0; j <= pos; ++j) {
          const float* kr = k_ref[s].data() + (std::size_t(j) * hkv + kvh) * D;
          double dot = 0;
          for (std::int32_t d = 0; d < D; ++d) dot += qd[d] * kr[d];
          w[j] = dot * scale;
          mx = std::max(mx, w[j]);
        }
        double sum = 0;
        for (std::int32_t j = 0; j <= pos; ++j) sum += (w[j] = std::exp(w[j] - mx));
        std::fill(o.begin(), o.end(), 0.0);
        for (std::int32_t j = 0; j <= pos; ++j) {
          const float* vr = v_ref[s].data() + (std::size_t(j) * hkv + kvh) * D;
          for (std::int32_t d = 0; d < D; ++d) o[d] += w[j] * vr[d];
        }
        const std::uint16_t* got = out.data() + (std::size_t(token) * H + h) * D;
        for (std::int32_t d = 0; d < D; ++d) {
          const double ref = o[d] / sum;
          const double val = from_bits(c.dtype, got[d]);
          if (!std::isfinite(val)) {
            ADD_FAILURE() << "seq " << s << " token " << t << " head " << h << " dim " << d
                          << ": not finite (never written?)";
            finite = false;
            ++failures;
            break;
          }
          err2 += (val - ref) * (val - ref);
          ref2 += ref * ref;
          max_err = std::max(max_err, std::abs(val - ref));
          max_ref = std::max(max_ref, std::abs(ref));
        }
      }
    }
    if (!finite || qlen == 0) continue;
    const double rel = std::sqrt(err2 / std::max(ref2, 1e-30));
    if (rel > rel_tol || max_err > 0.05 * max_ref) {
      ADD_FAILURE() << "seq " << s << " (context " << ctx << ", query " << qlen
                    << "): relative error " << rel << " (tolerance " << rel_tol
                    << "), max abs error " << max_err << " (max |ref| " << max_ref << ")";
      ++failures;
    }
  }
}

std::uint32_t next_seed() {
  static std::uint32_t seed = 1000;
  return ++seed;
}

// Decode batches: every query length 1.
std::vector<Seq> decode_seqs(std::int32_t batch, std::mt19937& rng) {
  static constexpr std::int32_t kLens[] = {1, 7, 97, 1000, 5000, 33, 300};
  std::vector<Seq> seqs;
  if (batch == 1) return {{5000, 1}};
  std::uniform_int_distribution<std::int32_t> len(1, 1500);
  for (std::int32_t i = 0; i < batch; ++i)
    seqs.push_back({batch <= 7 ? kLens[i % 7] : len(rng), 1});
  return seqs;
}

TEST(PagedAttentionDecode, MatchesReferenceAcrossShapes) {
  CACHET_REQUIRE_GPU();
  std::mt19937 rng(7);
  static constexpr std::int32_t kBatches[] = {1, 7, 37};
  static constexpr std::int32_t kSplits[] = {1, 3, 7, 0};
  int i = 0;
  for (std::int32_t head_dim : {64, 128}) {
    for (std::int32_t group : {1, 4, 8}) {
      for (std::int32_t block_size : {8, 16, 32}) {
        Case c;
        c.name = "decode";
        c.head_dim = head_dim;
        c.group = group;
        c.block_size = block_size;
        c.seqs = decode_seqs(kBatches[i % 3], rng);
        c.num_splits = kSplits[i % 4];
        c.seed = next_seed();
        run_case(c);
        ++i;
      }
    }
  }
}

TEST(PagedAttentionDecode, Fp16AndOtherHeadShapes) {
  CACHET_REQUIRE_GPU();
  std::mt19937 rng(8);
  for (std::int32_t splits : {1, 7, 0}) {
    Case c;
    c.name = "decode fp16";
    c.dtype = DType::kFP16;
    c.seqs = decode_seqs(7, rng);
    c.num_splits = splits;
    c.seed = next_seed();
    run_case(c);
  }
  // GQA 2 and 16, head_dim 256, block size 64 / 128, fp16 with head_dim 64.
  const struct {
    DType dtype;
    std::int32_t head_dim, kv_heads, group, block_size, splits;
  } shapes[] = {{DType::kBF16, 128, 4, 2, 16, 3},  {DType::kBF16, 128, 2, 16, 16, 0},
                {DType::kBF16, 256, 2, 4, 16, 5},  {DType::kBF16, 128, 2, 4, 64, 2},
                {DType::kBF16, 128, 1, 8, 128, 0}, {DType::kFP16, 64, 2, 8, 32, 4},
                {DType::kFP16, 256, 1, 2, 8, 1}};
  for (const auto& sh : shapes) {
    Case c;
    c.name = "decode shape";
    c.dtype = sh.dtype;
    c.head_dim = sh.head_dim;
    c.num_kv_heads = sh.kv_heads;
    c.group = sh.group;
    c.block_size = sh.block_size;
    c.seqs = decode_seqs(7, rng);
    c.num_splits = sh.splits;
    c.seed = next_seed();
    run_case(c);
  }
}

// A captured batch padded with context_len 0 rows: their outputs stay untouched, and a
// graph-captured launch (fixed num_splits) computes the same as a direct one.
TEST(PagedAttentionDecode, PaddedRowsAndGraphCapture) {
  CACHET_REQUIRE_GPU();
  for (bool graph : {false, true}) {
    for (std::int32_t splits : {1, 4}) {
      Case c;
      c.name = graph ? "decode padded graph" : "decode padded";
      c.seqs = {{300, 1}, {0, 1}, {1, 1}, {0, 1}, {2049, 1}, {0, 1}};
      c.num_splits = splits;
      c.capture_graph = graph;
      c.seed = next_seed();
      run_case(c);
    }
  }
  // Automatic splits with an explicit SM count.
  Case c;
  c.name = "decode auto splits";
  c.seqs = {{4096, 1}, {0, 1}, {77, 1}};
  c.num_splits = 0;
  c.num_sms = 132;
  c.seed = next_seed();
  run_case(c);
}

// Prefill batches: query lengths 1/5/64/100/300 over cached prefixes of every length modulo
// the block size plus a few multiples, with decode rows, an empty query and a padded row.
std::vector<Seq> prefill_seqs(std::int32_t block_size, std::int32_t rotate) {
  static constexpr std::int32_t kQueryLens[] = {1, 5, 64, 100, 300};
  std::vector<std::int32_t> prefixes(block_size);
  std::iota(prefixes.begin(), prefixes.end(), 0);
  for (std::int32_t extra : {block_size, 2 * block_size, 3 * block_size + 5, 129})
    prefixes.push_back(extra);
  std::vector<Seq> seqs;
  for (std::size_t i = 0; i < prefixes.size(); ++i) {
    const std::int32_t qlen = kQueryLens[(i + rotate) % 5];
    seqs.push_back({prefixes[i] + qlen, qlen});
    if (i == 3) seqs.push_back({1000, 1});  // decode rows mixed in
    if (i == 7) seqs.push_back({0, 1});     // padding
    if (i == 9) seqs.push_back({50, 0});    // no new tokens
  }
  seqs.push_back({97, 1});
  return seqs;
}

TEST(PagedAttentionPrefill, MatchesReferenceAcrossShapes) {
  CACHET_REQUIRE_GPU();
  const struct { std::int32_t head_dim, group; } heads[] = {{128, 4}, {64, 1}, {128, 8}};
  std::int32_t rotate = 0;
  for (std::int32_t block_size : {8, 16, 32}) {
    for (const auto& hd : heads) {
      Case c;
      c.name = "prefill";
      c.head_dim = hd.head_dim;
      c.group = hd.group;
      c.num_kv_heads = hd.group == 8 ? 1 : 2;
      c.block_size = block_size;
      c.seqs = prefill_seqs(block_size, rotate++);
      c.seed = next_seed();
      run_case(c);
    }
  }
}

TEST(PagedAttentionPrefill, Fp16LongAndOtherShapes) {
  CACHET_REQUIRE_GPU();
  const struct {
    DType dtype;
    std::int32_t head_dim, kv_heads, group, block_size;
    std::vector<Seq> seqs;
  } cases[] = {
      {DType::kFP16, 128, 2, 4, 16, prefill_seqs(16, 2)},
      {DType::kFP16, 64, 1, 2, 8, prefill_seqs(8, 4)},
      {DType::kBF16, 256, 1, 4, 16, prefill_seqs(16, 1)},
      {DType::kBF16, 128, 1, 16, 64, prefill_seqs(64, 3)},
      {DType::kBF16, 128, 1, 2, 128, {{2000, 700}, {1301, 1}, {555, 555}}},
      {DType::kFP16, 128, 1, 1, 16, {{2000, 700}, {130, 129}}},
  };
  for (const auto& cs : cases) {
    Case c;
    c.name = "prefill shape";
    c.dtype = cs.dtype;
    c.head_dim = cs.head_dim;
    c.num_kv_heads = cs.kv_heads;
    c.group = cs.group;
    c.block_size = cs.block_size;
    c.seqs = cs.seqs;
    c.seed = next_seed();
    run_case(c);
  }
}

// ---------------------------------------------------------------------------------------
// Prefill split-KV: query lengths 1/17/64/130 over cached prefixes 0/15/1000/4096/5000.

constexpr std::int32_t kSplitQueryLens[] = {1, 17, 64, 130};
constexpr std::int32_t kSplitPrefixes[] = {0, 15, 1000, 4096, 5000};

struct SplitShape {
  DType dtype;
  std::int32_t head_dim, group;
};

// bf16 / fp16 x head_dim 64 / 128 x GQA 4 / 8.
std::vector<SplitShape> split_shapes() {
  std::vector<SplitShape> shapes;
  for (DType dtype : {DType::kBF16, DType::kFP16})
    for (std::int32_t head_dim : {64, 128})
      for (std::int32_t group : {4, 8}) shapes.push_back({dtype, head_dim, group});
  return shapes;
}

std::int32_t total_tokens(const std::vector<Seq>& seqs) {
  std::int32_t n = 0;
  for (const Seq& s : seqs) n += s.query_len;
  return n;
}

// One sequence per case, automatic split on a 132-SM count with the workspace a backend sizes
// by paged_attention_prefill_workspace_bytes; every (query_len > 1, prefix) pair, the shapes
// rotating. Long prefixes must actually split.
TEST(PagedAttentionPrefillSplit, SingleSequenceAutomatic) {
  CACHET_REQUIRE_GPU();
  const auto shapes = split_shapes();
  std::size_t i = 0;
  for (std::int32_t qlen : kSplitQueryLens) {
    if (qlen == 1) continue;  // a lone one-token query is the decode path
    for (std::int32_t prefix : kSplitPrefixes) {
      const SplitShape& sh = shapes[i % shapes.size()];
      Case c;
      c.name = "prefill split single";
      c.dtype = sh.dtype;
      c.head_dim = sh.head_dim;
      c.group = sh.group;
      c.num_kv_heads = 1;
      c.block_size = i % 2 ? 16 : 32;
      c.seqs = {{prefix + qlen, qlen}};
      c.num_sms = 132;
      c.workspace_bytes =
          static_cast<std::int64_t>(paged_attention_prefill_workspace_bytes(c.head_dim, 132));
      c.expect_prefill_splits =
          paged_attention_prefill_num_splits(1, sh.group, 1, qlen, prefix + qlen, 132);
      if (prefix >= 1000) {
        EXPECT_GT(c.expect_prefill_splits, 1) << qlen << " " << prefix;
      }
      c.seed = next_seed();
      run_case(c);
      ++i;
    }
  }
}

// The Llama-3.2-1B shape of the measured problem: 64 new tokens after 4096 cached, 32 q / 8
// kv heads, head_dim 64 (bf16) and 128 (fp16), automatic split.
TEST(PagedAttentionPrefillSplit, LlamaShapeCachedPrefix) {
  CACHET_REQUIRE_GPU();
  for (std::int32_t head_dim : {64, 128}) {
    Case c;
    c.name = "prefill split llama";
    c.dtype = head_dim == 64 ? DType::kBF16 : DType::kFP16;
    c.head_dim = head_dim;
    c.num_kv_heads = 8;
    c.group = 4;
    c.block_size = 16;
    c.seqs = {{4096 + 64, 64}};
    c.num_sms = 132;
    c.workspace_bytes =
        static_cast<std::int64_t>(paged_attention_prefill_workspace_bytes(head_dim, 132));
    c.expect_prefill_splits = 8;
    c.seed = next_seed();
    run_case(c);
  }
}

// Every (query_len, prefix) pair in one batch (one-token rows included), with a padded row
// and a sequence without new tokens; explicit split counts and the automatic one on a
// pretend 2000-SM GPU.
TEST(PagedAttentionPrefillSplit, MixedBatches) {
  CACHET_REQUIRE_GPU();
  const auto shapes = split_shapes();
  static constexpr std::int32_t kSplits[] = {2, 0, 13, 32, 5, 0, 7, 3};
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    // The full batch on half the shapes (the fp64 reference is slow), a thinner one elsewhere.
    const bool full = i % 3 == 0;
    std::vector<Seq> seqs;
    for (std::int32_t qlen : kSplitQueryLens) {
      for (std::int32_t prefix : kSplitPrefixes) {
        if (!full && qlen == 130 && prefix >= 4096) continue;
        seqs.push_back({prefix + qlen, qlen});
        if (seqs.size() == 4) seqs.push_back({0, 3});    // padding
        if (seqs.size() == 9) seqs.push_back({700, 0});  // no new tokens
      }
    }
    const SplitShape& sh = shapes[i];
    Case c;
    c.name = full ? "prefill split mixed full" : "prefill split mixed";
    c.dtype = sh.dtype;
    c.head_dim = sh.head_dim;
    c.group = sh.group;
    c.num_kv_heads = sh.group == 4 ? 2 : 1;
    c.block_size = i % 2 ? 16 : 8;
    c.seqs = seqs;
    c.prefill_splits = kSplits[i];
    const std::int32_t H = c.group * c.num_kv_heads;
    if (c.prefill_splits > 0) {
      c.workspace_bytes = static_cast<std::int64_t>(
          paged_attention_workspace_bytes(total_tokens(seqs), H, c.head_dim, c.prefill_splits));
      c.expect_prefill_splits = c.prefill_splits;
    } else {
      c.num_sms = 2000;
      c.workspace_bytes =
          static_cast<std::int64_t>(paged_attention_prefill_workspace_bytes(c.head_dim, 2000));
      std::int32_t max_ctx = 0;
      for (const Seq& q : seqs) max_ctx = std::max(max_ctx, q.context_len);
      c.expect_prefill_splits = paged_attention_prefill_num_splits(
          static_cast<std::int32_t>(seqs.size()), H, c.num_kv_heads, 130, max_ctx, 2000);
      EXPECT_GT(c.expect_prefill_splits, 1);
    }
    c.seed = next_seed();
    run_case(c);
  }
}

// A workspace too small (or misaligned, or absent) lowers or disables the split, never fails;
// prefill_num_splits = 1 disables it; and a graph-captured split prefill computes the same.
TEST(PagedAttentionPrefillSplit, WorkspaceLimitsAndGraphCapture) {
  CACHET_REQUIRE_GPU();
  const std::vector<Seq> seqs = {{4096 + 64, 64}};
  const std::int32_t H = 8, D = 64;
  const std::int64_t one = static_cast<std::int64_t>(paged_attention_workspace_bytes(64, H, D, 2) /
                                                     2);  // one split of 64 tokens
  ASSERT_GT(paged_attention_prefill_num_splits(1, H, 2, 64, 4160, 132), 3);
  const struct {
    const char* name;
    std::int32_t prefill_splits;
    std::int64_t workspace_bytes;
    bool misalign, graph;
    std::int32_t expect;
  } cases[] = {
      {"ws below two splits", 0, 2 * one - 16, false, false, 1},
      {"ws of three splits", 0, 3 * one, false, false, 3},
      {"explicit 7, ws of four", 7, 4 * one + 8, false, false, 4},
      {"no workspace", 0, 0, false, false, 1},
      {"misaligned workspace", 0, 32 * one, true, false, 1},
      {"split disabled", 1, 32 * one, false, false, 1},
      {"graph automatic", 0, 32 * one, false, true, 0},
      {"graph explicit 6", 6, 32 * one, false, true, 6},
  };
  for (const auto& k : cases) {
    Case c;
    c.name = k.name;
    c.head_dim = D;
    c.num_kv_heads = 2;
    c.group = 4;
    c.seqs = seqs;
    c.num_sms = 132;
    c.prefill_splits = k.prefill_splits;
    c.workspace_bytes = k.workspace_bytes;
    c.misalign_workspace = k.misalign;
    c.capture_graph = k.graph;
    c.expect_prefill_splits =
        k.expect > 0 ? k.expect : paged_attention_prefill_num_splits(1, H, 2, 64, 4160, 132);
    c.seed = next_seed();
    run_case(c);
  }
}

TEST(PagedAttention, PrefillSplitHeuristic) {
  CACHET_REQUIRE_GPU();
  // 64 tokens after 4096 cached, 32 / 8 heads: 32 CTAs -> floor(264 / 32) = 8 splits.
  EXPECT_EQ(paged_attention_prefill_num_splits(1, 32, 8, 64, 4160, 132), 8);
  EXPECT_EQ(paged_attention_prefill_num_splits(4, 32, 8, 64, 4160, 132), 2);
  EXPECT_EQ(paged_attention_prefill_num_splits(1, 32, 8, 64, 600, 132), 2);     // 256 per split
  EXPECT_EQ(paged_attention_prefill_num_splits(1, 32, 8, 64, 64, 132), 1);      // no prefix
  EXPECT_EQ(paged_attention_prefill_num_splits(1, 32, 8, 64, 127, 132), 1);     // short prefix
  EXPECT_EQ(paged_attention_prefill_num_splits(1, 32, 8, 2048, 8192, 132), 1);  // big grid
  EXPECT_EQ(paged_attention_prefill_num_splits(5, 32, 8, 64, 4160, 132), 1);    // 160 CTAs
  EXPECT_EQ(paged_attention_prefill_num_splits(1, 32, 8, 1, 4160, 132), 1);     // decode
  EXPECT_EQ(paged_attention_prefill_num_splits(1, 8, 1, 17, 100000, 132), 32);  // the cap
  EXPECT_EQ(paged_attention_prefill_workspace_bytes(128, 132), 2u * 132 * 64 * 129 * 4);
  // The automatic split always fits that workspace when num_tokens = num_seqs * max_query_len.
  for (std::int32_t seqs : {1, 2, 3, 7}) {
    for (std::int32_t qlen : {2, 17, 64, 130, 300}) {
      for (std::int32_t group : {1, 4, 8}) {
        for (std::int32_t kv : {1, 2, 8}) {
          const std::int32_t splits =
              paged_attention_prefill_num_splits(seqs, group * kv, kv, qlen, 100000, 132);
          EXPECT_LE(paged_attention_workspace_bytes(seqs * qlen, group * kv, 128, splits),
                    paged_attention_prefill_workspace_bytes(128, 132))
              << seqs << " " << qlen << " " << group << " " << kv;
        }
      }
    }
  }
  // The effective count without a device workspace is 1 (no error).
  PagedAttentionParams p;
  p.num_seqs = 1;
  p.num_tokens = 64;
  p.num_heads = 32;
  p.num_kv_heads = 8;
  p.head_dim = 64;
  p.max_query_len = 64;
  p.max_context_len = 4160;
  p.num_sms = 132;
  EXPECT_EQ(paged_attention_prefill_splits_used(p), 1);
}

TEST(PagedAttention, RejectsUnsupportedShapes) {
  CACHET_REQUIRE_GPU();
  PagedAttentionParams p;
  const std::int32_t dummy_i32[4] = {};
  p.q = p.k_cache = p.v_cache = dummy_i32;
  p.out = const_cast<std::int32_t*>(dummy_i32);
  p.query_start = p.context_lens = p.block_tables = dummy_i32;
  p.num_seqs = 1;
  p.num_tokens = 1;
  p.num_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.block_size = 16;
  p.max_query_len = 1;
  p.max_context_len = 1;
  p.num_splits = 1;
  PagedAttentionParams bad = p;
  bad.head_dim = 96;
  EXPECT_EQ(paged_attention(bad, nullptr), cudaErrorInvalidValue);
  bad = p;
  bad.block_size = 12;
  EXPECT_EQ(paged_attention(bad, nullptr), cudaErrorInvalidValue);
  bad = p;
  bad.block_size = 256;
  EXPECT_EQ(paged_attention(bad, nullptr), cudaErrorInvalidValue);
  bad = p;
  bad.num_heads = 6;
  bad.num_kv_heads = 4;
  EXPECT_EQ(paged_attention(bad, nullptr), cudaErrorInvalidValue);
  bad = p;
  bad.num_splits = 4;  // explicit splits without a workspace
  EXPECT_EQ(paged_attention(bad, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // nothing was launched
}

TEST(PagedAttention, SplitHeuristic) {
  CACHET_REQUIRE_GPU();
  // Small batches at long context split up to the cap; big batches or short contexts do not.
  EXPECT_EQ(paged_attention_num_splits(1, 8, 32768, 132), 32);
  EXPECT_EQ(paged_attention_num_splits(256, 8, 32768, 132), 1);
  EXPECT_EQ(paged_attention_num_splits(1, 8, 300, 132), 1);
  EXPECT_EQ(paged_attention_num_splits(16, 8, 4096, 132), 3);
  EXPECT_EQ(paged_attention_workspace_bytes(10, 4, 64, 1), 0u);
  EXPECT_EQ(paged_attention_workspace_bytes(10, 4, 64, 3), 3u * 10 * 4 * 65 * 4);
}

}  // namespace
}  // namespace cachet::kernels

#else  // !CACHET_WITH_CUDA

TEST(PagedAttention, Skipped) { GTEST_SKIP() << "built without CUDA"; }

#endif

#include "backend/cuda/cuda_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "attention.h"
#include "backend/batch_check.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/cuda_util.h"
#include "backend/cuda/device_sampler.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/host_kv_tier.h"
#include "backend/cuda/kv_block_copy.h"
#include "backend/cuda/weight_upload.h"
#include "cachet/errors.h"
#include "ops.h"
#include "sampling.h"
#include "util/log.h"

namespace cachet::backend {

namespace {

using cuda::align_up;
using cuda::check;
using cuda::DeviceBuffer;
using cuda::PinnedBuffer;
using kernels::DType;
using model::HostTensor;

[[noreturn]] void fail(ErrorCode code, const std::string& message) {
  throw Error(code, "cuda backend: " + message);
}

// Checks a host weight's shape and size (the loader already did; this guards the fusing below).
const HostTensor* expect(const HostTensor& t, std::vector<std::int64_t> shape,
                         const std::string& name) {
  if (!t.has_shape(shape)) {
    fail(ErrorCode::kInvalidModel, fmt::format("weight {} has shape [{}], expected [{}]", name,
                                               fmt::join(t.shape, ", "), fmt::join(shape, ", ")));
  }
  return &t;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(const model::ModelConfig& config, model::ModelWeights weights,
              const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  const KvCacheSpec& kv_spec() const override { return kv_; }
  std::int32_t vocab_size() const override { return config_.vocab_size; }
  void forward(const ForwardBatch& batch, std::vector<float>& logits) override;
  bool samples_on_device() const override { return true; }
  void poison_blocks(std::span<const std::int32_t> blocks) override;
  void allocate_host_tier(std::int64_t num_slots) override;
  void copy_block_prefixes(std::span<const BlockPrefixCopy> copies) override;
  void save_blocks(std::span<const HostCopy> copies) override {
    host_tier_.copy(copies, true, stream_.get());
  }
  void load_blocks(std::span<const HostCopy> copies) override {
    host_tier_.copy(copies, false, stream_.get());
  }
  std::span<std::byte> host_slot(std::int64_t slot) override { return host_tier_.slot(slot); }
  void wait_for_copies() override {
    check(cudaStreamSynchronize(stream_.get()), "wait for the KV host tier's copies");
  }
  // The K/V dtype and the GPU that computed it (another architecture may round differently).
  std::string kv_format() const override {
    return fmt::format("cuda {} sm_{}", dtype_name(dtype_), compute_capability_);
  }
  void forward_sample(const ForwardBatch& batch, const std::vector<SampleSpec>& specs,
                      std::vector<SampledToken>& out) override;

  const CudaMemoryPlan& plan() const { return plan_; }

 private:
  struct Layer {
    const void* input_norm;
    const void* qkv;       // [qkv_dim, hidden]
    const void* qkv_bias;  // [qkv_dim] or null
    const void* q_norm;    // [head_dim] or null
    const void* k_norm;
    const void* o_proj;  // [hidden, q_dim]
    const void* post_norm;
    const void* gate_up;  // [2 * inter, hidden]
    const void* down;     // [hidden, inter]
  };
  // Device pointers into the metadata buffer; the same addresses every step, so captured
  // graphs read each step's values.
  struct Meta {
    std::int64_t* slot_mapping;
    std::int32_t* token_ids;
    std::int32_t* positions;
    std::int32_t* logits_indices;
    std::int32_t* query_start;
    std::int32_t* context_lens;
    std::int32_t* block_tables;
  };

  void upload_weights(const model::ModelWeights& weights);
  void allocate_workspace();
  std::int64_t choose_num_blocks(const CudaBackendOptions& options) const;
  // The padded batch sizes decode steps run at: one graph each.
  std::vector<std::int32_t> decode_batch_sizes() const;
  // Runs a padding-only decode step at `batch` sequences (no K/V touched; results unused).
  void run_padding_step(std::int32_t batch, std::int32_t num_splits);
  void tune_gemms();
  void capture_graphs();
  // Packs `batch` into the pinned metadata mirror with `padded_seqs` sequences (>= the
  // batch's; extra ones are padding: one token, context 0, slot -1) and copies it over.
  void upload_meta(const ForwardBatch& batch, std::int32_t padded_seqs, std::int32_t padded_tokens);
  // The whole model over the uploaded metadata. `max_query_len` / `max_context_len` size
  // the attention grids; `num_splits` fixes decode split-K (0: automatic).
  void run_model(std::int32_t num_tokens, std::int32_t num_seqs, std::int32_t num_logits,
                 std::int32_t max_query_len, std::int32_t max_context_len, std::int32_t num_splits);
  void run_lm_head(std::int32_t first_row, std::int32_t rows);
  // Checks and uploads `batch`, runs the model (a graph for decode steps) and leaves the
  // logits of the first min(logits rows, logits_rows_) rows in logits_. Returns the number
  // of logits rows.
  std::int32_t run_forward(const ForwardBatch& batch);
  void launch(cudaError_t status, const char* what) { check(status, what); }
  kernels::RmsNormParams norm(const float* in, const std::int32_t* rows, const void* weight,
                              void* out, std::int32_t num_rows) const {
    kernels::RmsNormParams p;
    p.in = in;
    p.in_stride = hidden_;
    p.rows = rows;
    p.weight = weight;
    p.out = out;
    p.num_rows = num_rows;
    p.hidden = static_cast<std::int32_t>(hidden_);
    p.eps = eps_;
    p.dtype = dtype_;
    return p;
  }

  model::ModelConfig config_;
  CudaBackendOptions options_;
  KvCacheSpec kv_;
  DType dtype_;
  std::int64_t hidden_, inter_, head_dim_, q_dim_, kv_dim_, qkv_dim_, vocab_;
  float eps_, scale_;
  std::int32_t max_tokens_, max_seqs_, max_blocks_per_seq_, logits_rows_, num_sms_ = 0;
  std::int32_t compute_capability_ = 0;  // major * 10 + minor
  CudaMemoryPlan plan_;

  std::unique_ptr<std::remove_pointer_t<cudaStream_t>, cuda::StreamDeleter> stream_;
  std::unique_ptr<cuda::Gemm> gemm_;

  DeviceBuffer weights_;  // every weight, one allocation
  const void* embed_ = nullptr;
  const void* final_norm_ = nullptr;
  const void* lm_head_ = nullptr;
  std::vector<Layer> layers_;
  DeviceBuffer rope_;  // cos [max_len, half] then sin [max_len, half], fp32
  const float* rope_cos_ = nullptr;
  const float* rope_sin_ = nullptr;

  DeviceBuffer kv_cache_;  // [layers][K, V][num_blocks, kv_heads, block_size, head_dim]
  cuda::HostKvTier host_tier_;
  cuda::KvPools kv_pools() const;  // the KV cache's geometry for the block copies
  std::size_t kv_pool_elems_ = 0;

  // Activations for max_tokens_ tokens.
  DeviceBuffer act_;
  float* x_ = nullptr;       // [T, hidden] fp32 residual stream
  void* h_ = nullptr;        // [T, hidden] normalized
  float* big_ = nullptr;     // [T, max(qkv_dim, 2 * inter)] fp32 GEMM outputs
  void* q_ = nullptr;        // [T, q_dim]
  void* attn_ = nullptr;     // [T, q_dim]
  void* mlp_ = nullptr;      // [T, inter]
  void* last_ = nullptr;     // [logits_rows, hidden] normalized rows whose logits are wanted
  float* logits_ = nullptr;  // [logits_rows, vocab]
  void* attn_ws_ = nullptr;
  std::size_t attn_ws_bytes_ = 0;

  DeviceBuffer meta_dev_;
  PinnedBuffer meta_host_;
  std::size_t meta_bytes_ = 0;  // the whole layout
  Meta meta_{};
  Meta meta_mirror_{};  // the same layout in meta_host_
  PinnedBuffer logits_host_;

  // Device sampling, logits_rows_ rows at a time.
  cuda::DeviceSampler sampler_;

  // Decode graphs by padded batch size.
  struct DecodeGraph {
    std::int32_t batch;
    std::int32_t num_splits;
    std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, cuda::GraphExecDeleter> exec;
  };
  std::vector<DecodeGraph> graphs_;
};

CudaBackend::CudaBackend(const model::ModelConfig& config, model::ModelWeights weights,
                         const CudaBackendOptions& options)
    : config_(config),
      options_(options),
      dtype_(options.fp16 ? DType::kFP16 : DType::kBF16),
      hidden_(config.hidden_size),
      inter_(config.intermediate_size),
      head_dim_(config.head_dim),
      q_dim_(std::int64_t{config.num_heads} * config.head_dim),
      kv_dim_(std::int64_t{config.num_kv_heads} * config.head_dim),
      qkv_dim_(q_dim_ + 2 * kv_dim_),
      vocab_(config.vocab_size),
      eps_(static_cast<float>(config.rms_norm_eps)),
      scale_(static_cast<float>(1.0 / std::sqrt(static_cast<double>(config.head_dim)))) {
  const auto& c = config_;
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers < 0 ||
      c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.num_heads % c.num_kv_heads != 0) {
    fail(ErrorCode::kInvalidArgument, "unusable model config (sizes, head_dim, GQA ratio)");
  }
  if (c.head_dim != 64 && c.head_dim != 128 && c.head_dim != 256) {
    fail(ErrorCode::kUnsupported,
         fmt::format("head_dim {} (the attention kernels handle 64, 128 and 256)", c.head_dim));
  }
  if (options.block_size < 8 || options.block_size > 128 ||
      (options.block_size & (options.block_size - 1)) != 0) {
    fail(ErrorCode::kUnsupported,
         fmt::format("block_size {} (the attention kernels handle powers of two from 8 to 128)",
                     options.block_size));
  }
  if (options.max_model_len <= 0 || options.max_num_seqs <= 0 ||
      options.max_num_batched_tokens <= 0) {
    fail(ErrorCode::kInvalidArgument,
         "max_model_len, max_num_seqs and max_num_batched_tokens "
         "must be positive");
  }

  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (count == 0) fail(ErrorCode::kUnavailable, "no CUDA device");
  if (options.device < 0 || options.device >= count)
    fail(ErrorCode::kUnavailable,
         fmt::format("CUDA device {} requested; {} visible", options.device, count));
  check(cudaSetDevice(options.device), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, options.device), "cudaGetDeviceProperties");
  if (prop.major < 8) {
    fail(ErrorCode::kUnsupported,
         fmt::format("{} has compute capability {}.{}; cachet needs 8.0 (Ampere) or newer",
                     prop.name, prop.major, prop.minor));
  }
  num_sms_ = prop.multiProcessorCount;
  compute_capability_ = prop.major * 10 + prop.minor;
  plan_.total_bytes = static_cast<std::int64_t>(prop.totalGlobalMem);

  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_.reset(s);
  gemm_ = std::make_unique<cuda::Gemm>(options.fp16, options.log);

  max_seqs_ = options.max_num_seqs;
  max_tokens_ = std::max(options.max_num_batched_tokens, options.max_num_seqs);
  max_blocks_per_seq_ = (options.max_model_len + options.block_size - 1) / options.block_size;
  // Logits are produced in chunks of this many rows (prompt logprobs can ask for every
  // token of a step; a decode step asks for one row per sequence, in one chunk).
  logits_rows_ = std::min(max_tokens_, std::max(256, max_seqs_));

  upload_weights(weights);
  weights = {};

  // RoPE tables, built exactly like the CPU backend's (angles in double).
  {
    cpu::RopeTable table(c.head_dim, cpu::rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling));
    table.ensure(options.max_model_len);
    const std::size_t n = static_cast<std::size_t>(options.max_model_len) * table.half();
    rope_ = DeviceBuffer(2 * n * sizeof(float), "the RoPE tables");
    rope_cos_ = rope_.as<float>();
    rope_sin_ = rope_.as<float>() + n;
    check(cudaMemcpy(rope_.as<float>(), table.cos(0), n * sizeof(float), cudaMemcpyHostToDevice),
          "copy RoPE cos");
    check(
        cudaMemcpy(rope_.as<float>() + n, table.sin(0), n * sizeof(float), cudaMemcpyHostToDevice),
        "copy RoPE sin");
  }

  allocate_workspace();

  kv_ = {c.num_layers, c.num_kv_heads, c.head_dim, options.block_size, 0};
  kv_.num_blocks = choose_num_blocks(options);
  kv_pool_elems_ =
      static_cast<std::size_t>(kv_.num_blocks) * c.num_kv_heads * options.block_size * c.head_dim;
  kv_cache_ = DeviceBuffer(
      2 * kv_pool_elems_ * static_cast<std::size_t>(c.num_layers) * 2,
      fmt::format("the KV cache ({} blocks of {} tokens)", kv_.num_blocks, options.block_size));
  // Blocks are only read after being written, but zeros keep a stray read finite.
  check(cudaMemsetAsync(kv_cache_.get(), 0, kv_cache_.bytes(), stream_.get()), "clear KV cache");
  plan_.kv_cache_bytes = static_cast<std::int64_t>(kv_cache_.bytes());

  if (options.gemm_autotune) tune_gemms();
  if (options.enable_cuda_graphs) capture_graphs();
  check(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize after setup");
  std::size_t free_bytes = 0, total = 0;
  check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
  plan_.free_bytes_after = static_cast<std::int64_t>(free_bytes);
  if (options.log)
    options.log->info(
        "cuda backend on {} ({} SMs): {} weights {:.2f} GiB, workspace {:.1f} MiB, KV cache "
        "{:.2f} GiB ({} blocks of {}), {} decode graphs, {:.2f} GiB of {:.2f} GiB free",
        prop.name, num_sms_, dtype_name(dtype_), plan_.weight_bytes / 1073741824.0,
        plan_.workspace_bytes / 1048576.0, plan_.kv_cache_bytes / 1073741824.0, kv_.num_blocks,
        kv_.block_size, plan_.num_graphs, free_bytes / 1073741824.0, total / 1073741824.0);
}

CudaBackend::~CudaBackend() {
  if (stream_) cudaStreamSynchronize(stream_.get());
}

void CudaBackend::upload_weights(const model::ModelWeights& w) {
  const auto& c = config_;
  const std::int64_t hd = head_dim_;
  if (std::ssize(w.layers) != c.num_layers) {
    fail(ErrorCode::kInvalidModel,
         fmt::format("{} layers of weights for {} layers", w.layers.size(), c.num_layers));
  }
  // Every weight goes into one allocation, fused ones stacked, read from the stored tensors
  // through a bounded staging buffer.
  cuda::WeightUpload upload(options_.fp16);
  upload.add({expect(w.embed_tokens, {vocab_, hidden_}, "embed_tokens")}, &embed_);
  upload.add({expect(w.final_norm, {hidden_}, "final_norm")}, &final_norm_);
  if (!w.lm_head.empty()) upload.add({expect(w.lm_head, {vocab_, hidden_}, "lm_head")}, &lm_head_);
  layers_.assign(w.layers.size(), Layer{});
  for (std::size_t i = 0; i < w.layers.size(); ++i) {
    const auto& lw = w.layers[i];
    Layer& l = layers_[i];
    const auto name = [i](const char* what) { return fmt::format("layers.{}.{}", i, what); };
    upload.add({expect(lw.input_norm, {hidden_}, name("input_norm"))}, &l.input_norm);
    upload.add({expect(lw.q_proj, {q_dim_, hidden_}, name("q_proj")),
                expect(lw.k_proj, {kv_dim_, hidden_}, name("k_proj")),
                expect(lw.v_proj, {kv_dim_, hidden_}, name("v_proj"))},
               &l.qkv);
    if (c.attention_bias) {
      upload.add({expect(lw.q_bias, {q_dim_}, name("q_bias")),
                  expect(lw.k_bias, {kv_dim_}, name("k_bias")),
                  expect(lw.v_bias, {kv_dim_}, name("v_bias"))},
                 &l.qkv_bias);
    }
    if (c.qk_norm) {
      upload.add({expect(lw.q_norm, {hd}, name("q_norm"))}, &l.q_norm);
      upload.add({expect(lw.k_norm, {hd}, name("k_norm"))}, &l.k_norm);
    }
    upload.add({expect(lw.o_proj, {hidden_, q_dim_}, name("o_proj"))}, &l.o_proj);
    upload.add({expect(lw.post_attention_norm, {hidden_}, name("post_attention_norm"))},
               &l.post_norm);
    upload.add({expect(lw.gate_proj, {inter_, hidden_}, name("gate_proj")),
                expect(lw.up_proj, {inter_, hidden_}, name("up_proj"))},
               &l.gate_up);
    upload.add({expect(lw.down_proj, {hidden_, inter_}, name("down_proj"))}, &l.down);
  }
  plan_.weight_bytes = static_cast<std::int64_t>(upload.device_bytes());
  weights_ = upload.upload(stream_.get());
  if (lm_head_ == nullptr) lm_head_ = embed_;
}

void CudaBackend::allocate_workspace() {
  const std::size_t T = static_cast<std::size_t>(max_tokens_);
  const std::size_t S = static_cast<std::size_t>(max_seqs_);
  const std::size_t big = std::max<std::size_t>(qkv_dim_, 2 * inter_);
  // Split-K partials: decode steps (one token per sequence, at most 32 splits) and
  // split-KV prefill.
  attn_ws_bytes_ = std::max(
      kernels::paged_attention_workspace_bytes(max_seqs_, config_.num_heads, config_.head_dim, 32),
      // Split-KV prefill (a short query over a long cached prefix) needs its own bound.
      kernels::paged_attention_prefill_workspace_bytes(config_.head_dim, num_sms_));
  const std::size_t sizes[] = {
      T * hidden_ * 4,                          // x
      T * hidden_ * 2,                          // h
      T * big * 4,                              // big
      T * q_dim_ * 2,                           // q
      T * q_dim_ * 2,                           // attn
      T * inter_ * 2,                           // mlp
      std::size_t(logits_rows_) * hidden_ * 2,  // last
      std::size_t(logits_rows_) * vocab_ * 4,   // logits
      attn_ws_bytes_,
  };
  std::size_t total = 0;
  for (std::size_t n : sizes) total += align_up(n);
  act_ = DeviceBuffer(total, fmt::format("the activation workspace for {} tokens", T));
  check(cudaMemsetAsync(act_.get(), 0, total, stream_.get()), "clear the activation workspace");
  char* p = static_cast<char*>(act_.get());
  void* ptrs[std::size(sizes)];
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    ptrs[i] = p;
    p += align_up(sizes[i]);
  }
  x_ = static_cast<float*>(ptrs[0]);
  h_ = ptrs[1];
  big_ = static_cast<float*>(ptrs[2]);
  q_ = ptrs[3];
  attn_ = ptrs[4];
  mlp_ = ptrs[5];
  last_ = ptrs[6];
  logits_ = static_cast<float*>(ptrs[7]);
  attn_ws_ = ptrs[8];

  // Metadata: one pinned mirror, one device copy, fixed offsets.
  const std::size_t layout[] = {
      T * 8,                                     // slot_mapping
      T * 4,                                     // token_ids
      T * 4,                                     // positions
      T * 4,                                     // logits_indices
      (S + 1) * 4,                               // query_start
      S * 4,                                     // context_lens
      S * std::size_t(max_blocks_per_seq_) * 4,  // block_tables (last: copied partially)
  };
  std::size_t offsets[std::size(layout)];
  meta_bytes_ = 0;
  for (std::size_t i = 0; i < std::size(layout); ++i) {
    offsets[i] = meta_bytes_;
    meta_bytes_ += align_up(layout[i]);
  }
  meta_dev_ = DeviceBuffer(meta_bytes_, "the step metadata");
  meta_host_ = PinnedBuffer(meta_bytes_, "the step metadata mirror");
  check(cudaMemsetAsync(meta_dev_.get(), 0, meta_bytes_, stream_.get()), "clear metadata");
  std::memset(meta_host_.as<void>(), 0, meta_bytes_);
  const auto carve = [&](char* base) {
    return Meta{reinterpret_cast<std::int64_t*>(base + offsets[0]),
                reinterpret_cast<std::int32_t*>(base + offsets[1]),
                reinterpret_cast<std::int32_t*>(base + offsets[2]),
                reinterpret_cast<std::int32_t*>(base + offsets[3]),
                reinterpret_cast<std::int32_t*>(base + offsets[4]),
                reinterpret_cast<std::int32_t*>(base + offsets[5]),
                reinterpret_cast<std::int32_t*>(base + offsets[6])};
  };
  meta_ = carve(meta_dev_.as<char>());
  meta_mirror_ = carve(meta_host_.as<char>());
  logits_host_ = PinnedBuffer(std::size_t(logits_rows_) * vocab_ * 4, "the logits mirror");

  sampler_ = cuda::DeviceSampler(logits_rows_, static_cast<std::int64_t>(vocab_));
  plan_.workspace_bytes = static_cast<std::int64_t>(total + meta_bytes_ + gemm_->workspace_bytes() +
                                                    rope_.bytes() + sampler_.fixed_bytes());
}

std::int64_t CudaBackend::choose_num_blocks(const CudaBackendOptions& o) const {
  const std::int64_t block_bytes = cuda_kv_block_bytes(config_, o.block_size);
  std::int64_t blocks = 0;
  std::string how;
  if (o.num_kv_blocks > 0) {
    blocks = o.num_kv_blocks;
    how = "num_kv_blocks";
  } else if (o.kv_cache_bytes > 0) {
    blocks = o.kv_cache_bytes / block_bytes;
    how = fmt::format("kv_cache_bytes {}", o.kv_cache_bytes);
  } else {
    check(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
    std::size_t free_bytes = 0, total = 0;
    check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
    // What this process (and anyone else) already uses counts against the budget; graphs
    // and cuBLASLt's internal allocations get a fixed reserve.
    const std::int64_t reserve = std::int64_t{256} << 20;
    const std::int64_t used = static_cast<std::int64_t>(total - free_bytes);
    const std::int64_t budget =
        static_cast<std::int64_t>(o.gpu_memory_utilization * static_cast<double>(total)) - used -
        reserve;
    blocks = budget > 0 ? budget / block_bytes : 0;
    how = fmt::format(
        "gpu_memory_utilization {} of {:.2f} GiB with {:.2f} GiB already in use "
        "(weights {:.2f} GiB, workspace {:.1f} MiB)",
        o.gpu_memory_utilization, total / 1073741824.0, used / 1073741824.0,
        plan_.weight_bytes / 1073741824.0, plan_.workspace_bytes / 1048576.0);
  }
  if (blocks < 1) {
    fail(ErrorCode::kOutOfMemory,
         fmt::format("no room for a single KV block ({} bytes for {} tokens) with {}", block_bytes,
                     o.block_size, how));
  }
  return std::min<std::int64_t>(blocks, std::numeric_limits<std::int32_t>::max() / o.block_size);
}

void CudaBackend::upload_meta(const ForwardBatch& b, std::int32_t padded_seqs,
                              std::int32_t padded_tokens) {
  const Meta& m = meta_mirror_;
  const std::int32_t n = b.num_tokens(), seqs = b.num_seqs();
  std::copy(b.slot_mapping.begin(), b.slot_mapping.end(), m.slot_mapping);
  std::copy(b.token_ids.begin(), b.token_ids.end(), m.token_ids);
  std::copy(b.positions.begin(), b.positions.end(), m.positions);
  std::copy(b.logits_indices.begin(), b.logits_indices.end(), m.logits_indices);
  std::copy(b.query_start.begin(), b.query_start.end(), m.query_start);
  std::copy(b.context_lens.begin(), b.context_lens.end(), m.context_lens);
  // Padding: one token per extra sequence, at position 0, written nowhere, attending to
  // nothing; its logits row is computed and ignored.
  for (std::int32_t t = n; t < padded_tokens; ++t) {
    m.slot_mapping[t] = -1;
    m.token_ids[t] = 0;
    m.positions[t] = 0;
    m.logits_indices[t] = t;
  }
  for (std::int32_t s = seqs; s < padded_seqs; ++s) {
    m.query_start[s + 1] = m.query_start[s] + 1;
    m.context_lens[s] = 0;
  }
  const std::int32_t width = b.max_blocks_per_seq;
  for (std::int32_t s = 0; s < seqs; ++s) {
    std::copy_n(b.block_tables.data() + std::int64_t{s} * width, width,
                m.block_tables + std::int64_t{s} * max_blocks_per_seq_);
  }
  // Everything before the block tables in one copy, then the used width of each table row
  // (a 2D copy: rows keep their fixed stride, which the captured graphs read).
  const std::size_t head_bytes =
      static_cast<std::size_t>(reinterpret_cast<char*>(m.block_tables) - meta_host_.as<char>());
  check(cudaMemcpyAsync(meta_dev_.get(), meta_host_.as<void>(), head_bytes, cudaMemcpyHostToDevice,
                        stream_.get()),
        "copy step metadata to the GPU");
  if (seqs > 0 && width > 0) {
    const std::size_t pitch = std::size_t(max_blocks_per_seq_) * 4;
    check(
        cudaMemcpy2DAsync(meta_.block_tables, pitch, m.block_tables, pitch, std::size_t(width) * 4,
                          std::size_t(seqs), cudaMemcpyHostToDevice, stream_.get()),
        "copy block tables to the GPU");
  }
}

void CudaBackend::run_model(std::int32_t num_tokens, std::int32_t num_seqs, std::int32_t num_logits,
                            std::int32_t max_query_len, std::int32_t max_context_len,
                            std::int32_t num_splits) {
  cudaStream_t s = stream_.get();
  const auto& c = config_;
  kernels::EmbeddingParams ep;
  ep.table = embed_;
  ep.ids = meta_.token_ids;
  ep.out = x_;
  ep.num_tokens = num_tokens;
  ep.hidden = static_cast<std::int32_t>(hidden_);
  ep.vocab = static_cast<std::int32_t>(vocab_);
  ep.dtype = dtype_;
  launch(kernels::launch_embedding(ep, s), "embedding kernel");
  const std::size_t pool_bytes = kv_pool_elems_ * 2;
  for (std::int32_t l = 0; l < c.num_layers; ++l) {
    const Layer& w = layers_[l];
    char* k_cache = kv_cache_.as<char>() + std::size_t(2 * l) * pool_bytes;
    char* v_cache = k_cache + pool_bytes;
    launch(kernels::launch_rmsnorm(norm(x_, nullptr, w.input_norm, h_, num_tokens), s),
           "rmsnorm kernel");
    gemm_->run(num_tokens, qkv_dim_, hidden_, h_, w.qkv, big_, false, s);
    kernels::QkvPostParams qp{};
    qp.dtype = dtype_;
    qp.qkv = big_;
    qp.bias = w.qkv_bias;
    qp.q_norm = w.q_norm;
    qp.k_norm = w.k_norm;
    qp.eps = eps_;
    qp.rope_cos = rope_cos_;
    qp.rope_sin = rope_sin_;
    qp.positions = meta_.positions;
    qp.slot_mapping = meta_.slot_mapping;
    qp.q_out = q_;
    qp.k_cache = k_cache;
    qp.v_cache = v_cache;
    qp.num_tokens = num_tokens;
    qp.num_heads = c.num_heads;
    qp.num_kv_heads = c.num_kv_heads;
    qp.head_dim = c.head_dim;
    qp.block_size = kv_.block_size;
    qp.num_blocks = kv_.num_blocks;
    qp.rope_positions = options_.max_model_len;
    launch(kernels::launch_qkv_post(qp, s), "qkv_post kernel");

    kernels::PagedAttentionParams ap{};
    ap.dtype = dtype_;
    ap.q = q_;
    ap.k_cache = k_cache;
    ap.v_cache = v_cache;
    ap.out = attn_;
    ap.query_start = meta_.query_start;
    ap.context_lens = meta_.context_lens;
    ap.block_tables = meta_.block_tables;
    ap.max_blocks_per_seq = max_blocks_per_seq_;
    ap.num_seqs = num_seqs;
    ap.num_tokens = num_tokens;
    ap.num_heads = c.num_heads;
    ap.num_kv_heads = c.num_kv_heads;
    ap.head_dim = c.head_dim;
    ap.block_size = kv_.block_size;
    ap.scale = scale_;
    ap.max_query_len = max_query_len;
    ap.max_context_len = max_context_len;
    ap.num_splits = num_splits;
    ap.workspace = attn_ws_;
    ap.workspace_bytes = attn_ws_bytes_;
    ap.num_sms = num_sms_;
    launch(kernels::paged_attention(ap, s), "paged attention kernel");

    gemm_->run(num_tokens, hidden_, q_dim_, attn_, w.o_proj, x_, true, s);
    launch(kernels::launch_rmsnorm(norm(x_, nullptr, w.post_norm, h_, num_tokens), s),
           "rmsnorm kernel");
    gemm_->run(num_tokens, 2 * inter_, hidden_, h_, w.gate_up, big_, false, s);
    kernels::SiluMulParams sp;
    sp.in = big_;
    sp.out = mlp_;
    sp.num_tokens = num_tokens;
    sp.inter = static_cast<std::int32_t>(inter_);
    sp.dtype = dtype_;
    launch(kernels::launch_silu_mul(sp, s), "silu_mul kernel");
    gemm_->run(num_tokens, hidden_, inter_, mlp_, w.down, x_, true, s);
  }
  if (num_logits > 0 && num_logits <= logits_rows_) run_lm_head(0, num_logits);
}

// Final norm of the wanted rows (gathered through logits_indices) and the LM head.
void CudaBackend::run_lm_head(std::int32_t first_row, std::int32_t rows) {
  cudaStream_t s = stream_.get();
  launch(kernels::launch_rmsnorm(
             norm(x_, meta_.logits_indices + first_row, final_norm_, last_, rows), s),
         "final rmsnorm kernel");
  gemm_->run(rows, vocab_, hidden_, last_, lm_head_, logits_, false, s);
}

std::vector<std::int32_t> CudaBackend::decode_batch_sizes() const {
  // Batch sizes as vLLM picks them: 1, 2, 4, then every multiple of 8.
  std::vector<std::int32_t> sizes;
  for (std::int32_t b : {1, 2, 4}) {
    if (b <= max_seqs_) sizes.push_back(b);
  }
  for (std::int32_t b = 8; b <= max_seqs_; b += 8) sizes.push_back(b);
  if (sizes.empty() || sizes.back() != max_seqs_) sizes.push_back(max_seqs_);
  std::erase_if(sizes, [&](std::int32_t b) { return b > logits_rows_; });
  return sizes;
}

void CudaBackend::run_padding_step(std::int32_t batch, std::int32_t num_splits) {
  // Every sequence context 0, every slot -1: touches no KV.
  ForwardBatch pad;
  pad.query_start = {0};
  upload_meta(pad, batch, batch);
  run_model(batch, batch, batch, 1, options_.max_model_len, num_splits);
}

void CudaBackend::tune_gemms() {
  // The timed runs start with L2 full of other data: the KV cache, only read (2x the L2, or
  // all of it where the pool is smaller).
  int device = 0, l2_bytes = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device), "L2 cache size");
  const std::size_t flush = std::min(kv_cache_.bytes(), std::size_t(std::max(l2_bytes, 1)) * 2);
  gemm_->begin_tuning(kv_cache_.get(), flush);
  try {
    for (std::int32_t b : decode_batch_sizes()) {
      run_padding_step(b, kernels::paged_attention_num_splits(b, config_.num_kv_heads,
                                                              options_.max_model_len, num_sms_));
    }
    check(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize (GEMM autotuning)");
  } catch (...) {
    gemm_->end_tuning();
    throw;
  }
  gemm_->end_tuning();
  for (const auto& r : gemm_->tune_results()) {
    ++plan_.gemm_shapes_tuned;
    plan_.gemm_shapes_changed += r.chosen != 0 || r.gemv;
    plan_.gemm_shapes_gemv += r.gemv;
    if (r.heuristic_us >= 0) {  // else the heuristic's choice would not run: nothing to compare
      plan_.gemm_heuristic_us += r.heuristic_us;
      plan_.gemm_tuned_us += r.chosen_us;
    }
  }
  if (options_.log)
    options_.log->info(
        "cuda backend: GEMM autotuning timed {} decode shapes and changed the algorithm of {} "
        "({} to cachet's GEMV); summed over the shapes, {:.1f} us with cuBLASLt's heuristic "
        "choices, {:.1f} us tuned",
        plan_.gemm_shapes_tuned, plan_.gemm_shapes_changed, plan_.gemm_shapes_gemv,
        plan_.gemm_heuristic_us, plan_.gemm_tuned_us);
}

void CudaBackend::capture_graphs() {
  cudaStream_t s = stream_.get();
  for (std::int32_t b : decode_batch_sizes()) {
    const std::int32_t splits = kernels::paged_attention_num_splits(
        b, config_.num_kv_heads, options_.max_model_len, num_sms_);
    // A first eager run picks the GEMM algorithms (host-side heuristics) outside capture.
    run_padding_step(b, splits);
    check(cudaStreamSynchronize(s), "warm-up before graph capture");

    cudaGraph_t graph = nullptr;
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      run_model(b, b, b, 1, options_.max_model_len, splits);
    } catch (...) {
      cudaStreamEndCapture(s, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    check(cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t st = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(st, "cudaGraphInstantiate");
    graphs_.push_back({b, splits, decltype(DecodeGraph::exec)(exec)});
  }
  plan_.num_graphs = static_cast<std::int32_t>(graphs_.size());
}

cuda::KvPools CudaBackend::kv_pools() const {
  const std::size_t row = static_cast<std::size_t>(kv_.head_dim) * 2;
  return {kv_cache_.as<char>(),
          kv_pool_elems_ * 2,
          static_cast<std::size_t>(kv_.num_kv_heads) * kv_.block_size * row,
          2 * config_.num_layers,
          kv_.num_blocks,
          kv_.num_kv_heads,
          kv_.block_size,
          row};
}

void CudaBackend::allocate_host_tier(std::int64_t num_slots) {
  host_tier_ = cuda::HostKvTier(num_slots, kv_pools());
}

void CudaBackend::copy_block_prefixes(std::span<const BlockPrefixCopy> copies) {
  cuda::copy_block_prefixes(kv_pools(), copies, stream_.get());
}

void CudaBackend::poison_blocks(std::span<const std::int32_t> blocks) {
  // 0xFFFF is a NaN in both bf16 and fp16 (all exponent bits set, a non-zero mantissa).
  const std::size_t block_bytes =
      static_cast<std::size_t>(kv_.num_kv_heads) * kv_.block_size * kv_.head_dim * 2;
  const std::size_t pool_bytes = kv_pool_elems_ * 2;
  for (std::int32_t b : blocks) {
    if (b < 0 || b >= kv_.num_blocks) {
      fail(ErrorCode::kInvalidArgument,
           fmt::format("poison_blocks: block {} outside [0, {})", b, kv_.num_blocks));
    }
    for (std::int32_t pool = 0; pool < 2 * config_.num_layers; ++pool) {
      check(cudaMemsetAsync(kv_cache_.as<char>() + pool * pool_bytes + b * block_bytes, 0xFF,
                            block_bytes, stream_.get()),
            "poison KV blocks");
    }
  }
}

std::int32_t CudaBackend::run_forward(const ForwardBatch& batch) {
  check_forward_batch(batch, kv_, config_.vocab_size, options_.max_model_len, "cuda");
  const std::int32_t num_tokens = batch.num_tokens(), num_seqs = batch.num_seqs();
  const std::int32_t num_logits = static_cast<std::int32_t>(batch.logits_indices.size());
  if (num_tokens > max_tokens_ || num_seqs > max_seqs_ ||
      batch.max_blocks_per_seq > max_blocks_per_seq_) {
    fail(ErrorCode::kInvalidArgument,
         fmt::format("invalid ForwardBatch: {} tokens of {} sequences with {} blocks per "
                     "sequence exceed the workspace ({} tokens, {} sequences, {} blocks)",
                     num_tokens, num_seqs, batch.max_blocks_per_seq, max_tokens_, max_seqs_,
                     max_blocks_per_seq_));
  }
  if (num_tokens == 0) return 0;

  std::int32_t max_query_len = 0, max_context_len = 0;
  for (std::int32_t q = 0; q < num_seqs; ++q) {
    max_query_len = std::max(max_query_len, batch.query_start[q + 1] - batch.query_start[q]);
    max_context_len = std::max(max_context_len, batch.context_lens[q]);
  }
  // A pure decode step whose logits are one row per sequence in order replays a graph.
  bool decode = max_query_len == 1 && num_tokens == num_seqs && num_logits == num_seqs;
  for (std::int32_t i = 0; decode && i < num_logits; ++i) decode = batch.logits_indices[i] == i;
  const DecodeGraph* graph = nullptr;
  if (decode) {
    for (const auto& g : graphs_) {
      if (g.batch >= num_seqs) {
        graph = &g;
        break;
      }
    }
  }
  if (graph != nullptr) {
    upload_meta(batch, graph->batch, graph->batch);
    check(cudaGraphLaunch(graph->exec.get(), stream_.get()), "cudaGraphLaunch (decode step)");
  } else {
    upload_meta(batch, num_seqs, num_tokens);
    run_model(num_tokens, num_seqs, std::min(num_logits, logits_rows_), max_query_len,
              max_context_len, 0);
  }
  return num_logits;
}

void CudaBackend::forward(const ForwardBatch& batch, std::vector<float>& logits) {
  const std::int32_t num_logits = run_forward(batch);
  logits.resize(static_cast<std::size_t>(num_logits) * vocab_);
  cudaStream_t s = stream_.get();
  // Logits in chunks of logits_rows_ rows (the first chunk is already computed).
  for (std::int32_t first = 0; first < num_logits; first += logits_rows_) {
    const std::int32_t rows = std::min(logits_rows_, num_logits - first);
    if (first > 0) run_lm_head(first, rows);
    const std::size_t bytes = std::size_t(rows) * vocab_ * 4;
    check(cudaMemcpyAsync(logits_host_.as<void>(), logits_, bytes, cudaMemcpyDeviceToHost, s),
          "copy logits to the host");
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize (forward)");
    std::memcpy(logits.data() + std::size_t(first) * vocab_, logits_host_.as<void>(), bytes);
  }
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (forward)");
}

void CudaBackend::forward_sample(const ForwardBatch& batch, const std::vector<SampleSpec>& specs,
                                 std::vector<SampledToken>& out) {
  if (specs.size() != batch.logits_indices.size()) {
    fail(ErrorCode::kInvalidArgument,
         fmt::format("forward_sample: {} sampling specs for {} logits rows", specs.size(),
                     batch.logits_indices.size()));
  }
  for (const auto& spec : specs) {
    if (spec.num_logprobs > kernels::kMaxSampleLogprobs) {
      fail(ErrorCode::kInvalidArgument,
           fmt::format("forward_sample: {} logprobs asked, at most {}", spec.num_logprobs,
                       kernels::kMaxSampleLogprobs));
    }
  }
  const std::int32_t num_logits = run_forward(batch);
  out.resize(static_cast<std::size_t>(num_logits));
  cudaStream_t s = stream_.get();
  const std::span<const SampleSpec> all_specs(specs);
  const std::span<SampledToken> all_out(out);
  for (std::int32_t first = 0; first < num_logits; first += logits_rows_) {
    const std::int32_t rows = std::min(logits_rows_, num_logits - first);
    if (first > 0) run_lm_head(first, rows);
    const auto at = static_cast<std::size_t>(first), n = static_cast<std::size_t>(rows);
    sampler_.sample(logits_, all_specs.subspan(at, n), all_out.subspan(at, n), s);
  }
  if (num_logits == 0) check(cudaStreamSynchronize(s), "cudaStreamSynchronize (forward)");
}

}  // namespace

std::int64_t cuda_kv_block_bytes(const model::ModelConfig& config, std::int32_t block_size) {
  return 2 * std::int64_t{config.num_layers} * config.num_kv_heads * block_size * config.head_dim *
         2;
}

std::unique_ptr<Backend> make_cuda_backend(const model::ModelConfig& config,
                                           model::ModelWeights weights,
                                           const CudaBackendOptions& options) {
  return std::make_unique<CudaBackend>(config, std::move(weights), options);
}

const CudaMemoryPlan& cuda_memory_plan(const Backend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  if (cuda == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "cuda_memory_plan: not a CUDA backend");
  }
  return cuda->plan();
}

}  // namespace cachet::backend

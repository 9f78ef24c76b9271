#include "backend/cpu/cpu_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include "backend/batch_check.h"
#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/cpu_ops.h"
#include "cachet/errors.h"
#include "util/thread_pool.h"

namespace cachet::backend {

namespace {

using model::HostTensor;

[[noreturn]] void fail_setup(ErrorCode code, const std::string& message) {
  throw Error(code, "cpu backend: " + message);
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Checks a weight's shape and that it holds that many values of its dtype.
const HostTensor& checked(const HostTensor& t, const std::vector<std::int64_t>& shape,
                          const std::string& name) {
  if (!t.has_shape(shape)) {
    fail_setup(ErrorCode::kInvalidModel,
               fmt::format("weight {} has shape {} with {} bytes of {}, expected {}", name,
                           shape_string(t.shape), t.bytes.size(), model::dtype_name(t.dtype),
                           shape_string(shape)));
  }
  return t;
}

// A vector weight (a norm, a bias) as fp32: small, so converted once.
std::vector<float> small(const HostTensor& t, std::int64_t n, const std::string& name) {
  return checked(t, {n}, name).to_f32();
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(const model::ModelConfig& config, model::ModelWeights weights, const KvCacheSpec& kv,
             int num_threads);

  std::string_view name() const override { return "cpu"; }
  const KvCacheSpec& kv_spec() const override { return kv_; }
  std::int32_t vocab_size() const override { return config_.vocab_size; }
  void forward(const ForwardBatch& batch, std::vector<float>& logits) override;
  void poison_blocks(std::span<const std::int32_t> blocks) override;
  void allocate_host_tier(std::int64_t num_slots) override;
  void save_blocks(std::span<const HostCopy> copies) override { copy_blocks(copies, true); }
  void load_blocks(std::span<const HostCopy> copies) override { copy_blocks(copies, false); }
  std::span<std::byte> host_slot(std::int64_t slot) override;
  // The kernels decide the bits: fp32 K/V, the instruction-set variant that computed it.
  std::string kv_format() const override { return std::string("cpu fp32 ") + cpu::kernels().isa; }
  void copy_block_prefixes(std::span<const BlockPrefixCopy> copies) override;

  std::span<const float> pool(std::int32_t layer, bool value) const {
    const auto& pools = value ? v_pools_ : k_pools_;
    if (layer < 0 || layer >= static_cast<std::int32_t>(pools.size())) {
      fail_setup(ErrorCode::kInvalidArgument, fmt::format("no KV layer {}", layer));
    }
    return {pools[layer].data.get(), pools[layer].size};
  }

 private:
  // One decoder layer. The matrices are read in place in the weights' stored dtype, with
  // q/k/v and gate/up stacked so each is one pass over the tokens; norms and biases are fp32.
  struct Layer {
    std::vector<float> input_norm;  // [hidden]
    cpu::WeightRows qkv;            // [q_dim + 2 * kv_dim, hidden]: q_proj, k_proj, v_proj rows
    std::vector<float> qkv_bias;    // [q_dim + 2 * kv_dim], empty without attention_bias
    std::vector<float> q_norm;      // [head_dim], empty without qk_norm
    std::vector<float> k_norm;      // [head_dim], empty without qk_norm
    cpu::WeightRows o_proj;         // [hidden, q_dim]
    std::vector<float> post_norm;   // [hidden]
    cpu::WeightRows gate_up;        // [2 * intermediate, hidden]: gate_proj rows, up_proj rows
    cpu::WeightRows down;           // [hidden, intermediate]
  };

  // The rows of `parts` stacked, in place; as one fp32 copy (kept in owned_) in the rare
  // checkpoint whose parts differ in dtype.
  cpu::WeightRows stack(std::initializer_list<const HostTensor*> parts, std::int64_t in_dim);
  void load_layers();

  // Each copy's 2 x num_layers tiles (every layer's K, then every layer's V), in parallel.
  void copy_blocks(std::span<const HostCopy> copies, bool to_host);
  void grow_scratch(std::int64_t num_tokens, std::int64_t num_logits);
  // q/k norm, RoPE, and the K/V write of every token of the batch at layer `l`.
  void prepare_qkv(const ForwardBatch& batch, std::int32_t l);
  void attend(const ForwardBatch& batch, std::int32_t l);

  model::ModelConfig config_;
  KvCacheSpec kv_;
  model::ModelWeights weights_;  // what layers_, output_ and embed read, kept mapped
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;          // [hidden]
  cpu::WeightRows output_;                 // [vocab, hidden]: lm_head, or embed_tokens when tied
  std::vector<std::vector<float>> owned_;  // fp32 copies stack() had to make
  std::int64_t hidden_, inter_, head_dim_, q_dim_, kv_dim_, qkv_dim_;
  float eps_, scale_;
  util::ThreadPool pool_;
  cpu::RopeTable rope_;

  // calloc'd: a large allocation comes as fresh zero pages of the OS, so the KV cache costs
  // neither time nor resident memory until blocks are written.
  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };
  struct KvPool {
    std::unique_ptr<float[], FreeDeleter> data;
    std::size_t size = 0;
  };
  std::vector<KvPool> k_pools_;  // [layers][num_blocks, kv_heads, block_size, head_dim]
  std::vector<KvPool> v_pools_;  // [layers][num_blocks, kv_heads, block_size, head_dim]
  // The host tier: [slots][K of every layer, then V of every layer][kv_heads, block_size,
  // head_dim]. A separate pool in the same memory, so that the tier's whole mechanism (what
  // is demoted, matched and loaded) runs wherever the CPU backend does.
  KvPool host_tier_;

  // Scratch, grown to the largest batch seen and reused.
  // Up to kQueryTile consecutive new tokens of one sequence, attended together.
  struct QueryTile {
    std::int32_t first_token;
    std::int32_t num_tokens;
  };
  static constexpr std::int32_t kQueryTile = 8;

  std::vector<std::int32_t> token_seq_;  // [num_tokens] the sequence of each token
  std::vector<QueryTile> query_tiles_;   // [<= num_tokens]
  std::vector<float> x_;                 // [num_tokens, hidden] residual stream
  std::vector<float> h_;                 // [num_tokens, hidden] normalized x
  std::vector<float> qkv_;               // [num_tokens, qkv_dim]
  std::vector<float> attn_;              // [num_tokens, q_dim]
  std::vector<float> gate_up_;           // [num_tokens, 2 * intermediate]
  std::vector<float> act_;               // [num_tokens, intermediate]
  std::vector<float> last_;              // [num_logits, hidden] rows whose logits are wanted
};

CpuBackend::CpuBackend(const model::ModelConfig& config, model::ModelWeights weights,
                       const KvCacheSpec& kv, int num_threads)
    : config_(config),
      kv_(kv),
      weights_(std::move(weights)),
      hidden_(config.hidden_size),
      inter_(config.intermediate_size),
      head_dim_(config.head_dim),
      q_dim_(std::int64_t{config.num_heads} * config.head_dim),
      kv_dim_(std::int64_t{config.num_kv_heads} * config.head_dim),
      qkv_dim_(q_dim_ + 2 * kv_dim_),
      eps_(static_cast<float>(config.rms_norm_eps)),
      scale_(static_cast<float>(1.0 / std::sqrt(static_cast<double>(config.head_dim)))),
      pool_(num_threads),
      rope_(config.head_dim,
            cpu::rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling)) {
  const auto& c = config_;
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers < 0 ||
      c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.num_heads % c.num_kv_heads != 0 || !(c.rms_norm_eps >= 0)) {
    fail_setup(ErrorCode::kInvalidArgument,
               fmt::format("unusable config: vocab {} hidden {} intermediate {} layers {} heads {} "
                           "kv_heads {} head_dim {} (needs positive sizes, an even head_dim, "
                           "heads a multiple of kv_heads)",
                           c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers,
                           c.num_heads, c.num_kv_heads, c.head_dim));
  }
  if (kv.num_layers != c.num_layers || kv.num_kv_heads != c.num_kv_heads ||
      kv.head_dim != c.head_dim || kv.block_size <= 0 || kv.num_blocks < 0) {
    fail_setup(ErrorCode::kInvalidArgument,
               fmt::format("KV spec (layers {}, kv_heads {}, head_dim {}, block_size {}, "
                           "num_blocks {}) does not fit the model (layers {}, kv_heads {}, "
                           "head_dim {})",
                           kv.num_layers, kv.num_kv_heads, kv.head_dim, kv.block_size,
                           kv.num_blocks, c.num_layers, c.num_kv_heads, c.head_dim));
  }

  const std::int64_t vocab = c.vocab_size;
  checked(weights_.embed_tokens, {vocab, hidden_}, "embed_tokens");
  final_norm_ = small(weights_.final_norm, hidden_, "final_norm");
  if (!weights_.lm_head.empty()) checked(weights_.lm_head, {vocab, hidden_}, "lm_head");
  output_ = stack({&weights_.output_embedding()}, hidden_);
  load_layers();

  const std::int64_t pool_size =
      kv.num_blocks * std::int64_t{kv.num_kv_heads} * kv.block_size * kv.head_dim;
  try {
    for (auto* pools : {&k_pools_, &v_pools_}) {
      for (std::int32_t l = 0; l < c.num_layers; ++l) {
        auto* p = static_cast<float*>(std::calloc(
            std::max<std::size_t>(1, static_cast<std::size_t>(pool_size)), sizeof(float)));
        if (p == nullptr) throw std::bad_alloc();
        pools->push_back(
            {std::unique_ptr<float[], FreeDeleter>(p), static_cast<std::size_t>(pool_size)});
      }
    }
  } catch (const std::bad_alloc&) {
    fail_setup(ErrorCode::kOutOfMemory,
               fmt::format("cannot allocate the KV cache: {} blocks of {} bytes", kv.num_blocks,
                           cpu_kv_block_bytes(config, kv.block_size)));
  }
}

cpu::WeightRows CpuBackend::stack(std::initializer_list<const HostTensor*> parts,
                                  std::int64_t in_dim) {
  const model::DType dtype = (*parts.begin())->dtype;
  bool same = true;
  for (const HostTensor* p : parts) same = same && p->dtype == dtype;
  if (same) {
    cpu::WeightRows rows(dtype, in_dim);
    for (const HostTensor* p : parts) rows.append(p->bytes.data(), p->dim(0));
    return rows;
  }
  std::vector<float>& copy = owned_.emplace_back();
  for (const HostTensor* p : parts) {
    const std::vector<float> values = p->to_f32();
    copy.insert(copy.end(), values.begin(), values.end());
  }
  cpu::WeightRows rows(model::DType::kF32, in_dim);
  rows.append(reinterpret_cast<const std::byte*>(copy.data()), std::ssize(copy) / in_dim);
  return rows;
}

void CpuBackend::load_layers() {
  const auto& c = config_;
  if (static_cast<std::int32_t>(weights_.layers.size()) != c.num_layers) {
    fail_setup(ErrorCode::kInvalidModel, fmt::format("{} layers of weights for {} layers",
                                                     weights_.layers.size(), c.num_layers));
  }
  layers_.resize(weights_.layers.size());
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto& w = weights_.layers[i];
    auto& l = layers_[i];
    const auto name = [i](const char* what) { return fmt::format("layers.{}.{}", i, what); };
    l.input_norm = small(w.input_norm, hidden_, name("input_norm"));
    l.qkv = stack({&checked(w.q_proj, {q_dim_, hidden_}, name("q_proj")),
                   &checked(w.k_proj, {kv_dim_, hidden_}, name("k_proj")),
                   &checked(w.v_proj, {kv_dim_, hidden_}, name("v_proj"))},
                  hidden_);
    if (c.attention_bias) {
      for (const auto& [bias, dim, what] :
           {std::tuple{&w.q_bias, q_dim_, "q_bias"}, std::tuple{&w.k_bias, kv_dim_, "k_bias"},
            std::tuple{&w.v_bias, kv_dim_, "v_bias"}}) {
        const std::vector<float> values = small(*bias, dim, name(what));
        l.qkv_bias.insert(l.qkv_bias.end(), values.begin(), values.end());
      }
    }
    if (c.qk_norm) {
      l.q_norm = small(w.q_norm, head_dim_, name("q_norm"));
      l.k_norm = small(w.k_norm, head_dim_, name("k_norm"));
    }
    l.o_proj = stack({&checked(w.o_proj, {hidden_, q_dim_}, name("o_proj"))}, q_dim_);
    l.post_norm = small(w.post_attention_norm, hidden_, name("post_attention_norm"));
    l.gate_up = stack({&checked(w.gate_proj, {inter_, hidden_}, name("gate_proj")),
                       &checked(w.up_proj, {inter_, hidden_}, name("up_proj"))},
                      hidden_);
    l.down = stack({&checked(w.down_proj, {hidden_, inter_}, name("down_proj"))}, inter_);
  }
}

void CpuBackend::poison_blocks(std::span<const std::int32_t> blocks) {
  const std::size_t block_elems =
      static_cast<std::size_t>(kv_.num_kv_heads) * kv_.block_size * kv_.head_dim;
  for (std::int32_t b : blocks) {
    if (b < 0 || b >= kv_.num_blocks) {
      fail_setup(ErrorCode::kInvalidArgument,
                 fmt::format("poison_blocks: block {} outside [0, {})", b, kv_.num_blocks));
    }
    for (auto* pools : {&k_pools_, &v_pools_}) {
      for (auto& pool : *pools) {
        float* p = pool.data.get() + static_cast<std::size_t>(b) * block_elems;
        std::fill(p, p + block_elems, std::numeric_limits<float>::quiet_NaN());
      }
    }
  }
}

void CpuBackend::allocate_host_tier(std::int64_t num_slots) {
  const std::size_t tile =
      static_cast<std::size_t>(kv_.num_kv_heads) * kv_.block_size * kv_.head_dim;
  const std::size_t n = static_cast<std::size_t>(num_slots) * 2 * k_pools_.size() * tile;
  auto* p = static_cast<float*>(std::calloc(std::max<std::size_t>(1, n), sizeof(float)));
  if (p == nullptr)
    fail_setup(ErrorCode::kOutOfMemory,
               fmt::format("cannot allocate the KV cache's host tier: {} blocks of {} bytes",
                           num_slots, 2 * k_pools_.size() * tile * sizeof(float)));
  host_tier_ = {std::unique_ptr<float[], FreeDeleter>(p), n};
}

std::span<std::byte> CpuBackend::host_slot(std::int64_t slot) {
  const std::size_t block = 2 * k_pools_.size() * static_cast<std::size_t>(kv_.num_kv_heads) *
                            kv_.block_size * kv_.head_dim;
  if (slot < 0 || block == 0 || static_cast<std::size_t>(slot) >= host_tier_.size / block)
    fail_setup(ErrorCode::kInvalidArgument, fmt::format("host tier slot {} out of range", slot));
  return std::as_writable_bytes(
      std::span<float>(host_tier_.data.get() + static_cast<std::size_t>(slot) * block, block));
}

void CpuBackend::copy_blocks(std::span<const HostCopy> copies, bool to_host) {
  const std::size_t tile =
      static_cast<std::size_t>(kv_.num_kv_heads) * kv_.block_size * kv_.head_dim;
  const std::size_t layers = k_pools_.size();
  const std::size_t slots = host_tier_.size / std::max<std::size_t>(1, 2 * layers * tile);
  for (const HostCopy& c : copies) {
    if (c.block < 0 || c.block >= kv_.num_blocks || c.slot < 0 ||
        static_cast<std::size_t>(c.slot) >= slots)
      fail_setup(ErrorCode::kInvalidArgument,
                 fmt::format("host tier copy: block {} or slot {} out of range", c.block, c.slot));
  }
  const auto tiles = static_cast<std::int64_t>(copies.size() * 2 * layers);
  pool_.parallel_for(0, tiles, 4, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t t = begin; t < end; ++t) {
      const HostCopy& c = copies[static_cast<std::size_t>(t) / (2 * layers)];
      const std::size_t p = static_cast<std::size_t>(t) % (2 * layers);  // K0.., then V0..
      float* device = (p < layers ? k_pools_[p] : v_pools_[p - layers]).data.get() +
                      static_cast<std::size_t>(c.block) * tile;
      float* host =
          host_tier_.data.get() + (static_cast<std::size_t>(c.slot) * 2 * layers + p) * tile;
      if (to_host)
        std::memcpy(host, device, tile * sizeof(float));
      else
        std::memcpy(device, host, tile * sizeof(float));
    }
  });
}

void CpuBackend::copy_block_prefixes(std::span<const BlockPrefixCopy> copies) {
  for (const BlockPrefixCopy& c : copies) {
    if (c.from < 0 || c.from >= kv_.num_blocks || c.to < 0 || c.to >= kv_.num_blocks ||
        c.num_tokens < 0 || c.num_tokens > kv_.block_size)
      fail_setup(ErrorCode::kInvalidArgument,
                 fmt::format("block prefix copy: block {} -> {} of {} tokens out of range", c.from,
                             c.to, c.num_tokens));
  }
  // [num_blocks, kv_heads, block_size, head_dim]: per head, the first num_tokens rows.
  const std::size_t row = static_cast<std::size_t>(kv_.head_dim);
  const std::size_t head = static_cast<std::size_t>(kv_.block_size) * row;
  const std::size_t block = static_cast<std::size_t>(kv_.num_kv_heads) * head;
  for (const BlockPrefixCopy& c : copies)
    for (auto* pools : {&k_pools_, &v_pools_})
      for (auto& pool : *pools)
        for (std::int32_t h = 0; h < kv_.num_kv_heads; ++h) {
          const std::size_t offset = static_cast<std::size_t>(h) * head;
          std::memcpy(pool.data.get() + static_cast<std::size_t>(c.to) * block + offset,
                      pool.data.get() + static_cast<std::size_t>(c.from) * block + offset,
                      static_cast<std::size_t>(c.num_tokens) * row * sizeof(float));
        }
}

void CpuBackend::grow_scratch(std::int64_t num_tokens, std::int64_t num_logits) {
  const auto grow = [](auto& v, std::int64_t n) {
    if (std::ssize(v) < n) v.resize(static_cast<std::size_t>(n));
  };
  grow(token_seq_, num_tokens);
  grow(x_, num_tokens * hidden_);
  grow(h_, num_tokens * hidden_);
  grow(qkv_, num_tokens * qkv_dim_);
  grow(attn_, num_tokens * q_dim_);
  grow(gate_up_, num_tokens * 2 * inter_);
  grow(act_, num_tokens * inter_);
  grow(last_, num_logits * hidden_);
}

void CpuBackend::prepare_qkv(const ForwardBatch& batch, std::int32_t l) {
  struct Args {
    const ForwardBatch* batch;
    std::int32_t layer;
  } args{&batch, l};
  pool_.parallel_for(0, batch.num_tokens(), 1, [this, a = &args](std::int64_t t0, std::int64_t t1) {
    const Layer& layer = layers_[a->layer];
    const std::int32_t half = rope_.half();
    const std::int64_t bs = kv_.block_size;
    for (std::int64_t t = t0; t < t1; ++t) {
      float* q = qkv_.data() + t * qkv_dim_;  // [num_heads, head_dim]
      float* k = q + q_dim_;                  // [num_kv_heads, head_dim]
      const float* v = k + kv_dim_;           // [num_kv_heads, head_dim]
      const std::int32_t pos = a->batch->positions[t];
      const float* cos = rope_.cos(pos);
      const float* sin = rope_.sin(pos);
      for (std::int32_t h = 0; h < config_.num_heads; ++h) {
        float* qh = q + h * head_dim_;
        if (config_.qk_norm) cpu::rmsnorm_row(qh, layer.q_norm.data(), head_dim_, eps_, qh);
        cpu::rope_apply(qh, cos, sin, half);
      }
      const std::int64_t slot = a->batch->slot_mapping[t];
      const std::int64_t block = slot / bs, offset = slot % bs;
      for (std::int32_t h = 0; h < config_.num_kv_heads; ++h) {
        float* kh = k + h * head_dim_;
        if (config_.qk_norm) cpu::rmsnorm_row(kh, layer.k_norm.data(), head_dim_, eps_, kh);
        cpu::rope_apply(kh, cos, sin, half);
        const std::int64_t dst = ((block * config_.num_kv_heads + h) * bs + offset) * head_dim_;
        std::memcpy(k_pools_[a->layer].data.get() + dst, kh, sizeof(float) * head_dim_);
        std::memcpy(v_pools_[a->layer].data.get() + dst, v + h * head_dim_,
                    sizeof(float) * head_dim_);
      }
    }
  });
}

void CpuBackend::attend(const ForwardBatch& batch, std::int32_t l) {
  struct Args {
    const ForwardBatch* batch;
    std::int32_t layer;
  } args{&batch, l};
  // One item per (query tile, KV head): a tile's tokens share each K/V window while it is in
  // L1, and the whole GQA group shares each K/V row.
  const std::int64_t items = std::ssize(query_tiles_) * config_.num_kv_heads;
  pool_.parallel_for(0, items, 1, [this, a = &args](std::int64_t i0, std::int64_t i1) {
    const ForwardBatch& b = *a->batch;
    const std::int32_t group = config_.num_heads / config_.num_kv_heads;
    for (std::int64_t i = i0; i < i1; ++i) {
      const QueryTile& tile = query_tiles_[i / config_.num_kv_heads];
      const std::int32_t kv_head = static_cast<std::int32_t>(i % config_.num_kv_heads);
      const std::int32_t s = token_seq_[tile.first_token];
      const cpu::PagedKv kv{k_pools_[a->layer].data.get(),
                            v_pools_[a->layer].data.get(),
                            b.block_tables.data() + std::int64_t{s} * b.max_blocks_per_seq,
                            config_.num_kv_heads,
                            kv_.block_size,
                            config_.head_dim};
      const std::int64_t head_offset = std::int64_t{kv_head} * group * head_dim_;
      cpu::attention(qkv_.data() + tile.first_token * qkv_dim_ + head_offset, qkv_dim_,
                     tile.num_tokens, group, b.positions[tile.first_token], kv, kv_head, scale_,
                     attn_.data() + tile.first_token * q_dim_ + head_offset, q_dim_);
    }
  });
}

void CpuBackend::forward(const ForwardBatch& batch, std::vector<float>& logits) {
  check_forward_batch(batch, kv_, config_.vocab_size, config_.max_position_embeddings, "cpu");
  const std::int64_t num_tokens = batch.num_tokens();
  const std::int64_t num_logits = std::ssize(batch.logits_indices);
  const std::int64_t vocab = config_.vocab_size;
  logits.resize(static_cast<std::size_t>(num_logits * vocab));
  if (num_tokens == 0) return;

  grow_scratch(num_tokens, num_logits);
  std::int64_t max_pos = 0;
  query_tiles_.clear();
  for (std::int32_t s = 0; s < batch.num_seqs(); ++s) {
    const std::int32_t begin = batch.query_start[s], end = batch.query_start[s + 1];
    for (std::int32_t t = begin; t < end; ++t) {
      token_seq_[t] = s;
      max_pos = std::max<std::int64_t>(max_pos, batch.positions[t]);
    }
    for (std::int32_t t = begin; t < end; t += kQueryTile) {
      query_tiles_.push_back({t, std::min(kQueryTile, end - t)});
    }
  }
  rope_.ensure(max_pos + 1);

  for (std::int64_t t = 0; t < num_tokens; ++t) {
    weights_.embed_tokens.to_f32(std::int64_t{batch.token_ids[t]} * hidden_, hidden_,
                                 x_.data() + t * hidden_);
  }

  for (std::int32_t l = 0; l < config_.num_layers; ++l) {
    const Layer& layer = layers_[l];
    // x += o_proj(attention(rope(norm(x) · Wqkv)))
    cpu::rmsnorm(pool_, x_.data(), num_tokens, hidden_, layer.input_norm.data(), eps_, h_.data());
    cpu::matmul(pool_, h_.data(), num_tokens, layer.qkv,
                layer.qkv_bias.empty() ? nullptr : layer.qkv_bias.data(), qkv_.data(), false);
    prepare_qkv(batch, l);
    attend(batch, l);
    cpu::matmul(pool_, attn_.data(), num_tokens, layer.o_proj, nullptr, x_.data(), true);
    // x += down(silu(gate) * up), [gate | up] = norm(x) · Wgate_up
    cpu::rmsnorm(pool_, x_.data(), num_tokens, hidden_, layer.post_norm.data(), eps_, h_.data());
    cpu::matmul(pool_, h_.data(), num_tokens, layer.gate_up, nullptr, gate_up_.data(), false);
    pool_.parallel_for(0, num_tokens, 1, [this](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t) {
        const float* gate = gate_up_.data() + t * 2 * inter_;
        cpu::silu_mul(gate, gate + inter_, inter_, act_.data() + t * inter_);
      }
    });
    cpu::matmul(pool_, act_.data(), num_tokens, layer.down, nullptr, x_.data(), true);
  }

  // Final norm and LM head only for the rows whose logits are wanted.
  for (std::int64_t i = 0; i < num_logits; ++i) {
    std::memcpy(last_.data() + i * hidden_, x_.data() + batch.logits_indices[i] * hidden_,
                sizeof(float) * hidden_);
  }
  cpu::rmsnorm(pool_, last_.data(), num_logits, hidden_, final_norm_.data(), eps_, last_.data());
  cpu::matmul(pool_, last_.data(), num_logits, output_, nullptr, logits.data(), false);
}

}  // namespace

std::int64_t cpu_kv_block_bytes(const model::ModelConfig& config, std::int32_t block_size) {
  return 2 * std::int64_t{config.num_layers} * config.num_kv_heads * block_size * config.head_dim *
         std::int64_t{sizeof(float)};
}

std::unique_ptr<Backend> make_cpu_backend(const model::ModelConfig& config,
                                          model::ModelWeights weights, const KvCacheSpec& kv,
                                          int num_threads) {
  return std::make_unique<CpuBackend>(config, std::move(weights), kv, num_threads);
}

std::span<const float> cpu_kv_pool(const Backend& backend, std::int32_t layer, bool value) {
  const auto* cpu = dynamic_cast<const CpuBackend*>(&backend);
  if (cpu == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "cpu_kv_pool: not a CPU backend");
  }
  return cpu->pool(layer, value);
}

}  // namespace cachet::backend

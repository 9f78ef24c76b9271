// CPU backend throughput on a Qwen3-0.6B-shaped model with random weights built in memory
// (vocab 151936, hidden 1024, intermediate 3072, 28 layers, 16 heads, 8 KV heads,
// head_dim 128, tied embeddings; 1.5 GB of weights in bf16, stored as CACHET_BENCH_DTYPE says).
//   BM_Prefill/N: one sequence of N new tokens, logits for the last one.
//   BM_Decode/B:  B sequences of context 256 decoding one token each.
//   BM_DecodeAtContext/C: one sequence decoding one token after C - 1 cached positions.
//   BM_PrefillChunkAtContext/C: one sequence computing 64 new tokens ending at position C
//     (a later chunk of a long prompt); items are those 64 tokens.
// items_per_second is tokens/s; bytes_per_second for decode counts the weights read once
// per step (the memory-bandwidth floor). Threads: one per core, or CACHET_BENCH_THREADS.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace {

using namespace cachet;

constexpr std::int32_t kBlockSize = 16;
constexpr std::int32_t kDecodeContext = 256;

model::ModelConfig qwen3_06b_config() {
  model::ModelConfig c;
  c.arch = model::Arch::kQwen3;
  c.vocab_size = 151936;
  c.hidden_size = 1024;
  c.intermediate_size = 3072;
  c.num_layers = 28;
  c.num_heads = 16;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 40960;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.tie_word_embeddings = true;
  c.qk_norm = true;
  return c;
}

// The weights' stored dtype: bf16, as the checkpoint of this shape; CACHET_BENCH_DTYPE=f32 or
// f16 for the others (the arithmetic is fp32 whatever it is).
model::DType weight_dtype() {
  const char* env = std::getenv("CACHET_BENCH_DTYPE");
  const std::string name = env != nullptr ? env : "bf16";
  if (name == "f32") return model::DType::kF32;
  if (name == "f16") return model::DType::kF16;
  return model::DType::kBF16;
}

model::HostTensor random_tensor(std::vector<std::int64_t> shape, float scale, float offset,
                                std::uint64_t& state) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  std::vector<float> values(static_cast<std::size_t>(n));
  for (float& v : values) {  // xorshift64: fast, and the values do not matter for speed
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    v = offset + scale * (static_cast<float>(state >> 40) / 8388608.0f - 1.0f);
  }
  return model::HostTensor::from_f32(std::move(shape), std::move(values), weight_dtype());
}

model::ModelWeights random_weights(const model::ModelConfig& c) {
  std::uint64_t s = 0x9e3779b97f4a7c15ull;
  const std::int64_t h = c.hidden_size, q = std::int64_t{c.num_heads} * c.head_dim;
  const std::int64_t kv = std::int64_t{c.num_kv_heads} * c.head_dim, inter = c.intermediate_size;
  model::ModelWeights w;
  w.embed_tokens = random_tensor({c.vocab_size, h}, 0.1f, 0.0f, s);
  for (std::int32_t l = 0; l < c.num_layers; ++l) {
    model::LayerWeights lw;
    lw.input_norm = random_tensor({h}, 0.1f, 1.0f, s);
    lw.q_proj = random_tensor({q, h}, 0.05f, 0.0f, s);
    lw.k_proj = random_tensor({kv, h}, 0.05f, 0.0f, s);
    lw.v_proj = random_tensor({kv, h}, 0.05f, 0.0f, s);
    lw.q_norm = random_tensor({c.head_dim}, 0.1f, 1.0f, s);
    lw.k_norm = random_tensor({c.head_dim}, 0.1f, 1.0f, s);
    lw.o_proj = random_tensor({h, q}, 0.03f, 0.0f, s);
    lw.post_attention_norm = random_tensor({h}, 0.1f, 1.0f, s);
    lw.gate_proj = random_tensor({inter, h}, 0.05f, 0.0f, s);
    lw.up_proj = random_tensor({inter, h}, 0.05f, 0.0f, s);
    lw.down_proj = random_tensor({h, inter}, 0.03f, 0.0f, s);
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = random_tensor({h}, 0.1f, 1.0f, s);
  return w;
}

constexpr std::int32_t kKvBlocks = 1088;  // 17408 token slots: a 16k context, or 32 x 256

// Writes every KV pool once, so attention reads real pages (calloc's untouched pages all map
// the one zero page, which would make long contexts look free). The values do not matter.
void touch_kv(const backend::Backend& backend, std::int32_t num_layers) {
  for (std::int32_t l = 0; l < num_layers; ++l) {
    for (const bool value : {false, true}) {
      const std::span<const float> pool = backend::cpu_kv_pool(backend, l, value);
      std::fill(const_cast<float*>(pool.data()), const_cast<float*>(pool.data()) + pool.size(),
                0.01f);
    }
  }
}

// One backend for the whole run: building 1.5 GB of weights takes a while.
backend::Backend& shared_backend() {
  static const std::unique_ptr<backend::Backend> instance = [] {
    const auto config = qwen3_06b_config();
    const backend::KvCacheSpec kv{config.num_layers, config.num_kv_heads, config.head_dim,
                                  kBlockSize, kKvBlocks};  // 2.0 GB of fp32 K/V
    // CACHET_BENCH_THREADS overrides the default of one thread per core.
    const char* env = std::getenv("CACHET_BENCH_THREADS");
    const int threads = env != nullptr
                            ? std::max(1, std::atoi(env))
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    auto made = backend::make_cpu_backend(config, random_weights(config), kv, threads);
    touch_kv(*made, config.num_layers);
    return made;
  }();
  return *instance;
}

// `num_seqs` sequences, each computing `new_tokens` tokens that end at `context`, with
// disjoint block ranges; logits for each sequence's last token.
backend::ForwardBatch make_batch(std::int32_t num_seqs, std::int32_t new_tokens,
                                 std::int32_t context) {
  backend::ForwardBatch b;
  const std::int32_t blocks = (context + kBlockSize - 1) / kBlockSize;
  b.max_blocks_per_seq = blocks;
  b.query_start.push_back(0);
  for (std::int32_t s = 0; s < num_seqs; ++s) {
    for (std::int32_t i = 0; i < blocks; ++i) b.block_tables.push_back(s * blocks + i);
    for (std::int32_t p = context - new_tokens; p < context; ++p) {
      b.token_ids.push_back((p * 7919 + s * 104729) % 151936);
      b.positions.push_back(p);
      b.slot_mapping.push_back(std::int64_t{s * blocks + p / kBlockSize} * kBlockSize +
                               p % kBlockSize);
    }
    b.query_start.push_back(b.num_tokens());
    b.context_lens.push_back(context);
    b.logits_indices.push_back(b.num_tokens() - 1);
  }
  return b;
}

void BM_Prefill(benchmark::State& state) {
  auto& backend = shared_backend();
  const auto tokens = static_cast<std::int32_t>(state.range(0));
  const auto batch = make_batch(1, tokens, tokens);
  std::vector<float> logits;
  for (auto _ : state) backend.forward(batch, logits);
  state.SetItemsProcessed(state.iterations() * tokens);
}
BENCHMARK(BM_Prefill)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Decode(benchmark::State& state) {
  auto& backend = shared_backend();
  const auto seqs = static_cast<std::int32_t>(state.range(0));
  const auto batch = make_batch(seqs, 1, kDecodeContext);
  std::vector<float> logits;
  for (auto _ : state) backend.forward(batch, logits);
  const auto c = qwen3_06b_config();
  const std::int64_t layer_params =
      std::int64_t{c.hidden_size} * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim +
      std::int64_t{c.num_heads} * c.head_dim * c.hidden_size +
      3 * std::int64_t{c.hidden_size} * c.intermediate_size;
  const std::int64_t weight_bytes =
      static_cast<std::int64_t>(model::dtype_size(weight_dtype())) *
      (c.num_layers * layer_params + std::int64_t{c.vocab_size} * c.hidden_size);
  state.SetItemsProcessed(state.iterations() * seqs);
  state.SetBytesProcessed(state.iterations() * weight_bytes);
}
BENCHMARK(BM_Decode)->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_DecodeAtContext(benchmark::State& state) {
  auto& backend = shared_backend();
  const auto batch = make_batch(1, 1, static_cast<std::int32_t>(state.range(0)));
  std::vector<float> logits;
  for (auto _ : state) backend.forward(batch, logits);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeAtContext)
    ->Arg(1024)
    ->Arg(4096)
    ->Arg(16384)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_PrefillChunkAtContext(benchmark::State& state) {
  auto& backend = shared_backend();
  constexpr std::int32_t kChunk = 64;
  const auto batch = make_batch(1, kChunk, static_cast<std::int32_t>(state.range(0)));
  std::vector<float> logits;
  for (auto _ : state) backend.forward(batch, logits);
  state.SetItemsProcessed(state.iterations() * kChunk);
}
BENCHMARK(BM_PrefillChunkAtContext)
    ->Arg(1024)
    ->Arg(4096)
    ->Arg(16384)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

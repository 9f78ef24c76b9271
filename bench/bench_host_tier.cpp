// The prefix cache's host tier on the CPU backend: copying KV blocks of the Qwen3-0.6B shape
// (28 layers, 8 KV heads, head_dim 128, block size 16: 3.5 MiB of fp32 K and V per block)
// to the tier (save, a demotion) and back (load, a hit), against one plain memcpy of the
// same bytes in the same run (the floor).
//   BM_HostTierSave/N, BM_HostTierLoad/N: N blocks per call, the backend's copy (parallel
//     over layers on every thread).
//   BM_Memcpy/N: one memcpy of N blocks' bytes, one thread.
// bytes_per_second is the K/V bytes copied. Threads: one per core, or CACHET_BENCH_THREADS.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace {

using namespace cachet;

constexpr std::int32_t kBlockSize = 16;
constexpr std::int64_t kDeviceBlocks = 256;
constexpr std::int64_t kHostBlocks = 256;

// The KV geometry of Qwen3-0.6B; everything else is as small as a model can be, since only
// the KV pools take part.
model::ModelConfig kv_shape_config() {
  model::ModelConfig c;
  c.arch = model::Arch::kQwen3;
  c.vocab_size = 16;
  c.hidden_size = 64;
  c.intermediate_size = 64;
  c.num_layers = 28;
  c.num_heads = 16;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.tie_word_embeddings = true;
  c.qk_norm = true;
  return c;
}

model::HostTensor filled(std::vector<std::int64_t> shape, float value) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return model::HostTensor::from_f32(
      std::move(shape), std::vector<float>(static_cast<std::size_t>(n), value), model::DType::kF32);
}

model::ModelWeights small_weights(const model::ModelConfig& c) {
  const std::int64_t h = c.hidden_size, q = std::int64_t{c.num_heads} * c.head_dim;
  const std::int64_t kv = std::int64_t{c.num_kv_heads} * c.head_dim, inter = c.intermediate_size;
  model::ModelWeights w;
  w.embed_tokens = filled({c.vocab_size, h}, 0.01f);
  for (std::int32_t l = 0; l < c.num_layers; ++l) {
    model::LayerWeights lw;
    lw.input_norm = filled({h}, 1.0f);
    lw.q_proj = filled({q, h}, 0.01f);
    lw.k_proj = filled({kv, h}, 0.01f);
    lw.v_proj = filled({kv, h}, 0.01f);
    lw.q_norm = filled({c.head_dim}, 1.0f);
    lw.k_norm = filled({c.head_dim}, 1.0f);
    lw.o_proj = filled({h, q}, 0.01f);
    lw.post_attention_norm = filled({h}, 1.0f);
    lw.gate_proj = filled({inter, h}, 0.01f);
    lw.up_proj = filled({inter, h}, 0.01f);
    lw.down_proj = filled({h, inter}, 0.01f);
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = filled({h}, 1.0f);
  return w;
}

std::int64_t block_bytes() { return backend::cpu_kv_block_bytes(kv_shape_config(), kBlockSize); }

std::vector<backend::HostCopy> copies(std::int64_t n) {
  std::vector<backend::HostCopy> out;
  for (std::int64_t i = 0; i < n; ++i)
    out.push_back({static_cast<std::int32_t>(i), kHostBlocks - 1 - i});
  return out;
}

// One backend for the run, its KV pools and host tier written once (so no copy meets a
// fresh zero page).
backend::Backend& shared_backend() {
  static const std::unique_ptr<backend::Backend> instance = [] {
    const auto c = kv_shape_config();
    const backend::KvCacheSpec kv{c.num_layers, c.num_kv_heads, c.head_dim, kBlockSize,
                                  kDeviceBlocks};
    const char* env = std::getenv("CACHET_BENCH_THREADS");
    const int threads = env != nullptr
                            ? std::max(1, std::atoi(env))
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    auto made = backend::make_cpu_backend(c, small_weights(c), kv, threads);
    made->allocate_host_tier(kHostBlocks);
    for (std::int32_t l = 0; l < c.num_layers; ++l)
      for (const bool value : {false, true}) {
        const auto pool = backend::cpu_kv_pool(*made, l, value);
        std::fill(const_cast<float*>(pool.data()), const_cast<float*>(pool.data()) + pool.size(),
                  0.5f);
      }
    made->save_blocks(copies(kHostBlocks));
    return made;
  }();
  return *instance;
}

void BM_HostTierSave(benchmark::State& state) {
  auto& backend = shared_backend();
  const auto list = copies(state.range(0));
  for (auto _ : state) backend.save_blocks(list);
  state.SetBytesProcessed(state.iterations() * state.range(0) * block_bytes());
}
BENCHMARK(BM_HostTierSave)->Arg(1)->Arg(16)->Arg(64)->UseRealTime();

void BM_HostTierLoad(benchmark::State& state) {
  auto& backend = shared_backend();
  const auto list = copies(state.range(0));
  for (auto _ : state) backend.load_blocks(list);
  state.SetBytesProcessed(state.iterations() * state.range(0) * block_bytes());
}
BENCHMARK(BM_HostTierLoad)->Arg(1)->Arg(16)->Arg(64)->UseRealTime();

void BM_Memcpy(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0) * block_bytes());
  std::vector<char> from(bytes, 1), to(bytes, 2);
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_Memcpy)->Arg(1)->Arg(16)->Arg(64)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

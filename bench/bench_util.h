// What the end-to-end benchmark programs share: the median of repetitions and seeded
// pseudo-random prompts.
#pragma once

#include <fmt/core.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cachet/types.h"
#include "model/make_model.h"

namespace cachet::bench {

// The upper median (the middle element of the sorted values); 0 for none.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// n token ids in [0, vocab) from an xorshift stream seeded by `seed`.
inline std::vector<TokenId> tokens(int n, int vocab, std::uint64_t seed) {
  std::vector<TokenId> t;
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;
  for (int i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    t.push_back(static_cast<TokenId>(x % static_cast<std::uint64_t>(vocab)));
  }
  return t;
}

// The random-weight model of `preset` for `arch` ("llama", "qwen2", "qwen3"; bf16, seed 1)
// under $TMPDIR, made on first use and reused by later runs. Throws std::out_of_range for
// an unknown arch.
inline std::filesystem::path ensure_model(const std::string& arch, const std::string& preset) {
  static const std::map<std::string, model::Arch> archs = {{"llama", model::Arch::kLlama},
                                                           {"qwen2", model::Arch::kQwen2},
                                                           {"qwen3", model::Arch::kQwen3}};
  const char* tmp = std::getenv("TMPDIR");
  const std::filesystem::path dir =
      std::filesystem::path(tmp ? tmp : "/tmp") / ("cachet-bench-" + arch + "-" + preset);
  if (!std::filesystem::exists(dir / "config.json")) {
    fmt::print(stderr, "making {} ...\n", dir.string());
    model::MakeModelOptions o;
    o.arch = archs.at(arch);
    o.preset = preset;
    o.dtype = model::DType::kBF16;
    o.seed = 1;
    o.out_dir = dir;
    model::make_model(o);
  }
  return dir;
}

}  // namespace cachet::bench

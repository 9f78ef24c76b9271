#include "support/tiny_model.h"

namespace cachet::testing {

TinyModel::TinyModel(model::Arch arch, std::uint64_t seed) {
  model::MakeModelOptions o;
  o.arch = arch;
  o.preset = "tiny";
  o.seed = seed;
  o.out_dir = dir.path();
  model::make_model(o);
  config = model::load_model_config(dir.path() / "config.json");
}

EngineConfig TinyModel::engine_config(std::int32_t block_size, bool caching, int threads) const {
  EngineConfig c;
  c.model_dir = dir.path().string();
  c.device = Device::kCpu;
  c.block_size = block_size;
  c.enable_prefix_caching = caching;
  c.kv_cache_bytes = 8 << 20;
  c.num_threads = threads;
  c.debug_poison_kv = true;     // any read of K/V the block table does not vouch for fails
  c.check_kv_integrity = true;  // block accounting after every step: a violation fails
  return c;
}

}  // namespace cachet::testing

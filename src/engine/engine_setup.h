// Everything an Engine is built from, checked and loaded on the constructing thread: the
// options, the model's config and weights, the tokenizer, the backend and its KV cache.
#pragma once

#include <memory>
#include <optional>

#include "backend/backend.h"
#include "cachet/engine.h"
#include "kv/disk_tier.h"
#include "model/model_config.h"
#include "util/log.h"

namespace cachet::engine {

struct EngineParts {
  EngineInfo info;
  model::ModelConfig model;
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;  // with a tokenizer only
  std::unique_ptr<backend::Backend> backend;
  std::unique_ptr<kv::DiskTier> disk;  // EngineConfig::kv_cache_dir; null when off
};

// Throws Error naming the option, file, field or tensor at fault. Logs through `log` why
// Device::kAuto chose the CPU.
EngineParts build_engine_parts(const EngineConfig& config, const util::Logger& log);

}  // namespace cachet::engine

// Test hooks into an Engine, for fault injection: a wrapper around the backend it is built
// with, and its core (to corrupt on purpose, from a callback, which runs on the engine's own
// thread). Not part of the public API.
#pragma once

#include <functional>
#include <memory>

#include "backend/backend.h"
#include "cachet/engine.h"
#include "engine/engine_core.h"

namespace cachet::engine {

using BackendWrapper =
    std::function<std::unique_ptr<backend::Backend>(std::unique_ptr<backend::Backend>)>;

struct EngineTestAccess {
  // An Engine whose backend is `wrap(the backend it would have)`.
  static Engine make(const EngineConfig& config, const BackendWrapper& wrap);
  // The engine's core. Only the engine's own thread may touch it: call this in a callback.
  static EngineCore& core(Engine& engine);
};

}  // namespace cachet::engine

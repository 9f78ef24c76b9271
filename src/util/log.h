// The library's logger: everything cachet says goes through it (stderr, level from
// EngineConfig::log_level). The library never prints otherwise.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string_view>

namespace cachet::util {

spdlog::logger& logger();
// Sets the level from its name; returns false for an unknown name.
bool set_log_level(std::string_view level);

}  // namespace cachet::util

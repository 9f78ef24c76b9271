#include "util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace cachet::util {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto log = std::make_shared<spdlog::logger>("cachet", sink);
    log->set_pattern("[cachet %L] %v");
    log->set_level(spdlog::level::warn);
    return log;
  }();
  return *instance;
}

bool set_log_level(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str maps unknown names to "off"; only accept "off" when it was asked for.
  if (parsed == spdlog::level::off && level != "off") return false;
  logger().set_level(parsed);
  return true;
}

}  // namespace cachet::util

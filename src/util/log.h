// One engine's logger: a level and a sink (EngineConfig::log_level / log_sink). Everything
// the library says goes through the logger of the engine it belongs to; there is no
// process-wide logger, and the library never prints otherwise.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string_view>
#include <utility>

#include "cachet/config.h"

namespace cachet::util {

class Logger {
 public:
  // An empty sink writes "[cachet W] message" lines to standard error.
  explicit Logger(LogLevel level = LogLevel::kWarn, LogSink sink = {})
      : level_(level), sink_(std::move(sink)) {}

  bool enabled(LogLevel level) const { return level != LogLevel::kOff && level >= level_; }
  // Hands one message to the sink; a sink that throws is ignored (logging never fails).
  void write(LogLevel level, std::string_view message) const noexcept;

  template <class... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(level)) write(level, fmt::format(format, std::forward<Args>(args)...));
  }
  template <class... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kDebug, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kInfo, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kWarn, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kError, format, std::forward<Args>(args)...);
  }

 private:
  LogLevel level_;
  LogSink sink_;
};

// "trace", "debug", "info", "warn", "error" or "off"; nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view name);

}  // namespace cachet::util

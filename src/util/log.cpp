#include "util/log.h"

#include <cstdio>
#include <string>

namespace cachet::util {
namespace {

constexpr std::string_view kNames[] = {"trace", "debug", "info", "warn", "error", "off"};

char letter(LogLevel level) { return "TDIWEO"[static_cast<int>(level)]; }

}  // namespace

void Logger::write(LogLevel level, std::string_view message) const noexcept {
  try {
    if (sink_) {
      sink_(level, message);
      return;
    }
    // One fputs per line: stdio locks the stream per call, so lines of concurrent engines
    // do not interleave.
    const std::string line = fmt::format("[cachet {}] {}\n", letter(level), message);
    std::fputs(line.c_str(), stderr);
  } catch (...) {
    // A log line is never worth an exception escaping into the engine or the caller.
  }
}

std::optional<LogLevel> parse_log_level(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kNames); ++i)
    if (name == kNames[i]) return static_cast<LogLevel>(i);
  return std::nullopt;
}

}  // namespace cachet::util

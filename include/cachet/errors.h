// cachet — the error model of the public API.
//
// Expected failures (a bad model file, a bad argument, out of memory) are reported as
// cachet::Error with a message that names the culprit: the file, the field or tensor, the
// request. A failing request inside generate() does not throw: it comes back with
// FinishReason::kError and its own message while the other requests complete.
#pragma once

#include <stdexcept>
#include <string>

#include "cachet/export.h"

namespace cachet {

enum class ErrorCode {
  kInvalidArgument,  // a bad option or request parameter
  kNotFound,         // a file or directory that does not exist
  kInvalidModel,     // a model file that is malformed or disagrees with config.json
  kUnsupported,      // a valid input cachet does not handle (architecture, dtype, ...)
  kOutOfMemory,      // the KV cache or a buffer does not fit
  kUnavailable,      // a requested device/backend is not available
  kInternal,         // a bug in cachet
  kEngineFailed,     // the engine has failed (Engine::health() says why) and runs nothing more
};

class CACHET_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace cachet

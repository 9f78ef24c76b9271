#include "cachet/types.h"

namespace cachet {

std::string_view to_string(CacheMissReason reason) {
  switch (reason) {
    case CacheMissReason::kNone:
      return "none";
    case CacheMissReason::kCachingOff:
      return "caching_off";
    case CacheMissReason::kBypassed:
      return "bypassed";
    case CacheMissReason::kCold:
      return "cold";
    case CacheMissReason::kPrefixEnd:
      return "prefix_end";
    case CacheMissReason::kEvicted:
      return "evicted";
    case CacheMissReason::kOtherSalt:
      return "other_salt";
    case CacheMissReason::kDiverged:
      return "diverged";
  }
  return "unknown";
}

std::string_view to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kError:
      return "error";
    case FinishReason::kAborted:
      return "abort";
  }
  return "unknown";
}

std::string_view to_string(Device device) {
  switch (device) {
    case Device::kAuto:
      return "auto";
    case Device::kCpu:
      return "cpu";
    case Device::kCuda:
      return "cuda";
  }
  return "unknown";
}

}  // namespace cachet

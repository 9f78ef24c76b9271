#include "backend/backend.h"

#include <fmt/format.h>

#include "cachet/errors.h"

namespace cachet::backend {

void Backend::forward_sample(const ForwardBatch&, const std::vector<SampleSpec>&,
                             std::vector<SampledToken>&) {
  throw Error(ErrorCode::kInternal,
              fmt::format("{} backend: forward_sample called, but it samples on the host", name()));
}

namespace {

[[noreturn]] void no_host_tier(std::string_view backend) {
  throw Error(ErrorCode::kUnsupported,
              fmt::format("the {} backend has no host-memory tier for the KV cache", backend));
}

}  // namespace

void Backend::allocate_host_tier(std::int64_t) { no_host_tier(name()); }

void Backend::save_blocks(std::span<const HostCopy> copies) {
  if (!copies.empty()) no_host_tier(name());
}

void Backend::load_blocks(std::span<const HostCopy> copies) {
  if (!copies.empty()) no_host_tier(name());
}

std::span<std::byte> Backend::host_slot(std::int64_t) { no_host_tier(name()); }

}  // namespace cachet::backend

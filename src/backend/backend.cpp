#include "backend/backend.h"

#include <fmt/format.h>

#include "cachet/errors.h"

namespace cachet::backend {

void Backend::forward_sample(const ForwardBatch&, const std::vector<SampleSpec>&,
                             std::vector<SampledToken>&) {
  throw Error(ErrorCode::kInternal,
              fmt::format("{} backend: forward_sample called, but it samples on the host", name()));
}

}  // namespace cachet::backend

// Turns a scheduled step into the backend's ForwardBatch, and remembers what each row of
// logits that comes back is for.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "engine/scheduler.h"

namespace cachet::engine {

// What one returned row of logits is for.
struct LogitsUse {
  enum class Kind {
    kSample,        // the last token of the sequence: sample its successor
    kPromptLogprob  // a prompt position p: the distribution of prompt token p + 1
  };
  Kind kind = Kind::kSample;
  Sequence* seq = nullptr;
  std::int32_t position = 0;
};

struct BuiltBatch {
  backend::ForwardBatch batch;
  std::vector<LogitsUse> uses;  // [batch.logits_indices.size()]
};

BuiltBatch build_batch(const Step& step, std::int32_t block_size);

}  // namespace cachet::engine

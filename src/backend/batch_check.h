// The checks every backend runs on a ForwardBatch before touching memory with it.
#pragma once

#include <cstdint>
#include <string_view>

#include "backend/backend.h"

namespace cachet::backend {

// Throws cachet::Error (kInvalidArgument) naming the first inconsistency: array sizes,
// query_start order, context_len vs query length and `max_positions` (0: no limit), block
// table entries outside the pool, positions, token ids outside [0, vocab_size), slots that
// disagree with the block table, logits_indices out of range. After it passes, no index the
// batch holds can reach outside the KV pools or the batch's own arrays.
void check_forward_batch(const ForwardBatch& batch, const KvCacheSpec& kv, std::int32_t vocab_size,
                         std::int32_t max_positions, std::string_view backend);

}  // namespace cachet::backend

#include "backend/batch_check.h"

#include <fmt/format.h>

#include <string>

#include "cachet/errors.h"

namespace cachet::backend {

void check_forward_batch(const ForwardBatch& b, const KvCacheSpec& kv, std::int32_t vocab_size,
                         std::int32_t max_positions, std::string_view backend) {
  const auto fail_batch = [backend](const std::string& message) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{} backend: invalid ForwardBatch: {}", backend, message));
  };
  const std::int64_t num_tokens = b.num_tokens();
  const std::int64_t num_seqs = b.num_seqs();
  if (std::ssize(b.positions) != num_tokens || std::ssize(b.slot_mapping) != num_tokens) {
    fail_batch(fmt::format("{} token_ids, {} positions, {} slot_mapping entries", num_tokens,
                           b.positions.size(), b.slot_mapping.size()));
  }
  if (std::ssize(b.query_start) != num_seqs + 1 || b.query_start.front() != 0 ||
      b.query_start.back() != num_tokens) {
    fail_batch(
        fmt::format("query_start must have num_seqs + 1 = {} entries from 0 to "
                    "num_tokens = {}",
                    num_seqs + 1, num_tokens));
  }
  for (std::int64_t s = 0; s < num_seqs; ++s) {
    if (b.query_start[s + 1] < b.query_start[s]) {
      fail_batch(fmt::format("query_start decreases at sequence {}: {} then {}", s,
                             b.query_start[s], b.query_start[s + 1]));
    }
  }
  if (b.max_blocks_per_seq < 0 || std::ssize(b.block_tables) != num_seqs * b.max_blocks_per_seq) {
    fail_batch(
        fmt::format("block_tables has {} entries, expected num_seqs {} x "
                    "max_blocks_per_seq {}",
                    b.block_tables.size(), num_seqs, b.max_blocks_per_seq));
  }
  const std::int64_t bs = kv.block_size;
  for (std::int64_t s = 0; s < num_seqs; ++s) {
    const std::int64_t begin = b.query_start[s], end = b.query_start[s + 1];
    const std::int64_t context = b.context_lens[s];
    if (context < end - begin) {
      fail_batch(
          fmt::format("sequence {}: query [{}, {}) with context_len {}", s, begin, end, context));
    }
    if (max_positions > 0 && context > max_positions) {
      fail_batch(fmt::format("sequence {}: context_len {} exceeds max_position_embeddings {}", s,
                             context, max_positions));
    }
    const std::int64_t blocks = (context + bs - 1) / bs;
    if (blocks > b.max_blocks_per_seq) {
      fail_batch(fmt::format("sequence {}: context_len {} needs {} blocks, max_blocks_per_seq {}",
                             s, context, blocks, b.max_blocks_per_seq));
    }
    const std::int32_t* table = b.block_tables.data() + s * b.max_blocks_per_seq;
    for (std::int64_t i = 0; i < blocks; ++i) {
      if (table[i] < 0 || table[i] >= kv.num_blocks) {
        fail_batch(fmt::format("sequence {}: block_tables entry {} is block {}, outside [0, {})", s,
                               i, table[i], kv.num_blocks));
      }
    }
    for (std::int64_t t = begin; t < end; ++t) {
      const std::int64_t pos = context - (end - begin) + (t - begin);
      if (b.positions[t] != pos) {
        fail_batch(
            fmt::format("token {} of sequence {} has position {}, expected {} from "
                        "context_len {}",
                        t, s, b.positions[t], pos, context));
      }
      if (b.token_ids[t] < 0 || b.token_ids[t] >= vocab_size) {
        fail_batch(fmt::format("token {} has id {}, outside the vocabulary [0, {})", t,
                               b.token_ids[t], vocab_size));
      }
      const std::int64_t slot = table[pos / bs] * bs + pos % bs;
      if (b.slot_mapping[t] != slot) {
        fail_batch(
            fmt::format("token {} (sequence {}, position {}) has slot {}, but its block "
                        "table puts it at slot {}",
                        t, s, pos, b.slot_mapping[t], slot));
      }
    }
  }
  for (std::size_t i = 0; i < b.logits_indices.size(); ++i) {
    if (b.logits_indices[i] < 0 || b.logits_indices[i] >= num_tokens) {
      fail_batch(fmt::format("logits_indices[{}] = {} outside [0, {})", i, b.logits_indices[i],
                             num_tokens));
    }
  }
}

}  // namespace cachet::backend

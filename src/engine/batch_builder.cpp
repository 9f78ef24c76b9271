#include "engine/batch_builder.h"

#include <algorithm>

namespace cachet::engine {

BuiltBatch build_batch(const Step& step, std::int32_t block_size) {
  BuiltBatch built;
  backend::ForwardBatch& b = built.batch;
  std::size_t max_blocks = 0;
  for (const auto& s : step.seqs) max_blocks = std::max(max_blocks, s.seq->kv.blocks.size());
  b.max_blocks_per_seq = static_cast<std::int32_t>(max_blocks);
  b.block_tables.assign(step.seqs.size() * max_blocks, 0);
  b.query_start.push_back(0);

  for (std::size_t row = 0; row < step.seqs.size(); ++row) {
    const ScheduledSeq& s = step.seqs[row];
    Sequence& seq = *s.seq;
    // [0, computed) cached   [computed, end) computed now   [end, size) later chunks
    const std::int32_t begin = seq.num_computed;
    const std::int32_t end = begin + s.num_tokens;
    const bool wants_prompt_logprobs = seq.params.prompt_logprobs.has_value();
    for (std::int32_t pos = begin; pos < end; ++pos) {
      const auto token_index = static_cast<std::int32_t>(b.token_ids.size());
      b.token_ids.push_back(seq.tokens[static_cast<std::size_t>(pos)]);
      b.positions.push_back(pos);
      const kv::BlockId block = seq.kv.blocks[static_cast<std::size_t>(pos / block_size)];
      b.slot_mapping.push_back(static_cast<std::int64_t>(block.value) * block_size +
                               pos % block_size);
      // Prompt logprobs are recorded once: a recomputed (preempted) prefix skips them.
      if (wants_prompt_logprobs && pos + 1 < seq.num_prompt_tokens &&
          !seq.output.prompt_logprobs[static_cast<std::size_t>(pos + 1)].has_value()) {
        b.logits_indices.push_back(token_index);
        built.uses.push_back({LogitsUse::Kind::kPromptLogprob, &seq, pos});
      }
    }
    if (end == seq.size()) {
      b.logits_indices.push_back(static_cast<std::int32_t>(b.token_ids.size()) - 1);
      built.uses.push_back({LogitsUse::Kind::kSample, &seq, end - 1});
    }
    b.query_start.push_back(static_cast<std::int32_t>(b.token_ids.size()));
    b.context_lens.push_back(end);
    std::transform(seq.kv.blocks.begin(), seq.kv.blocks.end(),
                   b.block_tables.begin() + static_cast<std::ptrdiff_t>(row * max_blocks),
                   [](kv::BlockId id) { return id.value; });
  }
  return built;
}

}  // namespace cachet::engine

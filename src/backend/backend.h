// The only interface between the engine and arithmetic. The engine, scheduler and KV
// cache manager never touch tensors; a backend never sees requests, only a ForwardBatch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cachet/errors.h"
#include "cachet/types.h"
#include "sampling/logit_edit.h"

namespace cachet::backend {

// Geometry of the paged KV cache. Per layer, one K pool and one V pool, each
//   // [num_blocks, num_kv_heads, block_size, head_dim]
// so one (block, kv_head) is one contiguous block_size x head_dim tile. The K/V of token
// slot `s` lives in block s / block_size at offset s % block_size.
struct KvCacheSpec {
  std::int32_t num_layers = 0;
  std::int32_t num_kv_heads = 0;
  std::int32_t head_dim = 0;
  std::int32_t block_size = 16;
  std::int64_t num_blocks = 0;
};

// One engine step, FlashAttention "varlen + paged" style. The new tokens of all sequences
// are flattened in sequence order: sequence s owns token indices
// [query_start[s], query_start[s + 1]). Its new tokens have consecutive positions ending at
// context_lens[s] - 1; the K/V of its positions [0, context_lens[s] - query_len) are already
// in the cache (a cached prefix or an earlier prefill chunk), reached through its row of
// block_tables. A token at position p attends to positions [0, p] of its own sequence.
struct ForwardBatch {
  std::vector<TokenId> token_ids;          // [num_tokens]
  std::vector<std::int32_t> positions;     // [num_tokens]
  std::vector<std::int64_t> slot_mapping;  // [num_tokens] where each new token's K/V is written
  std::vector<std::int32_t> query_start;   // [num_seqs + 1], query_start[0] = 0
  std::vector<std::int32_t> context_lens;  // [num_seqs]
  // [num_seqs, max_blocks_per_seq] row-major; entries past a sequence's blocks are unused.
  std::vector<std::int32_t> block_tables;
  std::int32_t max_blocks_per_seq = 0;
  // Token indices whose logits are wanted, in the order the logits are returned.
  std::vector<std::int32_t> logits_indices;

  std::int32_t num_tokens() const { return static_cast<std::int32_t>(token_ids.size()); }
  std::int32_t num_seqs() const { return static_cast<std::int32_t>(context_lens.size()); }
};

// How to pick the token of one logits row, for backends that sample where the logits are
// (sampling::sample's definition, with uniform(seed, counter) as its random draw).
struct SampleSpec {
  float temperature = 0.0f;
  std::int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  std::uint64_t seed = 0;
  std::uint64_t counter = 0;
  // -1: no logprobs; 0: the chosen token's only; k > 0: also the top k (<= 20).
  std::int32_t num_logprobs = -1;
  // Applied to a copy of the row before sampling (logits_processors.h: min_tokens,
  // logit_bias, penalties); the logprobs stay the raw row's. Valid during the call.
  std::span<const sampling::LogitEdit> edits;
};

struct SampledToken {
  TokenId token = 0;
  float logprob = 0.0f;          // log_softmax(logits)[token] when num_logprobs >= 0
  std::vector<TokenId> top_ids;  // the top num_logprobs, descending, ties lower id first
  std::vector<float> top_logprobs;
  // How many logits of the row were NaN or +-inf (the host path checks the logits itself).
  std::int32_t num_nonfinite = 0;
};

// One block copied between the KV cache and its host-memory tier: KV block `block` (every
// layer's K and V) and host slot `slot`, which holds exactly that much.
struct HostCopy {
  std::int32_t block = 0;
  std::int64_t slot = 0;
};

// The K/V of the first `num_tokens` positions of KV block `from` (every layer) copied into
// the same positions of block `to`.
struct BlockPrefixCopy {
  std::int32_t from = 0;
  std::int32_t to = 0;
  std::int32_t num_tokens = 0;
};

// A backend failure after which the backend cannot run anything more (a sticky CUDA error:
// an illegal address, a kernel fault, an uncorrectable ECC error). The engine then fails as
// a whole (Engine::health()) instead of failing only the requests of the step.
class FatalBackendError : public Error {
 public:
  using Error::Error;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // "cpu" or "cuda".
  virtual std::string_view name() const = 0;
  virtual const KvCacheSpec& kv_spec() const = 0;
  virtual std::int32_t vocab_size() const = 0;
  // Runs the model over `batch`: writes every new token's K/V to its slot, then returns
  // the logits of the tokens in batch.logits_indices in `logits`, resized to
  // [logits_indices.size(), vocab_size] row-major, fp32.
  virtual void forward(const ForwardBatch& batch, std::vector<float>& logits) = 0;

  // Debugging aid: overwrites every layer's K and V of these blocks with NaN, so that a read
  // of K/V the block table does not vouch for shows up as NaN logits.
  virtual void poison_blocks(std::span<const std::int32_t> blocks) = 0;

  // The host-memory tier of the KV cache (kv/host_tier.h): `num_slots` slots of one KV
  // block each, in the host memory copies to and from the device are fastest from (pinned
  // on a GPU). Called at most once, before the first forward pass. Throws
  // Error(kOutOfMemory) when the memory cannot be had; this default, Error(kUnsupported).
  virtual void allocate_host_tier(std::int64_t num_slots);
  // Copies blocks to their host slots (save) or host slots into blocks (load), in order with
  // forward passes: a save sees the K/V every earlier forward wrote, a load is in place
  // before the next forward reads it. Saves run before the loads that may read their slots.
  virtual void save_blocks(std::span<const HostCopy> copies);
  virtual void load_blocks(std::span<const HostCopy> copies);
  // The bytes of host slot `slot` (one block's K/V, every layer, in the backend's layout),
  // which the prefix cache's disk tier writes to disk and reads back into, from its own
  // thread, while no copy above uses the slot. This default: Error(kUnsupported).
  virtual std::span<std::byte> host_slot(std::int64_t slot);
  // Returns once every copy queued so far is done with host memory (a GPU's asynchronous
  // saves have landed, its loads have read their slots). A no-op where copies are synchronous.
  virtual void wait_for_copies() {}
  // What decides the bits of the K/V this backend computes and stores, beyond the model: its
  // K/V dtype, kernels and device, e.g. "cpu fp32 avx2". Blocks written to disk by a backend
  // with another format are never read back (the disk tier's fingerprint includes it).
  virtual std::string kv_format() const = 0;

  // Partial-block reuse: each copy in order with forward passes, as the copies above.
  virtual void copy_block_prefixes(std::span<const BlockPrefixCopy> copies) = 0;

  // Whether forward_sample() is implemented: the backend then samples next to the logits
  // and returns only tokens (and the logprobs asked for), not whole logits rows.
  virtual bool samples_on_device() const { return false; }
  // forward(), then for each logits row i the token specs[i] picks, in `out` (resized to
  // logits_indices.size()). specs.size() must equal batch.logits_indices.size().
  virtual void forward_sample(const ForwardBatch& batch, const std::vector<SampleSpec>& specs,
                              std::vector<SampledToken>& out);
};

}  // namespace cachet::backend

// Paged attention (FlashAttention "varlen + paged"): the new tokens of a batch of sequences
// attend causally to all positions of their own sequence, whose K/V live in a paged cache.
//
// Semantics (same as the CPU backend): sequence s owns tokens [query_start[s],
// query_start[s + 1]); with query_len = that count, its tokens have positions
// context_lens[s] - query_len ... context_lens[s] - 1, and the K/V of all positions
// [0, context_lens[s]) are already in the cache (the backend writes the new tokens' K/V before
// calling attention). Position p of sequence s lives in cache block
// block_tables[s * max_blocks_per_seq + p / block_size] at offset p % block_size. A token at
// position p attends to positions [0, p]. Query head h reads KV head h / (num_heads /
// num_kv_heads). out = softmax(scale * q.k) . v in fp32, stored as dtype. A sequence with
// context_lens 0 or query_len 0 (padding of a captured batch) reads and writes nothing.
//
// Both paths run on tensor cores (mma.sync m16n8k16, fp32 accumulation). A CTA covers one
// KV head and ALL query heads of its GQA group: its rows are (token, head-in-group) pairs, so
// each K/V element is read from global memory once per CTA.
//  - decode (max_query_len == 1): CTA per (sequence, KV head, split); 16 rows (the group's
//    heads), the 4 warps share each 64-token K/V tile, 3-stage cp.async pipeline. With
//    num_splits > 1 the splits write fp32 partials + log-sum-exp to the workspace and a merge
//    kernel combines them.
//  - prefill (otherwise): CTA per (sequence, 64-row tile, KV head, split), FlashAttention-2
//    style: each warp owns 16 rows and sweeps the sequence's K/V tiles, double buffered.
//    Split-KV: when the batch has too few CTAs for the GPU and a long cached prefix (e.g. 64
//    new tokens after 4096 cached), each CTA's K/V range is cut into num_splits tile-aligned
//    chunks (on the device, from context_lens; a chunk entirely past a row's position gives
//    that row an empty partial, log-sum-exp -inf). Every split writes fp32 partials + LSE for
//    all its (token, head) rows to the workspace and the decode merge kernel combines them.
//    With one split the prefill path is exactly the unsplit kernel.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernel_common.h"

namespace cachet::kernels {

struct PagedAttentionParams {
  DType dtype = DType::kBF16;     // element type of q, out and the K/V cache
  const void* q = nullptr;        // [num_tokens, num_heads, head_dim] contiguous
  const void* k_cache = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim], one layer
  const void* v_cache = nullptr;  // same layout
  void* out = nullptr;            // [num_tokens, num_heads, head_dim]
  const std::int32_t* query_start = nullptr;   // device [num_seqs + 1]
  const std::int32_t* context_lens = nullptr;  // device [num_seqs]
  const std::int32_t* block_tables = nullptr;  // device [num_seqs, max_blocks_per_seq]
  std::int32_t max_blocks_per_seq = 0;
  std::int32_t num_seqs = 0;
  std::int32_t num_tokens = 0;
  std::int32_t num_heads = 0;
  std::int32_t num_kv_heads = 0;
  std::int32_t head_dim = 0;    // 64, 128 or 256
  std::int32_t block_size = 0;  // a power of two, 8 ... 128
  float scale = 0.0f;           // softmax scale, normally 1 / sqrt(head_dim)
  // Host-side upper bounds over the batch, used only to size grids (never read from the
  // device, so a padded batch can be captured in a CUDA graph).
  std::int32_t max_query_len = 0;
  std::int32_t max_context_len = 0;
  // Decode only: how many CTAs share one sequence's context (split-K). 0 chooses
  // automatically (paged_attention_num_splits, lowered to what the workspace holds); a
  // captured graph should pass a fixed value. Ignored by the prefill path.
  std::int32_t num_splits = 0;
  // Split-K partials: paged_attention_workspace_bytes(num_tokens, num_heads, head_dim, splits)
  // bytes, 16-byte aligned. Unused (may be null) when the decode runs with one split. The
  // prefill path uses it for split-KV when it holds at least 2 splits for num_tokens (see
  // paged_attention_prefill_workspace_bytes), else runs unsplit.
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  std::int32_t num_sms = 0;  // for the split heuristics; 0 asks the current device
  // Prefill only: split-KV count. 0 chooses automatically (paged_attention_prefill_num_splits),
  // 1 disables, > 1 asks for that many (at most 256). Either way it is lowered to what the
  // workspace holds (16-byte aligned, workspace_bytes / paged_attention_workspace_bytes(
  // num_tokens, num_heads, head_dim, 1) splits), down to unsplit: never an error.
  std::int32_t prefill_num_splits = 0;
};

// Workspace for `num_splits` splits of num_tokens rows (0 when num_splits <= 1); the same
// layout serves decode and prefill splits.
std::size_t paged_attention_workspace_bytes(std::int32_t num_tokens, std::int32_t num_heads,
                                            std::int32_t head_dim, std::int32_t num_splits);

// The automatic decode split count: enough CTAs (num_seqs * num_kv_heads * splits) for about
// two waves over `num_sms`, at most 32 splits, each split at least ~256 positions.
std::int32_t paged_attention_num_splits(std::int32_t num_seqs, std::int32_t num_kv_heads,
                                        std::int32_t max_context_len, std::int32_t num_sms);

// The automatic prefill split-KV count (1: unsplit). Splits only when the prefill grid
// (num_seqs * ceil(max_query_len * group / 64) * num_kv_heads CTAs, from the host bounds) is
// below `num_sms` and max_context_len >= 2 * max_query_len (a cached prefix at least as long
// as the new tokens); then floor(2 * num_sms / CTAs) splits, at most max_context_len / 256
// and 32. max_query_len <= 1 (decode) gives 1.
std::int32_t paged_attention_prefill_num_splits(std::int32_t num_seqs, std::int32_t num_heads,
                                                std::int32_t num_kv_heads,
                                                std::int32_t max_query_len,
                                                std::int32_t max_context_len, std::int32_t num_sms);

// A workspace size (independent of the batch) that holds every automatic prefill split for
// this head_dim and SM count, as long as num_tokens <= num_seqs * max_query_len: since
// splits * CTAs <= 2 * num_sms and each CTA covers 64 (token, head) rows, this is
// 2 * num_sms * 64 * (head_dim + 1) * 4 bytes (8.7 MB for head_dim 128 on 132 SMs). A backend
// that wants split prefill allocates max(this, its decode workspace); a smaller workspace
// just lowers or disables the prefill split. Pass the same num_sms as in the params.
std::size_t paged_attention_prefill_workspace_bytes(std::int32_t head_dim, std::int32_t num_sms);

// The prefill split count paged_attention would use for `p` (1 for decode params or no
// split), after the workspace and alignment checks; for tests and benchmarks.
std::int32_t paged_attention_prefill_splits_used(const PagedAttentionParams& p);

// Launches the decode path when max_query_len == 1, else the prefill path. Returns
// cudaErrorInvalidValue (launching nothing) for an unsupported dtype / head_dim / block_size,
// num_heads not a multiple of num_kv_heads, or an explicit num_splits > 1 whose workspace is
// too small; otherwise cudaGetLastError() after the launches. The prefill split never fails
// (a too small or misaligned workspace just means fewer splits or none).
cudaError_t paged_attention(const PagedAttentionParams& p, cudaStream_t stream);

}  // namespace cachet::kernels

// The model fingerprint that keys the prefix cache's disk tier: everything the bits of a KV
// block depend on besides its tokens and salt, so that a directory of blocks written for
// another model, dtype, block size or K/V format is never read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "kv/block_hash.h"

namespace cachet::engine {

struct KvFingerprint {
  kv::BlockHash hash;  // XXH3-128 of `json`
  std::string json;    // the inputs, one JSON object (written beside the records, for people)
};

// Covers: the disk record format version and cachet's version; the block size; the backend's
// K/V format (Backend::kv_format: dtype, kernels, GPU architecture); the host's byte order;
// config.json, tokenizer.json and model.safetensors.index.json by their contents; and every
// *.safetensors file of `model_dir` by its name, size, modification time and header (the
// tensors' names, dtypes, shapes and offsets), not its data: hashing gigabytes of weights
// would cost seconds at every start, and a file rewritten in place keeps neither its mtime
// nor, usually, its header. Throws Error(kInvalidModel) naming a file it cannot read.
KvFingerprint kv_fingerprint(const std::filesystem::path& model_dir, std::int32_t block_size,
                             std::string_view kv_format);

}  // namespace cachet::engine

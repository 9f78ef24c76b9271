// safetensors files: memory-mapped reading (single file or sharded with
// model.safetensors.index.json) and writing.
//
// File layout: u64 little-endian header size N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data; offsets are relative to the end of the header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/dtype.h"

namespace cachet::model {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;  // inside the mapping; no alignment guarantee
  std::string file;                 // the file it came from, for messages

  std::int64_t numel() const;
};

// How a weight file's bytes are held: mapped from the file (the page cache is the only copy;
// the file must not be truncated or rewritten while mapped), or read into memory of the
// process's own (a model file changed later cannot affect it; costs the read and the memory).
enum class WeightLoading { kMap, kRead };

// One memory-mapped .safetensors file. Validation at open: the file is long enough for
// the header, the header is a JSON object, every entry has a known dtype, a shape of
// non-negative ints and data_offsets in range, size = numel * dtype size, and no two
// tensors overlap. Throws cachet::Error naming the file (and the tensor).
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path,
                                               WeightLoading mode = WeightLoading::kMap);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* mapping_ = nullptr;
  std::size_t mapping_size_ = 0;
  std::map<std::string, TensorView> tensors_;
};

// All tensors of a model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file). Throws
// cachet::Error for a missing file, an index that is not JSON or names a missing shard,
// a tensor listed in the index but absent from its shard (or present in another), and a
// tensor name present twice.
class WeightStore {
 public:
  static WeightStore open(const std::filesystem::path& model_dir,
                          WeightLoading mode = WeightLoading::kMap);

  const TensorView* find(const std::string& name) const;
  const std::map<std::string, const TensorView*>& tensors() const { return index_; }
  // The files opened, for messages that say where a tensor was looked for.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// A tensor to write: fp32 values stored as `dtype`.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

// Writes one .safetensors file (tensors sorted by name, 8-byte aligned data).
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace cachet::model

// WeightStore: the tensors of a model directory, from one file or index-listed shards.
#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cachet/errors.h"
#include "model/safetensors.h"
#include "util/json_depth.h"

namespace cachet::model {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

[[noreturn]] void fail(ErrorCode code, const fs::path& file, const std::string& what) {
  throw Error(code, fmt::format("{}: {}", file.string(), what));
}

Json read_index(const fs::path& index_path) {
  std::error_code ec;
  // A FIFO would block the read forever, a directory reads as empty text.
  if (!fs::is_regular_file(index_path, ec))
    fail(ErrorCode::kInvalidModel, index_path, "not a regular file");
  std::ifstream in(index_path, std::ios::binary);
  if (!in.is_open()) fail(ErrorCode::kInvalidModel, index_path, "cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  if (util::json_nests_too_deep(text.str())) {
    fail(ErrorCode::kInvalidModel, index_path,
         fmt::format("JSON nested deeper than {} levels", util::kMaxJsonDepth));
  }
  try {
    return Json::parse(text.str());
  } catch (const Json::exception& e) {
    fail(ErrorCode::kInvalidModel, index_path, fmt::format("not valid JSON: {}", e.what()));
  }
}

// The shard name as a normalized path inside the model directory.
fs::path shard_path(const fs::path& index_path, const std::string& tensor,
                    const std::string& shard) {
  const fs::path relative = fs::path(shard).lexically_normal();
  const bool escapes = relative.empty() || relative.is_absolute() || relative.has_root_name() ||
                       *relative.begin() == ".." || relative == ".";
  if (escapes) {
    fail(ErrorCode::kInvalidModel, index_path,
         fmt::format("tensor '{}' names shard '{}', which is not a file inside the model directory",
                     tensor, shard));
  }
  return relative;
}

}  // namespace

const TensorView* WeightStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

WeightStore WeightStore::open(const fs::path& model_dir, WeightLoading mode) {
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) {
    fail(ErrorCode::kNotFound, model_dir,
         fs::exists(model_dir, ec) ? "not a directory (expected a model directory)"
                                   : "model directory does not exist");
  }
  WeightStore store;
  const fs::path index_path = model_dir / kIndexName;
  const fs::path single_path = model_dir / kSingleName;

  // Shard (relative, normalized) -> the tensors the index places in it.
  std::map<fs::path, std::vector<std::string>> listed;
  if (fs::exists(index_path, ec)) {
    const Json index = read_index(index_path);
    if (!index.is_object()) fail(ErrorCode::kInvalidModel, index_path, "not a JSON object");
    auto map_it = index.find("weight_map");
    if (map_it == index.end() || !map_it->is_object()) {
      fail(ErrorCode::kInvalidModel, index_path,
           "field 'weight_map' is missing or not an object of tensor name -> shard file");
    }
    for (const auto& [tensor, shard] : map_it->items()) {
      if (!shard.is_string()) {
        fail(ErrorCode::kInvalidModel, index_path,
             fmt::format("field 'weight_map' gives tensor '{}' a {} instead of a shard file name",
                         tensor, shard.type_name()));
      }
      listed[shard_path(index_path, tensor, shard.get<std::string>())].push_back(tensor);
    }
    for (const auto& [shard, tensors] : listed) {
      const fs::path path = model_dir / shard;
      if (!fs::is_regular_file(path, ec)) {
        fail(ErrorCode::kNotFound, index_path,
             fmt::format("shard '{}' (listed for tensor '{}'{}) does not exist in {}",
                         shard.string(), tensors.front(),
                         tensors.size() > 1 ? fmt::format(" and {} more", tensors.size() - 1) : "",
                         model_dir.string()));
      }
      store.files_.push_back(SafetensorsFile::open(path, mode));
    }
  } else if (fs::exists(single_path, ec)) {
    store.files_.push_back(SafetensorsFile::open(single_path, mode));
  } else {
    fail(ErrorCode::kNotFound, model_dir,
         fmt::format("no {} or {} in {}", kSingleName, kIndexName, model_dir.string()));
  }

  // Shards may hold tensors the index does not list (transformers loads them too), but no
  // name may appear twice.
  for (const auto& file : store.files_) {
    for (const auto& [name, view] : file->tensors()) {
      auto [it, inserted] = store.index_.emplace(name, &view);
      if (!inserted) {
        fail(ErrorCode::kInvalidModel, file->path(),
             fmt::format("tensor '{}' is also in {} (a tensor name may appear in one shard only)",
                         name, it->second->file));
      }
    }
  }
  std::size_t shard_index = 0;
  for (const auto& [shard, tensors] : listed) {
    const SafetensorsFile& file = *store.files_[shard_index++];
    for (const std::string& tensor : tensors) {
      if (file.tensors().contains(tensor)) continue;
      const TensorView* elsewhere = store.find(tensor);
      fail(ErrorCode::kInvalidModel, index_path,
           fmt::format("tensor '{}' is listed in shard '{}', but that shard does not contain it{}",
                       tensor, shard.string(),
                       elsewhere ? fmt::format(" (it is in {})", elsewhere->file) : ""));
    }
  }
  return store;
}

}  // namespace cachet::model

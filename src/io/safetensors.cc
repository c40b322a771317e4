#include "io/safetensors.h"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "core/interleaved.h"
#include "hymba/error.h"
#include "io/json.h"
#include "io/text_file.h"

namespace hymba {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the safetensors format's own limit

// Element sizes of every dtype the safetensors format defines, so that headers
// of files holding types this engine does not compute with still validate.
std::optional<int64_t> ElementBytes(const std::string& dtype) {
  static const std::map<std::string, int64_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
      {"I64", 8},  {"U64", 8}, {"F64", 8}};
  auto it = kSizes.find(dtype);
  if (it == kSizes.end()) return std::nullopt;
  return it->second;
}

constexpr size_t kMaxDims = 8;  // torch allows 64; no checkpoint tensor has more than 4

int64_t CheckedNonNegative(const json& value, const std::string& what) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0) {
    throw Error(what + " must be a non-negative integer, got " + JsonExcerpt(value));
  }
  if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    throw Error(what + " is too large: " + JsonExcerpt(value));
  }
  return value.get<int64_t>();
}

}  // namespace

int64_t TensorRecord::elements() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
  const std::string where = path.string();
  const std::span<const std::byte> bytes = file_.bytes();
  if (bytes.size() < 8) {
    throw Error(where + ": truncated safetensors file: " + std::to_string(bytes.size()) +
                " bytes, less than the 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > bytes.size() - 8) {
    throw Error(where + ": header length " + std::to_string(header_len) + " exceeds the " +
                std::to_string(bytes.size() - 8) + " bytes that follow it (truncated or not a safetensors file)");
  }
  if (header_len > kMaxHeaderBytes) {
    throw Error(where + ": header length " + std::to_string(header_len) + " exceeds the 100 MiB limit");
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  const json root = ParseJson(header, where + " (header)", DuplicateKeys::kRefuse);
  if (!root.is_object()) throw Error(where + ": header is not a JSON object");

  const std::span<const std::byte> data = bytes.subspan(8 + header_len);
  struct Extent {
    int64_t begin, end;
    const std::string* name;
  };
  std::vector<Extent> extents;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") continue;
    const std::string tensor = where + ": tensor \"" + name + "\"";
    if (!entry.is_object()) throw Error(tensor + ": entry is not a JSON object");
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(key)) throw Error(tensor + ": missing \"" + key + "\"");
    }
    TensorRecord record;
    record.name = name;
    record.file = path;
    if (!entry["dtype"].is_string()) throw Error(tensor + ": dtype is not a string");
    record.dtype_name = entry["dtype"].get<std::string>();
    const std::optional<int64_t> element_bytes = ElementBytes(record.dtype_name);
    if (!element_bytes) throw Error(tensor + ": unknown dtype \"" + record.dtype_name + "\"");
    record.dtype = DTypeFromName(record.dtype_name);

    const json& shape = entry["shape"];
    if (!shape.is_array()) throw Error(tensor + ": shape is not an array");
    if (shape.size() > kMaxDims) {
      throw Error(tensor + ": shape has " + std::to_string(shape.size()) + " dimensions (at most " + std::to_string(kMaxDims) + ")");
    }
    int64_t expected_bytes = *element_bytes;
    for (const json& dim : shape) {
      const int64_t extent = CheckedNonNegative(dim, tensor + ": shape entry");
      if (extent != 0 && expected_bytes > INT64_MAX / extent) throw Error(tensor + ": shape " + JsonExcerpt(shape) + " overflows");
      expected_bytes *= extent;
      record.shape.push_back(extent);
    }

    const json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2) throw Error(tensor + ": data_offsets must be [begin, end]");
    const int64_t begin = CheckedNonNegative(offsets[0], tensor + ": data_offsets[0]");
    const int64_t end = CheckedNonNegative(offsets[1], tensor + ": data_offsets[1]");
    if (begin > end) throw Error(tensor + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] are reversed");
    if (static_cast<uint64_t>(end) > data.size()) {
      throw Error(tensor + ": data_offsets end " + std::to_string(end) + " lies outside the " +
                  std::to_string(data.size()) + "-byte data section (file truncated?)");
    }
    if (end - begin != expected_bytes) {
      throw Error(tensor + ": " + std::to_string(end - begin) + " data bytes do not match dtype " + record.dtype_name +
                  " and shape " + JsonExcerpt(shape) + " (" + std::to_string(expected_bytes) + " bytes)");
    }
    record.data = data.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
    auto [it, inserted] = tensors_.emplace(name, std::move(record));
    extents.push_back({begin, end, &it->first});
  }

  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < extents.size(); ++i) {
    if (extents[i].begin < extents[i - 1].end) {
      throw Error(where + ": tensors \"" + *extents[i - 1].name + "\" and \"" + *extents[i].name +
                  "\" have overlapping data_offsets");
    }
  }
}

Checkpoint Checkpoint::Open(const std::filesystem::path& model_dir) {
  Checkpoint checkpoint;
  const std::filesystem::path single = model_dir / "model.safetensors";
  const std::filesystem::path index = model_dir / "model.safetensors.index.json";
  if (std::filesystem::exists(single)) {
    checkpoint.files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& [name, record] : checkpoint.files_.back()->tensors()) checkpoint.tensors_[name] = &record;
    return checkpoint;
  }
  if (!std::filesystem::exists(index)) {
    throw Error(model_dir.string() + ": no model.safetensors or model.safetensors.index.json");
  }
  const json root = ParseJson(ReadSmallFile(index), index.string(), DuplicateKeys::kRefuse);
  if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object()) {
    throw Error(index.string() + ": missing object \"weight_map\"");
  }
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [name, shard] : root["weight_map"].items()) {
    if (!shard.is_string()) throw Error(index.string() + ": weight_map[\"" + name + "\"] is not a file name");
    const std::string shard_name = shard.get<std::string>();
    if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "." || shard_name == "..") {
      throw Error(index.string() + ": weight_map[\"" + name + "\"] names \"" + shard_name +
                  "\", not a file in the model directory");
    }
    auto it = shards.find(shard_name);
    if (it == shards.end()) {
      checkpoint.files_.push_back(std::make_unique<SafetensorsFile>(model_dir / shard_name));
      it = shards.emplace(shard_name, checkpoint.files_.back().get()).first;
    }
    auto tensor = it->second->tensors().find(name);
    if (tensor == it->second->tensors().end()) {
      throw Error(index.string() + ": tensor \"" + name + "\" is listed in weight_map but absent from " + shard_name);
    }
    checkpoint.tensors_[name] = &tensor->second;
  }
  return checkpoint;
}

void SafetensorsFile::InterleaveMatrices(bool bf16_products) {
  file_.Rewrite([&](std::span<std::byte> bytes) {
    for (auto& [name, record] : tensors_) {
      if (record.layout != Layout::kRowMajor || !record.dtype || record.shape.size() != 2) continue;
      const auto offset = static_cast<size_t>(record.data.data() - file_.bytes().data());
      const Layout layout = LoadedLayout(*record.dtype, bf16_products);
      InterleaveRows(*record.dtype, layout, static_cast<size_t>(record.shape[0]), static_cast<size_t>(record.shape[1]),
                     bytes.subspan(offset, record.data.size()));
      record.layout = layout;
    }
  });
}

void Checkpoint::InterleaveMatrices(bool bf16_products) {
  for (const auto& file : files_) file->InterleaveMatrices(bf16_products);
  if (gguf_) {
    gguf_->InterleaveMatrices(bf16_products);
    for (size_t i = 0; i < gguf_records_.size(); ++i) gguf_records_[i]->layout = gguf_->tensors()[i].layout;
  }
}

const TensorRecord* Checkpoint::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

Checkpoint Checkpoint::FromGguf(std::unique_ptr<GgufFile> file) {
  Checkpoint checkpoint;
  for (const GgufTensor& tensor : file->tensors()) {
    auto record = std::make_unique<TensorRecord>();
    record->name = tensor.name;
    record->dtype = DTypeFromGgml(tensor.ggml_type);  // the reader accepts no other types
    record->dtype_name = std::string(DTypeName(*record->dtype));
    record->shape.assign(tensor.dims.rbegin(), tensor.dims.rend());  // GGUF lists the contiguous dimension first
    record->data = tensor.data;
    record->layout = tensor.layout;
    record->file = file->path();
    checkpoint.tensors_[record->name] = record.get();
    checkpoint.gguf_records_.push_back(std::move(record));
  }
  checkpoint.gguf_ = std::move(file);
  return checkpoint;
}

std::vector<std::filesystem::path> Checkpoint::paths() const {
  std::vector<std::filesystem::path> paths;
  for (const auto& file : files_) paths.push_back(file->path());
  if (gguf_) paths.push_back(gguf_->path());
  return paths;
}

}  // namespace hymba

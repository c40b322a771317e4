// GGUF v3 (the file format of llama.cpp and Ollama): reader and writer.
//
// The reader maps the file and checks every count, length, type, shape and
// offset against the file before it exposes anything, so a truncated, corrupt
// or hostile file is refused with an error naming the file and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/interleaved.h"
#include "io/mapped_file.h"

namespace hymba {

enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

// One metadata value. Numbers, booleans, strings and arrays of them are held
// as JSON; a uint8 array (e.g. a SentencePiece model) as raw bytes.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint32;
  GgufValueType element_type = GgufValueType::kUint8;  // arrays only
  nlohmann::json value;
  std::string bytes;  // uint8 arrays only

  static GgufValue String(std::string text);
  static GgufValue Uint32(uint32_t number);
  static GgufValue Float64(double number);
  static GgufValue Bool(bool flag);
  static GgufValue Bytes(std::string data);
};

// ggml's type numbers for the tensor types this engine reads and writes.
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kBF16 = 30 };
std::optional<DType> DTypeFromGgml(uint32_t ggml_type);
GgmlType GgmlFromDType(DType type);

struct GgufTensor {
  std::string name;
  uint32_t ggml_type = 0;
  std::vector<int64_t> dims;  // GGUF order: dims[0] is the contiguous (column) dimension
  std::span<const std::byte> data;
  Layout layout = Layout::kRowMajor;  // rewritten by InterleaveMatrices
};

class GgufFile {
 public:
  static bool HasMagic(const std::filesystem::path& path);  // starts with "GGUF"
  // kLoad for weights (see FileAccess); kMap to read metadata only.
  explicit GgufFile(const std::filesystem::path& path, FileAccess access = FileAccess::kLoad);

  const std::filesystem::path& path() const { return file_.path(); }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  // Rewrites every 2-D tensor, in place, into the layout the matrix kernels
  // read (core/interleaved.h), bf16 ones for bf16 products if asked. The
  // file must have been loaded (kLoad).
  void InterleaveMatrices(bool bf16_products);

  // Typed access; a missing key or another type is an error naming the key.
  const GgufValue& Get(const std::string& key) const;
  std::string GetString(const std::string& key) const;

 private:
  MappedFile file_;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
};

// Collects metadata and tensors, then writes them in one pass. Tensor data is
// produced on demand by a callback, so a converter never holds the whole model.
class GgufWriter {
 public:
  void Set(const std::string& key, GgufValue value);
  void AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> dims,
                 std::function<void(std::span<std::byte>)> fill);
  // Writes to a temporary file beside `path` and renames it into place, so a
  // failed write never leaves a partial file or replaces an existing one.
  // progress(done, total) is called after each tensor.
  void Write(const std::filesystem::path& path, const std::function<void(size_t, size_t)>& progress = {}) const;

 private:
  struct PendingTensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> dims;
    size_t bytes;
    std::function<void(std::span<std::byte>)> fill;
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
};

constexpr size_t kGgufAlignment = 32;

}  // namespace hymba

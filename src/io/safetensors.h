// Reader for safetensors files and sharded checkpoints. Every offset and size
// in a header is checked against the file before any tensor is exposed, so a
// hostile or truncated file is refused with an error naming file and tensor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/interleaved.h"
#include "io/gguf.h"
#include "io/mapped_file.h"

namespace hymba {

struct TensorRecord {
  std::string name;
  std::string dtype_name;      // as written in the header, e.g. "BF16"
  std::optional<DType> dtype;  // nullopt: a valid safetensors type this engine cannot compute with
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
  std::filesystem::path file;
  Layout layout = Layout::kRowMajor;  // core/interleaved.h

  int64_t elements() const;
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  const std::map<std::string, TensorRecord>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return file_.path(); }
  size_t size_bytes() const { return file_.bytes().size(); }
  // Rewrites every 2-D tensor of a type the engine computes with, in place,
  // into the layout the matrix kernels read (core/interleaved.h), bf16 ones
  // for bf16 products if asked.
  void InterleaveMatrices(bool bf16_products);

 private:
  MappedFile file_;
  std::map<std::string, TensorRecord> tensors_;
};

// The weights of a model: a Hugging Face directory (model.safetensors, or the
// shards listed in model.safetensors.index.json) or a GGUF file, exposed the
// same way (HF tensor names, HF shapes [rows, cols]).
class Checkpoint {
 public:
  static Checkpoint Open(const std::filesystem::path& model_dir);
  static Checkpoint FromGguf(std::unique_ptr<GgufFile> file);

  const TensorRecord* Find(const std::string& name) const;
  const std::map<std::string, const TensorRecord*>& tensors() const { return tensors_; }
  // Shards are owned through unique_ptr so TensorRecord pointers stay valid on move.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  std::vector<std::filesystem::path> paths() const;
  const GgufFile* gguf() const { return gguf_.get(); }
  // Every 2-D tensor into the layout the matrix kernels read, as a model
  // holds its weights (conversion reads them as the files store them).
  void InterleaveMatrices(bool bf16_products);

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unique_ptr<GgufFile> gguf_;
  std::vector<std::unique_ptr<TensorRecord>> gguf_records_;
  std::map<std::string, const TensorRecord*> tensors_;
};

}  // namespace hymba

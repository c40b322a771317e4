// A loaded Hymba checkpoint: config plus memory-mapped weights.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "hymba/config.h"

namespace hymba {

struct WeightStorage {
  int64_t tensors = 0;
  int64_t parameters = 0;
  int64_t bytes = 0;
  std::map<std::string, int64_t> bytes_by_dtype;  // "BF16" -> bytes
  std::vector<std::filesystem::path> files;
  std::vector<std::string> unused_tensors;
  bool separate_lm_head = false;  // an untied lm_head.weight is used  // present in the files, not read by this config
};

class Model {
 public:
  // Loads config.json and model.safetensors (or the shards named by
  // model.safetensors.index.json) from a Hugging Face model directory.
  static Model Load(const std::filesystem::path& model_dir);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const Config& config() const;
  const WeightStorage& storage() const;

  // Logits at every text position for exactly these token ids; the meta tokens
  // are prepended internally. Row-major [tokens.size(), vocab_size].
  std::vector<float> Logits(std::span<const int32_t> tokens) const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hymba

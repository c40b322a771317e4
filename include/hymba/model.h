// A loaded Hymba checkpoint: config plus memory-mapped weights.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hymba/config.h"

namespace hymba {

struct WeightStorage {
  int64_t tensors = 0;
  int64_t parameters = 0;
  int64_t bytes = 0;
  std::map<std::string, int64_t> bytes_by_dtype;  // "BF16" -> bytes
  // The storage type holding most of the bytes, e.g. "BF16" or "Q4_0".
  std::string main_dtype() const {
    std::string best;
    int64_t most = -1;
    for (const auto& [dtype, count] : bytes_by_dtype) {
      if (count > most) best = dtype, most = count;
    }
    return best;
  }
  std::vector<std::filesystem::path> files;
  std::vector<std::string> unused_tensors;  // present in the files, not read by this config
  bool separate_lm_head = false;            // an untied lm_head.weight is used
};

// How products with f32/f16/bf16 weights are computed. kF32 (the default)
// meets spec E9; kBF16 rounds the activations to bf16 for bf16 weights, as
// llama.cpp does, for twice the prompt speed on CPUs with AVX-512 BF16, at a
// cost measured like a quantized type's (KL divergence, top-1 agreement; see
// README). q8_0 and q4_0 weights always multiply 8-bit activations.
enum class ComputeType { kF32, kBF16 };
std::string_view ComputeTypeName(ComputeType type);  // "f32", "bf16"

// How a sequence stores attention keys and values. kF32 (the default) meets
// spec E1 and E9; kF16 rounds each key and value to f16 once, as llama.cpp's
// default cache does, halving the cache and the bytes a decode step reads at
// depth; kQ8 stores each position's key and value of a K/V head as int8 with
// one f32 scale, about a quarter of f32. Both cost what a quantized type
// costs, measured the same way (README).
enum class CacheType { kF32, kF16, kQ8 };
std::string_view CacheTypeName(CacheType type);  // "f32", "f16", "q8"

// The numeric choices a model is loaded with; the defaults meet spec E9.
struct Numerics {
  ComputeType compute = ComputeType::kF32;
  CacheType cache = CacheType::kF32;
};

struct SequenceState;

// One sequence's state: K/V of the KV-owning layers, conv and SSM state. Its
// memory stops growing once the sliding windows are full, except for the
// layers that keep their full history.
class Sequence {
 public:
  Sequence(Sequence&&) noexcept;
  Sequence& operator=(Sequence&&) noexcept;
  ~Sequence();

  int64_t positions() const;  // meta tokens included
  // The state's bytes as `hymba info` accounts them: K/V entries in use,
  // conv and SSM state. It holds K/V in blocks of 256 positions per
  // KV-owning layer, so held_bytes() (what a budget must count) exceeds
  // bytes() by less than one block per such layer.
  size_t bytes() const;
  size_t held_bytes() const;
  Sequence Clone() const;     // an independent copy, to continue two ways

 private:
  friend class Model;
  explicit Sequence(std::unique_ptr<SequenceState> state);
  std::unique_ptr<SequenceState> state_;
};

// How `Model::Logits` feeds the tokens (E5): all positions, meta tokens
// included, in one pass; or from the precomputed meta prefix (E4) in chunks.
enum class LogitsMode { kFull, kChunked, kIncremental };

// A Model computes on its own thread pool, one call at a time: Append,
// AppendBatch and Logits from several threads take turns (a server batches
// requests into AppendBatch instead). Sequences are independent objects; one
// sequence must not be advanced from two threads at once.
class Model {
 public:
  // Loads a Hugging Face model directory (config.json and model.safetensors,
  // or the shards named by model.safetensors.index.json) or a GGUF file
  // written by `hymba convert`. `threads` computes with that many threads, 0
  // with one per core.
  static Model Load(const std::filesystem::path& path, size_t threads = 0, Numerics numerics = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const Config& config() const;
  size_t threads() const;
  const WeightStorage& storage() const;
  const Numerics& numerics() const;
  // The main weight type, with the compute and cache types that are not f32:
  // "Q4_0", "BF16 (bf16 compute)", "Q4_0 (f16 cache)".
  std::string type_label() const;

  // A new sequence positioned after the meta tokens, whose state is computed
  // once per model and copied (E4).
  Sequence NewSequence() const;

  // Appends tokens to a sequence (E5). Returns the logits of every appended
  // token ([tokens.size(), vocab_size]) or, by default, of the last one only.
  std::vector<float> Append(Sequence& sequence, std::span<const int32_t> tokens, bool all_logits = false) const;

  // Advances several sequences in one step, reading each weight once for the
  // whole batch. Returns the last-token logits of each item ([vocab_size] each).
  struct BatchItem {
    Sequence* sequence;
    std::span<const int32_t> tokens;
  };
  std::vector<std::vector<float>> AppendBatch(std::span<const BatchItem> items) const;

  // Logits at every text position for exactly these token ids, with the meta
  // tokens prepended. Row-major [tokens.size(), vocab_size].
  std::vector<float> Logits(std::span<const int32_t> tokens, LogitsMode mode = LogitsMode::kFull,
                            size_t chunk = 7) const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hymba

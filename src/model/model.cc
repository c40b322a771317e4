#include "hymba/model.h"

#include <algorithm>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "hymba/error.h"
#include "io/safetensors.h"
#include "io/text_file.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/forward.h"
#include "model/gguf_model.h"
#include "model/weights.h"

namespace hymba {

struct Model::Impl {
  Config config;
  Checkpoint checkpoint;
  Weights weights;
  WeightStorage storage;
  Numerics numerics;
  std::vector<float> inv_freq;
  std::unique_ptr<ThreadPool> pool;
  // The pool runs one computation at a time: callers on other threads wait.
  mutable std::mutex compute;
  // State after the meta tokens, computed on first use (E4).
  mutable std::once_flag prefix_once;
  mutable std::optional<SequenceState> prefix;

  ForwardContext Context() const { return {config, weights, inv_freq, *pool}; }

  void CheckTokens(std::span<const int32_t> tokens, int64_t start_position) const {
    if (tokens.empty()) throw Error("no tokens given: the token list is empty");
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= config.vocab_size) {
        throw Error("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                    " is outside the vocabulary (vocab_size " + std::to_string(config.vocab_size) + ")");
      }
    }
    const auto end = start_position + static_cast<int64_t>(tokens.size());
    if (end > config.max_position_embeddings) {
      throw Error("context limit: " + std::to_string(end - config.num_memory_tokens) + " tokens plus " +
                  std::to_string(config.num_memory_tokens) + " meta tokens exceed max_position_embeddings (" +
                  std::to_string(config.max_position_embeddings) + ")");
    }
  }

  // Embedding rows of `tokens` appended to x [rows, hidden].
  void Embed(std::span<const int32_t> tokens, std::vector<float>& x) const {
    const auto hidden = static_cast<size_t>(config.hidden_size);
    const size_t first = x.size() / hidden;
    x.resize((first + tokens.size()) * hidden);
    for (size_t i = 0; i < tokens.size(); ++i) {
      weights.embed_tokens.DecodeRow(static_cast<size_t>(tokens[i]), {&x[(first + i) * hidden], hidden});
    }
  }

  void EmbedMeta(std::vector<float>& x) const {
    const auto hidden = static_cast<size_t>(config.hidden_size);
    const auto meta = static_cast<size_t>(config.num_memory_tokens);
    x.resize(meta * hidden);
    for (size_t m = 0; m < meta; ++m) weights.memory_tokens.DecodeRow(m, {&x[m * hidden], hidden});
  }

  const SequenceState& Prefix() const {
    std::call_once(prefix_once, [&] {
      SequenceState state(config, numerics.cache);
      const std::lock_guard lock(compute);
      if (config.num_memory_tokens > 0) {
        std::vector<float> x;
        EmbedMeta(x);
        const Segment segment{&state, 0, static_cast<size_t>(config.num_memory_tokens)};
        Forward(Context(), {&segment, 1}, x);
      }
      prefix.emplace(std::move(state));
    });
    return *prefix;
  }

  // Logits of rows [first_row, first_row + count) of the final hidden states x.
  std::vector<float> Head(const std::vector<float>& x, size_t first_row, size_t count) const {
    std::vector<float> logits(count * static_cast<size_t>(config.vocab_size));  // [count, vocab]
    MatMul(weights.lm_head, &x[first_row * static_cast<size_t>(config.hidden_size)], count, logits.data(), *pool);
    return logits;
  }
};

Sequence::Sequence(std::unique_ptr<SequenceState> state) : state_(std::move(state)) {}
Sequence::Sequence(Sequence&&) noexcept = default;
Sequence& Sequence::operator=(Sequence&&) noexcept = default;
Sequence::~Sequence() = default;
int64_t Sequence::positions() const { return state_->positions; }
size_t Sequence::bytes() const { return state_->bytes(); }
size_t Sequence::held_bytes() const { return state_->bytes(/*held=*/true); }
Sequence Sequence::Clone() const { return Sequence(std::make_unique<SequenceState>(*state_)); }

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

std::string_view ComputeTypeName(ComputeType type) { return type == ComputeType::kBF16 ? "bf16" : "f32"; }
std::string_view CacheTypeName(CacheType type) {
  switch (type) {
    case CacheType::kF16: return "f16";
    case CacheType::kQ8: return "q8";
    case CacheType::kF32: break;
  }
  return "f32";
}

Model Model::Load(const std::filesystem::path& path, size_t threads, Numerics numerics) {
  if (!std::filesystem::exists(path)) throw Error("model " + path.string() + " does not exist");
  auto impl = std::make_unique<Impl>();
  if (std::filesystem::is_directory(path)) {
    const std::filesystem::path config_path = path / "config.json";
    if (!std::filesystem::exists(config_path)) throw Error(path.string() + ": missing config.json");
    impl->config = LoadConfig(config_path);
    if (const std::filesystem::path generation = path / "generation_config.json"; std::filesystem::exists(generation)) {
      ApplyGenerationConfig(impl->config, ReadSmallFile(generation), generation.string());
    }
    impl->checkpoint = Checkpoint::Open(path);
  } else {
    std::unique_ptr<GgufFile> file = OpenModelGguf(path);
    impl->config = ConfigFromGguf(*file);
    impl->checkpoint = Checkpoint::FromGguf(std::move(file));
  }
  impl->checkpoint.InterleaveMatrices(numerics.compute == ComputeType::kBF16);
  impl->weights = BindWeights(impl->config, impl->checkpoint);
  impl->numerics = numerics;
  impl->inv_freq = RopeInverseFrequencies(impl->config);
  impl->pool = std::make_unique<ThreadPool>(threads);

  WeightStorage& storage = impl->storage;
  for (const auto& [name, record] : impl->checkpoint.tensors()) {
    storage.tensors += 1;
    storage.parameters += record->elements();
    storage.bytes += static_cast<int64_t>(record->data.size());
    storage.bytes_by_dtype[record->dtype_name] += static_cast<int64_t>(record->data.size());
  }
  storage.files = impl->checkpoint.paths();
  storage.unused_tensors = impl->weights.unused_tensors;
  storage.separate_lm_head = impl->weights.lm_head.data != impl->weights.embed_tokens.data;
  return Model(std::move(impl));
}

const Config& Model::config() const { return impl_->config; }
size_t Model::threads() const { return impl_->pool->size(); }
const WeightStorage& Model::storage() const { return impl_->storage; }
const Numerics& Model::numerics() const { return impl_->numerics; }
std::string Model::type_label() const {
  std::vector<std::string> choices;
  if (impl_->numerics.compute != ComputeType::kF32) {
    choices.push_back(std::string(ComputeTypeName(impl_->numerics.compute)) + " compute");
  }
  if (impl_->numerics.cache != CacheType::kF32) {
    choices.push_back(std::string(CacheTypeName(impl_->numerics.cache)) + " cache");
  }
  std::string label = impl_->storage.main_dtype();
  for (size_t i = 0; i < choices.size(); ++i) label += (i == 0 ? " (" : ", ") + choices[i];
  return choices.empty() ? label : label + ")";
}

Sequence Model::NewSequence() const { return Sequence(std::make_unique<SequenceState>(impl_->Prefix())); }

std::vector<float> Model::Append(Sequence& sequence, std::span<const int32_t> tokens, bool all_logits) const {
  impl_->CheckTokens(tokens, sequence.positions());
  const std::lock_guard lock(impl_->compute);
  std::vector<float> x;  // [tokens, hidden]
  impl_->Embed(tokens, x);
  const Segment segment{sequence.state_.get(), 0, tokens.size()};
  Forward(impl_->Context(), {&segment, 1}, x);
  return all_logits ? impl_->Head(x, 0, tokens.size()) : impl_->Head(x, tokens.size() - 1, 1);
}

std::vector<std::vector<float>> Model::AppendBatch(std::span<const BatchItem> items) const {
  std::vector<float> x;  // [all tokens of all items, hidden]
  std::vector<Segment> segments;
  for (const BatchItem& item : items) {
    for (const Segment& other : segments) {
      if (other.state == item.sequence->state_.get()) throw Error("a batch names the same sequence twice");
    }
    impl_->CheckTokens(item.tokens, item.sequence->positions());
    segments.push_back({item.sequence->state_.get(), x.size() / static_cast<size_t>(impl_->config.hidden_size),
                        item.tokens.size()});
    impl_->Embed(item.tokens, x);
  }
  if (segments.empty()) return {};
  const std::lock_guard lock(impl_->compute);
  Forward(impl_->Context(), segments, x);
  // Every sequence's last row in one product, so a step reads the head's
  // weights once, not once per sequence (eight streams had read a bf16
  // head's 102 MB eight times).
  const auto hidden = static_cast<size_t>(impl_->config.hidden_size);
  const auto vocab = static_cast<size_t>(impl_->config.vocab_size);
  std::vector<float> last_rows(segments.size() * hidden);
  for (size_t i = 0; i < segments.size(); ++i) {
    std::copy_n(&x[(segments[i].first_row + segments[i].rows - 1) * hidden], hidden, &last_rows[i * hidden]);
  }
  const std::vector<float> all = impl_->Head(last_rows, 0, segments.size());
  std::vector<std::vector<float>> logits;
  for (size_t i = 0; i < segments.size(); ++i) logits.emplace_back(all.begin() + i * vocab, all.begin() + (i + 1) * vocab);
  return logits;
}

std::vector<float> Model::Logits(std::span<const int32_t> tokens, LogitsMode mode, size_t chunk) const {
  const Config& c = impl_->config;
  impl_->CheckTokens(tokens, c.num_memory_tokens);
  if (mode == LogitsMode::kFull) {
    // One pass over meta tokens and text from an empty state: the computation
    // the chunked modes must reproduce.
    std::vector<float> x;  // [meta + tokens, hidden]
    impl_->EmbedMeta(x);
    impl_->Embed(tokens, x);
    SequenceState state(c, impl_->numerics.cache);
    const auto meta = static_cast<size_t>(c.num_memory_tokens);
    const Segment segment{&state, 0, meta + tokens.size()};
    const std::lock_guard lock(impl_->compute);
    Forward(impl_->Context(), {&segment, 1}, x);
    return impl_->Head(x, meta, tokens.size());
  }
  if (mode == LogitsMode::kIncremental) chunk = 1;
  if (chunk == 0) throw Error("--chunk must be at least 1");
  Sequence sequence = NewSequence();
  std::vector<float> logits;
  for (size_t first = 0; first < tokens.size(); first += chunk) {
    const std::vector<float> part = Append(sequence, tokens.subspan(first, std::min(chunk, tokens.size() - first)), true);
    logits.insert(logits.end(), part.begin(), part.end());
  }
  return logits;
}

}  // namespace hymba

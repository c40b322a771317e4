#include "hymba/model.h"

#include "hymba/error.h"
#include "io/safetensors.h"
#include "kernels/ops.h"
#include "model/forward.h"
#include "model/weights.h"

namespace hymba {

struct Model::Impl {
  Config config;
  Checkpoint checkpoint;
  Weights weights;
  WeightStorage storage;
  std::vector<float> inv_freq;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::Load(const std::filesystem::path& model_dir) {
  if (!std::filesystem::exists(model_dir)) throw Error("model directory " + model_dir.string() + " does not exist");
  if (!std::filesystem::is_directory(model_dir)) {
    throw Error(model_dir.string() + " is not a directory; -m takes a Hugging Face model directory");
  }
  const std::filesystem::path config_path = model_dir / "config.json";
  if (!std::filesystem::exists(config_path)) throw Error(model_dir.string() + ": missing config.json");

  auto impl = std::make_unique<Impl>();
  impl->config = LoadConfig(config_path);
  impl->checkpoint = Checkpoint::Open(model_dir);
  impl->weights = BindWeights(impl->config, impl->checkpoint);
  impl->inv_freq = RopeInverseFrequencies(impl->config);

  WeightStorage& storage = impl->storage;
  for (const auto& [name, record] : impl->checkpoint.tensors()) {
    storage.tensors += 1;
    storage.parameters += record->elements();
    storage.bytes += static_cast<int64_t>(record->data.size());
    storage.bytes_by_dtype[record->dtype_name] += static_cast<int64_t>(record->data.size());
  }
  for (const auto& file : impl->checkpoint.files()) storage.files.push_back(file->path());
  storage.unused_tensors = impl->weights.unused_tensors;
  storage.separate_lm_head = impl->weights.lm_head.data != impl->weights.embed_tokens.data;
  return Model(std::move(impl));
}

const Config& Model::config() const { return impl_->config; }
const WeightStorage& Model::storage() const { return impl_->storage; }

std::vector<float> Model::Logits(std::span<const int32_t> tokens) const {
  const Config& c = impl_->config;
  if (tokens.empty()) throw Error("no tokens given: the token list is empty");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size) {
      throw Error("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                  " is outside the vocabulary (vocab_size " + std::to_string(c.vocab_size) + ")");
    }
  }
  const auto meta = static_cast<size_t>(c.num_memory_tokens);
  const size_t positions = meta + tokens.size();
  if (static_cast<int64_t>(positions) > c.max_position_embeddings) {
    throw Error(std::to_string(tokens.size()) + " tokens plus " + std::to_string(meta) + " meta tokens exceed " +
                "max_position_embeddings (" + std::to_string(c.max_position_embeddings) + ")");
  }

  const auto hidden = static_cast<size_t>(c.hidden_size);
  std::vector<float> x(positions * hidden);  // [meta + tokens, hidden]
  const Weights& w = impl_->weights;
  for (size_t m = 0; m < meta; ++m) w.memory_tokens.DecodeRow(m, {&x[m * hidden], hidden});
  for (size_t i = 0; i < tokens.size(); ++i) {
    w.embed_tokens.DecodeRow(static_cast<size_t>(tokens[i]), {&x[(meta + i) * hidden], hidden});
  }

  SequenceState state(c);
  Forward(ForwardContext{c, w, impl_->inv_freq}, state, x, positions);

  std::vector<float> logits(tokens.size() * static_cast<size_t>(c.vocab_size));  // [tokens, vocab]
  MatMul(w.lm_head, &x[meta * hidden], tokens.size(), logits.data());
  return logits;
}

}  // namespace hymba

#include "model/weights.h"

#include <cmath>
#include <set>

#include "hymba/error.h"
#include "kernels/scan.h"

namespace hymba {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

class Binder {
 public:
  explicit Binder(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {}

  const TensorRecord& Get(const std::string& name, const std::vector<int64_t>& shape, const std::string& why = "") {
    const TensorRecord* record = checkpoint_.Find(name);
    if (record == nullptr) throw Error("missing tensor \"" + name + "\"" + (why.empty() ? "" : " (" + why + ")"));
    if (!record->dtype) {
      throw Error(record->file.string() + ": tensor \"" + name + "\" has dtype " + record->dtype_name +
                  "; supported: F32, F16, BF16");
    }
    if (record->shape != shape) {
      throw Error(record->file.string() + ": tensor \"" + name + "\" has shape " + ShapeString(record->shape) +
                  ", expected " + ShapeString(shape) + (why.empty() ? "" : " (" + why + ")"));
    }
    used_.insert(name);
    return *record;
  }

  MatView Matrix(const std::string& name, int64_t rows, int64_t cols, const std::string& why = "") {
    const TensorRecord& record = Get(name, {rows, cols}, why);
    return MatView{*record.dtype, record.data.data(), static_cast<size_t>(rows), static_cast<size_t>(cols),
                   record.layout};
  }

  std::vector<float> Vector(const std::string& name, const std::vector<int64_t>& shape) {
    const TensorRecord& record = Get(name, shape);
    std::vector<float> values(static_cast<size_t>(record.elements()));
    if (record.layout != Layout::kRowMajor) {
      const auto rows = static_cast<size_t>(shape[0]), cols = values.size() / rows;
      const MatView matrix{*record.dtype, record.data.data(), rows, cols, record.layout};
      for (size_t r = 0; r < rows; ++r) matrix.DecodeRow(r, {&values[r * cols], cols});
      return values;
    }
    for (size_t i = 0; i < values.size(); ++i) values[i] = LoadAsF32(*record.dtype, record.data.data(), i);
    return values;
  }

  bool Has(const std::string& name) const { return checkpoint_.Find(name) != nullptr; }
  void MarkUsed(const std::string& name) { used_.insert(name); }

  std::vector<std::string> Unused() const {
    std::vector<std::string> unused;
    for (const auto& [name, record] : checkpoint_.tensors()) {
      if (!used_.contains(name)) unused.push_back(name);
    }
    return unused;
  }

 private:
  const Checkpoint& checkpoint_;
  std::set<std::string> used_;
};

LayerWeights BindLayer(const Config& c, int layer, Binder& bind) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  const int64_t hidden = c.hidden_size, d_inner = c.d_inner, d_state = c.mamba_d_state;
  const int64_t dt_rank = c.mamba_dt_rank;
  const std::string role = c.IsOwner(layer) ? "a KV-owning layer"
                                            : "a KV-consumer layer reading layer " +
                                                  std::to_string(c.layers[layer].kv_source) + "'s K/V";
  LayerWeights w;
  w.input_norm = bind.Vector(p + "input_layernorm.weight", {hidden});
  w.in_proj = bind.Matrix(p + "mamba.in_proj.weight", c.InProjRows(layer), hidden, "in_proj rows for " + role);
  if (c.mamba_proj_bias) {
    w.in_proj_bias = bind.Vector(p + "mamba.in_proj.bias", {c.InProjRows(layer)});
    w.out_proj_bias = bind.Vector(p + "mamba.out_proj.bias", {hidden});
  }
  const std::vector<float> conv_weight = bind.Vector(p + "mamba.conv1d.weight", {d_inner, 1, c.mamba_d_conv});
  const auto taps = static_cast<size_t>(c.mamba_d_conv);
  w.conv_weight.resize(conv_weight.size());
  for (size_t ch = 0; ch < static_cast<size_t>(d_inner); ++ch) {
    for (size_t k = 0; k < taps; ++k) w.conv_weight[k * static_cast<size_t>(d_inner) + ch] = conv_weight[ch * taps + k];
  }
  if (c.mamba_conv_bias) w.conv_bias = bind.Vector(p + "mamba.conv1d.bias", {d_inner});
  w.x_proj = bind.Matrix(p + "mamba.x_proj.0.weight", dt_rank + 2 * d_state, d_inner);
  w.dt_proj = bind.Matrix(p + "mamba.dt_proj.0.weight", d_inner, dt_rank);
  w.dt_bias = bind.Vector(p + "mamba.dt_proj.0.bias", {d_inner});
  const std::vector<float> a_log = bind.Vector(p + "mamba.A_log.0", {d_inner, d_state});
  w.a.resize(a_log.size());
  for (int64_t ch = 0; ch < d_inner; ++ch) {
    for (int64_t s = 0; s < d_state; ++s) {
      w.a[ScanIndex(static_cast<size_t>(s), static_cast<size_t>(ch), static_cast<size_t>(d_inner), static_cast<size_t>(d_state))] =
          -std::exp(a_log[static_cast<size_t>(ch * d_state + s)]);
    }
  }
  w.d_skip = bind.Vector(p + "mamba.D.0", {d_inner});
  if (c.mamba_inner_layernorms) {
    w.dt_norm = bind.Vector(p + "mamba.dt_layernorm.weight", {dt_rank});
    w.b_norm = bind.Vector(p + "mamba.B_layernorm.weight", {d_state});
    w.c_norm = bind.Vector(p + "mamba.C_layernorm.weight", {d_state});
  }
  if (c.kq_norm) {
    w.q_norm = bind.Vector(p + "mamba.self_attn.q_norm.weight", {c.head_dim_qk});
    if (c.IsOwner(layer)) {
      w.k_norm = bind.Vector(p + "mamba.self_attn.k_norm.weight", {c.head_dim_qk});
    } else if (bind.Has(p + "mamba.self_attn.k_norm.weight")) {
      bind.MarkUsed(p + "mamba.self_attn.k_norm.weight");  // built by HF for every layer, unused by consumers
    }
  }
  w.attn_out_norm = bind.Vector(p + "mamba.pre_avg_layernorm1.weight", {d_inner});
  w.ssm_out_norm = bind.Vector(p + "mamba.pre_avg_layernorm2.weight", {d_inner});
  w.out_proj = bind.Matrix(p + "mamba.out_proj.weight", hidden, d_inner);
  if (c.intermediate_size > 0) {
    const int64_t width = c.intermediate_size;
    w.mlp_norm = bind.Vector(p + "pre_moe_layernorm.weight", {hidden});
    if (c.mlp_activation == MlpActivation::kSilu) {
      w.gate_proj = bind.Matrix(p + "moe.experts.0.gate_proj.weight", width, hidden);
    }
    w.up_proj = bind.Matrix(p + "moe.experts.0.up_proj.weight", width, hidden);
    w.down_proj = bind.Matrix(p + "moe.experts.0.down_proj.weight", hidden, width);
  }
  return w;
}

}  // namespace

Weights BindWeights(const Config& config, const Checkpoint& checkpoint) {
  Binder bind(checkpoint);
  Weights w;
  w.embed_tokens = bind.Matrix("model.embed_tokens.weight", config.vocab_size, config.hidden_size);
  if (config.num_memory_tokens > 0) {
    w.memory_tokens = bind.Matrix("model.memory_tokens", config.num_memory_tokens, config.hidden_size);
  }
  w.final_norm = bind.Vector("model.final_layernorm.weight", {config.hidden_size});
  // HF ties the head to the embedding when the config says so; a checkpoint
  // without lm_head.weight can only mean the same.
  if (config.tie_word_embeddings || !bind.Has("lm_head.weight")) {
    w.lm_head = w.embed_tokens;
    if (bind.Has("lm_head.weight")) bind.MarkUsed("lm_head.weight");
  } else {
    w.lm_head = bind.Matrix("lm_head.weight", config.vocab_size, config.hidden_size);
  }
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) w.layers.push_back(BindLayer(config, layer, bind));
  w.unused_tensors = bind.Unused();
  return w;
}

}  // namespace hymba

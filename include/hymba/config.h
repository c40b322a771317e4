// HymbaConfig: the fields of a Hugging Face config.json (spec section 1.1) with
// the HF defaults for absent fields, plus the sizes derived from them (1.2).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace hymba {

enum class MlpActivation { kSilu, kRelu2 };
enum class RopeType { kDefault, kNtk };

struct LayerRole {
  bool global_attention = true;  // false: sliding window plus meta tokens (E3)
  int kv_source = 0;             // the layer whose K/V this layer reads; itself when it owns K/V
  bool OwnsKv(int layer) const { return kv_source == layer; }
};

struct Config {
  // Raw fields.
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // MLP width; 0 means no MLP
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  double mamba_expand = 2;
  int64_t mamba_d_state = 16;
  int64_t mamba_d_conv = 4;
  int64_t mamba_dt_rank = 0;  // "auto" resolved to ceil(hidden_size / 16)
  bool mamba_conv_bias = true;
  bool mamba_proj_bias = false;
  bool mamba_inner_layernorms = true;
  int64_t num_memory_tokens = 0;
  int64_t sliding_window = -1;  // -1: null, every layer global
  std::vector<int> global_attn_idx;
  std::vector<std::vector<int>> kv_reuse_group;  // first entry produces, the rest consume
  int kv_reuse_every_i_layer = -1;
  bool rope = false;
  RopeType rope_type = RopeType::kDefault;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 0;
  int64_t orig_max_position_embeddings = 0;
  bool kq_norm = false;  // "rms": RMSNorm over each Q and K head before RoPE
  MlpActivation mlp_activation = MlpActivation::kSilu;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids{2};
  int64_t pad_token_id = 0;

  // Derived sizes (spec 1.2).
  int64_t d_inner = 0;       // SSM width = attention output width
  int64_t head_dim_qk = 0;
  int64_t head_dim_v = 0;
  int64_t q_width = 0;
  int64_t k_width = 0;
  int64_t v_width = 0;
  std::vector<LayerRole> layers;

  bool HasSlidingWindow() const { return sliding_window >= 0; }
  bool IsOwner(int layer) const { return layers[layer].OwnsKv(layer); }
  int64_t InProjRows(int layer) const {
    return (IsOwner(layer) ? q_width + k_width + v_width : q_width) + 2 * d_inner;
  }
  // True when some layer reading `owner`'s K/V is global, so the owner must keep
  // its whole history even if it is itself a sliding-window layer (E6).
  bool KeepsFullHistory(int owner) const;
};

// Reads and validates config.json. Unsupported values are refused with an
// error naming the field and the value.
Config LoadConfig(const std::filesystem::path& config_json);
Config ParseConfig(const std::string& json_text, const std::string& source_name);

}  // namespace hymba

// Binding of checkpoint tensors (spec 2.2) to typed views, with every shape
// checked against the config. Matrices stay in the mapped file in their stored
// type; the small vectors are decoded to f32 once.
#pragma once

#include <string>
#include <vector>

#include "core/mat_view.h"
#include "hymba/config.h"
#include "io/safetensors.h"

namespace hymba {

struct LayerWeights {
  std::vector<float> input_norm;  // [hidden]
  MatView in_proj;                // [q | k | v | x | z rows, hidden]; consumers have no k, v rows
  std::vector<float> in_proj_bias;  // [in_proj rows], empty unless mamba_proj_bias
  std::vector<float> conv_weight;   // [d_conv, d_inner], transposed so a tap is a row; tap d_conv-1 multiplies the newest input
  std::vector<float> conv_bias;     // [d_inner], empty unless mamba_conv_bias
  MatView x_proj;                   // [dt_rank + 2 d_state, d_inner]
  MatView dt_proj;                  // [d_inner, dt_rank]
  std::vector<float> dt_bias;       // [d_inner], added inside the softplus
  std::vector<float> a;             // -exp(A_log) in the scan's blocks (kernels/scan.h)
  std::vector<float> d_skip;        // [d_inner]
  std::vector<float> dt_norm, b_norm, c_norm;  // [dt_rank], [d_state], [d_state]; empty without inner norms
  std::vector<float> q_norm, k_norm;           // [head_dim_qk]; empty unless kq_norm is "rms"
  std::vector<float> attn_out_norm;            // [d_inner] pre_avg_layernorm1
  std::vector<float> ssm_out_norm;             // [d_inner] pre_avg_layernorm2
  MatView out_proj;                            // [hidden, d_inner]
  std::vector<float> out_proj_bias;            // [hidden], empty unless mamba_proj_bias
  std::vector<float> mlp_norm;                 // [hidden], empty without MLP
  MatView gate_proj, up_proj;                  // [intermediate, hidden]; no gate for relu2
  MatView down_proj;                           // [hidden, intermediate]
};

struct Weights {
  MatView embed_tokens;   // [vocab, hidden]
  MatView memory_tokens;  // [num_memory_tokens, hidden]
  std::vector<float> final_norm;  // [hidden]
  MatView lm_head;        // [vocab, hidden]; the embedding when tied
  std::vector<LayerWeights> layers;
  std::vector<std::string> unused_tensors;  // in the checkpoint but not part of this config
};

Weights BindWeights(const Config& config, const Checkpoint& checkpoint);

}  // namespace hymba

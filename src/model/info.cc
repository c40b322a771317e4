#include "hymba/info.h"

#include <algorithm>

namespace hymba {
namespace {

// Full-history owners grow with every token; the other owners are capped by the window.
bool Grows(const Config& c, int owner) { return !c.HasSlidingWindow() || c.KeepsFullHistory(owner); }

// kv_row_bytes: what each K/V head's key or value row of a position adds to
// its values (a q8 row's scale); key_pad_bytes: what each K/V head's key row
// adds to pair its dimensions (q8, kernels/attention.h).
CacheLayout MakeLayout(const Config& c, std::string name, int kv_bytes, int kv_row_bytes, int key_pad_bytes,
                       int state_bytes, int64_t conv_columns, int64_t window_entries) {
  CacheLayout layout;
  layout.name = std::move(name);
  layout.kv_bytes_per_value = kv_bytes;
  layout.ssm_bytes_per_value = state_bytes;
  layout.conv_bytes_per_value = state_bytes;
  layout.conv_columns = conv_columns;
  layout.window_entries = window_entries;
  layout.kv_bytes_per_token_per_owner =
      (c.k_width + c.v_width) * kv_bytes + c.num_key_value_heads * (2 * kv_row_bytes + key_pad_bytes);
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    if (!c.IsOwner(layer)) continue;
    layout.filling_bytes_per_token += layout.kv_bytes_per_token_per_owner;
    layout.meta_kv_bytes += c.num_memory_tokens * layout.kv_bytes_per_token_per_owner;
    if (Grows(c, layer)) {
      layout.growing_bytes_per_token += layout.kv_bytes_per_token_per_owner;
    } else {
      layout.window_cap_bytes += (c.num_memory_tokens + window_entries) * layout.kv_bytes_per_token_per_owner;
    }
  }
  layout.ssm_state_bytes = c.num_hidden_layers * c.d_inner * c.mamba_d_state * state_bytes;
  layout.conv_state_bytes = c.num_hidden_layers * c.d_inner * conv_columns * state_bytes;
  return layout;
}

}  // namespace

int64_t CacheLayout::BytesAt(const Config& c, int64_t text_tokens, bool count_meta) const {
  int64_t bytes = ssm_state_bytes + conv_state_bytes;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    if (!c.IsOwner(layer)) continue;
    const int64_t entries = (Grows(c, layer) ? text_tokens : std::min(text_tokens, window_entries)) +
                            (count_meta ? c.num_memory_tokens : 0);
    bytes += entries * kv_bytes_per_token_per_owner;
  }
  return bytes;
}

int64_t CacheLayout::DecodeReadBytes(const Config& c, int64_t text_tokens) const {
  const int64_t seen = c.num_memory_tokens + text_tokens + 1;  // the step's own token included
  int64_t positions = 0;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const bool windowed = c.HasSlidingWindow() && !c.layers[layer].global_attention;
    positions += windowed ? std::min(seen, c.num_memory_tokens + window_entries) : seen;
  }
  return positions * kv_bytes_per_token_per_owner;
}

ModelReport DescribeModel(const Config& c, bool separate_lm_head, CacheType cache) {
  ModelReport report;
  const int64_t layers = c.num_hidden_layers;
  const int64_t d = c.hidden_size, d_inner = c.d_inner, rank = c.mamba_dt_rank, state = c.mamba_d_state;
  int64_t owners = 0, in_proj_rows = 0, in_proj_bias = 0;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    owners += c.IsOwner(layer) ? 1 : 0;
    in_proj_rows += c.InProjRows(layer);
  }
  if (c.mamba_proj_bias) in_proj_bias = in_proj_rows + layers * d;
  const int64_t mlp_matrices = c.intermediate_size == 0 ? 0 : (c.mlp_activation == MlpActivation::kSilu ? 3 : 2);

  report.parameters = {
      {separate_lm_head ? "embed_tokens" : "embed_tokens (= lm_head)", c.vocab_size * d},
      {"lm_head", separate_lm_head ? c.vocab_size * d : 0},
      {"memory_tokens", c.num_memory_tokens * d},
      {"in_proj", in_proj_rows * d},
      {"  attention Q rows", layers * c.q_width * d},
      {"  attention K,V rows", owners * (c.k_width + c.v_width) * d},
      {"  SSM x + z rows", layers * 2 * d_inner * d},
      {"in_proj/out_proj bias", in_proj_bias},
      {"out_proj", layers * d * d_inner},
      {"conv1d w + b", layers * d_inner * (c.mamba_d_conv + (c.mamba_conv_bias ? 1 : 0))},
      {"x_proj", layers * (rank + 2 * state) * d_inner},
      {"dt_proj w + b", layers * (d_inner * rank + d_inner)},
      {"A_log", layers * d_inner * state},
      {"D", layers * d_inner},
      {"dt/B/C norms", c.mamba_inner_layernorms ? layers * (rank + 2 * state) : 0},
      {"q/k norms", c.kq_norm ? layers * 2 * c.head_dim_qk : 0},
      {"pre_avg norms 1+2", layers * 2 * d_inner},
      {"input + pre_moe norms", layers * d * (c.intermediate_size > 0 ? 2 : 1)},
      {"MLP", layers * mlp_matrices * c.intermediate_size * d},
      {"final_layernorm", d},
  };
  for (const ParameterGroup& group : report.parameters) {
    if (group.name.rfind("  ", 0) != 0) report.total_parameters += group.count;
  }
  const int64_t window = std::max<int64_t>(c.sliding_window, 0);
  // The official cache keeps the window's newest W keys at decode; this engine
  // keeps W + 1 so that every query sees the training-time mask (E3).
  report.official = MakeLayout(c, "official HF (bf16)", 2, 0, 0, 2, c.mamba_d_conv, window);
  const int64_t conv_columns = c.mamba_d_conv - 1;
  switch (cache) {
    case CacheType::kF32: report.engine = MakeLayout(c, "hymba.cpp (f32)", 4, 0, 0, 4, conv_columns, window + 1); break;
    case CacheType::kF16: report.engine = MakeLayout(c, "hymba.cpp (f16 K/V)", 2, 0, 0, 4, conv_columns, window + 1); break;
    case CacheType::kQ8: report.engine = MakeLayout(c, "hymba.cpp (q8 K/V)", 1, 4, c.head_dim_qk % 2, 4, conv_columns, window + 1); break;
  }
  report.llama32_3b_bytes_per_token = 28 * 2 * 8 * 128 * 2;
  return report;
}

}  // namespace hymba

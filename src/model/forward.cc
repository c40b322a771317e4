// The forward pass, top to bottom. Buffers carry their shape in a comment;
// t indexes rows of the chunk, position = state.positions + t counts the meta
// tokens (meta at 0..M-1, text token i at M+i).
#include "model/forward.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace hymba {

SequenceState::SequenceState(const Config& config) : layers(static_cast<size_t>(config.num_hidden_layers)) {
  const auto d_inner = static_cast<size_t>(config.d_inner);
  for (Layer& layer : layers) {
    layer.conv.assign(static_cast<size_t>(config.mamba_d_conv - 1) * d_inner, 0.0f);
    layer.ssm.assign(d_inner * static_cast<size_t>(config.mamba_d_state), 0.0f);
  }
}

std::vector<float> RopeInverseFrequencies(const Config& config) {
  if (!config.rope) return {};
  const auto dim = static_cast<double>(config.head_dim_qk);
  double base = config.rope_theta;
  if (config.rope_type == RopeType::kNtk) {
    constexpr double kFactor = 2.0;  // hard-coded in the official rotary embedding
    const double ratio = static_cast<double>(config.max_position_embeddings) /
                         static_cast<double>(config.orig_max_position_embeddings);
    base *= std::pow(kFactor * ratio - (kFactor - 1.0), dim / (dim - 2.0));
  }
  // torch: 1 / (base_f32 ** (arange(0, dim, 2).float() / dim)), all in f32.
  std::vector<float> inv_freq(static_cast<size_t>(config.head_dim_qk / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(base), exponent);
  }
  return inv_freq;
}

namespace {

// Causal depthwise conv (kernel d_conv, zero history before position 0) and
// SiLU. xs rows have stride `stride`; the conv state carries the newest d_conv-1
// inputs into the next chunk. Output xc: [n, d_inner].
void CausalConv(const Config& c, const LayerWeights& w, std::vector<float>& conv_state, const float* xs, size_t stride,
                size_t n, float* xc) {
  const auto d_inner = static_cast<size_t>(c.d_inner);
  const auto taps = static_cast<size_t>(c.mamba_d_conv);
  const size_t history = taps - 1;
  // input(s) for s in [-history, n): the state for s < 0, the chunk after.
  auto input = [&](ptrdiff_t s, size_t ch) {
    return s < 0 ? conv_state[static_cast<size_t>(static_cast<ptrdiff_t>(history) + s) * d_inner + ch]
                 : xs[static_cast<size_t>(s) * stride + ch];
  };
  for (size_t t = 0; t < n; ++t) {
    for (size_t ch = 0; ch < d_inner; ++ch) {
      float sum = w.conv_bias.empty() ? 0.0f : w.conv_bias[ch];
      for (size_t k = 0; k < taps; ++k) {
        sum += w.conv_weight[ch * taps + k] * input(static_cast<ptrdiff_t>(t + k) - static_cast<ptrdiff_t>(history), ch);
      }
      xc[t * d_inner + ch] = Silu(sum);
    }
  }
  std::vector<float> newest(history * d_inner);
  for (size_t h = 0; h < history; ++h) {
    const ptrdiff_t s = static_cast<ptrdiff_t>(n) - static_cast<ptrdiff_t>(history) + static_cast<ptrdiff_t>(h);
    for (size_t ch = 0; ch < d_inner; ++ch) newest[h * d_inner + ch] = input(s, ch);
  }
  conv_state = std::move(newest);
}

// Mamba-1 selective scan (spec 3.4.2): x_proj, the dt/B/C norms, dt_proj without
// bias, then per channel h = exp(delta A) h + delta B x, y = C.h + D x, gated by
// silu(z). xc: [n, d_inner]; z rows have stride `stride`. Output: [n, d_inner].
void SelectiveScan(const Config& c, const LayerWeights& w, std::vector<float>& ssm_state, const float* xc,
                   const float* z, size_t stride, size_t n, float* out) {
  const auto d_inner = static_cast<size_t>(c.d_inner);
  const auto d_state = static_cast<size_t>(c.mamba_d_state);
  const auto dt_rank = static_cast<size_t>(c.mamba_dt_rank);
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const size_t proj_width = dt_rank + 2 * d_state;

  std::vector<float> params(n * proj_width);  // [n, dt_rank | B | C]
  MatMul(w.x_proj, xc, n, params.data());
  std::vector<float> dt(n * dt_rank);  // [n, dt_rank]
  for (size_t t = 0; t < n; ++t) {
    float* row = &params[t * proj_width];
    if (c.mamba_inner_layernorms) {
      RmsNorm(row, w.dt_norm, dt_rank, eps, row);
      RmsNorm(row + dt_rank, w.b_norm, d_state, eps, row + dt_rank);
      RmsNorm(row + dt_rank + d_state, w.c_norm, d_state, eps, row + dt_rank + d_state);
    }
    std::copy(row, row + dt_rank, &dt[t * dt_rank]);
  }
  std::vector<float> delta(n * d_inner);  // [n, d_inner]
  MatMul(w.dt_proj, dt.data(), n, delta.data());

  for (size_t t = 0; t < n; ++t) {
    const float* b = &params[t * proj_width + dt_rank];
    const float* cc = b + d_state;
    for (size_t ch = 0; ch < d_inner; ++ch) {
      const float dt_ch = Softplus(delta[t * d_inner + ch] + w.dt_bias[ch]);
      const float x = xc[t * d_inner + ch];
      float* h = &ssm_state[ch * d_state];
      const float* a = &w.a[ch * d_state];
      float y = w.d_skip[ch] * x;
      for (size_t s = 0; s < d_state; ++s) {
        h[s] = std::exp(dt_ch * a[s]) * h[s] + dt_ch * b[s] * x;
        y += h[s] * cc[s];
      }
      out[t * d_inner + ch] = y * Silu(z[t * stride + ch]);
    }
  }
}

// True when key position j is visible to query position i in this layer (E3).
bool Visible(const Config& c, const LayerRole& role, int64_t i, int64_t j) {
  if (j > i) return false;
  return role.global_attention || i - j <= c.sliding_window || j < c.num_memory_tokens;
}

// Attention branch (spec 3.4.3). Owners rotate and append their K/V first, so
// the chunk attends to itself causally; consumers read their producer's cache,
// which the producer, an earlier layer, has already extended by this chunk.
// q, k, v rows have stride `stride`. Output: [n, heads * head_dim_v].
void Attention(const Config& c, const LayerWeights& w, std::span<const float> inv_freq, int layer,
               SequenceState& state, const float* q, const float* k, const float* v, size_t stride, size_t n,
               float* out) {
  const auto dqk = static_cast<size_t>(c.head_dim_qk);
  const auto dv = static_cast<size_t>(c.head_dim_v);
  const auto heads = static_cast<size_t>(c.num_attention_heads);
  const auto kv_heads = static_cast<size_t>(c.num_key_value_heads);
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const LayerRole& role = c.layers[layer];
  const int64_t start = state.positions;

  std::vector<float> head(dqk);
  if (c.IsOwner(layer)) {
    SequenceState::Layer& cache = state.layers[layer];
    for (size_t t = 0; t < n; ++t) {
      for (size_t g = 0; g < kv_heads; ++g) {
        std::copy_n(k + t * stride + g * dqk, dqk, head.begin());
        if (!w.k_norm.empty()) RmsNorm(head.data(), w.k_norm, dqk, eps, head.data());
        if (c.rope) ApplyRope(head.data(), inv_freq, start + static_cast<int64_t>(t));
        cache.keys.insert(cache.keys.end(), head.begin(), head.end());
      }
      cache.values.insert(cache.values.end(), v + t * stride, v + t * stride + kv_heads * dv);
    }
  }

  const SequenceState::Layer& source = state.layers[role.kv_source];
  const size_t group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dqk));
  const size_t k_width = kv_heads * dqk, v_width = kv_heads * dv;
  std::vector<float> scores;
  std::vector<int64_t> visible;
  for (size_t t = 0; t < n; ++t) {
    const int64_t i = start + static_cast<int64_t>(t);
    for (size_t h = 0; h < heads; ++h) {
      float* query = head.data();
      std::copy_n(q + t * stride + h * dqk, dqk, query);
      if (!w.q_norm.empty()) RmsNorm(query, w.q_norm, dqk, eps, query);
      if (c.rope) ApplyRope(query, inv_freq, i);
      const size_t g = h / group;

      scores.clear();
      visible.clear();
      for (int64_t j = 0; j <= i; ++j) {
        if (!Visible(c, role, i, j)) continue;
        const float* key = &source.keys[static_cast<size_t>(j) * k_width + g * dqk];
        float dot = 0.0f;
        for (size_t d = 0; d < dqk; ++d) dot += query[d] * key[d];
        scores.push_back(dot * scale);
        visible.push_back(j);
      }
      Softmax(scores.data(), scores.size());
      float* o = out + t * heads * dv + h * dv;
      std::fill(o, o + dv, 0.0f);
      for (size_t m = 0; m < visible.size(); ++m) {
        const float* value = &source.values[static_cast<size_t>(visible[m]) * v_width + g * dv];
        for (size_t d = 0; d < dv; ++d) o[d] += scores[m] * value[d];
      }
    }
  }
}

// SwiGLU (down(silu(gate u) * up u)) or relu2 (down(relu(up u)^2)). u, out: [n, hidden].
void Mlp(const Config& c, const LayerWeights& w, const float* u, size_t n, float* out) {
  const auto width = static_cast<size_t>(c.intermediate_size);
  std::vector<float> up(n * width);  // [n, intermediate]
  MatMul(w.up_proj, u, n, up.data());
  if (c.mlp_activation == MlpActivation::kSilu) {
    std::vector<float> gate(n * width);
    MatMul(w.gate_proj, u, n, gate.data());
    for (size_t i = 0; i < up.size(); ++i) up[i] *= Silu(gate[i]);
  } else {
    for (float& value : up) value = value > 0.0f ? value * value : 0.0f;
  }
  MatMul(w.down_proj, up.data(), n, out);
}

// One decoder layer (spec 3.3-3.4): x [n, hidden] in place.
void Layer(const ForwardContext& context, int layer, SequenceState& state, std::vector<float>& x, size_t n) {
  const Config& c = context.config;
  const LayerWeights& w = context.weights.layers[layer];
  const auto hidden = static_cast<size_t>(c.hidden_size);
  const auto d_inner = static_cast<size_t>(c.d_inner);
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const bool owner = c.IsOwner(layer);

  std::vector<float> u(n * hidden);  // [n, hidden]
  for (size_t t = 0; t < n; ++t) RmsNorm(&x[t * hidden], w.input_norm, hidden, eps, &u[t * hidden]);

  // in_proj rows: q | k | v | x | z for owners, q | x | z for consumers (spec 3.4.1).
  const auto rows = static_cast<size_t>(c.InProjRows(layer));
  std::vector<float> proj(n * rows);  // [n, rows]
  MatMul(w.in_proj, u.data(), n, proj.data());
  if (!w.in_proj_bias.empty()) {
    for (size_t t = 0; t < n; ++t) {
      for (size_t r = 0; r < rows; ++r) proj[t * rows + r] += w.in_proj_bias[r];
    }
  }
  const size_t k_offset = static_cast<size_t>(c.q_width);
  const size_t v_offset = k_offset + static_cast<size_t>(c.k_width);
  const size_t x_offset = owner ? v_offset + static_cast<size_t>(c.v_width) : k_offset;
  const size_t z_offset = x_offset + d_inner;

  std::vector<float> xc(n * d_inner);       // [n, d_inner] SSM input after conv and SiLU
  std::vector<float> ssm_out(n * d_inner);  // [n, d_inner]
  CausalConv(c, w, state.layers[layer].conv, &proj[x_offset], rows, n, xc.data());
  SelectiveScan(c, w, state.layers[layer].ssm, xc.data(), &proj[z_offset], rows, n, ssm_out.data());

  std::vector<float> attn_out(n * d_inner);  // [n, heads * head_dim_v]
  Attention(c, w, context.inv_freq, layer, state, &proj[0], &proj[k_offset], &proj[v_offset], rows, n,
            attn_out.data());

  // Fusion: both branches normalised over all d_inner features, then averaged.
  std::vector<float> fused(n * d_inner);  // [n, d_inner]
  std::vector<float> normed(d_inner);
  for (size_t t = 0; t < n; ++t) {
    RmsNorm(&attn_out[t * d_inner], w.attn_out_norm, d_inner, eps, &fused[t * d_inner]);
    RmsNorm(&ssm_out[t * d_inner], w.ssm_out_norm, d_inner, eps, normed.data());
    for (size_t i = 0; i < d_inner; ++i) fused[t * d_inner + i] = (fused[t * d_inner + i] + normed[i]) / 2.0f;
  }
  std::vector<float> mixed(n * hidden);  // [n, hidden]
  MatMul(w.out_proj, fused.data(), n, mixed.data());
  for (size_t t = 0; t < n; ++t) {
    for (size_t i = 0; i < hidden; ++i) {
      x[t * hidden + i] += mixed[t * hidden + i] + (w.out_proj_bias.empty() ? 0.0f : w.out_proj_bias[i]);
    }
  }

  if (c.intermediate_size > 0) {
    for (size_t t = 0; t < n; ++t) RmsNorm(&x[t * hidden], w.mlp_norm, hidden, eps, &u[t * hidden]);
    Mlp(c, w, u.data(), n, mixed.data());
    for (size_t i = 0; i < n * hidden; ++i) x[i] += mixed[i];
  }
}

}  // namespace

void Forward(const ForwardContext& context, SequenceState& state, std::vector<float>& x, size_t n) {
  const Config& c = context.config;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) Layer(context, layer, state, x, n);
  state.positions += static_cast<int64_t>(n);
  const auto hidden = static_cast<size_t>(c.hidden_size);
  for (size_t t = 0; t < n; ++t) {
    RmsNorm(&x[t * hidden], context.weights.final_norm, hidden, static_cast<float>(c.rms_norm_eps), &x[t * hidden]);
  }
}

}  // namespace hymba

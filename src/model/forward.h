// The Hymba forward pass (spec section 3 with the semantics of section E).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "hymba/config.h"
#include "model/weights.h"

namespace hymba {

// What one sequence carries from one chunk of positions to the next.
struct SequenceState {
  struct Layer {
    std::vector<float> keys;    // [positions, k_width] after RoPE; KV-owning layers only
    std::vector<float> values;  // [positions, v_width]
    std::vector<float> conv;    // [d_conv - 1, d_inner] newest pre-conv inputs, oldest first
    std::vector<float> ssm;     // [d_inner, d_state]
  };
  int64_t positions = 0;  // positions processed so far, meta tokens included
  std::vector<Layer> layers;

  explicit SequenceState(const Config& config);
};

// Everything the layers need that does not change per call.
struct ForwardContext {
  const Config& config;
  const Weights& weights;
  std::span<const float> inv_freq;  // [head_dim_qk / 2], empty without RoPE
};

// RoPE inverse frequencies in f32, computed as the official constructor does (E2).
std::vector<float> RopeInverseFrequencies(const Config& config);

// Runs rows x [n, hidden] (embeddings or meta tokens) at positions
// state.positions .. +n through every layer and the final norm, in place.
void Forward(const ForwardContext& context, SequenceState& state, std::vector<float>& x, size_t n);

}  // namespace hymba

// The Mamba-1 selective scan (spec 3.4.2 step 5), vectorised with Highway.
#pragma once

#include <cstddef>

#include "core/thread_pool.h"

namespace hymba {

// For each step t and channel ch, with delta = softplus(delta_pre + dt_bias):
//   h[s] = exp(delta a[s]) h[s] + delta b[t, s] x[t]     (s < d_state)
//   out[t] = (C[t] . h + d_skip x[t]) silu(z[t])
struct ScanInputs {
  size_t d_inner = 0, d_state = 0, steps = 0;
  const float* x = nullptr;          // [steps, d_inner], after conv and SiLU
  const float* delta_pre = nullptr;  // [steps, d_inner], dt_proj without its bias
  const float* dt_bias = nullptr;    // [d_inner]
  const float* a = nullptr;          // [d_state, d_inner] = -exp(A_log), state-major
  const float* d_skip = nullptr;     // [d_inner]
  const float* b = nullptr;          // row t at b + t * bc_stride, d_state values
  const float* c = nullptr;          // row t at c + t * bc_stride
  size_t bc_stride = 0;
  const float* z = nullptr;  // row t at z + t * z_stride, d_inner values
  size_t z_stride = 0;
  float* state = nullptr;  // [d_state, d_inner], carried across calls
  float* out = nullptr;    // [steps, d_inner]
};

// Channels are independent: they are vectorised across lanes (so softplus,
// exp and the gate run on whole vectors and no step needs a horizontal sum,
// whatever d_state is) and split across the pool.
void SelectiveScan(const ScanInputs& in, ThreadPool& pool);

}  // namespace hymba

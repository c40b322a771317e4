// The Mamba-1 selective scan (spec 3.4.2 step 5), vectorised with Highway.
#pragma once

#include <algorithm>
#include <cstddef>

#include "core/thread_pool.h"

namespace hymba {

// The state and A are stored in blocks of kScanBlock channels, state-major
// inside a block ([block][s][channel in block], the last block as wide as the
// channels left): a decode step reads each block's d_state rows as one
// stretch of memory. State-major over all channels, it read 2 x 16 streams
// that the prefetchers could not follow.
inline constexpr size_t kScanBlock = 16;
// Channels in the block of channel ch: the step from one of its rows to the next.
constexpr size_t ScanBlockWidth(size_t ch, size_t d_inner) {
  return std::min(kScanBlock, d_inner - ch / kScanBlock * kScanBlock);
}
constexpr size_t ScanIndex(size_t s, size_t ch, size_t d_inner, size_t d_state) {
  const size_t block = ch / kScanBlock * kScanBlock;
  return block * d_state + s * ScanBlockWidth(ch, d_inner) + (ch - block);
}

// For each step t and channel ch, with delta = softplus(delta_pre + dt_bias):
//   h[s] = exp(delta a[s]) h[s] + delta b[t, s] x[t]     (s < d_state)
//   out[t] = (C[t] . h + d_skip x[t]) silu(z[t])
struct ScanInputs {
  size_t d_inner = 0, d_state = 0, steps = 0;
  const float* x = nullptr;          // [steps, d_inner], after conv and SiLU
  const float* delta_pre = nullptr;  // [steps, d_inner], dt_proj without its bias
  const float* dt_bias = nullptr;    // [d_inner]
  const float* a = nullptr;          // -exp(A_log), element (s, ch) at ScanIndex(s, ch, ...)
  const float* d_skip = nullptr;     // [d_inner]
  const float* b = nullptr;          // row t at b + t * bc_stride, d_state values
  const float* c = nullptr;          // row t at c + t * bc_stride
  size_t bc_stride = 0;
  const float* z = nullptr;  // row t at z + t * z_stride, d_inner values
  size_t z_stride = 0;
  float* state = nullptr;  // element (s, ch) at ScanIndex(s, ch, ...), carried across calls
  float* out = nullptr;    // [steps, d_inner]
};

// Channels are independent: they are vectorised across lanes (so softplus,
// exp and the gate run on whole vectors and no step needs a horizontal sum,
// whatever d_state is) and split across the pool.
void SelectiveScan(const ScanInputs& in, ThreadPool& pool);

}  // namespace hymba

// Products of a weight matrix in its stored type with f32 activations: the
// matrix-vector product of decoding and the matrix-matrix product of prompt
// processing are one tiled kernel, vectorised with Highway and dispatched at
// run time to the best target the CPU supports (AVX-512, AVX2, SSE4, scalar).
// Weights are interleaved in groups of rows (core/interleaved.h). q8_0 and
// q4_0 weights go to the int8 kernels of kernels/matmul_int8.h, with the
// activations quantized to 8 bits; bf16 weights in Layout::kBf16Pairs to
// kernels/matmul_bf16.h.
#pragma once

#include <cstddef>

#include "core/mat_view.h"
#include "core/thread_pool.h"

namespace hymba {

// y[t, :] = W x[t, :] for t < n. x: [n, W.cols], y: [n, W.rows].
//
// Every output is accumulated the same way whatever n, the tile it falls in
// and the thread count (for float weights: one vector accumulator over the
// chunks of 32 columns in order, each chunk's even columns, then its odd
// ones, a horizontal sum, then the scalar tail). Batched and single decoding,
// and a prompt fed whole or in chunks, therefore give bit-identical results.
void MatMul(const MatView& w, const float* x, size_t n, float* y, ThreadPool& pool);

}  // namespace hymba

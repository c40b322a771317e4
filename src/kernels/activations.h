// Element-wise gates over whole rows of activations, vectorised with Highway
// and, for a prompt's worth of values, split over the pool: run alone by the
// calling thread, a prompt's SiLU gates left the second core idle for a
// tenth of prefill.
#pragma once

#include <cstddef>

#include "core/thread_pool.h"

namespace hymba {

// x[i] = silu(x[i]) for i < n.
void SiluInPlace(float* x, size_t n, ThreadPool& pool);

// x[i] *= silu(gate[i]) for i < n: SwiGLU's gate.
void MultiplyBySilu(const float* gate, float* x, size_t n, ThreadPool& pool);

}  // namespace hymba

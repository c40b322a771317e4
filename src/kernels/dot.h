// Dot products of one weight row in its stored type with f32 activations,
// vectorised with Highway and dispatched at run time to the best target the
// CPU supports (AVX-512, AVX2, SSE4, or scalar).
#pragma once

#include <cstddef>

#include "core/dtype.h"

namespace hymba {

float Dot(DType type, const std::byte* row, const float* x, size_t n);

}  // namespace hymba

// f32 vector kernels (attention, the bandwidth probe), vectorised with
// Highway and dispatched at run time to the best target the CPU supports.
#pragma once

#include <cstddef>

namespace hymba {

float Dot(const float* a, const float* b, size_t n);

// y += scale * x
void AddScaled(float scale, const float* x, float* y, size_t n);

float Sum(const float* x, size_t n);

}  // namespace hymba

#include "kernels/ops.h"

#include "kernels/sum.h"

#include <cmath>

namespace hymba {

void RmsNorm(const float* x, std::span<const float> weight, size_t width, float eps, float* out) {
  const double sum_squares = SumOfSquares(x, width);
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_squares / static_cast<double>(width) + eps));
  for (size_t i = 0; i < width; ++i) out[i] = x[i] * scale * (weight.empty() ? 1.0f : weight[i]);
}

void RotaryAngles(std::span<const float> inv_freq, int64_t position, float* cos, float* sin) {
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double angle = static_cast<double>(inv_freq[i]) * static_cast<double>(position);
    cos[i] = static_cast<float>(std::cos(angle));
    sin[i] = static_cast<float>(std::sin(angle));
  }
}

void ApplyRope(float* head, const float* cos, const float* sin, size_t half) {
  for (size_t i = 0; i < half; ++i) {
    const float first = head[i];
    const float second = head[i + half];
    head[i] = first * cos[i] - second * sin[i];
    head[i + half] = second * cos[i] + first * sin[i];
  }
}

}  // namespace hymba

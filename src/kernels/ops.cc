#include "kernels/ops.h"

#include <algorithm>
#include <vector>

namespace hymba {

void RmsNorm(const float* x, std::span<const float> weight, size_t width, float eps, float* out) {
  double sum_squares = 0.0;
  for (size_t i = 0; i < width; ++i) sum_squares += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_squares / static_cast<double>(width) + eps));
  for (size_t i = 0; i < width; ++i) out[i] = x[i] * scale * (weight.empty() ? 1.0f : weight[i]);
}

void ApplyRope(float* head, std::span<const float> inv_freq, int64_t position) {
  const size_t half = inv_freq.size();
  for (size_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(inv_freq[i]) * static_cast<double>(position);
    const float cos_a = static_cast<float>(std::cos(angle));
    const float sin_a = static_cast<float>(std::sin(angle));
    const float first = head[i];
    const float second = head[i + half];
    head[i] = first * cos_a - second * sin_a;
    head[i + half] = second * cos_a + first * sin_a;
  }
}

void Softmax(float* x, size_t n) {
  if (n == 0) return;
  const float max_value = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  for (size_t i = 0; i < n; ++i) x[i] /= sum;
}

}  // namespace hymba

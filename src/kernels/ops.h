// The numeric building blocks of the forward pass. Activations are f32; weights
// arrive as MatView in their stored type and are decoded on the fly.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/mat_view.h"
#include "core/thread_pool.h"

namespace hymba {

// out = weight * x / sqrt(mean(x^2) + eps); weight may be empty (plain norm).
void RmsNorm(const float* x, std::span<const float> weight, size_t width, float eps, float* out);

// GPT-NeoX "rotate half" RoPE of head vectors, in two steps so that the
// angles of a position serve every head: cos and sin of inv_freq[i] *
// position (f32 of the double angle), then the rotation of one head.
void RotaryAngles(std::span<const float> inv_freq, int64_t position, float* cos, float* sin);
void ApplyRope(float* head, const float* cos, const float* sin, size_t half);

}  // namespace hymba

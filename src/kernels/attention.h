// Attention of one query head over a list of cached positions, vectorised
// with Highway: scores, a softmax and the weighted sum of values in one call.
#pragma once

#include <cstddef>

namespace hymba {

// out[0..dv) = sum_m softmax_m(scale * q . K_m) V_m over the `count` visible
// positions, where K_m = key_rows[m] + key_offset (dqk values) and
// V_m = value_rows[m] + value_offset (dv values). scores: scratch of `count`.
void Attend(const float* query, const float* const* key_rows, size_t key_offset, const float* const* value_rows,
            size_t value_offset, size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out);

}  // namespace hymba

// Attention of the query heads that share one K/V head over a list of cached
// positions, vectorised with Highway: scores, softmax and the weighted sum of
// values in one call, each key and value read once for all those heads.
#pragma once

#include <cstddef>

namespace hymba {

// For each head j < heads: out[j * dv ..] = sum_m softmax_m(scale * q_j . K_m) V_m
// over the `count` visible positions, where q_j = queries + j * dqk,
// K_m = key_rows[m] + key_offset (dqk values), V_m = value_rows[m] + value_offset
// (dv values). scores: scratch of heads * count. Each head's result is the same
// whatever `heads` is.
void Attend(const float* queries, size_t heads, const float* const* key_rows, size_t key_offset,
            const float* const* value_rows, size_t value_offset, size_t count, size_t dqk, size_t dv, float scale,
            float* scores, float* out);

}  // namespace hymba

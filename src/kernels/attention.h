// Attention of the query heads that share one K/V head over a list of cached
// positions, vectorised with Highway: scores, softmax and the weighted sum of
// values in one call, each key and value read once for all those heads.
#pragma once

#include <cstddef>

#include <hwy/base.h>

namespace hymba {

// What a head's softmax saw over its keys: the largest scaled score and the
// sum of exp(score - max_score). Results over disjoint key ranges merge with it.
struct SoftmaxStats {
  float max_score;
  float sum;
};

// For each head j < heads: out[j * dv ..] = sum_m softmax_m(scale * q_j . K_m) V_m
// over the `count` visible positions, where q_j = queries + j * dqk,
// K_m = key_rows[m] + key_offset (dqk values), V_m = value_rows[m] + value_offset
// (dv values), keys and values stored as f32 or f16 (cache type f16). scores:
// scratch of heads * count. stats, when given, receives each head's softmax
// statistics. Each head's result is the same whatever `heads` is.
void Attend(const float* queries, size_t heads, const float* const* key_rows, size_t key_offset,
            const float* const* value_rows, size_t value_offset, size_t count, size_t dqk, size_t dv, float scale,
            float* scores, float* out, SoftmaxStats* stats = nullptr);
void Attend(const float* queries, size_t heads, const hwy::float16_t* const* key_rows, size_t key_offset,
            const hwy::float16_t* const* value_rows, size_t value_offset, size_t count, size_t dqk, size_t dv,
            float scale, float* scores, float* out, SoftmaxStats* stats = nullptr);

// One head's result over the union of disjoint key ranges, from its result
// over each range and that range's statistics, in order: part p is
// parts[p * part_stride ..][0, dv) with stats[p * stats_stride]. A single part
// comes back unchanged.
void MergeAttention(const float* parts, size_t part_stride, const SoftmaxStats* stats, size_t stats_stride,
                    size_t count, size_t dv, float* out);

}  // namespace hymba

// Attention of the query heads that share one K/V head over a list of cached
// positions, vectorised with Highway: scores, softmax and the weighted sum of
// values in one call, each key and value read once for all those heads.
#pragma once

#include <cstddef>

#include <hwy/base.h>

namespace hymba {

// Keys are stored in tiles of kKeyTile consecutive positions, dimension-major
// ([dim][kKeyTile]): one vector load reads a dimension of up to kKeyTile keys,
// so a score needs no horizontal sum. Key `index` of a run of tiles starts at
// KeyTileIndex(index, dqk) and its dimension i is kKeyTile elements further on.
// The kernel reads whole vectors from a key's first element onwards, so the
// storage holds kKeyTile elements of padding after its last tile.
inline constexpr size_t kKeyTile = 16;
constexpr size_t KeyTileIndex(size_t index, size_t dqk) {
  return index / kKeyTile * kKeyTile * dqk + index % kKeyTile;
}

// What a head's softmax saw over its keys: the largest scaled score and the
// sum of exp(score - max_score). Results over disjoint key ranges merge with it.
struct SoftmaxStats {
  float max_score;
  float sum;
};

// For each head j < heads: out[j * dv ..] = sum_m softmax_m(scale * q_j . K_m) V_m
// over the `count` visible positions, where q_j = queries + j * dqk, element i
// of K_m is key_rows[m][i * kKeyTile] (the tiles above), and V_m =
// value_rows[m][0, dv); keys and values stored as f32 or f16 (cache type f16).
// scores: scratch of heads * count. stats, when given, receives each head's
// softmax statistics. A score is the same whatever `heads` is and wherever its
// key sits in a tile, so each head's result is too.
void Attend(const float* queries, size_t heads, const float* const* key_rows, const float* const* value_rows,
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out,
            SoftmaxStats* stats = nullptr);
void Attend(const float* queries, size_t heads, const hwy::float16_t* const* key_rows,
            const hwy::float16_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale, float* scores,
            float* out, SoftmaxStats* stats = nullptr);

// One head's result over the union of disjoint key ranges, from its result
// over each range and that range's statistics, in order: part p is
// parts[p * part_stride ..][0, dv) with stats[p * stats_stride]. A single part
// comes back unchanged.
void MergeAttention(const float* parts, size_t part_stride, const SoftmaxStats* stats, size_t stats_stride,
                    size_t count, size_t dv, float* out);

}  // namespace hymba

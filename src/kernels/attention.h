// Attention of the query heads that share one K/V head over a list of cached
// positions, vectorised with Highway: scores, softmax and the weighted sum of
// values in one call, each key and value read once for all those heads.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

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

// Cache type q8: a key or value row (one position, one K/V head) as int8 with
// one f32 scale, symmetric (element = scale * q, |q| <= 127). The scale's four
// bytes follow the row: in a key tile as four more planes after the dqk
// dimensions (byte b of each lane's scale in plane dqk + b, so a key's pointer
// reaches its scale as it reaches its dimensions), and after the dv values of
// a value row. Q8ScaleByte and Q8Scale are the one definition of that order.
inline constexpr size_t kQ8ScaleBytes = 4;
// Elements a stored row of T carries after its values: the q8 scale's bytes.
template <typename T>
inline constexpr size_t kRowScaleBytes = std::is_same_v<T, int8_t> ? kQ8ScaleBytes : 0;
inline int8_t Q8ScaleByte(float scale, size_t b) {
  return static_cast<int8_t>(static_cast<uint8_t>(std::bit_cast<uint32_t>(scale) >> (8 * b)));
}
inline float Q8Scale(const int8_t* first_byte, size_t byte_stride) {
  uint32_t bits = 0;
  for (size_t b = 0; b < kQ8ScaleBytes; ++b) bits |= uint32_t{static_cast<uint8_t>(first_byte[b * byte_stride])} << (8 * b);
  return std::bit_cast<float>(bits);
}
// Quantizes n floats into q (a row with the given stride between elements),
// followed by the scale's bytes the same stride apart, and returns the scale:
// absmax / 127, 0 for a row of zeros, NaN (and zeros) for a row with a NaN or
// an infinity.
float QuantizeQ8Row(const float* values, size_t n, int8_t* q, size_t stride);

// What a head's softmax saw over its keys: the largest scaled score and the
// sum of exp(score - max_score). Results over disjoint key ranges merge with it.
struct SoftmaxStats {
  float max_score;
  float sum;
};

// For each head j < heads: out[j * dv ..] = sum_m softmax_m(scale * q_j . K_m) V_m
// over the `count` visible positions, where q_j = queries + j * dqk, element i
// of K_m is key_rows[m][i * kKeyTile] (the tiles above), and V_m =
// value_rows[m][0, dv); keys and values stored as f32, f16 (cache type f16) or
// int8 with their scales (cache type q8, above).
// scores: scratch of heads * count. stats, when given, receives each head's
// softmax statistics. A score is the same whatever `heads` is and wherever its
// key sits in a tile, so each head's result is too.
void Attend(const float* queries, size_t heads, const float* const* key_rows, const float* const* value_rows,
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out,
            SoftmaxStats* stats = nullptr);
void Attend(const float* queries, size_t heads, const hwy::float16_t* const* key_rows,
            const hwy::float16_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale, float* scores,
            float* out, SoftmaxStats* stats = nullptr);
void Attend(const float* queries, size_t heads, const int8_t* const* key_rows, const int8_t* const* value_rows,
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out,
            SoftmaxStats* stats = nullptr);

// One head's result over the union of disjoint key ranges, from its result
// over each range and that range's statistics, in order: part p is
// parts[p * part_stride ..][0, dv) with stats[p * stats_stride]. A single part
// comes back unchanged.
void MergeAttention(const float* parts, size_t part_stride, const SoftmaxStats* stats, size_t stats_stride,
                    size_t count, size_t dv, float* out);

}  // namespace hymba

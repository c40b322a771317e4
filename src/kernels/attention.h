// Attention of the query heads that share one K/V head over a list of cached
// positions, vectorised with Highway: scores, softmax and the weighted sum of
// values in one call, each key and value read once for all those heads.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <hwy/base.h>

namespace hymba {

// Keys are stored in tiles of kKeyTile consecutive positions, dimension-major
// ([plane][kKeyTile]): one vector load reads a dimension of up to kKeyTile
// keys, so a score needs no horizontal sum. Cache type q8 pairs the planes
// ([plane pair][kKeyTile][2]): one load reads two dimensions of each key,
// which an int16 pair multiply-add takes whole. Key `index` of a run of tiles
// of `planes` planes starts at KeyTileIndex<T>(index, planes), and its plane p
// is KeyPlaneOffset<T>(p) further on. The kernel reads whole vectors from a
// key's first element onwards, so the storage holds kKeyPadding<T> elements
// of padding after its last tile.
inline constexpr size_t kKeyTile = 16;
template <typename T>
inline constexpr size_t kKeyLaneStride = std::is_same_v<T, int8_t> ? 2 : 1;
template <typename T>
inline constexpr size_t kKeyPadding = kKeyTile * kKeyLaneStride<T>;
template <typename T>
constexpr size_t KeyTileIndex(size_t index, size_t planes) {
  return index / kKeyTile * kKeyTile * planes + index % kKeyTile * kKeyLaneStride<T>;
}
template <typename T>
constexpr size_t KeyPlaneOffset(size_t plane) {
  return plane / kKeyLaneStride<T> * kKeyLaneStride<T> * kKeyTile + plane % kKeyLaneStride<T>;
}

// Values are stored in the same tiles of kKeyTile positions, in slices of
// ValueSliceWidth(dv) elements, slice-major ([slice][kKeyTile][width]): the
// kernel's pass over one slice of a tile's values reads them as one stream
// (rows of dv elements made it stride across them, and a decode step at depth
// read its K/V at half the memory bandwidth). Cache type q8 groups the keys in
// fours instead ([slice][kKeyTile / 4][width][4]): one load reads an element
// of four keys for each of its lanes, which a byte quad multiply-add takes
// whole. Value `index` of a run of tiles starts at ValueTileIndex<T>(index, dv)
// and its element i is ValueElementOffset<T>(i, dv) further on; a q8 value's
// address modulo 4 is its key's place in the quad, since every tile starts at
// a multiple of 4.
inline constexpr size_t kValueSlice = 32;
template <typename T>
inline constexpr size_t kValueLaneStride = std::is_same_v<T, int8_t> ? 4 : 1;
// The largest divisor of dv up to kValueSlice: slices fill the row exactly.
constexpr size_t ValueSliceWidth(size_t dv) {
  size_t width = dv < kValueSlice ? dv : kValueSlice;
  while (width > 1 && dv % width != 0) --width;
  return width;
}
template <typename T>
constexpr size_t ValueTileIndex(size_t index, size_t dv) {
  constexpr size_t stride = kValueLaneStride<T>;
  const size_t lane = index % kKeyTile;
  return index / kKeyTile * kKeyTile * dv + lane / stride * stride * ValueSliceWidth(dv) + lane % stride;
}
template <typename T>
constexpr size_t ValueElementOffset(size_t i, size_t dv) {
  const size_t width = ValueSliceWidth(dv);
  return i / width * kKeyTile * width + i % width * kValueLaneStride<T>;
}

// Cache type q8: a key or value row (one position, one K/V head) as int8 with
// one f32 scale, symmetric (element = scale * q, |q| <= 127). Both scales sit
// in the key's tile, four byte planes each after its dimensions (rounded up
// to pairs), key scale first, lowest byte first, so a key's pointer reaches
// them as it reaches its dimensions.
inline constexpr size_t kQ8ScaleBytes = 4;
// The planes of a key of dqk dimensions: q8 adds a zero dimension to an odd
// count and its scales' planes.
template <typename T>
constexpr size_t KeyPlanes(size_t dqk) {
  return std::is_same_v<T, int8_t> ? dqk + dqk % 2 + 2 * kQ8ScaleBytes : dqk;
}
constexpr size_t Q8KeyScalePlane(size_t dqk) { return dqk + dqk % 2; }
constexpr size_t Q8ValueScalePlane(size_t dqk) { return dqk + dqk % 2 + kQ8ScaleBytes; }
// absmax / 127 of n floats: 0 for zeros, NaN for a row with a NaN or an infinity.
float Q8RowScale(const float* values, size_t n);
// The nearest step of `scale` to value, within +-127; 0 for scale 0.
inline int8_t QuantizeQ8(float value, float scale) {
  // Divided, not multiplied by 1 / scale: that inverse overflows for a row of
  // tiny values (absmax below 4e-37), and 0 x inf is NaN. A quotient stays
  // within about +-127 for any positive scale, subnormal ones included.
  return static_cast<int8_t>(scale > 0.0f ? std::clamp(std::nearbyint(value / scale), -127.0f, 127.0f) : 0.0f);
}
// A scale's four bytes in planes first_plane.. of the q8 key at `key`.
inline void StoreQ8Scale(float scale, int8_t* key, size_t first_plane) {
  for (size_t b = 0; b < kQ8ScaleBytes; ++b) {
    key[KeyPlaneOffset<int8_t>(first_plane + b)] =
        static_cast<int8_t>(static_cast<uint8_t>(std::bit_cast<uint32_t>(scale) >> (8 * b)));
  }
}
inline float LoadQ8Scale(const int8_t* key, size_t first_plane) {
  uint32_t bits = 0;
  for (size_t b = 0; b < kQ8ScaleBytes; ++b) {
    bits |= uint32_t{static_cast<uint8_t>(key[KeyPlaneOffset<int8_t>(first_plane + b)])} << (8 * b);
  }
  return std::bit_cast<float>(bits);
}

// What a head's softmax saw over its keys: the largest scaled score and the
// sum of exp(score - max_score). Results over disjoint key ranges merge with it.
struct SoftmaxStats {
  float max_score;
  float sum;
};

// The keys that a caller's next call will read (its key_rows and count): the
// kernel fetches their tiles into L2 while it sums this call's values, whose
// reads come from L2 by then, so that memory does not idle while it works.
template <typename T>
struct NextKeys {
  const T* const* rows = nullptr;
  size_t count = 0;
};

// For each head j < heads: out[j * dv ..] = sum_m softmax_m(scale * q_j . K_m) V_m
// over the `count` visible positions, where q_j = queries + j * dqk, element i
// of K_m is key_rows[m][KeyPlaneOffset<T>(i)] and element i of V_m is
// value_rows[m][ValueElementOffset<T>(i, dv)] (the tiles above); keys and
// values stored as f32, f16 (cache type f16) or int8 with their scales (cache
// type q8, above). The q8 kernel multiplies in integers: each query is
// rounded to int16 steps of its absmax / 32767, and each 64 keys' softmax
// weights times their value scales to uint8 steps of their largest / 255
// (kernels/attention.cc).
// scores: scratch of heads * count. stats, when given, receives each head's
// softmax statistics. next: see NextKeys. A score is the same whatever
// `heads` is and wherever its key sits in a tile, so each head's result is too.
void Attend(const float* queries, size_t heads, const float* const* key_rows, const float* const* value_rows,
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out,
            SoftmaxStats* stats = nullptr, NextKeys<float> next = {});
void Attend(const float* queries, size_t heads, const hwy::float16_t* const* key_rows,
            const hwy::float16_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale, float* scores,
            float* out, SoftmaxStats* stats = nullptr, NextKeys<hwy::float16_t> next = {});
void Attend(const float* queries, size_t heads, const int8_t* const* key_rows, const int8_t* const* value_rows,
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out,
            SoftmaxStats* stats = nullptr, NextKeys<int8_t> next = {});

// One head's result over the union of disjoint key ranges, from its result
// over each range and that range's statistics, in order: part p is
// parts[p * part_stride ..][0, dv) with stats[p * stats_stride]. A single part
// comes back unchanged.
void MergeAttention(const float* parts, size_t part_stride, const SoftmaxStats* stats, size_t stats_stride,
                    size_t count, size_t dv, float* out);

}  // namespace hymba

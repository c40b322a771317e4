#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/dtype.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr size_t kMaxHeads = 8;  // heads per pass: 2 x 8 value accumulators fit the registers

// Keys and values as f32 vectors and scalars, from f32, f16 or int8 storage
// (int8 unscaled).
template <class D, typename T>
HWY_INLINE hn::Vec<D> LoadF32(D d, const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(d, p);
  } else if constexpr (std::is_same_v<T, int8_t>) {
    return hn::ConvertTo(d, hn::PromoteTo(hn::Rebind<int32_t, D>(), hn::LoadU(hn::Rebind<int8_t, D>(), p)));
  } else {
    return hn::PromoteTo(d, hn::LoadU(hn::Rebind<T, D>(), p));
  }
}
template <typename T>
HWY_INLINE float ScalarF32(const T& value) {
  if constexpr (std::is_same_v<T, float>) {
    return value;
  } else if constexpr (std::is_same_v<T, int8_t>) {
    return static_cast<float>(value);
  } else {
    uint16_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    return F16ToF32(bits);
  }
}

// The q8 scales of a run's keys, one per lane, from the four byte planes
// after the dimensions (kernels/attention.h).
template <class D>
HWY_INLINE hn::Vec<D> LoadQ8KeyScales(D d, const int8_t* key, size_t dqk) {
  const hn::RebindToUnsigned<D> du;
  const hn::Rebind<uint8_t, D> d8;
  const auto* planes = reinterpret_cast<const uint8_t*>(key + dqk * kKeyTile);
  const auto b0 = hn::PromoteTo(du, hn::LoadU(d8, planes));
  const auto b1 = hn::PromoteTo(du, hn::LoadU(d8, planes + kKeyTile));
  const auto b2 = hn::PromoteTo(du, hn::LoadU(d8, planes + 2 * kKeyTile));
  const auto b3 = hn::PromoteTo(du, hn::LoadU(d8, planes + 3 * kKeyTile));
  return hn::BitCast(d, hn::Or(hn::Or(b0, hn::ShiftLeft<8>(b1)), hn::Or(hn::ShiftLeft<16>(b2), hn::ShiftLeft<24>(b3))));
}

// kHeads heads sharing one K/V head; a compile-time count keeps the
// accumulators in registers.
template <size_t kHeads, typename T>
void AttendHeads(const float* queries, const T* const* key_rows, const T* const* value_rows, size_t count, size_t dqk,
                 size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats) {
  const hn::ScalableTag<float> d;
  const hn::CappedTag<float, 1> d1;
  const size_t lanes = hn::Lanes(d);
  using V = hn::Vec<decltype(d)>;
  constexpr size_t heads = kHeads;

  // Scores: a run of keys in one tile (consecutive pointers, at most one
  // vector) at a time, each lane one key's dot product, accumulated over the
  // dimensions in order (even and odd dimensions in two chains, then added):
  // the same operations for a key whichever run and lane it falls in. A long
  // context's keys come from DRAM: the keys a tile ahead are fetched.
  const hn::CappedTag<float, kKeyTile> dk;
  using VK = hn::Vec<decltype(dk)>;
  const size_t key_lanes = hn::Lanes(dk);
  constexpr bool kQ8 = std::is_same_v<T, int8_t>;
  constexpr size_t kLine = 64 / sizeof(T);  // elements per cache line
  constexpr size_t kPrefetchDims = std::max<size_t>(2, kLine / kKeyTile);  // a line of a tile, or two dimensions
  VK max_vector[kHeads];
#pragma GCC unroll 8
  for (size_t j = 0; j < heads; ++j) max_vector[j] = hn::Set(dk, -INFINITY);
  for (size_t m = 0; m < count;) {
    const T* key = key_rows[m];
    size_t run = 1;
    while (run < key_lanes && m + run < count && key_rows[m + run] == key + run) ++run;
    const T* ahead = key_rows[std::min(m + kKeyTile, count - 1)];
    VK even[kHeads], odd[kHeads];
#pragma GCC unroll 8
    for (size_t j = 0; j < heads; ++j) even[j] = hn::Zero(dk), odd[j] = hn::Zero(dk);
    size_t i = 0;
    for (; i + 2 <= dqk; i += 2) {
      if (i % kPrefetchDims == 0) {
        __builtin_prefetch(ahead + i * kKeyTile, 0, 3);
        if constexpr (kKeyTile * sizeof(T) >= 64) __builtin_prefetch(ahead + (i + 1) * kKeyTile, 0, 3);
      }
      const VK k0 = LoadF32(dk, key + i * kKeyTile), k1 = LoadF32(dk, key + (i + 1) * kKeyTile);
#pragma GCC unroll 8
      for (size_t j = 0; j < heads; ++j) {
        even[j] = hn::MulAdd(hn::Set(dk, queries[j * dqk + i]), k0, even[j]);
        odd[j] = hn::MulAdd(hn::Set(dk, queries[j * dqk + i + 1]), k1, odd[j]);
      }
    }
    if constexpr (kQ8) {  // the scale planes, key's and value's
      __builtin_prefetch(ahead + dqk * kKeyTile, 0, 3);
      __builtin_prefetch(ahead + (dqk + kQ8ScaleBytes) * kKeyTile, 0, 3);
    }
    if (i < dqk) {
      const VK k0 = LoadF32(dk, key + i * kKeyTile);
#pragma GCC unroll 8
      for (size_t j = 0; j < heads; ++j) even[j] = hn::MulAdd(hn::Set(dk, queries[j * dqk + i]), k0, even[j]);
    }
    const auto in_run = hn::FirstN(dk, run);
    VK key_scale = hn::Set(dk, scale);
    if constexpr (kQ8) key_scale = hn::Mul(LoadQ8KeyScales(dk, key, dqk), key_scale);
    for (size_t j = 0; j < heads; ++j) {
      const VK score = hn::Mul(hn::Add(even[j], odd[j]), key_scale);
      max_vector[j] = hn::Max(max_vector[j], hn::IfThenElse(in_run, score, hn::Set(dk, -INFINITY)));
      if (run == key_lanes) {
        hn::StoreU(score, dk, scores + j * count + m);
      } else {
        float lane_scores[kKeyTile];
        hn::StoreU(score, dk, lane_scores);
        std::copy_n(lane_scores, run, scores + j * count + m);
      }
    }
    m += run;
  }

  // Softmax weights, unnormalised: exp(s - max); the sum divides the output once.
  float inverse[kHeads];
  for (size_t j = 0; j < heads; ++j) {
    float* row = scores + j * count;
    const float max_score = hn::GetLane(hn::MaxOfLanes(dk, max_vector[j]));
    const auto shift = hn::Set(d, max_score);
    auto sum_vector = hn::Zero(d);
    size_t m = 0;
    for (; m + lanes <= count; m += lanes) {
      const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, row + m), shift));
      hn::StoreU(e, d, row + m);
      sum_vector = hn::Add(sum_vector, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(d, sum_vector));
    for (; m < count; ++m) {  // the same exp, one lane at a time
      row[m] = hn::GetLane(hn::Exp(d1, hn::Sub(hn::Set(d1, row[m]), hn::Set(d1, max_score))));
      sum += row[m];
    }
    inverse[j] = 1.0f / sum;
    if (stats != nullptr) stats[j] = {max_score, sum};
  }

  // Weighted values: each value vector read once for every head, each output
  // element one accumulation over the keys in order. Keys go in runs of one
  // tile (consecutive slots) whose values stay in L1 while every slice of the
  // outputs passes over them; a run's part of each slice is one stretch of
  // memory and the slices follow each other (kernels/attention.h), so the
  // pass streams. The partial sums wait in `out`, exactly. A q8 value's scale
  // joins its weights, once per run: (weight * scale) * q.
  std::fill(out, out + heads * dv, 0.0f);
  float scaled_weights[kQ8 ? kHeads * kKeyTile : 1];
  const size_t width = ValueSliceWidth(dv);
  for (size_t k0 = 0, k1 = 0; k0 < count; k0 = k1) {
    for (k1 = k0 + 1; k1 < count && k1 - k0 < kKeyTile && value_rows[k1] == value_rows[k0] + (k1 - k0) * width;) ++k1;
    auto weight = [&](size_t j, size_t k) {
      if constexpr (kQ8) return scaled_weights[j * kKeyTile + k - k0];
      return scores[j * count + k];
    };
    if constexpr (kQ8) {
      for (size_t k = k0; k < k1; ++k) {
        const float value_scale = LoadQ8Scale(key_rows[k] + (dqk + kQ8ScaleBytes) * kKeyTile, kKeyTile);
        for (size_t j = 0; j < heads; ++j) scaled_weights[j * kKeyTile + k - k0] = scores[j * count + k] * value_scale;
      }
    }
    for (size_t slice = 0; slice < dv; slice += width) {
      const size_t at = ValueElementOffset(slice, dv);  // the slice's first element, from a value's pointer
      // The same slice of the next run's tile into L2 while this one is
      // summed: measured, it beats the hardware prefetcher alone (f32 decode
      // at depth 14 -> 17 GB/s on one Zen 4 core) and fetching them during
      // the scores (L1 miss slots are few).
      if (k1 < count) {
        const char* next = reinterpret_cast<const char*>(value_rows[k1] + at);
        for (size_t line = 0; line < kKeyTile * width * sizeof(T); line += 64) __builtin_prefetch(next + line, 0, 2);
      }
      float* slice_out = out + slice;
      size_t i = 0;
      for (; i + 2 * lanes <= width; i += 2 * lanes) {
        V a0[kHeads], a1[kHeads];
#pragma GCC unroll 8
        for (size_t j = 0; j < heads; ++j) {
          a0[j] = hn::LoadU(d, slice_out + j * dv + i), a1[j] = hn::LoadU(d, slice_out + j * dv + i + lanes);
        }
        for (size_t k = k0; k < k1; ++k) {
          const T* v = value_rows[k] + at + i;
          const V v0 = LoadF32(d, v), v1 = LoadF32(d, v + lanes);
#pragma GCC unroll 8
          for (size_t j = 0; j < heads; ++j) {
            const V w = hn::Set(d, weight(j, k));
            a0[j] = hn::MulAdd(w, v0, a0[j]);
            a1[j] = hn::MulAdd(w, v1, a1[j]);
          }
        }
        for (size_t j = 0; j < heads; ++j) {
          hn::StoreU(a0[j], d, slice_out + j * dv + i), hn::StoreU(a1[j], d, slice_out + j * dv + i + lanes);
        }
      }
      for (; i + lanes <= width; i += lanes) {
        for (size_t j = 0; j < heads; ++j) {
          V acc = hn::LoadU(d, slice_out + j * dv + i);
          for (size_t k = k0; k < k1; ++k) acc = hn::MulAdd(hn::Set(d, weight(j, k)), LoadF32(d, value_rows[k] + at + i), acc);
          hn::StoreU(acc, d, slice_out + j * dv + i);
        }
      }
      for (; i < width; ++i) {
        for (size_t j = 0; j < heads; ++j) {
          float acc = slice_out[j * dv + i];
          for (size_t k = k0; k < k1; ++k) acc += weight(j, k) * ScalarF32(value_rows[k][at + i]);
          slice_out[j * dv + i] = acc;
        }
      }
    }
  }
  for (size_t j = 0; j < heads; ++j) {
    size_t i = 0;
    for (; i + lanes <= dv; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(d, out + j * dv + i), hn::Set(d, inverse[j])), d, out + j * dv + i);
    for (; i < dv; ++i) out[j * dv + i] *= inverse[j];
  }
}

template <typename T>
void AttendImpl(const float* queries, size_t heads, const T* const* key_rows, const T* const* value_rows, size_t count,
                size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats) {
  for (size_t first = 0; first < heads; first += kMaxHeads) {
    const float* q = queries + first * dqk;
    float* o = out + first * dv;
    SoftmaxStats* s = stats == nullptr ? nullptr : stats + first;
    switch (std::min(kMaxHeads, heads - first)) {
#define HYMBA_ATTEND_CASE(n) \
  case n: AttendHeads<n>(q, key_rows, value_rows, count, dqk, dv, scale, scores, o, s); break;
      HYMBA_ATTEND_CASE(1) HYMBA_ATTEND_CASE(2) HYMBA_ATTEND_CASE(3) HYMBA_ATTEND_CASE(4)
      HYMBA_ATTEND_CASE(5) HYMBA_ATTEND_CASE(6) HYMBA_ATTEND_CASE(7) HYMBA_ATTEND_CASE(8)
#undef HYMBA_ATTEND_CASE
    }
  }
}

void AttendF32(const float* queries, size_t heads, const float* const* key_rows, const float* const* value_rows,
               size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats) {
  AttendImpl(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats);
}

void AttendF16(const float* queries, size_t heads, const hwy::float16_t* const* key_rows,
               const hwy::float16_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale, float* scores,
               float* out, SoftmaxStats* stats) {
  AttendImpl(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats);
}

void AttendQ8(const float* queries, size_t heads, const int8_t* const* key_rows, const int8_t* const* value_rows,
              size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats) {
  AttendImpl(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats);
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(AttendF32);
HWY_EXPORT(AttendF16);
HWY_EXPORT(AttendQ8);

void Attend(const float* queries, size_t heads, const float* const* key_rows, const float* const* value_rows,
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats) {
  HWY_DYNAMIC_DISPATCH(AttendF32)(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats);
}

void Attend(const float* queries, size_t heads, const hwy::float16_t* const* key_rows,
            const hwy::float16_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale, float* scores,
            float* out, SoftmaxStats* stats) {
  HWY_DYNAMIC_DISPATCH(AttendF16)(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats);
}

void Attend(const float* queries, size_t heads, const int8_t* const* key_rows, const int8_t* const* value_rows,
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats) {
  HWY_DYNAMIC_DISPATCH(AttendQ8)(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats);
}

float Q8RowScale(const float* values, size_t n) {
  float absmax = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) return NAN;  // overflowed upstream: NaN reaches the logits, and sampling reports it
    absmax = std::max(absmax, std::fabs(values[i]));
  }
  return absmax / 127.0f;
}

void MergeAttention(const float* parts, size_t part_stride, const SoftmaxStats* stats, size_t stats_stride,
                    size_t count, size_t dv, float* out) {
  float max_score = -INFINITY;
  for (size_t p = 0; p < count; ++p) max_score = std::max(max_score, stats[p * stats_stride].max_score);
  float total = 0.0f;
  for (size_t p = 0; p < count; ++p) {
    total += stats[p * stats_stride].sum * std::exp(stats[p * stats_stride].max_score - max_score);
  }
  std::fill(out, out + dv, 0.0f);
  for (size_t p = 0; p < count; ++p) {
    // Each part is normalised by its own sum; its share of the whole is that
    // sum rescaled to the common maximum (exactly 1 for a single part).
    const SoftmaxStats& part = stats[p * stats_stride];
    const float weight = part.sum * std::exp(part.max_score - max_score) / total;
    for (size_t i = 0; i < dv; ++i) out[i] += weight * parts[p * part_stride + i];
  }
}

}  // namespace hymba
#endif

#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstdint>
#include <type_traits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "kernels/load_f32-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr size_t kMaxHeads = 8;  // heads per pass: 2 x 8 value accumulators fit the registers

// The length of the run of keys from m on: keys of one tile with consecutive
// pointers, at most `lanes` of them.
template <typename T>
HWY_INLINE size_t KeyRun(const T* const* key_rows, size_t m, size_t count, size_t lanes) {
  size_t run = 1;
  while (run < lanes && m + run < count && key_rows[m + run] == key_rows[m] + run * kKeyLaneStride<T>) ++run;
  return run;
}

// A run's scores (one key per lane) into each head's row of `scores`, and
// into the running maxima.
template <size_t kHeads, class D>
HWY_INLINE void StoreScores(D d, const hn::Vec<D>* score, size_t run, size_t m, size_t count, float* scores,
                            hn::Vec<D>* max_vector) {
  const auto in_run = hn::FirstN(d, run);
  for (size_t j = 0; j < kHeads; ++j) {
    max_vector[j] = hn::Max(max_vector[j], hn::IfThenElse(in_run, score[j], hn::Set(d, -INFINITY)));
    if (run == hn::Lanes(d)) {
      hn::StoreU(score[j], d, scores + j * count + m);
    } else {
      float lane_scores[kKeyTile];
      hn::StoreU(score[j], d, lane_scores);
      std::copy_n(lane_scores, run, scores + j * count + m);
    }
  }
}

// Softmax weights, unnormalised: exp(s - max) replaces each score; inverse[j]
// is 1 / the sum of head j's weights, which divides its output once.
template <size_t kHeads, class DK>
HWY_INLINE void ExpScores(DK dk, const hn::Vec<DK>* max_vector, size_t count, float* scores, float* inverse,
                          SoftmaxStats* stats) {
  const hn::ScalableTag<float> d;
  const hn::CappedTag<float, 1> d1;
  const size_t lanes = hn::Lanes(d);
  for (size_t j = 0; j < kHeads; ++j) {
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
}

// kHeads heads sharing one K/V head stored as f32 or f16; a compile-time
// count keeps the accumulators in registers.
template <size_t kHeads, typename T>
void AttendHeads(const float* queries, const T* const* key_rows, const T* const* value_rows, size_t count, size_t dqk,
                 size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  using V = hn::Vec<decltype(d)>;
  constexpr size_t heads = kHeads;

  // Scores: each lane one key's dot product, accumulated over the dimensions
  // in order (even and odd dimensions in two chains, then added): the same
  // operations for a key whichever run and lane it falls in. A long
  // context's keys come from DRAM: the keys a tile ahead are fetched.
  const hn::CappedTag<float, kKeyTile> dk;
  using VK = hn::Vec<decltype(dk)>;
  constexpr size_t kLine = 64 / sizeof(T);  // elements per cache line
  constexpr size_t kPrefetchDims = std::max<size_t>(2, kLine / kKeyTile);  // a line of a tile, or two dimensions
  VK max_vector[kHeads];
#pragma GCC unroll 8
  for (size_t j = 0; j < heads; ++j) max_vector[j] = hn::Set(dk, -INFINITY);
  for (size_t m = 0; m < count;) {
    const T* key = key_rows[m];
    const size_t run = KeyRun(key_rows, m, count, hn::Lanes(dk));
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
    if (i < dqk) {
      const VK k0 = LoadF32(dk, key + i * kKeyTile);
#pragma GCC unroll 8
      for (size_t j = 0; j < heads; ++j) even[j] = hn::MulAdd(hn::Set(dk, queries[j * dqk + i]), k0, even[j]);
    }
    VK score[kHeads];
    for (size_t j = 0; j < heads; ++j) score[j] = hn::Mul(hn::Add(even[j], odd[j]), hn::Set(dk, scale));
    StoreScores<kHeads>(dk, score, run, m, count, scores, max_vector);
    m += run;
  }
  float inverse[kHeads];
  ExpScores<kHeads>(dk, max_vector, count, scores, inverse, stats);

  // Weighted values: each value vector read once for every head, each output
  // element one accumulation over the keys in order. Keys go in runs of one
  // tile (consecutive slots) whose values stay in L1 while every slice of the
  // outputs passes over them; a run's part of each slice is one stretch of
  // memory and the slices follow each other (kernels/attention.h), so the
  // pass streams. The partial sums wait in `out`, exactly.
  std::fill(out, out + heads * dv, 0.0f);
  const size_t width = ValueSliceWidth(dv);
  for (size_t k0 = 0, k1 = 0; k0 < count; k0 = k1) {
    for (k1 = k0 + 1; k1 < count && k1 - k0 < kKeyTile && value_rows[k1] == value_rows[k0] + (k1 - k0) * width;) ++k1;
    for (size_t slice = 0; slice < dv; slice += width) {
      const size_t at = ValueElementOffset<T>(slice, dv);  // the slice's first element, from a value's pointer
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
            const V w = hn::Set(d, scores[j * count + k]);
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
          for (size_t k = k0; k < k1; ++k) {
            acc = hn::MulAdd(hn::Set(d, scores[j * count + k]), LoadF32(d, value_rows[k] + at + i), acc);
          }
          hn::StoreU(acc, d, slice_out + j * dv + i);
        }
      }
      for (; i < width; ++i) {
        for (size_t j = 0; j < heads; ++j) {
          float acc = slice_out[j * dv + i];
          for (size_t k = k0; k < k1; ++k) acc += scores[j * count + k] * LoadScalarF32(&value_rows[k][at + i]);
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

// Cache type q8: the products in integers. Queries and weights become int16
// steps (below), keys and values stay int8 in their pair layouts
// (kernels/attention.h), and one pair multiply-add takes two of each into an
// int32 lane: with AVX-512 VNNI `vpdpwssd`, 32 products an instruction where
// the f32 kernel needs two FMAs and first four instructions to widen 32 int8.
// Integer sums are exact, so a result does not depend on where a key sits in
// its tile.
constexpr float kInt16Steps = 32767.0f;
constexpr size_t kQ8WeightChunk = 64;  // keys per weight scale: 64 x 32767 x 127 x 2 fits an int32
constexpr size_t kQ8DimChunk = 256;    // dimensions per int32 score sum, for the same reason

// n floats (n >= 1) as the nearest int16 steps of absmax / 32767 (each value
// times the step's inverse, rounded to nearest even, in the vector lanes and
// the scalar tail alike); returns the step. NaN if one of them is not finite
// (a NaN step carries the overflow to the output); a step with no finite
// inverse (absmax below 4e-34) gives zeros, like an all-zero row.
float ToInt16Steps(const float* values, size_t n, int16_t* steps) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<int16_t, decltype(d)> d16;
  const size_t lanes = hn::Lanes(d);
  auto absmax = hn::Zero(d), poison = hn::Zero(d);  // x * 0 is NaN for x NaN or infinite
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::LoadU(d, values + i);
    absmax = hn::Max(absmax, hn::Abs(v));
    poison = hn::MulAdd(v, hn::Zero(d), poison);
  }
  float max_value = hn::GetLane(hn::MaxOfLanes(d, absmax));
  float poisoned = hn::GetLane(hn::SumOfLanes(d, poison));
  for (size_t t = i; t < n; ++t) max_value = std::max(max_value, std::fabs(values[t])), poisoned += values[t] * 0.0f;
  const float scale = std::isnan(poisoned) ? NAN : max_value / kInt16Steps;
  if (!(scale >= std::numeric_limits<float>::min())) {
    std::fill(steps, steps + n, int16_t{0});
    return std::isnan(scale) ? scale : 0.0f;
  }
  const float inverse = 1.0f / scale;
  for (i = 0; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::DemoteTo(d16, hn::NearestInt(hn::Mul(hn::LoadU(d, values + i), hn::Set(d, inverse)))), d16, steps + i);
  }
  for (; i < n; ++i) steps[i] = static_cast<int16_t>(std::clamp(std::nearbyint(values[i] * inverse), -kInt16Steps, kInt16Steps));
  return scale;
}

// Highway 1.0.3's AVX3_DL target leaves out avx512vnni (it names avxvnni), so
// the functions that use vpdpwssd ask for it themselves.
#undef HYMBA_VNNI_ATTR
#undef HYMBA_HAVE_VNNI
#if HWY_TARGET == HWY_AVX3_DL && HWY_COMPILER_GCC_ACTUAL
#define HYMBA_VNNI_ATTR __attribute__((target("avx512vnni")))
#define HYMBA_HAVE_VNNI 1
#else
#define HYMBA_VNNI_ATTR
#define HYMBA_HAVE_VNNI 0
#endif

// acc + bytes[2l] * pair[0] + bytes[2l + 1] * pair[1] in each int32 lane l:
// 2 x Lanes(di) int8 from `bytes`, two int16 from `pair`.
template <class DI>
HYMBA_VNNI_ATTR HWY_INLINE hn::Vec<DI> MulAddPairs(DI di, const int8_t* bytes, const int16_t* pair, hn::Vec<DI> acc) {
#if HWY_TARGET == HWY_SCALAR
  return hn::Add(acc, hn::Set(di, int32_t{bytes[0]} * pair[0] + int32_t{bytes[1]} * pair[1]));
#else
  int32_t packed;
  std::memcpy(&packed, pair, sizeof(packed));
#if HYMBA_HAVE_VNNI
  if constexpr (hn::MaxLanes(di) == 16) {
    const __m512i words = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes)));
    return hn::Vec<DI>{_mm512_dpwssd_epi32(acc.raw, words, _mm512_set1_epi32(packed))};
  }
#endif
  const hn::Repartition<int16_t, DI> dw;
  const auto words = hn::PromoteTo(dw, hn::LoadU(hn::Rebind<int8_t, decltype(dw)>(), bytes));
  auto unused = hn::Zero(di);  // x86 keeps each pair's sum in one lane: sum1 stays zero
  const auto sum = hn::ReorderWidenMulAccumulate(di, words, hn::BitCast(dw, hn::Set(di, packed)), acc, unused);
  return hn::RearrangeToOddPlusEven(sum, unused);
#endif
}

// A q8 scale of each lane's key, from its four byte planes first_plane.. (in
// two plane pairs: bytes 0 and 1 of a lane are one int16, 2 and 3 the next).
template <class DK>
HWY_INLINE hn::Vec<DK> LoadQ8Scales(DK dk, const int8_t* key, size_t first_plane) {
  const hn::RebindToUnsigned<DK> du;
  const hn::Rebind<uint16_t, DK> d16;
  const auto* low = reinterpret_cast<const uint16_t*>(key + KeyPlaneOffset<int8_t>(first_plane));
  const auto* high = reinterpret_cast<const uint16_t*>(key + KeyPlaneOffset<int8_t>(first_plane + 2));
  const auto bits = hn::Or(hn::PromoteTo(du, hn::LoadU(d16, low)), hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, high))));
  return hn::BitCast(dk, bits);
}

// The first value of the q8 key pair that `value` belongs to (a pair's
// second value sits at the odd address after it, kernels/attention.h).
HWY_INLINE const int8_t* PairStart(const int8_t* value) { return value - reinterpret_cast<uintptr_t>(value) % 2; }

// What the q8 kernel keeps between its steps, grown as needed, one per thread.
struct Q8Scratch {
  std::vector<int16_t> query_steps;  // [head][dqk rounded up to pairs], an odd count's last partner 0
  std::vector<float> value_scales;   // [count + a vector]
  std::vector<int16_t> weights;      // [head][count]
  std::vector<float> weight_scales;  // [head][chunk]
  std::vector<int32_t> sums;         // [head][dv], one chunk's
};

template <size_t kHeads>
HYMBA_VNNI_ATTR void AttendHeadsQ8(const float* queries, const int8_t* const* key_rows,
                                   const int8_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale,
                                   float* scores, float* out, SoftmaxStats* stats) {
  constexpr size_t heads = kHeads;
  const hn::CappedTag<int32_t, kKeyTile> di;  // a key per lane (scores), a dimension per lane (values)
  const hn::Rebind<float, decltype(di)> dk;
  using VI = hn::Vec<decltype(di)>;
  using VK = hn::Vec<decltype(dk)>;
  const size_t lanes = hn::Lanes(di);
  thread_local Q8Scratch scratch;
  const size_t pairs = (dqk + 1) / 2, chunks = (count + kQ8WeightChunk - 1) / kQ8WeightChunk;
  scratch.query_steps.assign(heads * 2 * pairs, 0);
  scratch.value_scales.resize(count + kKeyTile);
  scratch.weights.resize(heads * count);
  scratch.weight_scales.resize(heads * chunks);
  scratch.sums.resize(heads * dv);

  float query_scale[kHeads];
  for (size_t j = 0; j < heads; ++j) {
    query_scale[j] = ToInt16Steps(queries + j * dqk, dqk, &scratch.query_steps[j * 2 * pairs]) * scale;
  }

  // Scores: a run of keys at a time, each lane one key, a pair of dimensions
  // per step; each kQ8DimChunk dimensions' int32 sum joins the f32 score in
  // order.
  VK max_vector[kHeads];
#pragma GCC unroll 8
  for (size_t j = 0; j < heads; ++j) max_vector[j] = hn::Set(dk, -INFINITY);
  for (size_t m = 0; m < count;) {
    const int8_t* key = key_rows[m];
    const size_t run = KeyRun(key_rows, m, count, lanes);
    const int8_t* ahead = key_rows[std::min(m + kKeyTile, count - 1)];
    VK dot[kHeads];
#pragma GCC unroll 8
    for (size_t j = 0; j < heads; ++j) dot[j] = hn::Zero(dk);
    for (size_t p0 = 0; p0 < pairs; p0 += kQ8DimChunk / 2) {
      VI sum[kHeads];
#pragma GCC unroll 8
      for (size_t j = 0; j < heads; ++j) sum[j] = hn::Zero(di);
      for (size_t p = p0; p < std::min(pairs, p0 + kQ8DimChunk / 2); ++p) {
        const int8_t* plane_pair = key + KeyPlaneOffset<int8_t>(2 * p);
        if (p % 2 == 0) __builtin_prefetch(ahead + KeyPlaneOffset<int8_t>(2 * p), 0, 3);  // a line holds two pairs
#pragma GCC unroll 8
        for (size_t j = 0; j < heads; ++j) sum[j] = MulAddPairs(di, plane_pair, &scratch.query_steps[(j * pairs + p) * 2], sum[j]);
      }
#pragma GCC unroll 8
      for (size_t j = 0; j < heads; ++j) dot[j] = hn::Add(dot[j], hn::ConvertTo(dk, sum[j]));
    }
    __builtin_prefetch(ahead + KeyPlaneOffset<int8_t>(Q8KeyScalePlane(dqk)), 0, 3);  // both scales' line
    // The run's values into L2 while its scores are summed: the weighted sum
    // reads them after the softmax, and a run's tile is one stretch of memory.
    const int8_t* values = PairStart(value_rows[m]);
    for (size_t line = 0; line < kKeyTile * dv; line += 64) __builtin_prefetch(values + line, 0, 2);
    const VK key_scale = LoadQ8Scales(dk, key, Q8KeyScalePlane(dqk));
    hn::StoreU(LoadQ8Scales(dk, key, Q8ValueScalePlane(dqk)), dk, &scratch.value_scales[m]);
    VK score[kHeads];
    for (size_t j = 0; j < heads; ++j) score[j] = hn::Mul(hn::Mul(dot[j], hn::Set(dk, query_scale[j])), key_scale);
    StoreScores<kHeads>(dk, score, run, m, count, scores, max_vector);
    m += run;
  }
  float inverse[kHeads];
  ExpScores<kHeads>(dk, max_vector, count, scores, inverse, stats);

  // Weights: each key's softmax weight times its value's scale, as int16
  // steps of one scale per chunk of keys in list order (so that where a key
  // sits does not matter).
  const hn::ScalableTag<float> d;
  for (size_t j = 0; j < heads; ++j) {
    float* row = scores + j * count;
    size_t k = 0;
    for (; k + hn::Lanes(d) <= count; k += hn::Lanes(d)) {
      hn::StoreU(hn::Mul(hn::LoadU(d, row + k), hn::LoadU(d, &scratch.value_scales[k])), d, row + k);
    }
    for (; k < count; ++k) row[k] *= scratch.value_scales[k];
    for (size_t c = 0; c < chunks; ++c) {
      const size_t first = c * kQ8WeightChunk, size = std::min(count, first + kQ8WeightChunk) - first;
      scratch.weight_scales[j * chunks + c] = ToInt16Steps(row + first, size, &scratch.weights[j * count + first]);
    }
  }

  // Weighted values: a run of one tile's keys at a time, two keys (a pair of
  // its tile) per step, every slice of the outputs passing over the run's
  // values as the f32 kernel does; a run that starts or ends inside a pair
  // gives the key outside it a weight of 0. A chunk's int32 sums wait in
  // scratch.sums, then join `out` in f32.
  const size_t width = ValueSliceWidth(dv);
  std::fill(out, out + heads * dv, 0.0f);
  for (size_t c = 0; c < chunks; ++c) {
    const size_t chunk_end = std::min(count, (c + 1) * kQ8WeightChunk);
    std::fill(scratch.sums.begin(), scratch.sums.end(), 0);
    for (size_t k0 = c * kQ8WeightChunk, k1 = 0; k0 < chunk_end; k0 = k1) {
      const int8_t* pair_base = PairStart(value_rows[k0]);
      const size_t first_lane = static_cast<size_t>(value_rows[k0] - pair_base);  // 1: the second of its pair
      auto place = [&](size_t lane) { return pair_base + lane / 2 * 2 * width + lane % 2; };
      for (k1 = k0 + 1; k1 < chunk_end && first_lane + (k1 - k0) < kKeyTile && value_rows[k1] == place(first_lane + k1 - k0);) ++k1;
      const size_t lanes_used = first_lane + (k1 - k0), key_pairs = (lanes_used + 1) / 2;
      int16_t run_weights[kHeads][kKeyTile + 2] = {};
      for (size_t j = 0; j < heads; ++j) std::copy(&scratch.weights[j * count + k0], &scratch.weights[j * count + k1], &run_weights[j][first_lane]);
      for (size_t slice = 0; slice < dv; slice += width) {
        const size_t at = ValueElementOffset<int8_t>(slice, dv);
        int32_t* slice_sums = scratch.sums.data() + slice;
        size_t i = 0;
        for (; i + lanes <= width; i += lanes) {
          VI acc[kHeads];
#pragma GCC unroll 8
          for (size_t j = 0; j < heads; ++j) acc[j] = hn::LoadU(di, slice_sums + j * dv + i);
          for (size_t q = 0; q < key_pairs; ++q) {
            const int8_t* bytes = pair_base + at + q * 2 * width + 2 * i;
#pragma GCC unroll 8
            for (size_t j = 0; j < heads; ++j) acc[j] = MulAddPairs(di, bytes, &run_weights[j][2 * q], acc[j]);
          }
#pragma GCC unroll 8
          for (size_t j = 0; j < heads; ++j) hn::StoreU(acc[j], di, slice_sums + j * dv + i);
        }
        for (; i < width; ++i) {
          for (size_t j = 0; j < heads; ++j) {
            int32_t acc = slice_sums[j * dv + i];
            for (size_t lane = 0; lane < 2 * key_pairs; ++lane) acc += int32_t{run_weights[j][lane]} * place(lane)[at + 2 * i];
            slice_sums[j * dv + i] = acc;
          }
        }
      }
    }
    for (size_t j = 0; j < heads; ++j) {
      const float step = scratch.weight_scales[j * chunks + c];
      for (size_t i = 0; i < dv; ++i) out[j * dv + i] += static_cast<float>(scratch.sums[j * dv + i]) * step;
    }
  }
  for (size_t j = 0; j < heads; ++j) {
    for (size_t i = 0; i < dv; ++i) out[j * dv + i] *= inverse[j];
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
  case n:                                                                             \
    if constexpr (std::is_same_v<T, int8_t>) {                                        \
      AttendHeadsQ8<n>(q, key_rows, value_rows, count, dqk, dv, scale, scores, o, s); \
    } else {                                                                          \
      AttendHeads<n>(q, key_rows, value_rows, count, dqk, dv, scale, scores, o, s);   \
    }                                                                                 \
    break;
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

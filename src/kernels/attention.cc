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

// Fetches the next call's key tiles (one per kKeyTile keys in list order)
// into L2, a share of their lines per step of the caller's value pass. A
// key's tile starts at its cache line: tiles are whole lines in line-aligned
// storage, and a key's offset in one is under a line.
template <typename T>
class NextKeyFetcher {
 public:
  NextKeyFetcher(const NextKeys<T>& next, size_t planes, size_t steps)
      : rows_(next.rows), tiles_((next.count + kKeyTile - 1) / kKeyTile), tile_lines_((kKeyTile * planes * sizeof(T) + 63) / 64) {
    share_ = (tiles_ * tile_lines_ + steps - 1) / std::max<size_t>(steps, 1);
  }
  void Step() {
    for (size_t left = share_; left > 0 && tile_ < tiles_;) {
      const uintptr_t start = reinterpret_cast<uintptr_t>(rows_[tile_ * kKeyTile]) & ~uintptr_t{63};
      const size_t end = std::min(tile_lines_, line_ + left);
      for (size_t line = line_; line < end; ++line) __builtin_prefetch(reinterpret_cast<const void*>(start + line * 64), 0, 2);
      left -= end - line_;
      line_ = end;
      if (line_ == tile_lines_) line_ = 0, ++tile_;
    }
  }

 private:
  const T* const* rows_;
  size_t tiles_, tile_lines_, share_;
  size_t tile_ = 0, line_ = 0;  // the next line to fetch
};

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

// exp(x) for the softmax's x <= 0: Cephes' expf polynomial after a two-step
// reduction by ln 2 (within 2 ulp), 0 below -87 (where exp(x) < 1.7e-38
// beside the largest weight's 1), NaN for NaN. hn::Exp serves every input
// range at about 1.5 times the cost, and the softmax takes one per query
// head and key.
template <class D>
HWY_INLINE hn::Vec<D> ExpNonPositive(D d, hn::Vec<D> x) {
  const hn::RebindToSigned<D> di;
  // n = x log2(e) rounded to nearest by the adder: a sum near 1.5 x 2^23 has
  // no fraction bits, and its low mantissa bits hold 127 + n, the exponent
  // field of 2^n.
  const auto biased_shift = hn::Set(d, 12582912.0f + 127.0f);
  const auto shifted = hn::MulAdd(x, hn::Set(d, 1.44269504088896341f), biased_shift);
  const auto n = hn::Sub(shifted, biased_shift);
  const auto two_to_n = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(di, shifted)));
  auto r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), x);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  auto p = hn::Set(d, 1.9875691500e-4f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.3981999507e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 8.3334519073e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1665795894e-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666665459e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 5.0000001201e-1f));
  const auto e = hn::MulAdd(hn::Mul(p, r), r, hn::Add(r, hn::Set(d, 1.0f)));  // 1 + r + r^2 p(r)
  return hn::IfThenZeroElse(hn::Lt(x, hn::Set(d, -87.0f)), hn::Mul(e, two_to_n));
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
      const auto e = ExpNonPositive(d, hn::Sub(hn::LoadU(d, row + m), shift));
      hn::StoreU(e, d, row + m);
      sum_vector = hn::Add(sum_vector, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(d, sum_vector));
    for (; m < count; ++m) {  // the same exp, one lane at a time
      row[m] = hn::GetLane(ExpNonPositive(d1, hn::Sub(hn::Set(d1, row[m]), hn::Set(d1, max_score))));
      sum += row[m];
    }
    inverse[j] = 1.0f / sum;
    if (stats != nullptr) stats[j] = {max_score, sum};
  }
}

// acc + v * weight in every lane. With 16 lanes written out so that the
// weight comes broadcast from memory inside the multiply-add: GCC loads it
// with a vbroadcastss of its own, which costs Zen 4 an FP slot per weight.
template <class D>
HWY_INLINE hn::Vec<D> MulAddWeight(D d, const float* weight, hn::Vec<D> v, hn::Vec<D> acc) {
#if HWY_TARGET <= HWY_AVX3 && HWY_ARCH_X86_64 && HWY_COMPILER_GCC
  if constexpr (hn::MaxLanes(d) == 16) {
    __m512 sum = acc.raw;
    asm("vfmadd231ps %2%{1to16%}, %1, %0" : "+v"(sum) : "v"(v.raw), "m"(*weight));
    return hn::Vec<D>{sum};
  }
#endif
  return hn::MulAdd(hn::Set(d, *weight), v, acc);
}

// kHeads heads sharing one K/V head stored as f32 or f16; a compile-time
// count keeps the accumulators in registers.
template <size_t kHeads, typename T>
void AttendHeads(const float* queries, const T* const* key_rows, const T* const* value_rows, size_t count, size_t dqk,
                 size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats, NextKeys<T> next) {
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
  NextKeyFetcher<T> fetcher(next, KeyPlanes<T>(dqk), (count + kKeyTile - 1) / kKeyTile * (dv / width));  // a share per slice of a run
  for (size_t k0 = 0, k1 = 0; k0 < count; k0 = k1) {
    for (k1 = k0 + 1; k1 < count && k1 - k0 < kKeyTile && value_rows[k1] == value_rows[k0] + (k1 - k0) * width;) ++k1;
    for (size_t slice = 0; slice < dv; slice += width) {
      const size_t at = ValueElementOffset<T>(slice, dv);  // the slice's first element, from a value's pointer
      fetcher.Step();
      // The same slice of the next run's tile into L2 while this one is
      // summed: measured, it beats the hardware prefetcher alone (f32 decode
      // at depth 14 -> 17 GB/s on one Zen 4 core) and fetching them during
      // the scores (L1 miss slots are few).
      if (k1 < count) {
        const char* next_run = reinterpret_cast<const char*>(value_rows[k1] + at);
        for (size_t line = 0; line < kKeyTile * width * sizeof(T); line += 64) __builtin_prefetch(next_run + line, 0, 2);
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
            a0[j] = MulAddWeight(d, &scores[j * count + k], v0, a0[j]);
            a1[j] = MulAddWeight(d, &scores[j * count + k], v1, a1[j]);
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
            acc = MulAddWeight(d, &scores[j * count + k], LoadF32(d, value_rows[k] + at + i), acc);
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

// Cache type q8: the products in integers. Queries become int16 steps and
// keys stay int8 in their pair layout (kernels/attention.h): one pair
// multiply-add takes two of each into an int32 lane (`vpdpwssd` with AVX-512
// VNNI, 32 products an instruction). Softmax weights, never negative, become
// uint8 steps and values stay int8 in their quad layout: one quad multiply-add
// takes four of each (`vpdpbusd`, 64 products an instruction and no widening).
// Integer sums are exact, so a result does not depend on where a key sits in
// its tile.
constexpr size_t kQ8WeightChunk = 64;  // keys per weight step: 64 x 255 x 127 fits an int32
constexpr size_t kQ8DimChunk = 256;    // dimensions per int32 score sum: 128 x 2 x 32767 x 127 fits one

// n floats (n >= 1) as the nearest Step steps of absmax / the largest Step
// (each value times the step's inverse, rounded to nearest even, in the vector
// lanes and the scalar tail alike); returns the step. uint8 steps take values
// that are not negative. NaN if one of them is not finite (a NaN step carries
// the overflow to the output); a step below the smallest normal float (whose
// inverse may overflow) gives zeros, like an all-zero row.
template <typename Step>
float ToSteps(const float* values, size_t n, Step* steps) {
  constexpr float kLevels = std::numeric_limits<Step>::max();
  const hn::ScalableTag<float> d;
  const hn::Rebind<Step, decltype(d)> ds;
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
  const float scale = std::isnan(poisoned) ? NAN : max_value / kLevels;
  if (!(scale >= std::numeric_limits<float>::min())) {
    std::fill(steps, steps + n, Step{0});
    return std::isnan(scale) ? scale : 0.0f;
  }
  const float inverse = 1.0f / scale;
  for (i = 0; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::DemoteTo(ds, hn::NearestInt(hn::Mul(hn::LoadU(d, values + i), hn::Set(d, inverse)))), ds, steps + i);
  }
  for (; i < n; ++i) steps[i] = static_cast<Step>(std::clamp(std::nearbyint(values[i] * inverse), -kLevels, kLevels));
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

// Four bytes as one int32 lane's worth, the first lowest: the two int16 that
// a pair multiply-add takes (MulAddPairs), or the four uint8 of a quad one
// (MulAddQuads).
HWY_INLINE int32_t PackedLane(const void* bytes) {
  int32_t packed;
  std::memcpy(&packed, bytes, sizeof(packed));
  return packed;
}

// acc + bytes[2l] * pair[0] + bytes[2l + 1] * pair[1] in each int32 lane l:
// 2 x Lanes(di) int8 from `bytes`, one pair of int16 for every lane.
template <class DI>
HYMBA_VNNI_ATTR HWY_INLINE hn::Vec<DI> MulAddPairs(DI di, const int8_t* bytes, const int16_t* pair, hn::Vec<DI> acc) {
#if HWY_TARGET == HWY_SCALAR
  return hn::Add(acc, hn::Set(di, int32_t{bytes[0]} * pair[0] + int32_t{bytes[1]} * pair[1]));
#else
#if HYMBA_HAVE_VNNI
  if constexpr (hn::MaxLanes(di) == 16) {
    // Written out, so that the pair comes broadcast from memory and the sum
    // stays in its register: through the intrinsic, GCC 12 copied one chain
    // of accumulators to another register and back around every step.
    const __m512i words = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes)));
    __m512i sum = acc.raw;
    using PairBits = int32_t __attribute__((may_alias));  // the two int16 as the 32 bits the broadcast reads
    asm("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(sum) : "v"(words), "m"(*reinterpret_cast<const PairBits*>(pair)));
    return hn::Vec<DI>{sum};
  }
#endif
  const hn::Repartition<int16_t, DI> dw;
  const auto words = hn::PromoteTo(dw, hn::LoadU(hn::Rebind<int8_t, decltype(dw)>(), bytes));
  auto unused = hn::Zero(di);  // x86 keeps each pair's sum in one lane: sum1 stays zero
  const auto sum = hn::ReorderWidenMulAccumulate(di, words, hn::BitCast(dw, hn::Set(di, PackedLane(pair))), acc, unused);
  return hn::RearrangeToOddPlusEven(sum, unused);
#endif
}

// acc + the sum over t < 4 of bytes[4l + t] * weight t in each int32 lane l,
// where the weights are the four uint8 of that lane of `quads`: 4 x Lanes(di)
// int8 from `bytes`.
template <class DI>
HYMBA_VNNI_ATTR HWY_INLINE hn::Vec<DI> MulAddQuads(DI di, const int8_t* bytes, hn::Vec<DI> quads, hn::Vec<DI> acc) {
#if HWY_TARGET == HWY_SCALAR
  const auto packed = static_cast<uint32_t>(hn::GetLane(quads));
  int32_t sum = 0;
  for (size_t t = 0; t < 4; ++t) sum += static_cast<int32_t>(packed >> (8 * t) & 0xFF) * bytes[t];
  return hn::Add(acc, hn::Set(di, sum));
#else
#if HYMBA_HAVE_VNNI
  if constexpr (hn::MaxLanes(di) == 16) {
    __m512i sum = acc.raw;  // written out for the reason MulAddPairs gives
    asm("vpdpbusd %2, %1, %0" : "+v"(sum) : "v"(quads.raw), "v"(_mm512_loadu_si512(bytes)));
    return hn::Vec<DI>{sum};
  }
#endif
  // Each int16 of `words` holds keys 0 and 1 of a lane's quad or keys 2 and
  // 3: its low bytes (keys 0 and 2) and high bytes (1 and 3), widened, meet
  // their weights in two pair multiply-adds.
  const hn::Repartition<int16_t, DI> dw;
  const hn::RebindToUnsigned<decltype(dw)> duw;
  const auto words = hn::BitCast(dw, hn::LoadU(hn::Repartition<int8_t, DI>(), bytes));
  const auto weight_words = hn::BitCast(duw, quads);
  const auto low_weights = hn::BitCast(dw, hn::And(weight_words, hn::Set(duw, 0xFF)));
  const auto high_weights = hn::BitCast(dw, hn::ShiftRight<8>(weight_words));
  auto unused = hn::Zero(di);  // x86 keeps each pair's sum in one lane: sum1 stays zero
  auto sum = hn::ReorderWidenMulAccumulate(di, hn::ShiftRight<8>(hn::ShiftLeft<8>(words)), low_weights, acc, unused);
  sum = hn::ReorderWidenMulAccumulate(di, hn::ShiftRight<8>(words), high_weights, sum, unused);
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

// The first value of the q8 key quad that `value` belongs to (its key's
// place in the quad is its address modulo 4, kernels/attention.h).
HWY_INLINE const int8_t* QuadStart(const int8_t* value) { return value - reinterpret_cast<uintptr_t>(value) % 4; }

// What the q8 kernel keeps between its steps, grown as needed, one per thread.
struct Q8Scratch {
  std::vector<int16_t> query_steps;  // [head][dqk rounded up to pairs], an odd count's last partner 0
  std::vector<float> value_scales;   // [count + a vector]
};

// Output vectors the q8 value pass sums at once: every head's accumulators
// for them, the heads' broadcast weights and a vector of values fill the
// vector registers less one, at most 4 vectors (for 5 heads, 4 of dv = 128's
// 8 vectors: 20 accumulators).
constexpr ptrdiff_t kVectorRegisters = HWY_MAX_BYTES >= 64 ? 32 : 16;
template <size_t kHeads>
constexpr size_t kValueBlock = static_cast<size_t>(
    std::clamp<ptrdiff_t>((kVectorRegisters - 2 - static_cast<ptrdiff_t>(kHeads)) / static_cast<ptrdiff_t>(kHeads), 1, 4));

// One block of the q8 value pass (AttendHeadsQ8): kBlock output vectors,
// whose first elements are `element` and whose values sit `offset` bytes from
// a quad's first value, summed over a chunk's quads (head j's weights of quad
// q at quad_weights[j * head_stride + 4 * q]) in int32 (a compile-time
// block keeps every accumulator in a register), then added to `out` in f32
// times each head's weight step.
template <size_t kHeads, size_t kBlock, class DI>
HYMBA_VNNI_ATTR HWY_INLINE void SumValueBlock(DI di, const int8_t* const* quad_values, const uint8_t* quad_weights,
                                              size_t head_stride, size_t quad_count,
                                              const size_t* element, const size_t* offset, const float* step,
                                              size_t dv, float* out) {
  const hn::Rebind<float, DI> df;
  using VI = hn::Vec<DI>;
  VI acc[kHeads][kBlock];
#pragma GCC unroll 8
  for (size_t j = 0; j < kHeads; ++j) {
#pragma GCC unroll 4
    for (size_t b = 0; b < kBlock; ++b) acc[j][b] = hn::Zero(di);
  }
  for (size_t q = 0; q < quad_count; ++q) {
    VI weights[kHeads];
#pragma GCC unroll 8
    for (size_t j = 0; j < kHeads; ++j) weights[j] = hn::Set(di, PackedLane(&quad_weights[j * head_stride + 4 * q]));
#pragma GCC unroll 4
    for (size_t b = 0; b < kBlock; ++b) {
#pragma GCC unroll 8
      for (size_t j = 0; j < kHeads; ++j) acc[j][b] = MulAddQuads(di, quad_values[q] + offset[b], weights[j], acc[j][b]);
    }
  }
#pragma GCC unroll 8
  for (size_t j = 0; j < kHeads; ++j) {
#pragma GCC unroll 4
    for (size_t b = 0; b < kBlock; ++b) {
      float* o = out + j * dv + element[b];
      hn::StoreU(hn::MulAdd(hn::ConvertTo(df, acc[j][b]), hn::Set(df, step[j]), hn::LoadU(df, o)), df, o);
    }
  }
}

template <size_t kHeads>
HYMBA_VNNI_ATTR void AttendHeadsQ8(const float* queries, const int8_t* const* key_rows,
                                   const int8_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale,
                                   float* scores, float* out, SoftmaxStats* stats, NextKeys<int8_t> next) {
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

  float query_scale[kHeads];
  for (size_t j = 0; j < heads; ++j) {
    query_scale[j] = ToSteps(queries + j * dqk, dqk, &scratch.query_steps[j * 2 * pairs]) * scale;
  }
  const int16_t* query_steps = scratch.query_steps.data();

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
    // The run's values into L2 while its scores are summed, a line or two
    // at a time: the weighted sum reads them after the softmax.
    const int8_t* value_line = QuadStart(value_rows[m]);
    const int8_t* const values_end = value_line + kKeyTile * dv;
    VK dot[kHeads];
#pragma GCC unroll 8
    for (size_t j = 0; j < heads; ++j) dot[j] = hn::Zero(dk);
    for (size_t p0 = 0; p0 < pairs; p0 += kQ8DimChunk / 2) {
      const size_t chunk_end = std::min(pairs, p0 + kQ8DimChunk / 2);
      // Even and odd pairs in two chains per head: one chain would wait on
      // each multiply-add's latency, and integer sums do not depend on order.
      VI even[kHeads], odd[kHeads];
#pragma GCC unroll 8
      for (size_t j = 0; j < heads; ++j) even[j] = hn::Zero(di), odd[j] = hn::Zero(di);
      size_t p = p0;
      for (; p + 2 <= chunk_end; p += 2) {
        const int8_t* plane_pairs = key + KeyPlaneOffset<int8_t>(2 * p);  // pairs p and p + 1: one cache line
        __builtin_prefetch(ahead + KeyPlaneOffset<int8_t>(2 * p), 0, 3);
        if (value_line < values_end) __builtin_prefetch(value_line, 0, 2), __builtin_prefetch(value_line + 64, 0, 2), value_line += 128;
#pragma GCC unroll 8
        for (size_t j = 0; j < heads; ++j) {
          even[j] = MulAddPairs(di, plane_pairs, &query_steps[(j * pairs + p) * 2], even[j]);
          odd[j] = MulAddPairs(di, plane_pairs + 2 * kKeyTile, &query_steps[(j * pairs + p + 1) * 2], odd[j]);
        }
      }
      if (p < chunk_end) {
        const int8_t* plane_pair = key + KeyPlaneOffset<int8_t>(2 * p);
        __builtin_prefetch(ahead + KeyPlaneOffset<int8_t>(2 * p), 0, 3);
#pragma GCC unroll 8
        for (size_t j = 0; j < heads; ++j) {
          even[j] = MulAddPairs(di, plane_pair, &query_steps[(j * pairs + p) * 2], even[j]);
        }
      }
#pragma GCC unroll 8
      for (size_t j = 0; j < heads; ++j) dot[j] = hn::Add(dot[j], hn::ConvertTo(dk, hn::Add(even[j], odd[j])));
    }
    __builtin_prefetch(ahead + KeyPlaneOffset<int8_t>(Q8KeyScalePlane(dqk)), 0, 3);  // the scales' lines
    __builtin_prefetch(ahead + KeyPlaneOffset<int8_t>(Q8ValueScalePlane(dqk)), 0, 3);
    for (; value_line < values_end; value_line += 64) __builtin_prefetch(value_line, 0, 2);
    const VK key_scale = LoadQ8Scales(dk, key, Q8KeyScalePlane(dqk));
    hn::StoreU(LoadQ8Scales(dk, key, Q8ValueScalePlane(dqk)), dk, &scratch.value_scales[m]);
    VK score[kHeads];
    for (size_t j = 0; j < heads; ++j) score[j] = hn::Mul(hn::Mul(dot[j], hn::Set(dk, query_scale[j])), key_scale);
    StoreScores<kHeads>(dk, score, run, m, count, scores, max_vector);
    m += run;
  }
  float inverse[kHeads];
  ExpScores<kHeads>(dk, max_vector, count, scores, inverse, stats);

  // Weights: each key's softmax weight times its value's scale.
  const hn::ScalableTag<float> d;
  for (size_t j = 0; j < heads; ++j) {
    float* row = scores + j * count;
    size_t k = 0;
    for (; k + hn::Lanes(d) <= count; k += hn::Lanes(d)) {
      hn::StoreU(hn::Mul(hn::LoadU(d, row + k), hn::LoadU(d, &scratch.value_scales[k])), d, row + k);
    }
    for (; k < count; ++k) row[k] *= scratch.value_scales[k];
  }

  // Weighted values, a chunk of keys at a time: the chunk's keys by the
  // quads of their tiles (kernels/attention.h), each head's weights as uint8
  // steps of one step per chunk in list order (so that where a key sits does
  // not matter), in their keys' places among the quads; then for a block of
  // the output's vectors at a time (every head's accumulators in registers)
  // each quad's values multiplied by every head's four weights. The block's
  // int32 sums join `out` in f32 after the chunk. Elements after a slice's
  // last whole vector go one at a time.
  const size_t width = ValueSliceWidth(dv);
  const size_t slice_vectors = width / lanes, vectors = dv / width * slice_vectors;
  constexpr size_t head_stride = 4 * kQ8WeightChunk;  // from a head's quad weights to the next head's
  const int8_t* quad_values[kQ8WeightChunk];          // a quad's first value
  uint8_t quad_weights[kHeads * head_stride];         // 0 for a key of a quad outside the chunk
  uint8_t places[kQ8WeightChunk];                     // a key's place among its chunk's quads' weights
  std::fill(out, out + heads * dv, 0.0f);
  NextKeyFetcher<int8_t> fetcher(next, KeyPlanes<int8_t>(dqk), chunks);  // a share per chunk
  for (size_t c = 0; c < chunks; ++c) {
    const size_t first = c * kQ8WeightChunk, size = std::min(count, first + kQ8WeightChunk) - first;
    fetcher.Step();
    size_t quad_count = 0;
    bool in_order = true;  // each key's place the one after the last's, as a ring's positions mostly are
    const int8_t* last_quad = nullptr;  // in a register: through quad_values, each key waited on the last's store
    for (size_t k = 0; k < size; ++k) {
      const int8_t* quad = QuadStart(value_rows[first + k]);
      if (quad != last_quad) quad_values[quad_count++] = last_quad = quad;
      places[k] = static_cast<uint8_t>(4 * (quad_count - 1) + static_cast<size_t>(value_rows[first + k] - quad));
      in_order = in_order && size_t{places[k]} == size_t{places[0]} + k;
    }
    float step[kHeads];
    for (size_t j = 0; j < heads; ++j) {
      const float* weights = scores + j * count + first;
      uint8_t* head_weights = quad_weights + j * head_stride;
      std::fill_n(head_weights, 4 * quad_count, uint8_t{0});
      if (in_order) {
        step[j] = ToSteps(weights, size, head_weights + places[0]);
      } else {
        uint8_t steps[kQ8WeightChunk];
        step[j] = ToSteps(weights, size, steps);
        for (size_t k = 0; k < size; ++k) head_weights[places[k]] = steps[k];
      }
    }
    for (size_t v0 = 0; v0 < vectors; v0 += kValueBlock<kHeads>) {
      size_t element[kValueBlock<kHeads>], offset[kValueBlock<kHeads>];
      const size_t used = std::min(kValueBlock<kHeads>, vectors - v0);
      for (size_t b = 0; b < used; ++b) {
        element[b] = (v0 + b) / slice_vectors * width + (v0 + b) % slice_vectors * lanes;
        offset[b] = ValueElementOffset<int8_t>(element[b], dv);
      }
      switch (used) {
#define HYMBA_VALUE_BLOCK_CASE(n)                                                                            \
  case n:                                                                                                    \
    if constexpr (n <= kValueBlock<kHeads>) {                                                                \
      SumValueBlock<kHeads, n>(di, quad_values, quad_weights, head_stride, quad_count, element, offset, step, dv, out);  \
    }                                                                                                        \
    break;
        HYMBA_VALUE_BLOCK_CASE(1) HYMBA_VALUE_BLOCK_CASE(2) HYMBA_VALUE_BLOCK_CASE(3) HYMBA_VALUE_BLOCK_CASE(4)
#undef HYMBA_VALUE_BLOCK_CASE
      }
    }
    for (size_t slice = 0; slice < dv; slice += width) {
      for (size_t i = slice + slice_vectors * lanes; i < slice + width; ++i) {
        const size_t at = ValueElementOffset<int8_t>(i, dv);
        for (size_t j = 0; j < heads; ++j) {
          int32_t acc = 0;
          for (size_t q = 0; q < quad_count; ++q) {
            for (size_t t = 0; t < 4; ++t) acc += int32_t{quad_weights[j * head_stride + 4 * q + t]} * quad_values[q][at + t];
          }
          out[j * dv + i] += static_cast<float>(acc) * step[j];
        }
      }
    }
  }
  for (size_t j = 0; j < heads; ++j) {
    for (size_t i = 0; i < dv; ++i) out[j * dv + i] *= inverse[j];
  }
}

template <typename T>
void AttendImpl(const float* queries, size_t heads, const T* const* key_rows, const T* const* value_rows, size_t count,
                size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats, NextKeys<T> next) {
  for (size_t first = 0; first < heads; first += kMaxHeads) {
    const float* q = queries + first * dqk;
    float* o = out + first * dv;
    SoftmaxStats* s = stats == nullptr ? nullptr : stats + first;
    const NextKeys<T> pass_next = first == 0 ? next : NextKeys<T>{};  // fetched by the first pass alone
    switch (std::min(kMaxHeads, heads - first)) {
#define HYMBA_ATTEND_CASE(n) \
  case n:                                                                             \
    if constexpr (std::is_same_v<T, int8_t>) {                                        \
      AttendHeadsQ8<n>(q, key_rows, value_rows, count, dqk, dv, scale, scores, o, s, pass_next); \
    } else {                                                                          \
      AttendHeads<n>(q, key_rows, value_rows, count, dqk, dv, scale, scores, o, s, pass_next);   \
    }                                                                                 \
    break;
      HYMBA_ATTEND_CASE(1) HYMBA_ATTEND_CASE(2) HYMBA_ATTEND_CASE(3) HYMBA_ATTEND_CASE(4)
      HYMBA_ATTEND_CASE(5) HYMBA_ATTEND_CASE(6) HYMBA_ATTEND_CASE(7) HYMBA_ATTEND_CASE(8)
#undef HYMBA_ATTEND_CASE
    }
  }
}

void AttendF32(const float* queries, size_t heads, const float* const* key_rows, const float* const* value_rows,
               size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats,
               NextKeys<float> next) {
  AttendImpl(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats, next);
}

void AttendF16(const float* queries, size_t heads, const hwy::float16_t* const* key_rows,
               const hwy::float16_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale, float* scores,
               float* out, SoftmaxStats* stats, NextKeys<hwy::float16_t> next) {
  AttendImpl(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats, next);
}

void AttendQ8(const float* queries, size_t heads, const int8_t* const* key_rows, const int8_t* const* value_rows,
              size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats,
              NextKeys<int8_t> next) {
  AttendImpl(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats, next);
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
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats,
            NextKeys<float> next) {
  HWY_DYNAMIC_DISPATCH(AttendF32)(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats, next);
}

void Attend(const float* queries, size_t heads, const hwy::float16_t* const* key_rows,
            const hwy::float16_t* const* value_rows, size_t count, size_t dqk, size_t dv, float scale, float* scores,
            float* out, SoftmaxStats* stats, NextKeys<hwy::float16_t> next) {
  HWY_DYNAMIC_DISPATCH(AttendF16)(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats, next);
}

void Attend(const float* queries, size_t heads, const int8_t* const* key_rows, const int8_t* const* value_rows,
            size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out, SoftmaxStats* stats,
            NextKeys<int8_t> next) {
  HWY_DYNAMIC_DISPATCH(AttendQ8)(queries, heads, key_rows, value_rows, count, dqk, dv, scale, scores, out, stats, next);
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

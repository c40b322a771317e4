#include "kernels/matmul_int8.h"

#include "kernels/group_tiles.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>

#include <hwy/targets.h>
#endif

namespace hymba {
namespace {

int32_t LoadI32(const int8_t* p) {
  int32_t value;
  std::memcpy(&value, p, 4);
  return value;
}

// Tokens per pass over a group's weights: 8 weight, 8 accumulator and a few
// temporary vectors stay within AVX-512's 32 registers.
constexpr size_t kGroupTokens = 8;

struct GroupView {
  const std::byte* scales;  // the first block's [lanes] f16
  const std::byte* quants;  // the first block's [chunks][lanes][4]
  size_t block_bytes;       // from a block's scales (quants) to the next's
  size_t lanes;
  size_t blocks;
};

GroupView Group(const MatView& w, size_t g) {
  const InterleavedGroup group = FindGroup(w.type, w.data, w.rows, w.cols, g * kInterleaveRows);
  return {group.scales, group.quants, group.block_bytes, group.lanes, w.cols / kQuantBlock};
}

void GroupPortable(DType type, const GroupView& g, const Int8Activations& x, size_t t0, size_t tokens, float* y,
                   size_t y_stride, size_t row0) {
  for (size_t t = t0; t < t0 + tokens; ++t) {
    for (size_t j = 0; j < g.lanes; ++j) {
      float acc = 0.0f;
      for (size_t b = 0; b < g.blocks; ++b) {
        const size_t block = b * x.tokens + t;
        const int8_t* a = &x.quants[block * kQuantBlock];
        int32_t dot = x.offsets[block];
        const std::byte* quants = g.quants + b * g.block_bytes;
        for (size_t e = 0; e < kQuantBlock; ++e) dot += StoredQuant(type, quants, g.lanes, j, e) * a[e];
        const float scale = F16ToF32(LoadU16(g.scales + b * g.block_bytes + 2 * j)) * x.scales[block];
        acc = std::fma(static_cast<float>(dot), scale, acc);
      }
      y[t * y_stride + row0 + j] = acc;
    }
  }
}

// One block of 32 values: its scale, quants and the sum of its quants. A NaN
// or infinity makes the block's scale NaN, so its products are NaN as f32
// arithmetic would make them.
int32_t QuantizeBlockPortable(const float* values, int8_t* quants, float& scale) {
  float max_abs = 0.0f;
  bool finite = true;
  for (size_t e = 0; e < kQuantBlock; ++e) {
    max_abs = std::max(max_abs, std::fabs(values[e]));
    finite = finite && std::isfinite(values[e]);
  }
  if (!finite) {
    scale = std::numeric_limits<float>::quiet_NaN();
    std::fill(quants, quants + kQuantBlock, int8_t{0});
    return 0;
  }
  scale = max_abs / 127.0f;
  // A subnormal scale has no finite inverse: such a block (every value below
  // 1.5e-36) quantizes to zeros, like an all-zero one.
  const float inverse = scale >= std::numeric_limits<float>::min() ? 1.0f / scale : 0.0f;
  int32_t sum = 0;
  for (size_t e = 0; e < kQuantBlock; ++e) {
    // |values[e] * inverse| <= 127 up to rounding, so the clamp only guards.
    quants[e] = static_cast<int8_t>(std::clamp(std::nearbyint(values[e] * inverse), -127.0f, 127.0f));
    sum += quants[e];
  }
  return sum;
}

#if defined(__x86_64__)
// GCC 12 flags the deliberately undefined pass-through operand inside
// avx512fintrin.h's conversions (_mm512_undefined_ps) once they are inlined.
#pragma GCC diagnostic push
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// One lane per row. Chunk k of the 8 weight vectors pairs with activation
// bytes 4k..4k+3 of the block (see core/interleaved.h), broadcast to all rows.
#define HYMBA_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))

HYMBA_VNNI_TARGET inline __m512i RoundToQuants(__m512 values, __m512 inverse) {
  const __m512i rounded = _mm512_cvtps_epi32(_mm512_mul_ps(values, inverse));  // MXCSR: nearest-even
  return _mm512_max_epi32(_mm512_min_epi32(rounded, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
}

// QuantizeBlockPortable's arithmetic, vectorised: the same division, product
// and round-to-nearest-even, so the same bits.
HYMBA_VNNI_TARGET int32_t QuantizeBlockAvx512(const float* values, int8_t* quants, float& scale) {
  const __m512 low = _mm512_loadu_ps(values), high = _mm512_loadu_ps(values + 16);
  const __m512 zero = _mm512_setzero_ps();
  // x - x is 0 exactly for finite x and NaN for NaN and infinities.
  const __mmask16 finite = _mm512_cmp_ps_mask(_mm512_sub_ps(low, low), zero, _CMP_EQ_OQ) &
                           _mm512_cmp_ps_mask(_mm512_sub_ps(high, high), zero, _CMP_EQ_OQ);
  if (finite != 0xffff) {
    scale = std::numeric_limits<float>::quiet_NaN();
    std::fill(quants, quants + kQuantBlock, int8_t{0});
    return 0;
  }
  const float max_abs = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(low), _mm512_abs_ps(high)));
  scale = max_abs / 127.0f;
  const __m512 inverse = _mm512_set1_ps(scale >= std::numeric_limits<float>::min() ? 1.0f / scale : 0.0f);  // as above
  const __m512i q_low = RoundToQuants(low, inverse), q_high = RoundToQuants(high, inverse);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(quants), _mm512_cvtepi32_epi8(q_low));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(quants + 16), _mm512_cvtepi32_epi8(q_high));
  return _mm512_reduce_add_epi32(_mm512_add_epi32(q_low, q_high));
}

// Full groups use plain loads: masked loads made decoding three times slower
// on Zen 5 (measured with hymba_kernel_bench).
template <bool kFull>
HYMBA_VNNI_TARGET inline __m512i LoadLanes(const std::byte* p, __mmask16 mask) {
  if constexpr (kFull) return _mm512_loadu_si512(p);
  return _mm512_maskz_loadu_epi32(mask, p);
}


template <DType kType, size_t kTokens, bool kFull>
HYMBA_VNNI_TARGET void GroupVnni(
    const GroupView& g, const Int8Activations& x, size_t t0, float* y, size_t y_stride, size_t row0) {
  const size_t lanes = kFull ? kInterleaveRows : g.lanes;  // a constant for full groups: simpler addressing
  const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1);
  __m512 acc[kTokens];
  for (size_t t = 0; t < kTokens; ++t) acc[t] = _mm512_setzero_ps();
  const std::byte* scales = g.scales;
  const std::byte* quants = g.quants;
  const int8_t* activations = &x.quants[t0 * kQuantBlock];
  const float* activation_scales = &x.scales[t0];
  const int32_t* activation_offsets = &x.offsets[t0];
  for (size_t b = 0; b < g.blocks; ++b) {
    const __m512 weight_scales = _mm512_cvtph_ps(
        kFull ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales)) : _mm256_maskz_loadu_epi16(mask, scales));
    __m512i w[8];
    if constexpr (kType == DType::kQ8_0) {
      for (size_t k = 0; k < 8; ++k) {
        w[k] = LoadLanes<kFull>(quants + 4 * k * lanes, mask);
      }
    } else {
      const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
      for (size_t k = 0; k < 4; ++k) {
        const __m512i packed = LoadLanes<kFull>(quants + 4 * k * lanes, mask);
        w[k] = _mm512_and_si512(packed, low_nibbles);
        w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles);
      }
    }
    for (size_t t = 0; t < kTokens; ++t) {
      const int8_t* a = activations + t * kQuantBlock;
      // Two chains of four, so decoding (one token) is not bound by VNNI latency.
      __m512i dot0 = _mm512_set1_epi32(activation_offsets[t]), dot1 = _mm512_setzero_si512();
      for (size_t k = 0; k < 4; ++k) {
        dot0 = _mm512_dpbusd_epi32(dot0, w[k], _mm512_set1_epi32(LoadI32(a + 4 * k)));
        dot1 = _mm512_dpbusd_epi32(dot1, w[k + 4], _mm512_set1_epi32(LoadI32(a + 16 + 4 * k)));
      }
      const __m512 scale = _mm512_mul_ps(weight_scales, _mm512_set1_ps(activation_scales[t]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(dot0, dot1)), scale, acc[t]);
    }
    scales += g.block_bytes;
    quants += g.block_bytes;
    activations += x.tokens * kQuantBlock;
    activation_scales += x.tokens;
    activation_offsets += x.tokens;
  }
  for (size_t t = 0; t < kTokens; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * y_stride + row0, mask, acc[t]);
}

template <DType kType, size_t kTokens>
void GroupVnni(const GroupView& g, const Int8Activations& x, size_t t0, float* y, size_t y_stride, size_t row0) {
  if (g.lanes == kInterleaveRows) return GroupVnni<kType, kTokens, true>(g, x, t0, y, y_stride, row0);
  GroupVnni<kType, kTokens, false>(g, x, t0, y, y_stride, row0);
}

template <DType kType>
void GroupVnniTokens(const GroupView& g, const Int8Activations& x, size_t t0, size_t tokens, float* y,
                     size_t y_stride, size_t row0) {
  switch (tokens) {
    case 1: return GroupVnni<kType, 1>(g, x, t0, y, y_stride, row0);
    case 2: return GroupVnni<kType, 2>(g, x, t0, y, y_stride, row0);
    case 3: return GroupVnni<kType, 3>(g, x, t0, y, y_stride, row0);
    case 4: return GroupVnni<kType, 4>(g, x, t0, y, y_stride, row0);
    case 5: return GroupVnni<kType, 5>(g, x, t0, y, y_stride, row0);
    case 6: return GroupVnni<kType, 6>(g, x, t0, y, y_stride, row0);
    case 7: return GroupVnni<kType, 7>(g, x, t0, y, y_stride, row0);
    default: return GroupVnni<kType, kGroupTokens>(g, x, t0, y, y_stride, row0);
  }
}

#define HYMBA_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

// AVX2 has no VNNI: vpmaddubsw multiplies unsigned by signed bytes and adds
// pairs into saturating int16, so q8_0 weights are made signed again and
// their sign moved onto the activations (|w| * (a sign w), at most
// 2 x 128 x 127, never saturating); q4_0's nibbles (at most 2 x 15 x 127) go
// in as they are. Half a group (8 rows, one per 32-bit lane) per pass, a
// token at a time while the group's weights stay in L1; full groups only.
template <DType kType>
HYMBA_AVX2_TARGET void GroupAvx2(const GroupView& g, const Int8Activations& x, size_t t0, size_t tokens, float* y,
                                 size_t y_stride, size_t row0) {
  constexpr size_t kLanes = kInterleaveRows;
  const __m256i ones = _mm256_set1_epi16(1), low_nibbles = _mm256_set1_epi8(0x0f), bias = _mm256_set1_epi8(-128);
  for (size_t t = t0; t < t0 + tokens; ++t) {
    for (size_t half = 0; half < 2; ++half) {
      __m256 acc = _mm256_setzero_ps();
      for (size_t b = 0; b < g.blocks; ++b) {
        const size_t block = b * x.tokens + t;
        const int8_t* a = &x.quants[block * kQuantBlock];
        const std::byte* quants = g.quants + b * g.block_bytes + 32 * half;
        const __m256 weight_scales =
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g.scales + b * g.block_bytes + 16 * half)));
        __m256i dot = _mm256_setzero_si256();
        for (size_t k = 0; k < 8; ++k) {
          const __m256i activations = _mm256_set1_epi32(LoadI32(a + 4 * k));
          __m256i pairs;
          if constexpr (kType == DType::kQ8_0) {
            const __m256i w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(quants + 4 * k * kLanes)), bias);
            pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(activations, w));
          } else {
            const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quants + 4 * (k % 4) * kLanes));
            const __m256i w = k < 4 ? _mm256_and_si256(packed, low_nibbles)
                                    : _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles);
            pairs = _mm256_maddubs_epi16(w, activations);
          }
          dot = _mm256_add_epi32(dot, _mm256_madd_epi16(pairs, ones));
        }
        // q8_0's dot is already the signed one; q4_0's needs the zero point.
        if constexpr (kType == DType::kQ4_0) dot = _mm256_add_epi32(dot, _mm256_set1_epi32(x.offsets[block]));
        const __m256 scale = _mm256_mul_ps(weight_scales, _mm256_set1_ps(x.scales[block]));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc);
      }
      _mm256_storeu_ps(y + t * y_stride + row0 + 8 * half, acc);
    }
  }
}

#undef HYMBA_AVX2_TARGET
#undef HYMBA_VNNI_TARGET
#pragma GCC diagnostic pop
#endif

}  // namespace

bool CpuHasAvx2() {
#if !defined(__x86_64__)
  return false;
#else
  // Highway's AVX2 target implies FMA and F16C (clang 14 cannot ask for f16c).
  // Not cached: a test narrowing Highway's targets must not fix the answer
  // for the rest of the process.
  return (hwy::SupportedTargets() & HWY_AVX2) != 0;
#endif
}

bool CpuHasVnni() {
#if !defined(__x86_64__)
  return false;
#else
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return has;
#endif
}

void QuantizeActivations(DType weight_type, const float* x, size_t n, size_t cols, Int8Activations& out,
                         ThreadPool* pool, Int8Kernel kernel) {
  out.tokens = n;
  out.blocks = cols / kQuantBlock;
  out.quants.resize(n * cols);
  out.scales.resize(n * out.blocks);
  out.offsets.resize(n * out.blocks);
  const int32_t zero_point = InterleavedZeroPoint(weight_type);
#if defined(__x86_64__)
  const auto quantize = kernel == Int8Kernel::kVnni ? QuantizeBlockAvx512 : QuantizeBlockPortable;
#else
  const auto quantize = QuantizeBlockPortable;
#endif
  const auto run = [&](size_t begin, size_t end) {
    for (size_t block = begin; block < end; ++block) {
      const size_t token = block % n, column = block / n * kQuantBlock;
      const int32_t sum = quantize(x + token * cols + column, &out.quants[block * kQuantBlock], out.scales[block]);
      out.offsets[block] = -zero_point * sum;
    }
  };
  if (pool == nullptr) return run(0, n * out.blocks);
  ParallelForValues(*pool, n * out.blocks, n * cols, run);
}

void MatMulInt8(const MatView& w, const Int8Activations& x, float* y, size_t y_stride, size_t group_begin,
                size_t group_end, Int8Kernel kernel) {
  ForEachGroupTile(w, x.tokens, kGroupTokens, group_begin, group_end, [&](size_t g, size_t t0, size_t tokens) {
    const GroupView group = Group(w, g);
    const size_t row0 = g * kInterleaveRows;
#if defined(__x86_64__)
    if (kernel == Int8Kernel::kVnni) {
      if (w.type == DType::kQ8_0) return GroupVnniTokens<DType::kQ8_0>(group, x, t0, tokens, y, y_stride, row0);
      return GroupVnniTokens<DType::kQ4_0>(group, x, t0, tokens, y, y_stride, row0);
    }
    if (kernel == Int8Kernel::kAvx2 && group.lanes == kInterleaveRows) {
      if (w.type == DType::kQ8_0) return GroupAvx2<DType::kQ8_0>(group, x, t0, tokens, y, y_stride, row0);
      return GroupAvx2<DType::kQ4_0>(group, x, t0, tokens, y, y_stride, row0);
    }
#endif
    GroupPortable(w.type, group, x, t0, tokens, y, y_stride, row0);
  });
}

}  // namespace hymba

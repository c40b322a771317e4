#include "kernels/matmul_bf16.h"

#include "kernels/group_tiles.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hymba {
namespace {

// Tokens per pass over a group: 2 x 12 accumulators, 2 weight vectors and a
// broadcast pair of activations within AVX-512's 32 registers.
constexpr size_t kPairTileTokens = 12;

// A group of Layout::kBf16Pairs: pair p of lane j at pairs + (p * lanes + j) * 2.
struct PairGroup {
  const uint16_t* pairs;
  const uint16_t* tail;  // [lanes] the last column when cols is odd
  size_t lanes;
  size_t row0;
};

PairGroup GroupOf(const MatView& w, size_t g) {
  const size_t row0 = g * kBf16PairRows, lanes = std::min(kBf16PairRows, w.rows - row0);
  const auto* pairs = reinterpret_cast<const uint16_t*>(w.data + row0 * RowBytes(w.type, w.cols));
  return {pairs, pairs + w.cols / 2 * 2 * lanes, lanes, row0};
}

// Weight i from p; weights in memory need not be aligned.
float WeightAt(const uint16_t* p, size_t i) { return LoadAsF32(DType::kBF16, reinterpret_cast<const std::byte*>(p), i); }

// The products of the AVX-512 kernel (each exact in f32) in the same order,
// pair after pair, but not the same bits: VDPBF16PS adds a pair in its own
// order and flushes subnormals. Fine for a fallback; the tests compare the
// two within 1e-4.
void GroupPortable(const PairGroup& g, const uint16_t* x, size_t cols, size_t t0, size_t tokens, float* y,
                   size_t y_stride) {
  const size_t pairs = cols / 2;
  for (size_t t = t0; t < t0 + tokens; ++t) {
    const uint16_t* xs = x + t * cols;
    for (size_t j = 0; j < g.lanes; ++j) {
      float sum = 0.0f;
      for (size_t p = 0; p < pairs; ++p) {
        const uint16_t* pair = g.pairs + (p * g.lanes + j) * 2;
        sum += WeightAt(pair, 0) * BF16ToF32(xs[2 * p]) + WeightAt(pair, 1) * BF16ToF32(xs[2 * p + 1]);
      }
      if (cols % 2 != 0) sum += WeightAt(g.tail, j) * BF16ToF32(xs[cols - 1]);
      y[t * y_stride + g.row0 + j] = sum;
    }
  }
}

#if defined(__x86_64__)
#pragma GCC diagnostic push
// GCC 12 flags the deliberately undefined pass-through operands inside
// avx512fintrin.h's conversions once they are inlined.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#define HYMBA_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

uint32_t LoadPair(const uint16_t* p) {
  uint32_t pair;
  std::memcpy(&pair, p, 4);
  return pair;
}

// Full groups use plain loads (masked ones were slower on Zen 5, see the
// int8 kernel); a short last group masks its lanes.
template <bool kFull>
HYMBA_BF16_TARGET inline __m512bh LoadLanes(const uint16_t* p, __mmask16 mask) {
  if constexpr (kFull) return (__m512bh)_mm512_loadu_si512(p);
  return (__m512bh)_mm512_maskz_loadu_epi32(mask, p);
}

// Tokens [t0, t0 + kTokens) against the 16 rows of each of the group's two
// vectors, one row per lane: no horizontal sum, and per pair step two weight
// loads and one broadcast per token.
template <size_t kTokens, bool kFull>
HYMBA_BF16_TARGET void GroupAvx512(const PairGroup& g, const uint16_t* x, size_t cols, size_t t0, float* y,
                                   size_t y_stride) {
  constexpr size_t kHalf = kBf16PairRows / 2;
  const size_t lanes = kFull ? kBf16PairRows : g.lanes;  // a constant for full groups: simpler addressing
  const size_t low_lanes = std::min(lanes, kHalf), high_lanes = lanes - low_lanes;
  const auto low_mask = static_cast<__mmask16>((1u << low_lanes) - 1);
  const auto high_mask = static_cast<__mmask16>((1u << high_lanes) - 1);
  __m512 low[kTokens], high[kTokens];
  for (size_t t = 0; t < kTokens; ++t) low[t] = high[t] = _mm512_setzero_ps();
  const size_t pairs = cols / 2;
  const uint16_t* xs = x + t0 * cols;
  const uint16_t* w = g.pairs;
  for (size_t p = 0; p < pairs; ++p, w += 2 * lanes) {
    const __m512bh w_low = LoadLanes<kFull>(w, low_mask);
    const __m512bh w_high = LoadLanes<kFull>(w + 2 * kHalf, high_mask);
    for (size_t t = 0; t < kTokens; ++t) {
      const auto pair = (__m512bh)_mm512_set1_epi32(static_cast<int>(LoadPair(xs + t * cols + 2 * p)));
      low[t] = _mm512_dpbf16_ps(low[t], w_low, pair);
      if (kFull || high_lanes > 0) high[t] = _mm512_dpbf16_ps(high[t], w_high, pair);
    }
  }
  if (cols % 2 != 0) {  // the last column: its weights are [lanes] values after the pairs
    const __m512 tail_low = _mm512_cvtpbh_ps((__m256bh)_mm256_maskz_loadu_epi16(low_mask, g.tail));
    const __m512 tail_high = _mm512_cvtpbh_ps((__m256bh)_mm256_maskz_loadu_epi16(high_mask, g.tail + kHalf));
    for (size_t t = 0; t < kTokens; ++t) {
      const __m512 last = _mm512_set1_ps(BF16ToF32(xs[t * cols + cols - 1]));
      low[t] = _mm512_fmadd_ps(tail_low, last, low[t]);
      high[t] = _mm512_fmadd_ps(tail_high, last, high[t]);
    }
  }
  for (size_t t = 0; t < kTokens; ++t) {
    float* out = y + (t0 + t) * y_stride + g.row0;
    _mm512_mask_storeu_ps(out, low_mask, low[t]);
    if (kFull || high_lanes > 0) _mm512_mask_storeu_ps(out + kHalf, high_mask, high[t]);
  }
}

template <size_t kTokens>
void GroupAvx512(const PairGroup& g, const uint16_t* x, size_t cols, size_t t0, float* y, size_t y_stride) {
  if (g.lanes == kBf16PairRows) return GroupAvx512<kTokens, true>(g, x, cols, t0, y, y_stride);
  GroupAvx512<kTokens, false>(g, x, cols, t0, y, y_stride);
}

void GroupAvx512Tokens(const PairGroup& g, const uint16_t* x, size_t cols, size_t t0, size_t tokens, float* y,
                       size_t y_stride) {
  switch (tokens) {
    case 1: return GroupAvx512<1>(g, x, cols, t0, y, y_stride);
    case 2: return GroupAvx512<2>(g, x, cols, t0, y, y_stride);
    case 3: return GroupAvx512<3>(g, x, cols, t0, y, y_stride);
    case 4: return GroupAvx512<4>(g, x, cols, t0, y, y_stride);
    case 5: return GroupAvx512<5>(g, x, cols, t0, y, y_stride);
    case 6: return GroupAvx512<6>(g, x, cols, t0, y, y_stride);
    case 7: return GroupAvx512<7>(g, x, cols, t0, y, y_stride);
    case 8: return GroupAvx512<8>(g, x, cols, t0, y, y_stride);
    case 9: return GroupAvx512<9>(g, x, cols, t0, y, y_stride);
    case 10: return GroupAvx512<10>(g, x, cols, t0, y, y_stride);
    case 11: return GroupAvx512<11>(g, x, cols, t0, y, y_stride);
    default: return GroupAvx512<kPairTileTokens>(g, x, cols, t0, y, y_stride);
  }
}

#undef HYMBA_BF16_TARGET
#pragma GCC diagnostic pop
#endif

}  // namespace

bool CpuHasAvx512Bf16() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

void RoundActivationsToBf16(const float* x, size_t n, size_t cols, std::vector<uint16_t>& out, ThreadPool& pool) {
  out.resize(n * cols);
  const auto round = [&](size_t begin, size_t end) {
    for (size_t i = begin * cols; i < end * cols; ++i) out[i] = F32ToBF16(x[i]);
  };
  ParallelForValues(pool, n, n * cols, round);
}

void MatMulBf16Groups(const MatView& w, const uint16_t* x, size_t n, float* y, size_t group_begin, size_t group_end,
                      Bf16Kernel kernel) {
  ForEachGroupTile(w, n, kPairTileTokens, group_begin, group_end, [&](size_t g, size_t t0, size_t tokens) {
    const PairGroup group = GroupOf(w, g);
#if defined(__x86_64__)
    if (kernel == Bf16Kernel::kAvx512) return GroupAvx512Tokens(group, x, w.cols, t0, tokens, y, w.rows);
#endif
    GroupPortable(group, x, w.cols, t0, tokens, y, w.rows);
  });
}

}  // namespace hymba

#include "kernels/matmul_bf16.h"

#include "kernels/group_tiles.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hymba {
namespace {

// A row of a bf16 group (core/interleaved.h): chunk c of row `lane` starts at
// row + c * chunk_stride; its last cols % 32 values at tail.
struct GroupRow {
  const uint16_t* row;
  size_t chunk_stride;
  const uint16_t* tail;
};

GroupRow RowOfGroup(const uint16_t* group, size_t lanes, size_t lane, size_t cols) {
  const size_t chunks = cols / kFloatChunk, tail = cols - chunks * kFloatChunk;
  return {group + lane * kFloatChunk, lanes * kFloatChunk, group + chunks * lanes * kFloatChunk + lane * tail};
}

// Weight i from p; weights in memory need not be aligned.
float WeightAt(const uint16_t* p, size_t i) { return LoadAsF32(DType::kBF16, reinterpret_cast<const std::byte*>(p), i); }

// Columns past the last whole chunk, one product at a time.
float Tail(const GroupRow& w, const uint16_t* x, size_t cols) {
  const size_t from = cols / kFloatChunk * kFloatChunk;
  float sum = 0.0f;
  for (size_t k = from; k < cols; ++k) sum += WeightAt(w.tail, k - from) * BF16ToF32(x[k]);
  return sum;
}

// One output from the same products as the AVX-512 kernel (each exact in
// f32) in the same 16 lanes, but not the same bits: VDPBF16PS adds a pair in
// its own order and flushes subnormals, and the lanes are summed in another
// order. Fine for a fallback; the tests compare the two within 1e-4.
float DotPortable(const GroupRow& w, const uint16_t* x, size_t cols) {
  float lanes[16] = {};
  const size_t chunks = cols / kFloatChunk;
  for (size_t c = 0; c < chunks; ++c) {
    const uint16_t* chunk = w.row + c * w.chunk_stride;
    const uint16_t* xs = x + c * kFloatChunk;
    for (size_t l = 0; l < 16; ++l) {
      lanes[l] += WeightAt(chunk, 2 * l) * BF16ToF32(xs[2 * l]);
      lanes[l] += WeightAt(chunk, 2 * l + 1) * BF16ToF32(xs[2 * l + 1]);
    }
  }
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  return sum + Tail(w, x, cols);
}

#if defined(__x86_64__)
#pragma GCC diagnostic push
// GCC 12 flags the deliberately undefined pass-through operands inside
// avx512fintrin.h (_mm512_reduce_add_ps, conversions) once they are inlined.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#define HYMBA_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

HYMBA_BF16_TARGET inline __m512bh LoadBf16(const void* p) { return (__m512bh)_mm512_loadu_si512(p); }

// The lane sums of a, b, c and d, in that order: pairs of lanes within each
// 128-bit block first, then the four blocks. A third of the instructions of
// four separate reductions, which cost a tenth of a tile of 1,600 columns.
HYMBA_BF16_TARGET inline __m128 SumsOfFour(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 abcd = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
                                    _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
  const __m256 halves = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));
  return _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps(halves, 1));
}

// y[t * y_stride + i] for row i of the group (rows past a short last group
// repeat its last) and token t: a chunk of 32 weights of a row is one
// VDPBF16PS operand, in column order as the activations.
template <size_t kTokens>
HYMBA_BF16_TARGET void TileAvx512(const uint16_t* group, size_t lanes, size_t cols, const uint16_t* const* tokens,
                                  float* y, size_t y_stride) {
  constexpr size_t kRows = kFloatGroupRows;
  static_assert(kRows == 4, "SumsOfFour reduces a group's four rows at once");
  GroupRow rows[kRows];
  for (size_t i = 0; i < kRows; ++i) rows[i] = RowOfGroup(group, lanes, std::min(i, lanes - 1), cols);
  __m512 acc[kRows][kTokens];
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t t = 0; t < kTokens; ++t) acc[i][t] = _mm512_setzero_ps();
  }
  const size_t chunks = cols / kFloatChunk, stride = lanes * kFloatChunk;
  for (size_t c = 0; c < chunks; ++c) {
    if constexpr (kTokens <= 2) {
      __m512bh x[kTokens];
      for (size_t t = 0; t < kTokens; ++t) x[t] = LoadBf16(tokens[t] + c * kFloatChunk);
      for (size_t i = 0; i < kRows; ++i) {
        const __m512bh w = LoadBf16(rows[i].row + c * stride);
        for (size_t t = 0; t < kTokens; ++t) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], w, x[t]);
      }
    } else {
      __m512bh w[kRows];
      for (size_t i = 0; i < kRows; ++i) w[i] = LoadBf16(rows[i].row + c * stride);
      for (size_t t = 0; t < kTokens; ++t) {
        const __m512bh x = LoadBf16(tokens[t] + c * kFloatChunk);
        for (size_t i = 0; i < kRows; ++i) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], w[i], x);
      }
    }
  }
  const bool has_tail = cols % kFloatChunk != 0;
  for (size_t t = 0; t < kTokens; ++t) {
    __m128 sums = SumsOfFour(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
    if (has_tail) {
      alignas(16) float tails[kRows];
      for (size_t i = 0; i < kRows; ++i) tails[i] = Tail(rows[i], tokens[t], cols);
      sums = _mm_add_ps(sums, _mm_load_ps(tails));
    }
    _mm_mask_storeu_ps(y + t * y_stride, static_cast<__mmask8>((1u << lanes) - 1), sums);
  }
}

#undef HYMBA_BF16_TARGET
#pragma GCC diagnostic pop
#endif

// Group g for tokens [t0, t0 + kTokens).
template <size_t kTokens>
void GroupTokens(const MatView& w, size_t g, const uint16_t* x, size_t t0, float* y, Bf16Kernel kernel) {
  const size_t row0 = g * kFloatGroupRows, lanes = std::min(kFloatGroupRows, w.rows - row0);
  const auto* group = reinterpret_cast<const uint16_t*>(w.data + row0 * RowBytes(w.type, w.cols));
  const uint16_t* tokens[kTokens];
  for (size_t t = 0; t < kTokens; ++t) tokens[t] = x + (t0 + t) * w.cols;
  float* out = y + t0 * w.rows + row0;
#if defined(__x86_64__)
  if (kernel == Bf16Kernel::kAvx512) return TileAvx512<kTokens>(group, lanes, w.cols, tokens, out, w.rows);
#endif
  for (size_t i = 0; i < lanes; ++i) {
    const GroupRow row = RowOfGroup(group, lanes, i, w.cols);
    for (size_t t = 0; t < kTokens; ++t) out[t * w.rows + i] = DotPortable(row, tokens[t], w.cols);
  }
}

void GroupOfTokens(const MatView& w, size_t g, const uint16_t* x, size_t t0, size_t tokens, float* y,
                   Bf16Kernel kernel) {
  switch (tokens) {
    case 1: return GroupTokens<1>(w, g, x, t0, y, kernel);
    case 2: return GroupTokens<2>(w, g, x, t0, y, kernel);
    case 3: return GroupTokens<3>(w, g, x, t0, y, kernel);
    case 4: return GroupTokens<4>(w, g, x, t0, y, kernel);
    case 5: return GroupTokens<5>(w, g, x, t0, y, kernel);
    default: return GroupTokens<kTileTokens>(w, g, x, t0, y, kernel);
  }
}

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
  constexpr size_t kMinParallelValues = size_t{1} << 16;
  if (n * cols < kMinParallelValues) return round(0, n);
  pool.ParallelFor(n, round);
}

void MatMulBf16Groups(const MatView& w, const uint16_t* x, size_t n, float* y, size_t group_begin, size_t group_end,
                      Bf16Kernel kernel) {
  ForEachGroupTile(w, n, kTileTokens, group_begin, group_end,
                   [&](size_t g, size_t t0, size_t tokens) { GroupOfTokens(w, g, x, t0, tokens, y, kernel); });
}

}  // namespace hymba

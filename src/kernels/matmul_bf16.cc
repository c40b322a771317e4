#include "kernels/matmul_bf16.h"

#include "kernels/row_tiles.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hymba {
namespace {

constexpr size_t kStep = 32;  // bf16 values per 512-bit vector

float Bf16At(const std::byte* row, size_t k) { return BF16ToF32(LoadU16(row + 2 * k)); }

// Columns past the last whole step, one product at a time.
float Tail(const std::byte* row, const uint16_t* x, size_t from, size_t cols) {
  float sum = 0.0f;
  for (size_t k = from; k < cols; ++k) sum += Bf16At(row, k) * BF16ToF32(x[k]);
  return sum;
}

// One output from the same products as the AVX-512 kernel (each exact in
// f32) in the same 16 lanes, but not the same bits: VDPBF16PS adds a pair in
// its own order and flushes subnormals, and the lanes are summed in another
// order. Fine for a fallback; the tests compare the two within 1e-4.
float DotPortable(const std::byte* row, const uint16_t* x, size_t cols) {
  float lanes[16] = {};
  size_t k = 0;
  for (; k + kStep <= cols; k += kStep) {
    for (size_t l = 0; l < 16; ++l) {
      lanes[l] += Bf16At(row, k + 2 * l) * BF16ToF32(x[k + 2 * l]);
      lanes[l] += Bf16At(row, k + 2 * l + 1) * BF16ToF32(x[k + 2 * l + 1]);
    }
  }
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  return sum + Tail(row, x, k, cols);
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

template <size_t kTokens, bool kPrefetch>
HYMBA_BF16_TARGET void TileAvx512(const std::byte* const* rows, const uint16_t* const* tokens, size_t cols,
                                  float* out) {
  __m512 acc[kTileRows][kTokens];
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t t = 0; t < kTokens; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  const size_t prefetch_ahead = kTileRows * 2 * cols;  // the same place in the next tile's rows (decoding)
  size_t k = 0;
  for (; k + kStep <= cols; k += kStep) {
    __m512bh w[kTileRows];
    for (size_t r = 0; r < kTileRows; ++r) {
      if constexpr (kPrefetch) __builtin_prefetch(rows[r] + prefetch_ahead + 2 * k);
      w[r] = LoadBf16(rows[r] + 2 * k);
    }
    for (size_t t = 0; t < kTokens; ++t) {
      const __m512bh x = LoadBf16(tokens[t] + k);
      for (size_t r = 0; r < kTileRows; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], w[r], x);
    }
  }
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t t = 0; t < kTokens; ++t) {
      out[r * kTileTokens + t] = _mm512_reduce_add_ps(acc[r][t]) + Tail(rows[r], tokens[t], k, cols);
    }
  }
}

template <bool kPrefetch>
void TileAvx512OfCount(size_t count, const std::byte* const* rows, const uint16_t* const* tokens, size_t cols,
                       float* out) {
  switch (count) {
    case 1: return TileAvx512<1, kPrefetch>(rows, tokens, cols, out);
    case 2: return TileAvx512<2, kPrefetch>(rows, tokens, cols, out);
    case 3: return TileAvx512<3, kPrefetch>(rows, tokens, cols, out);
    case 4: return TileAvx512<4, kPrefetch>(rows, tokens, cols, out);
    case 5: return TileAvx512<5, kPrefetch>(rows, tokens, cols, out);
    default: return TileAvx512<kTileTokens, kPrefetch>(rows, tokens, cols, out);
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

void RoundActivationsToBf16(const float* x, size_t n, size_t cols, std::vector<uint16_t>& out) {
  out.resize(n * cols);
  for (size_t i = 0; i < n * cols; ++i) out[i] = F32ToBF16(x[i]);
}

void MatMulBf16Rows(const MatView& w, const uint16_t* x, size_t n, float* y, size_t y_stride, size_t row_begin,
                    size_t row_end, Bf16Kernel kernel) {
  ForEachRowTile(w, x, n, y, y_stride, row_begin, row_end,
                 [&](const std::byte* const* rows, const uint16_t* const* tokens, size_t count,
                     [[maybe_unused]] bool first_pass, float* out) {
#if defined(__x86_64__)
                   if (kernel == Bf16Kernel::kAvx512) {
                     if (first_pass) return TileAvx512OfCount<true>(count, rows, tokens, w.cols, out);
                     return TileAvx512OfCount<false>(count, rows, tokens, w.cols, out);
                   }
#endif
                   for (size_t r = 0; r < kTileRows; ++r) {
                     for (size_t t = 0; t < count; ++t) out[r * kTileTokens + t] = DotPortable(rows[r], tokens[t], w.cols);
                   }
                 });
}

}  // namespace hymba

#include "kernels/matmul.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rows and tokens of one register tile: 4 x 6 accumulators plus 4 weight and
// 1 activation vectors fit AVX-512's 32 registers. Weights are widened once
// per tile and reused by every token of it.
constexpr size_t kTileRows = 4;
constexpr size_t kTileTokens = 6;

// How a row of each storage type yields f32 vectors: Load(d, row, k) gives
// weights k .. k + Lanes(d) - 1, Scalar(row, k) weight k alone (for the tail).
// Mapped tensors need not be aligned, hence unaligned loads and memcpy.
template <typename T>  // float, bfloat16_t, float16_t
struct FloatRow {
  static constexpr size_t kBytesPer32 = 32 * sizeof(T);
  template <class DF>
  static HWY_INLINE hn::Vec<DF> Load(DF df, const std::byte* row, size_t k) {
    const T* p = reinterpret_cast<const T*>(row) + k;
    if constexpr (std::is_same_v<T, float>) {
      return hn::LoadU(df, p);
    } else {
      const hn::Rebind<T, DF> dw;  // half-width vector of 16-bit values
      return hn::PromoteTo(df, hn::LoadU(dw, p));
    }
  }
  static float Scalar(const std::byte* row, size_t k) {
    if constexpr (std::is_same_v<T, float>) return LoadAsF32(DType::kF32, row, k);
    if constexpr (std::is_same_v<T, hwy::bfloat16_t>) return LoadAsF32(DType::kBF16, row, k);
    return LoadAsF32(DType::kF16, row, k);
  }
};

// Quantized rows: whole 32-weight blocks and at most 32 lanes, so a vector
// never straddles two blocks and there is no tail.
struct Q8_0Row {
  static constexpr size_t kBytesPer32 = kQ8_0BlockBytes;
  template <class DF>
  static HWY_INLINE hn::Vec<DF> Load(DF df, const std::byte* row, size_t k) {
    const std::byte* block = row + k / kQuantBlock * kQ8_0BlockBytes;
    const hn::Rebind<int8_t, DF> d8;
    const hn::Rebind<int32_t, DF> d32;
    const auto q = hn::PromoteTo(d32, hn::LoadU(d8, reinterpret_cast<const int8_t*>(block + 2 + k % kQuantBlock)));
    return hn::Mul(hn::ConvertTo(df, q), hn::Set(df, F16ToF32(LoadU16(block))));
  }
  static float Scalar(const std::byte* row, size_t k) { return LoadAsF32(DType::kQ8_0, row, k); }
};

struct Q4_0Row {
  static constexpr size_t kBytesPer32 = kQ4_0BlockBytes;
  template <class DF>
  static HWY_INLINE hn::Vec<DF> Load(DF df, const std::byte* row, size_t k) {
    const std::byte* block = row + k / kQuantBlock * kQ4_0BlockBytes;
    const size_t j = k % kQuantBlock;
    const hn::Rebind<uint8_t, DF> d8;
    const hn::Rebind<int32_t, DF> d32;
    const auto packed = hn::PromoteTo(d32, hn::LoadU(d8, reinterpret_cast<const uint8_t*>(block + 2 + j % 16)));
    const auto nibbles = j < 16 ? hn::And(packed, hn::Set(d32, 15)) : hn::ShiftRight<4>(packed);
    const auto q = hn::Sub(nibbles, hn::Set(d32, 8));
    return hn::Mul(hn::ConvertTo(df, q), hn::Set(df, F16ToF32(LoadU16(block))));
  }
  static float Scalar(const std::byte* row, size_t k) { return LoadAsF32(DType::kQ4_0, row, k); }
};

// out[r * kTileTokens + t] = row r . token t for r < kTileRows, t < kTokens.
template <class Format, size_t kTokens>
HWY_INLINE void Tile(const std::byte* const* rows, const float* const* tokens, size_t cols, float* out) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  hn::Vec<decltype(df)> acc[kTileRows][kTokens];
#pragma GCC unroll 4
  for (size_t r = 0; r < kTileRows; ++r) {
#pragma GCC unroll 6
    for (size_t t = 0; t < kTokens; ++t) acc[r][t] = hn::Zero(df);
  }
  // Four short row streams defeat the hardware prefetcher at decode, where
  // the weights come from DRAM; fetching ahead keeps it at the bandwidth limit.
  constexpr size_t kPrefetchBytes = 1024;
  size_t k = 0;
  for (; k + lanes <= cols; k += lanes) {
#pragma GCC unroll 4
    for (size_t r = 0; r < kTileRows; ++r) __builtin_prefetch(rows[r] + k * Format::kBytesPer32 / 32 + kPrefetchBytes);
    hn::Vec<decltype(df)> w[kTileRows];
#pragma GCC unroll 4
    for (size_t r = 0; r < kTileRows; ++r) w[r] = Format::Load(df, rows[r], k);
#pragma GCC unroll 6
    for (size_t t = 0; t < kTokens; ++t) {
      const auto x = hn::LoadU(df, tokens[t] + k);
#pragma GCC unroll 4
      for (size_t r = 0; r < kTileRows; ++r) acc[r][t] = hn::MulAdd(w[r], x, acc[r][t]);
    }
  }
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t t = 0; t < kTokens; ++t) {
      float sum = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
      for (size_t tail = k; tail < cols; ++tail) sum += Format::Scalar(rows[r], tail) * tokens[t][tail];
      out[r * kTileTokens + t] = sum;
    }
  }
}

// Rows [row_begin, row_end) of y for every token, token tiles outermost so a
// tile's activations stay in L1 while the block's weights stream from L2.
template <class Format>
void RowBlock(const MatView& w, const float* x, size_t n, float* y, size_t row_begin, size_t row_end) {
  float out[kTileRows * kTileTokens];
  for (size_t t0 = 0; t0 < n; t0 += kTileTokens) {
    const size_t tokens = std::min(kTileTokens, n - t0);
    const float* token_rows[kTileTokens];
    for (size_t t = 0; t < kTileTokens; ++t) token_rows[t] = x + (t0 + std::min(t, tokens - 1)) * w.cols;
    for (size_t r0 = row_begin; r0 < row_end; r0 += kTileRows) {
      const size_t rows = std::min(kTileRows, row_end - r0);
      const std::byte* weight_rows[kTileRows];  // a short last tile repeats its last row
      for (size_t r = 0; r < kTileRows; ++r) weight_rows[r] = w.Row(r0 + std::min(r, rows - 1));
      switch (tokens) {
        case 1: Tile<Format, 1>(weight_rows, token_rows, w.cols, out); break;
        case 2: Tile<Format, 2>(weight_rows, token_rows, w.cols, out); break;
        case 3: Tile<Format, 3>(weight_rows, token_rows, w.cols, out); break;
        case 4: Tile<Format, 4>(weight_rows, token_rows, w.cols, out); break;
        case 5: Tile<Format, 5>(weight_rows, token_rows, w.cols, out); break;
        default: Tile<Format, kTileTokens>(weight_rows, token_rows, w.cols, out); break;
      }
      for (size_t t = 0; t < tokens; ++t) {
        for (size_t r = 0; r < rows; ++r) y[(t0 + t) * w.rows + r0 + r] = out[r * kTileTokens + t];
      }
    }
  }
}

void MatMulRows(const MatView& w, const float* x, size_t n, float* y, size_t row_begin, size_t row_end) {
  switch (w.type) {
    case DType::kF32: return RowBlock<FloatRow<float>>(w, x, n, y, row_begin, row_end);
    case DType::kBF16: return RowBlock<FloatRow<hwy::bfloat16_t>>(w, x, n, y, row_begin, row_end);
    case DType::kF16: return RowBlock<FloatRow<hwy::float16_t>>(w, x, n, y, row_begin, row_end);
    case DType::kQ8_0: return RowBlock<Q8_0Row>(w, x, n, y, row_begin, row_end);
    case DType::kQ4_0: return RowBlock<Q4_0Row>(w, x, n, y, row_begin, row_end);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(MatMulRows);

void MatMul(const MatView& w, const float* x, size_t n, float* y, ThreadPool& pool) {
  // Blocks of rows whose weights fit in half of a 1 MB L2, in whole tiles.
  constexpr size_t kBlockBytes = size_t{512} << 10;
  const size_t row_bytes = std::max<size_t>(RowBytes(w.type, w.cols), 1);
  const size_t block_rows = std::max<size_t>(4, kBlockBytes / row_bytes / 4 * 4);
  const size_t blocks = (w.rows + block_rows - 1) / block_rows;
  auto run = [&](size_t row_begin, size_t row_end) {
    HWY_DYNAMIC_DISPATCH(MatMulRows)(w, x, n, y, row_begin, row_end);
  };
  // Waking the workers costs microseconds: small products run on the caller.
  constexpr size_t kMinParallelWork = size_t{1} << 18;
  if (w.rows * w.cols * n < kMinParallelWork || pool.size() == 1) {
    run(0, w.rows);
    return;
  }
  // Split rows in whole tiles, finer than the cache blocks when there are few
  // of them so every thread gets work.
  const size_t units = std::max(blocks, pool.size() * 4);
  const size_t unit_rows = ((w.rows + units - 1) / units + 3) / 4 * 4;
  const size_t count = (w.rows + unit_rows - 1) / unit_rows;
  pool.ParallelFor(count, [&](size_t begin, size_t end) { run(begin * unit_rows, std::min(w.rows, end * unit_rows)); });
}

}  // namespace hymba
#endif

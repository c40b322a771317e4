#include "kernels/matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>
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

// How a row of each storage type yields f32 vectors. Float rows step one
// vector at a time (kBlock 0) and end in a scalar tail; quantized rows step one
// 32-weight block at a time (at most 32 lanes), decoding its scale once, and
// have no tail. Mapped tensors need not be aligned: unaligned loads, memcpy.
template <typename T>  // float, bfloat16_t, float16_t
struct FloatRow {
  static constexpr size_t kBlock = 0;
  static constexpr size_t kBytesPer32 = 32 * sizeof(T);
  template <class DF>
  static HWY_INLINE void Load(DF df, const std::byte* row, size_t k, hn::Vec<DF>* w) {
    const T* p = reinterpret_cast<const T*>(row) + k;
    if constexpr (std::is_same_v<T, float>) {
      w[0] = hn::LoadU(df, p);
    } else {
      const hn::Rebind<T, DF> dw;  // half-width vector of 16-bit values
      w[0] = hn::PromoteTo(df, hn::LoadU(dw, p));
    }
  }
  static float Scalar(const std::byte* row, size_t k) {
    if constexpr (std::is_same_v<T, float>) return LoadAsF32(DType::kF32, row, k);
    if constexpr (std::is_same_v<T, hwy::bfloat16_t>) return LoadAsF32(DType::kBF16, row, k);
    return LoadAsF32(DType::kF16, row, k);
  }
};

HWY_INLINE float BlockScale(const std::byte* block) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2  // F16C is part of these targets
  return _cvtsh_ss(LoadU16(block));
#else
  return F16ToF32(LoadU16(block));
#endif
}

struct Q8_0Row {
  static constexpr size_t kBlock = kQuantBlock;
  static constexpr size_t kBytesPer32 = kQ8_0BlockBytes;
  template <class DF>
  static HWY_INLINE void Load(DF df, const std::byte* row, size_t k, hn::Vec<DF>* w) {
    const std::byte* block = row + k / kQuantBlock * kQ8_0BlockBytes;
    const auto* q = reinterpret_cast<const int8_t*>(block + 2);
    const auto scale = hn::Set(df, BlockScale(block));
    const hn::Rebind<int8_t, DF> d8;
    const hn::Rebind<int32_t, DF> d32;
    constexpr size_t kLanes = hn::MaxLanes(DF());
#pragma GCC unroll 32
    for (size_t v = 0; v < kQuantBlock / kLanes; ++v) {
      w[v] = hn::Mul(hn::ConvertTo(df, hn::PromoteTo(d32, hn::LoadU(d8, q + v * kLanes))), scale);
    }
  }
  static float Scalar(const std::byte* row, size_t k) { return LoadAsF32(DType::kQ8_0, row, k); }
};

struct Q4_0Row {
  static constexpr size_t kBlock = kQuantBlock;
  static constexpr size_t kBytesPer32 = kQ4_0BlockBytes;
  template <class DF>
  static HWY_INLINE void Load(DF df, const std::byte* row, size_t k, hn::Vec<DF>* w) {
    const std::byte* block = row + k / kQuantBlock * kQ4_0BlockBytes;
    const auto* packed = reinterpret_cast<const uint8_t*>(block + 2);
    const auto scale = hn::Set(df, BlockScale(block));
    const hn::Rebind<uint8_t, DF> d8;
    const hn::Rebind<int32_t, DF> d32;
    const auto low_mask = hn::Set(d32, 15), eight = hn::Set(d32, 8);
    constexpr size_t kLanes = hn::MaxLanes(DF());
    constexpr size_t kHalf = kQuantBlock / 2 / kLanes;  // vectors per 16 weights (at least 1: see Tile)
#pragma GCC unroll 16
    for (size_t v = 0; v < kHalf; ++v) {
      const auto bytes = hn::PromoteTo(d32, hn::LoadU(d8, packed + v * kLanes));
      w[v] = hn::Mul(hn::ConvertTo(df, hn::Sub(hn::And(bytes, low_mask), eight)), scale);  // weights 0..15
      w[kHalf + v] = hn::Mul(hn::ConvertTo(df, hn::Sub(hn::ShiftRight<4>(bytes), eight)), scale);  // 16..31
    }
  }
  static float Scalar(const std::byte* row, size_t k) { return LoadAsF32(DType::kQ4_0, row, k); }
};

// Vectors one Load yields.
template <class Format, class DF>
constexpr size_t StepVectors() {
  constexpr size_t kLanes = hn::MaxLanes(DF());
  static_assert(Format::kBlock == 0 || (kLanes <= Format::kBlock / 2 && Format::kBlock % kLanes == 0),
                "quantized blocks need vectors of at most 16 lanes");
  return Format::kBlock == 0 ? 1 : Format::kBlock / kLanes;
}

// out[r * kTileTokens + t] = row r . token t for r < kTileRows, t < kTokens.
template <class Format, size_t kTokens>
HWY_INLINE void Tile(const std::byte* const* rows, size_t row_bytes, const float* const* tokens, size_t cols,
                     float* out) {
  const hn::ScalableTag<float> df;
  constexpr size_t kLanes = hn::MaxLanes(decltype(df)());
  constexpr size_t kVectors = StepVectors<Format, decltype(df)>();
  hn::Vec<decltype(df)> acc[kTileRows][kTokens];
#pragma GCC unroll 4
  for (size_t r = 0; r < kTileRows; ++r) {
#pragma GCC unroll 6
    for (size_t t = 0; t < kTokens; ++t) acc[r][t] = hn::Zero(df);
  }
  // At decode the weights come from DRAM in four short row streams, which the
  // hardware prefetcher does not follow: each row fetches the same place of
  // its row in the next tile (contiguous rows, one tile ahead).
  const size_t prefetch_ahead = kTileRows * row_bytes;
  size_t k = 0;
  for (; k + kVectors * kLanes <= cols; k += kVectors * kLanes) {
    hn::Vec<decltype(df)> w[kTileRows][kVectors];
#pragma GCC unroll 4
    for (size_t r = 0; r < kTileRows; ++r) {
      __builtin_prefetch(rows[r] + prefetch_ahead + k * Format::kBytesPer32 / 32);
      Format::Load(df, rows[r], k, w[r]);
    }
#pragma GCC unroll 32
    for (size_t v = 0; v < kVectors; ++v) {
#pragma GCC unroll 6
      for (size_t t = 0; t < kTokens; ++t) {
        const auto x = hn::LoadU(df, tokens[t] + k + v * kLanes);
#pragma GCC unroll 4
        for (size_t r = 0; r < kTileRows; ++r) acc[r][t] = hn::MulAdd(w[r][v], x, acc[r][t]);
      }
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

// Rows [row_begin, row_end) of y for every token (y row t at y + t * y_stride),
// token tiles outermost so a tile's activations stay in L1 while the rows'
// weights stream from L2.
template <class Format>
void RowBlock(const MatView& w, const float* x, size_t n, float* y, size_t y_stride, size_t row_begin,
              size_t row_end) {
  float out[kTileRows * kTileTokens];
  const size_t row_bytes = RowBytes(w.type, w.cols);
  for (size_t t0 = 0; t0 < n; t0 += kTileTokens) {
    const size_t tokens = std::min(kTileTokens, n - t0);
    const float* token_rows[kTileTokens];
    for (size_t t = 0; t < kTileTokens; ++t) token_rows[t] = x + (t0 + std::min(t, tokens - 1)) * w.cols;
    for (size_t r0 = row_begin; r0 < row_end; r0 += kTileRows) {
      const size_t rows = std::min(kTileRows, row_end - r0);
      const std::byte* weight_rows[kTileRows];  // a short last tile repeats its last row
      for (size_t r = 0; r < kTileRows; ++r) weight_rows[r] = w.Row(r0 + std::min(r, rows - 1));
      switch (tokens) {
        case 1: Tile<Format, 1>(weight_rows, row_bytes, token_rows, w.cols, out); break;
        case 2: Tile<Format, 2>(weight_rows, row_bytes, token_rows, w.cols, out); break;
        case 3: Tile<Format, 3>(weight_rows, row_bytes, token_rows, w.cols, out); break;
        case 4: Tile<Format, 4>(weight_rows, row_bytes, token_rows, w.cols, out); break;
        case 5: Tile<Format, 5>(weight_rows, row_bytes, token_rows, w.cols, out); break;
        default: Tile<Format, kTileTokens>(weight_rows, row_bytes, token_rows, w.cols, out); break;
      }
      for (size_t t = 0; t < tokens; ++t) {
        for (size_t r = 0; r < rows; ++r) y[(t0 + t) * y_stride + r0 + r] = out[r * kTileTokens + t];
      }
    }
  }
}

// Weights of a block of rows, as the tiles read them, fit in half of a 1 MB L2.
constexpr size_t kBlockBytes = size_t{512} << 10;

size_t BlockRows(size_t row_bytes) { return std::max<size_t>(kTileRows, kBlockBytes / std::max<size_t>(row_bytes, 1) / kTileRows * kTileRows); }

template <class Format>
void Blocks(const MatView& w, const float* x, size_t n, float* y, size_t row_begin, size_t row_end) {
  const size_t block_rows = BlockRows(RowBytes(w.type, w.cols));
  for (size_t b = row_begin; b < row_end; b += block_rows) {
    RowBlock<Format>(w, x, n, y, w.rows, b, std::min(row_end, b + block_rows));
  }
}

// Prompts over quantized weights: each block of rows is decoded once into an
// f32 panel that every token tile then reuses. The panel holds exactly the
// values the quantized tile computes in registers (q * d is exact in f32), so
// the results are the same bit for bit.
template <class Format>
void QuantizedBlocks(const MatView& w, const float* x, size_t n, float* y, size_t row_begin, size_t row_end) {
  if (n <= kTileTokens) return Blocks<Format>(w, x, n, y, row_begin, row_end);
  const hn::ScalableTag<float> df;
  constexpr size_t kLanes = hn::MaxLanes(decltype(df)());
  constexpr size_t kVectors = StepVectors<Format, decltype(df)>();
  const size_t block_rows = BlockRows(w.cols * sizeof(float));
  thread_local std::vector<float> panel;  // kept: a fresh 512 KB buffer per call would fault its pages in each time
  panel.resize(block_rows * w.cols);
  for (size_t b = row_begin; b < row_end; b += block_rows) {
    const size_t rows = std::min(row_end, b + block_rows) - b;
    for (size_t r = 0; r < rows; ++r) {
      for (size_t k = 0; k < w.cols; k += kQuantBlock) {
        hn::Vec<decltype(df)> block[kVectors];
        Format::Load(df, w.Row(b + r), k, block);
        for (size_t v = 0; v < kVectors; ++v) hn::StoreU(block[v], df, &panel[r * w.cols + k + v * kLanes]);
      }
    }
    const MatView decoded{DType::kF32, reinterpret_cast<const std::byte*>(panel.data()), rows, w.cols};
    RowBlock<FloatRow<float>>(decoded, x, n, y + b, w.rows, 0, rows);
  }
}

void MatMulRows(const MatView& w, const float* x, size_t n, float* y, size_t row_begin, size_t row_end) {
  switch (w.type) {
    case DType::kF32: return Blocks<FloatRow<float>>(w, x, n, y, row_begin, row_end);
    case DType::kBF16: return Blocks<FloatRow<hwy::bfloat16_t>>(w, x, n, y, row_begin, row_end);
    case DType::kF16: return Blocks<FloatRow<hwy::float16_t>>(w, x, n, y, row_begin, row_end);
    case DType::kQ8_0: return QuantizedBlocks<Q8_0Row>(w, x, n, y, row_begin, row_end);
    case DType::kQ4_0: return QuantizedBlocks<Q4_0Row>(w, x, n, y, row_begin, row_end);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(MatMulRows);

constexpr size_t kTileRowsForSplit = 4;  // kTileRows of the per-target code

void MatMul(const MatView& w, const float* x, size_t n, float* y, ThreadPool& pool) {
  auto run = [&](size_t row_begin, size_t row_end) {
    HWY_DYNAMIC_DISPATCH(MatMulRows)(w, x, n, y, row_begin, row_end);
  };
  // Waking the workers costs microseconds: small products run on the caller.
  constexpr size_t kMinParallelWork = size_t{1} << 18;
  if (w.rows * w.cols * n < kMinParallelWork || pool.size() == 1) {
    run(0, w.rows);
    return;
  }
  // Units of whole tiles, claimed by the threads as they go; about 16 per
  // thread, so a thread slowed by the memory system leaves its share to the others.
  const size_t units = pool.size() * 16;
  const size_t unit_rows = ((w.rows + units - 1) / units + kTileRowsForSplit - 1) / kTileRowsForSplit * kTileRowsForSplit;
  const size_t count = (w.rows + unit_rows - 1) / unit_rows;
  pool.ParallelFor(
      count, [&](size_t begin, size_t end) { run(begin * unit_rows, std::min(w.rows, end * unit_rows)); }, 1);
}

}  // namespace hymba
#endif

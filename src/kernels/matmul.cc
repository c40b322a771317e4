#include "kernels/matmul.h"

#include "hymba/error.h"
#include "kernels/matmul_bf16.h"
#include "kernels/matmul_int8.h"
#include "kernels/row_tiles.h"

#include <algorithm>
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

// How a row of each float storage type yields f32 vectors. Mapped tensors
// need not be aligned: unaligned loads, memcpy.
template <typename T>  // float, bfloat16_t, float16_t
struct FloatRow {
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

// out[r * kTileTokens + t] = row r . token t for r < kTileRows, t < kTokens.
template <typename T, size_t kTokens, bool kPrefetch>
HWY_INLINE void Tile(const std::byte* const* rows, const float* const* tokens, size_t cols, float* out) {
  using Format = FloatRow<T>;
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);  // not MaxLanes: an upper bound on scalable targets (SVE, RVV)
  hn::Vec<decltype(df)> acc[kTileRows][kTokens];
#pragma GCC unroll 4
  for (size_t r = 0; r < kTileRows; ++r) {
#pragma GCC unroll 6
    for (size_t t = 0; t < kTokens; ++t) acc[r][t] = hn::Zero(df);
  }
  // At decode the weights come from DRAM in four short row streams, which the
  // hardware prefetcher does not follow: each row fetches the same place of
  // its row in the next tile (contiguous rows, one tile ahead).
  const size_t prefetch_ahead = kTileRows * cols * sizeof(T);
  size_t k = 0;
  for (; k + lanes <= cols; k += lanes) {
    hn::Vec<decltype(df)> w[kTileRows];
#pragma GCC unroll 4
    for (size_t r = 0; r < kTileRows; ++r) {
      if constexpr (kPrefetch) __builtin_prefetch(rows[r] + prefetch_ahead + k * sizeof(T));
      w[r] = Format::Load(df, rows[r], k);
    }
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

template <typename T, bool kPrefetch>
void TileOfCount(size_t count, const std::byte* const* rows, const float* const* tokens, size_t cols, float* out) {
  switch (count) {
    case 1: return Tile<T, 1, kPrefetch>(rows, tokens, cols, out);
    case 2: return Tile<T, 2, kPrefetch>(rows, tokens, cols, out);
    case 3: return Tile<T, 3, kPrefetch>(rows, tokens, cols, out);
    case 4: return Tile<T, 4, kPrefetch>(rows, tokens, cols, out);
    case 5: return Tile<T, 5, kPrefetch>(rows, tokens, cols, out);
    default: return Tile<T, kTileTokens, kPrefetch>(rows, tokens, cols, out);
  }
}

template <typename T>
void MatMulRows(const MatView& w, const float* x, size_t n, float* y, size_t row_begin, size_t row_end) {
  ForEachRowTile(w, x, n, y, w.rows, row_begin, row_end,
                 [&](const std::byte* const* rows, const float* const* tokens, size_t count, bool first_pass,
                     float* out) {
                   if (first_pass) return TileOfCount<T, true>(count, rows, tokens, w.cols, out);
                   TileOfCount<T, false>(count, rows, tokens, w.cols, out);
                 });
}

void FloatMatMulRows(const MatView& w, const float* x, size_t n, float* y, size_t row_begin, size_t row_end) {
  switch (w.type) {
    case DType::kF32: return MatMulRows<float>(w, x, n, y, row_begin, row_end);
    case DType::kBF16: return MatMulRows<hwy::bfloat16_t>(w, x, n, y, row_begin, row_end);
    case DType::kF16: return MatMulRows<hwy::float16_t>(w, x, n, y, row_begin, row_end);
    case DType::kQ8_0:
    case DType::kQ4_0: break;  // the int8 kernels
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(FloatMatMulRows);

namespace {

// Runs run(begin, end) over [0, items) on the pool, in units of whole items
// claimed by the threads as they go: about 16 per thread, so a thread slowed
// by the memory system leaves its share to the others. Waking the workers
// costs microseconds: small products run on the caller.
template <typename Run>
void SplitOverPool(ThreadPool& pool, size_t items, size_t work, const Run& run) {
  constexpr size_t kMinParallelWork = size_t{1} << 18;
  if (work < kMinParallelWork || pool.size() == 1) return run(0, items);
  const size_t units = pool.size() * 16;
  pool.ParallelFor(items, run, (items + units - 1) / units);
}

}  // namespace

void MatMul(const MatView& w, const float* x, size_t n, float* y, ThreadPool& pool) {
  const size_t work = w.rows * w.cols * n;
  if (IsQuantized(w.type)) {
    if (!w.interleaved) throw Error("MatMul: a q8_0/q4_0 matrix must be interleaved (core/interleaved.h) first");
    // Kept per caller, or its buffers would be reallocated per call; named by
    // reference because a lambda run on a worker would see the worker's own.
    thread_local Int8Activations caller_activations;
    Int8Activations& activations = caller_activations;
    const Int8Kernel kernel = BestInt8Kernel();
    QuantizeActivations(w.type, x, n, w.cols, activations, &pool, kernel);
    const size_t groups = (w.rows + kInterleaveRows - 1) / kInterleaveRows;
    SplitOverPool(pool, groups, work, [&](size_t begin, size_t end) {
      MatMulInt8(w, activations, y, w.rows, begin, end, kernel);
    });
    return;
  }
  // Units of whole register tiles.
  const size_t tiles = (w.rows + kTileRows - 1) / kTileRows;
  if (w.bf16_products) {
    if (w.type != DType::kBF16) throw Error("MatMul: bf16 products need bf16 weights");
    thread_local std::vector<uint16_t> caller_activations;  // see above
    std::vector<uint16_t>& activations = caller_activations;
    RoundActivationsToBf16(x, n, w.cols, activations);
    const Bf16Kernel kernel = BestBf16Kernel();
    SplitOverPool(pool, tiles, work, [&](size_t begin, size_t end) {
      MatMulBf16Rows(w, activations.data(), n, y, w.rows, begin * kTileRows, std::min(w.rows, end * kTileRows), kernel);
    });
    return;
  }
  SplitOverPool(pool, tiles, work, [&](size_t begin, size_t end) {
    HWY_DYNAMIC_DISPATCH(FloatMatMulRows)(w, x, n, y, begin * kTileRows, std::min(w.rows, end * kTileRows));
  });
}

}  // namespace hymba
#endif

#include "kernels/matmul.h"

#include "hymba/error.h"
#include "kernels/group_tiles.h"
#include "kernels/matmul_bf16.h"
#include "kernels/matmul_int8.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

#include "kernels/load_f32-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// At most 16 lanes: a chunk's 16 even (odd) columns are one AVX-512 vector,
// or 16 / Lanes narrower ones.
using DF = hn::CappedTag<float, kFloatChunk / 2>;
using VF = hn::Vec<DF>;

// How a row's chunk of each float storage type (core/interleaved.h) yields
// f32 vectors of its even and odd columns: part v holds columns 2j (2j + 1)
// for j in [v Lanes, (v + 1) Lanes). Weights in memory need not be aligned.
template <typename T>  // float, float16_t: the even columns, then the odd ones
struct FloatChunk {
  static HWY_INLINE VF Even(DF df, const T* chunk, size_t v) { return LoadF32(df, chunk + v * hn::Lanes(df)); }
  static HWY_INLINE VF Odd(DF df, const T* chunk, size_t v) {
    return LoadF32(df, chunk + kFloatChunk / 2 + v * hn::Lanes(df));
  }
};

template <>  // bf16 in column order: a 32-bit lane holds a pair, the even column in its low half
struct FloatChunk<hwy::bfloat16_t> {
  static HWY_INLINE hn::Vec<hn::RebindToUnsigned<DF>> Pairs(DF df, const hwy::bfloat16_t* chunk, size_t v) {
    return hn::LoadU(hn::RebindToUnsigned<DF>(), reinterpret_cast<const uint32_t*>(chunk) + v * hn::Lanes(df));
  }
  static HWY_INLINE VF Even(DF df, const hwy::bfloat16_t* chunk, size_t v) {
    return hn::BitCast(df, hn::ShiftLeft<16>(Pairs(df, chunk, v)));
  }
  static HWY_INLINE VF Odd(DF df, const hwy::bfloat16_t* chunk, size_t v) {
    const hn::RebindToUnsigned<DF> du;
    return hn::BitCast(df, hn::And(Pairs(df, chunk, v), hn::Set(du, 0xFFFF0000u)));
  }
};

// p, hidden from the optimiser: a bf16 row's odd columns come from the same
// load as its even ones, and GCC kept all four rows' loads alive across the
// even pass instead of loading again from L1, which spilled accumulators of
// the 4 x 6 tile to the stack.
template <typename T>
HWY_INLINE const T* Reloaded(const T* p) {
  asm("" : "+r"(p));
  return p;
}

// out[i * kTokens + t] = row i of a group of `lanes` rows . token t, for
// i < kFloatGroupRows (rows past a short last group repeat its last) and
// t < kTokens.
// tokens[t]: the activations in chunk order (SplitActivations). Each output
// accumulates, chunk after chunk, its even columns' products and then its odd
// ones' in one vector, sums the lanes, then adds the tail column by column:
// the same operations for any tile, batch or thread count.
template <typename T, size_t kTokens>
HWY_INLINE void Tile(const T* group, size_t lanes, size_t cols, const float* const* tokens, float* out) {
  constexpr size_t kRows = kFloatGroupRows;
  using Chunk = FloatChunk<T>;
  const DF df;
  const size_t parts = kFloatChunk / 2 / hn::Lanes(df);
  const size_t chunks = cols / kFloatChunk, chunk_stride = lanes * kFloatChunk;
  const T* rows[kRows];
  for (size_t i = 0; i < kRows; ++i) rows[i] = group + std::min(i, lanes - 1) * kFloatChunk;
  VF acc[kRows][kTokens];
#pragma GCC unroll 4
  for (size_t i = 0; i < kRows; ++i) {
#pragma GCC unroll 6
    for (size_t t = 0; t < kTokens; ++t) acc[i][t] = hn::Zero(df);
  }
  for (size_t c = 0; c < chunks; ++c) {
    const size_t at = c * chunk_stride;
    for (size_t v = 0; v < parts; ++v) {
      const size_t x_at = c * kFloatChunk + v * hn::Lanes(df);
      if constexpr (kTokens <= 2) {  // the activations stay in registers, a row at a time
        VF even_x[kTokens], odd_x[kTokens];
        for (size_t t = 0; t < kTokens; ++t) {
          even_x[t] = hn::LoadU(df, tokens[t] + x_at);
          odd_x[t] = hn::LoadU(df, tokens[t] + x_at + kFloatChunk / 2);
        }
#pragma GCC unroll 4
        for (size_t i = 0; i < kRows; ++i) {
          const VF even = Chunk::Even(df, rows[i] + at, v), odd = Chunk::Odd(df, rows[i] + at, v);
          for (size_t t = 0; t < kTokens; ++t) {
            acc[i][t] = hn::MulAdd(even, even_x[t], acc[i][t]);
            acc[i][t] = hn::MulAdd(odd, odd_x[t], acc[i][t]);
          }
        }
      } else {  // the weights stay in registers, the even columns of every token, then the odd ones
        VF w[kRows];
#pragma GCC unroll 4
        for (size_t i = 0; i < kRows; ++i) w[i] = Chunk::Even(df, rows[i] + at, v);
#pragma GCC unroll 6
        for (size_t t = 0; t < kTokens; ++t) {
          const VF x = hn::LoadU(df, tokens[t] + x_at);
#pragma GCC unroll 4
          for (size_t i = 0; i < kRows; ++i) acc[i][t] = hn::MulAdd(w[i], x, acc[i][t]);
        }
#pragma GCC unroll 4
        for (size_t i = 0; i < kRows; ++i) w[i] = Chunk::Odd(df, Reloaded(rows[i] + at), v);
#pragma GCC unroll 6
        for (size_t t = 0; t < kTokens; ++t) {
          const VF x = hn::LoadU(df, tokens[t] + x_at + kFloatChunk / 2);
#pragma GCC unroll 4
          for (size_t i = 0; i < kRows; ++i) acc[i][t] = hn::MulAdd(w[i], x, acc[i][t]);
        }
      }
    }
  }
  const size_t tail = cols - chunks * kFloatChunk;
  const T* tails = group + chunks * chunk_stride;
  for (size_t i = 0; i < kRows; ++i) {
    const T* row_tail = tails + std::min(i, lanes - 1) * tail;
    for (size_t t = 0; t < kTokens; ++t) {
      float sum = hn::GetLane(hn::SumOfLanes(df, acc[i][t]));
      for (size_t k = 0; k < tail; ++k) sum += LoadScalarF32(row_tail + k) * tokens[t][chunks * kFloatChunk + k];
      out[i * kTokens + t] = sum;
    }
  }
}

// Group g for tokens [t0, t0 + kTokens).
template <typename T, size_t kTokens>
void GroupTokens(const MatView& w, size_t g, const float* x, size_t t0, float* y) {
  const size_t row0 = g * kFloatGroupRows, lanes = std::min(kFloatGroupRows, w.rows - row0);
  const T* group = reinterpret_cast<const T*>(w.data + row0 * RowBytes(w.type, w.cols));
  const float* tokens[kTokens];
  for (size_t t = 0; t < kTokens; ++t) tokens[t] = x + (t0 + t) * w.cols;
  float out[kFloatGroupRows * kTokens];
  Tile<T, kTokens>(group, lanes, w.cols, tokens, out);
  for (size_t i = 0; i < lanes; ++i) {
    for (size_t t = 0; t < kTokens; ++t) y[(t0 + t) * w.rows + row0 + i] = out[i * kTokens + t];
  }
}

template <typename T>
void GroupOfTokens(const MatView& w, size_t g, const float* x, size_t t0, size_t tokens, float* y) {
  switch (tokens) {
    case 1: return GroupTokens<T, 1>(w, g, x, t0, y);
    case 2: return GroupTokens<T, 2>(w, g, x, t0, y);
    case 3: return GroupTokens<T, 3>(w, g, x, t0, y);
    case 4: return GroupTokens<T, 4>(w, g, x, t0, y);
    case 5: return GroupTokens<T, 5>(w, g, x, t0, y);
    default: return GroupTokens<T, kTileTokens>(w, g, x, t0, y);
  }
}

template <typename T>
void MatMulGroups(const MatView& w, const float* x, size_t n, float* y, size_t group_begin, size_t group_end) {
  ForEachGroupTile(w, n, kTileTokens, group_begin, group_end,
                   [&](size_t g, size_t t0, size_t tokens) { GroupOfTokens<T>(w, g, x, t0, tokens, y); });
}

void FloatMatMulGroups(const MatView& w, const float* x, size_t n, float* y, size_t group_begin, size_t group_end) {
  switch (w.type) {
    case DType::kF32: return MatMulGroups<float>(w, x, n, y, group_begin, group_end);
    case DType::kBF16: return MatMulGroups<hwy::bfloat16_t>(w, x, n, y, group_begin, group_end);
    case DType::kF16: return MatMulGroups<hwy::float16_t>(w, x, n, y, group_begin, group_end);
    case DType::kQ8_0:
    case DType::kQ4_0: break;  // the int8 kernels
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(FloatMatMulGroups);

namespace {

// Runs run(begin, end) over [0, items) on the pool, in ranges of whole items
// that the threads claim as they go (ThreadPool::ParallelFor), so a thread
// slowed by the memory system leaves its share to the others. A product of a
// few tokens streams its matrix (`bytes`): the claims shrink from half a
// thread's share of it down to kMinUnitBytes, each claim a stream of its
// own. Fixed units of 128 KB or more (shorter ones spent their time starting
// streams: dt_proj from 1.5 to 1.0 ms per token at 20 KB) left the caller
// waiting for the worker's last unit, about 2 % of a q8_0 decode step on Zen
// 4; shrinking claims cut that wait by 40 %. A prompt's products are
// arithmetic, and keep about 16 units per thread. Waking the workers costs
// microseconds: small products run on the caller.
template <typename Run>
void SplitOverPool(ThreadPool& pool, size_t items, size_t n, size_t work, size_t bytes, const Run& run) {
  constexpr size_t kMinParallelWork = size_t{1} << 18;
  constexpr size_t kStreamingTokens = 8;  // fewer tokens than this: bound by reading the matrix
  constexpr size_t kMinUnitBytes = size_t{32} << 10;
  constexpr size_t kUnitsPerThread = 16;
  if (work < kMinParallelWork || pool.size() == 1) return run(0, items);
  if (n < kStreamingTokens) return pool.ParallelFor(items, run, std::max<size_t>(1, items * kMinUnitBytes / bytes));
  const size_t units = kUnitsPerThread * pool.size();
  pool.ParallelFor(items, run, (items + units - 1) / units);
}

// x [n, cols] with each chunk of 32 columns in the order of f32 weights:
// even columns, then odd ones (core/interleaved.h). A long prompt's rows are
// split over the pool.
void SplitActivations(const float* x, size_t n, size_t cols, std::vector<float>& out, ThreadPool& pool) {
  out.resize(n * cols);
  const size_t chunked = cols / kFloatChunk * kFloatChunk;
  const auto split = [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      const float* from = x + t * cols;
      float* to = out.data() + t * cols;
      for (size_t c = 0; c < chunked; ++c) {
        to[c / kFloatChunk * kFloatChunk + FloatChunkSlot(DType::kF32, c % kFloatChunk)] = from[c];
      }
      std::copy(from + chunked, from + cols, to + chunked);
    }
  };
  ParallelForValues(pool, n, n * cols, split);
}

}  // namespace

void MatMul(const MatView& w, const float* x, size_t n, float* y, ThreadPool& pool) {
  if (w.layout == Layout::kRowMajor) throw Error("MatMul: the matrix must be interleaved (core/interleaved.h) first");
  const size_t work = w.rows * w.cols * n, bytes = w.rows * RowBytes(w.type, w.cols);
  const size_t groups = (w.rows + GroupRows(w.type, w.layout) - 1) / GroupRows(w.type, w.layout);
  if (IsQuantized(w.type)) {
    // Kept per caller, or its buffers would be reallocated per call; named by
    // reference because a lambda run on a worker would see the worker's own.
    thread_local Int8Activations caller_activations;
    Int8Activations& activations = caller_activations;
    const Int8Kernel kernel = BestInt8Kernel();
    QuantizeActivations(w.type, x, n, w.cols, activations, &pool, kernel);
    SplitOverPool(pool, groups, n, work, bytes, [&](size_t begin, size_t end) {
      MatMulInt8(w, activations, y, w.rows, begin, end, kernel);
    });
    return;
  }
  if (w.layout == Layout::kBf16Pairs) {
    if (w.type != DType::kBF16) throw Error("MatMul: bf16 products need bf16 weights");
    thread_local std::vector<uint16_t> caller_activations;  // see above
    std::vector<uint16_t>& activations = caller_activations;
    RoundActivationsToBf16(x, n, w.cols, activations, pool);
    const Bf16Kernel kernel = BestBf16Kernel();
    SplitOverPool(pool, groups, n, work, bytes, [&](size_t begin, size_t end) {
      MatMulBf16Groups(w, activations.data(), n, y, begin, end, kernel);
    });
    return;
  }
  thread_local std::vector<float> caller_activations;  // see above
  std::vector<float>& activations = caller_activations;
  SplitActivations(x, n, w.cols, activations, pool);
  SplitOverPool(pool, groups, n, work, bytes, [&](size_t begin, size_t end) {
    HWY_DYNAMIC_DISPATCH(FloatMatMulGroups)(w, activations.data(), n, y, begin, end);
  });
}

}  // namespace hymba
#endif

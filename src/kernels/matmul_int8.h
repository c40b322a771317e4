// Products of q8_0 and q4_0 weights, interleaved by 16 rows (core/interleaved.h),
// with activations quantized to 8 bits per block of 32 (llama.cpp's scheme):
// each block's dot product is computed exactly in integers, then scaled by
// the weight and activation scales and added in f32, block by block in order.
// The AVX-512 VNNI, AVX2 and portable kernels give the same bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/mat_view.h"
#include "core/thread_pool.h"

namespace hymba {

// Rows of activations, each block of 32 values as scale max|x| / 127 and
// quants round(x / scale) in [-127, 127]. Block-major, so the tokens of a
// tile sit side by side for each block of weights.
struct Int8Activations {
  size_t tokens = 0;
  size_t blocks = 0;
  std::vector<int8_t> quants;    // [blocks][tokens][32]
  std::vector<float> scales;     // [blocks][tokens]
  std::vector<int32_t> offsets;  // [blocks][tokens]: -(stored weight of value 0) * sum of the block's quants
};

// kVnni: AVX-512 with VNNI; kAvx2: AVX2, FMA and F16C. The same bits whichever runs.
enum class Int8Kernel { kPortable, kAvx2, kVnni };
bool CpuHasVnni();
bool CpuHasAvx2();
inline Int8Kernel BestInt8Kernel() {
  return CpuHasVnni() ? Int8Kernel::kVnni : CpuHasAvx2() ? Int8Kernel::kAvx2 : Int8Kernel::kPortable;
}

// x: [n, cols], cols a multiple of 32; the offsets suit weights of `weight_type`.
// Long prompts are split over `pool` when one is given.
void QuantizeActivations(DType weight_type, const float* x, size_t n, size_t cols, Int8Activations& out,
                         ThreadPool* pool = nullptr, Int8Kernel kernel = BestInt8Kernel());

// y[t * y_stride + r] = row r of w . token t, for every token of x and the
// rows of groups [group_begin, group_end) of w (an interleaved q8_0/q4_0 view).
void MatMulInt8(const MatView& w, const Int8Activations& x, float* y, size_t y_stride, size_t group_begin,
                size_t group_end, Int8Kernel kernel);

}  // namespace hymba

// Products of bf16 weights with activations rounded to bf16, the opt-in
// compute type `bf16` (llama.cpp computes bf16 weights this way): each pair
// of products is exact in f32 and added in f32, twice the arithmetic rate of
// f32 products on CPUs with AVX-512 BF16 (VDPBF16PS). The default computes
// in f32 as spec E9 requires; this type is judged like the quantized ones,
// by KL divergence and top-1 agreement against f32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/mat_view.h"
#include "core/thread_pool.h"

namespace hymba {

enum class Bf16Kernel { kPortable, kAvx512 };
bool CpuHasAvx512Bf16();
inline Bf16Kernel BestBf16Kernel() { return CpuHasAvx512Bf16() ? Bf16Kernel::kAvx512 : Bf16Kernel::kPortable; }

// x: [n, cols] -> [n, cols] bf16 bits, rounded to nearest even; a prompt's
// rows are split over the pool.
void RoundActivationsToBf16(const float* x, size_t n, size_t cols, std::vector<uint16_t>& out, ThreadPool& pool);

// y[t * w.rows + r] = row r of w . token t for the rows of groups
// [group_begin, group_end) of w and every token of x (n rows of w.cols bf16
// values). w must be bf16 in Layout::kBf16Pairs (core/interleaved.h).
void MatMulBf16Groups(const MatView& w, const uint16_t* x, size_t n, float* y, size_t group_begin, size_t group_end,
                      Bf16Kernel kernel);

}  // namespace hymba

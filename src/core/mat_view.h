// Non-owning typed views over weights that live in a memory-mapped checkpoint.
#pragma once

#include <cstddef>
#include <span>

#include "core/dtype.h"
#include "core/interleaved.h"

namespace hymba {

// [rows, cols] matrix in its stored type; kernels decode it on the fly. The
// matrix kernels read rows interleaved in groups (core/interleaved.h), as a
// loaded model holds them; DecodeRow reads any layout.
struct MatView {
  DType type = DType::kF32;
  const std::byte* data = nullptr;
  size_t rows = 0;
  size_t cols = 0;
  // kBf16Pairs: bf16 weights times activations rounded to bf16 (ComputeType::kBF16).
  Layout layout = Layout::kRowMajor;

  bool empty() const { return data == nullptr; }
  void DecodeRow(size_t r, std::span<float> out) const {
    if (layout != Layout::kRowMajor) return DecodeInterleavedRow(type, layout, data, rows, cols, r, out.data());
    const std::byte* row = data + r * RowBytes(type, cols);
    for (size_t c = 0; c < cols; ++c) out[c] = LoadAsF32(type, row, c);
  }
};

}  // namespace hymba

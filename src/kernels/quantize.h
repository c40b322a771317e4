// Conversion of f32 weights to each storage type, for `hymba convert`: the
// float types with round-to-nearest-even, q8_0 and q4_0 as ggml defines them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/dtype.h"

namespace hymba {

uint16_t F32ToF16(float value);  // F32ToBF16 is in core/dtype.h

// Writes `values` (a whole row; a multiple of kQuantBlock for q8_0 and q4_0)
// as RowBytes(type, values.size()) bytes.
void QuantizeRow(DType type, std::span<const float> values, std::byte* out);

}  // namespace hymba

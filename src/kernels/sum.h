// The bandwidth probe's kernel: a sum that reads memory as fast as the widest
// vectors allow, vectorised with Highway and dispatched at run time.
#pragma once

#include <cstddef>

namespace hymba {

float Sum(const float* x, size_t n);

}  // namespace hymba

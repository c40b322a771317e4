// Sums vectorised with Highway and dispatched at run time: the bandwidth
// probe's, which reads memory as fast as the widest vectors allow, and the
// norms' sum of squares.
#pragma once

#include <cstddef>

namespace hymba {

float Sum(const float* x, size_t n);
double SumOfSquares(const float* x, size_t n);  // each square and the sum in double

}  // namespace hymba

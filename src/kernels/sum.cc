#include "kernels/sum.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/sum.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Four accumulators: the loads, not the adds, must be the limit.
float SumF32(const float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  auto s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
  size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    s0 = hn::Add(s0, hn::LoadU(df, x + i));
    s1 = hn::Add(s1, hn::LoadU(df, x + i + lanes));
    s2 = hn::Add(s2, hn::LoadU(df, x + i + 2 * lanes));
    s3 = hn::Add(s3, hn::LoadU(df, x + i + 3 * lanes));
  }
  float total = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < n; ++i) total += x[i];
  return total;
}

// Squares summed in double, as the float64 reference sums them, in four
// vector accumulators: one chain of scalar adds made the norms of a decode
// step wait on add latency.
double SumSquaresF32(const float* x, size_t n) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const size_t lanes = hn::Lanes(dd);
  auto s0 = hn::Zero(dd), s1 = hn::Zero(dd), s2 = hn::Zero(dd), s3 = hn::Zero(dd);
  const auto square_add = [&](const float* p, auto sum) {
    const auto v = hn::PromoteTo(dd, hn::LoadU(df, p));
    return hn::MulAdd(v, v, sum);
  };
  size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    s0 = square_add(x + i, s0);
    s1 = square_add(x + i + lanes, s1);
    s2 = square_add(x + i + 2 * lanes, s2);
    s3 = square_add(x + i + 3 * lanes, s3);
  }
  for (; i + lanes <= n; i += lanes) s0 = square_add(x + i, s0);
  double total = hn::GetLane(hn::SumOfLanes(dd, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < n; ++i) total += static_cast<double>(x[i]) * x[i];
  return total;
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(SumF32);
HWY_EXPORT(SumSquaresF32);

float Sum(const float* x, size_t n) { return HWY_DYNAMIC_DISPATCH(SumF32)(x, n); }
double SumOfSquares(const float* x, size_t n) { return HWY_DYNAMIC_DISPATCH(SumSquaresF32)(x, n); }

}  // namespace hymba
#endif

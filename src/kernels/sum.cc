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

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(SumF32);

float Sum(const float* x, size_t n) { return HWY_DYNAMIC_DISPATCH(SumF32)(x, n); }

}  // namespace hymba
#endif

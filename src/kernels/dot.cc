#include "kernels/dot.h"

#include <cstring>
#include <type_traits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dot.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One element, read with memcpy: mapped tensors need not be aligned.
template <typename T>
float LoadScalar(const T* p) {
  T value;
  std::memcpy(&value, p, sizeof value);
  if constexpr (std::is_same_v<T, float>) {
    return value;
  } else if constexpr (std::is_same_v<T, hwy::bfloat16_t>) {
    return hwy::F32FromBF16(value);
  } else {
    uint16_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return F16ToF32(bits);
  }
}

// Two accumulators hide the FMA latency; the tail is summed in scalar code.
template <typename T>
float DotT(const T* w, const float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  auto load = [&](size_t i) {
    if constexpr (std::is_same_v<T, float>) {
      return hn::LoadU(df, w + i);
    } else {
      const hn::Rebind<T, decltype(df)> dw;  // half-width vector of 16-bit values
      return hn::PromoteTo(df, hn::LoadU(dw, w + i));
    }
  };
  auto sum0 = hn::Zero(df), sum1 = hn::Zero(df);
  size_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    sum0 = hn::MulAdd(load(i), hn::LoadU(df, x + i), sum0);
    sum1 = hn::MulAdd(load(i + lanes), hn::LoadU(df, x + i + lanes), sum1);
  }
  for (; i + lanes <= n; i += lanes) sum0 = hn::MulAdd(load(i), hn::LoadU(df, x + i), sum0);
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(sum0, sum1)));
  for (; i < n; ++i) sum += LoadScalar(w + i) * x[i];
  return sum;
}

float DotF32(const std::byte* w, const float* x, size_t n) { return DotT(reinterpret_cast<const float*>(w), x, n); }
float DotBF16(const std::byte* w, const float* x, size_t n) {
  return DotT(reinterpret_cast<const hwy::bfloat16_t*>(w), x, n);
}
float DotF16(const std::byte* w, const float* x, size_t n) {
  return DotT(reinterpret_cast<const hwy::float16_t*>(w), x, n);
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(DotF32);
HWY_EXPORT(DotBF16);
HWY_EXPORT(DotF16);

float Dot(DType type, const std::byte* row, const float* x, size_t n) {
  switch (type) {
    case DType::kF32: return HWY_DYNAMIC_DISPATCH(DotF32)(row, x, n);
    case DType::kBF16: return HWY_DYNAMIC_DISPATCH(DotBF16)(row, x, n);
    case DType::kF16: return HWY_DYNAMIC_DISPATCH(DotF16)(row, x, n);
  }
  return 0.0f;
}

}  // namespace hymba
#endif

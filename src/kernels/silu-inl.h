// silu(x) = x / (1 + exp(-x)) on Highway vectors, shared by the kernels that
// gate with it. Included once per SIMD target (hence no plain include guard).
#if defined(HYMBA_KERNELS_SILU_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HYMBA_KERNELS_SILU_INL_H_
#undef HYMBA_KERNELS_SILU_INL_H_
#else
#define HYMBA_KERNELS_SILU_INL_H_
#endif

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Highway's Exp is valid up to +104 (beyond, its result is wrong or NaN);
// exp(88) already makes x / (1 + exp(-x)) round to -0 for x below -88.
template <class D, class V>
HWY_INLINE V Silu(D d, V x) {
  const V exp_minus_x = hn::Exp(d, hn::Min(hn::Neg(x), hn::Set(d, 88.0f)));
  return hn::Div(x, hn::Add(hn::Set(d, 1.0f), exp_minus_x));
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#endif  // HYMBA_KERNELS_SILU_INL_H_

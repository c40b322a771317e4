#include "kernels/activations.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/activations.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

#include "kernels/silu-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Whole vectors, then the last values one lane at a time through the same
// arithmetic, so every value gets the same bits wherever it falls.
template <bool kGated>
void SiluRange(const float* gate, float* x, size_t begin, size_t end) {
  const hn::ScalableTag<float> d;
  const hn::CappedTag<float, 1> d1;
  size_t i = begin;
  for (; i + hn::Lanes(d) <= end; i += hn::Lanes(d)) {
    if constexpr (kGated) {
      hn::StoreU(hn::Mul(hn::LoadU(d, x + i), Silu(d, hn::LoadU(d, gate + i))), d, x + i);
    } else {
      hn::StoreU(Silu(d, hn::LoadU(d, x + i)), d, x + i);
    }
  }
  for (; i < end; ++i) {
    if constexpr (kGated) {
      hn::StoreU(hn::Mul(hn::LoadU(d1, x + i), Silu(d1, hn::LoadU(d1, gate + i))), d1, x + i);
    } else {
      hn::StoreU(Silu(d1, hn::LoadU(d1, x + i)), d1, x + i);
    }
  }
}

void SiluInPlaceRange(float* x, size_t begin, size_t end) { SiluRange<false>(nullptr, x, begin, end); }
void MultiplyBySiluRange(const float* gate, float* x, size_t begin, size_t end) { SiluRange<true>(gate, x, begin, end); }

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>

namespace hymba {

HWY_EXPORT(SiluInPlaceRange);
HWY_EXPORT(MultiplyBySiluRange);

namespace {

template <typename Run>
void OverPool(size_t n, ThreadPool& pool, const Run& run) {
  constexpr size_t kUnit = 4096;  // values per range: whole cache lines, whole vectors
  ParallelForValues(pool, (n + kUnit - 1) / kUnit, n, [&](size_t begin, size_t end) {
    run(begin * kUnit, std::min(n, end * kUnit));
  });
}

}  // namespace

void SiluInPlace(float* x, size_t n, ThreadPool& pool) {
  OverPool(n, pool, [&](size_t begin, size_t end) { HWY_DYNAMIC_DISPATCH(SiluInPlaceRange)(x, begin, end); });
}

void MultiplyBySilu(const float* gate, float* x, size_t n, ThreadPool& pool) {
  OverPool(n, pool, [&](size_t begin, size_t end) { HWY_DYNAMIC_DISPATCH(MultiplyBySiluRange)(gate, x, begin, end); });
}

}  // namespace hymba
#endif

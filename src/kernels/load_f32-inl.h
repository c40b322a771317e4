// f32, f16 or bf16 elements as f32 (Lanes(d) of them as a vector, or one),
// for the kernels that read weights or the K/V cache in any float storage
// type.
// Included once per SIMD target (hence no plain include guard).
#if defined(HYMBA_KERNELS_LOAD_F32_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HYMBA_KERNELS_LOAD_F32_INL_H_
#undef HYMBA_KERNELS_LOAD_F32_INL_H_
#else
#define HYMBA_KERNELS_LOAD_F32_INL_H_
#endif

#include <type_traits>

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The elements need not be aligned.
template <class D, typename T>
HWY_INLINE hn::Vec<D> LoadF32(D d, const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(d, p);
  } else {
    return hn::PromoteTo(d, hn::LoadU(hn::Rebind<T, D>(), p));
  }
}

// One element as f32, converted by the vector unit: dt_proj's 100 columns
// leave 4 per row after its chunks, and converting them in software had cost
// the f16 matrix kernel more than the chunks.
template <typename T>
HWY_INLINE float LoadScalarF32(const T* p) {
  return hn::GetLane(LoadF32(hn::CappedTag<float, 1>(), p));
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#endif  // HYMBA_KERNELS_LOAD_F32_INL_H_

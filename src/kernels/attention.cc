#include "kernels/attention.h"

#include <algorithm>
#include <cmath>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void AttendImpl(const float* query, const float* const* key_rows, size_t key_offset, const float* const* value_rows,
                size_t value_offset, size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out) {
  const hn::ScalableTag<float> d;
  const hn::CappedTag<float, 1> d1;
  const size_t lanes = hn::Lanes(d);

  float max_score = -INFINITY;
  for (size_t m = 0; m < count; ++m) {
    const float* key = key_rows[m] + key_offset;
    auto acc = hn::Zero(d);
    size_t i = 0;
    for (; i + lanes <= dqk; i += lanes) acc = hn::MulAdd(hn::LoadU(d, query + i), hn::LoadU(d, key + i), acc);
    float dot = hn::GetLane(hn::SumOfLanes(d, acc));
    for (; i < dqk; ++i) dot += query[i] * key[i];
    scores[m] = dot * scale;
    max_score = std::max(max_score, scores[m]);
  }

  // Unnormalised weights exp(s - max); the sum divides the output once.
  const auto shift = hn::Set(d, max_score);
  auto sum_vector = hn::Zero(d);
  size_t m = 0;
  for (; m + lanes <= count; m += lanes) {
    const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, scores + m), shift));
    hn::StoreU(e, d, scores + m);
    sum_vector = hn::Add(sum_vector, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, sum_vector));
  for (; m < count; ++m) {
    const auto e = hn::Exp(d1, hn::Sub(hn::Set(d1, scores[m]), hn::Set(d1, max_score)));
    scores[m] = hn::GetLane(e);
    sum += scores[m];
  }

  const float inverse = 1.0f / sum;
  size_t i = 0;
  for (; i + lanes <= dv; i += lanes) {
    auto acc = hn::Zero(d);
    for (size_t k = 0; k < count; ++k) acc = hn::MulAdd(hn::Set(d, scores[k]), hn::LoadU(d, value_rows[k] + value_offset + i), acc);
    hn::StoreU(hn::Mul(acc, hn::Set(d, inverse)), d, out + i);
  }
  for (; i < dv; ++i) {
    float acc = 0.0f;
    for (size_t k = 0; k < count; ++k) acc += scores[k] * value_rows[k][value_offset + i];
    out[i] = acc * inverse;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(AttendImpl);

void Attend(const float* query, const float* const* key_rows, size_t key_offset, const float* const* value_rows,
            size_t value_offset, size_t count, size_t dqk, size_t dv, float scale, float* scores, float* out) {
  HWY_DYNAMIC_DISPATCH(AttendImpl)(query, key_rows, key_offset, value_rows, value_offset, count, dqk, dv, scale, scores, out);
}

}  // namespace hymba
#endif

#include "kernels/scan.h"

#include <algorithm>
#include <cmath>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/scan.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "kernels/silu-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hymba {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Channels [begin, end): whole vectors, then the remaining channels one lane
// at a time through the same vector code (a one-lane descriptor).
template <class D>
void ScanChannels(D d, const ScanInputs& in, size_t ch) {
  const auto threshold = hn::Set(d, 20.0f);  // softplus is linear above 20, as in torch
  const auto bias = hn::LoadU(d, in.dt_bias + ch);
  const auto d_skip = hn::LoadU(d, in.d_skip + ch);
  const size_t width = ScanBlockWidth(ch, in.d_inner);  // from row s of state and A to row s + 1
  float* const state = in.state + ScanIndex(0, ch, in.d_inner, in.d_state);
  const float* const a = in.a + ScanIndex(0, ch, in.d_inner, in.d_state);
  for (size_t t = 0; t < in.steps; ++t) {
    const size_t row = t * in.d_inner + ch;
    const auto pre = hn::Add(hn::LoadU(d, in.delta_pre + row), bias);
    const auto delta = hn::IfThenElse(hn::Gt(pre, threshold), pre, hn::Log1p(d, hn::Exp(d, pre)));
    const auto x = hn::LoadU(d, in.x + row);
    const auto delta_x = hn::Mul(delta, x);
    const float* b = in.b + t * in.bc_stride;
    const float* c = in.c + t * in.bc_stride;
    auto y = hn::Mul(d_skip, x);
    for (size_t s = 0; s < in.d_state; ++s) {
      float* h_ptr = state + s * width;
      const auto decay = hn::Exp(d, hn::Mul(delta, hn::LoadU(d, a + s * width)));
      const auto h = hn::MulAdd(decay, hn::LoadU(d, h_ptr), hn::Mul(delta_x, hn::Set(d, b[s])));
      hn::StoreU(h, d, h_ptr);
      y = hn::MulAdd(h, hn::Set(d, c[s]), y);
    }
    const auto silu_z = Silu(d, hn::LoadU(d, in.z + t * in.z_stride + ch));
    hn::StoreU(hn::Mul(y, silu_z), d, in.out + row);
  }
}

void ScanRange(const ScanInputs& in, size_t begin, size_t end) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  size_t ch = begin;
  for (; ch + lanes <= end; ch += lanes) ScanChannels(d, in, ch);
  const hn::CappedTag<float, 1> d1;
  for (; ch < end; ++ch) ScanChannels(d1, in, ch);
}

}  // namespace HWY_NAMESPACE
}  // namespace hymba
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hymba {

HWY_EXPORT(ScanRange);

void SelectiveScan(const ScanInputs& in, ThreadPool& pool) {
  // Work units of whole blocks: whole vectors on every target.
  const size_t blocks = (in.d_inner + kScanBlock - 1) / kScanBlock;
  auto run = [&](size_t begin, size_t end) {
    HWY_DYNAMIC_DISPATCH(ScanRange)(in, begin * kScanBlock, std::min(in.d_inner, end * kScanBlock));
  };
  // A decode step of Hymba-1.5B (3,200 channels x 16 states) goes to the
  // pool too: its state and A, 410 KB, come from memory (the weights read
  // since the last token evicted them). Tiny models stay on the caller.
  if (in.steps * in.d_inner * in.d_state < (size_t{1} << 13)) {
    run(0, blocks);
  } else {
    pool.ParallelFor(blocks, run);
  }
}

}  // namespace hymba
#endif

// Runs a kernel test on every SIMD target that was compiled and that this CPU
// supports (AVX-512, AVX2, SSE4, ..., the portable fallback), one at a time.
#pragma once

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <functional>

namespace hymba::test {

inline void ForEachSimdTarget(const std::function<void(int64_t target)>& body) {
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);  // dispatch now goes to this target only
    body(target);
    hwy::SetSupportedTargetsForTest(0);
  }
}

}  // namespace hymba::test

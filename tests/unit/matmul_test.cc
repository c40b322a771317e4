// The tiled matrix product on every SIMD target against a double-precision loop.
#include "kernels/matmul.h"

#include "kernels/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "simd_targets.h"

namespace hymba {
namespace {

// Weights stored in `type`, plus the exact f32 values they decode to.
struct StoredMatrix {
  std::vector<std::byte> bytes;
  std::vector<double> values;
  MatView view;
};

StoredMatrix MakeMatrix(DType type, size_t rows, size_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  StoredMatrix m;
  m.bytes.resize(RowBytes(type, cols) * rows + 1);  // +1: store at an odd offset
  std::byte* data = m.bytes.data() + 1;
  std::vector<float> row(cols);
  for (size_t r = 0; r < rows; ++r) {
    for (float& value : row) value = normal(rng);
    QuantizeRow(type, row, data + r * RowBytes(type, cols));
  }
  for (size_t i = 0; i < rows * cols; ++i) m.values.push_back(LoadAsF32(type, data + i / cols * RowBytes(type, cols), i % cols));
  m.view = MatView{type, data, rows, cols};
  return m;
}

std::vector<float> RandomVector(size_t size, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(size);
  for (float& value : v) value = normal(rng);
  return v;
}

class MatMulTest : public ::testing::TestWithParam<DType> {};

// Shapes around the vector width, the 4-row x 6-token tile and the pool split.
TEST_P(MatMulTest, MatchesDoubleLoopOnEveryTarget) {
  ThreadPool pool(3);
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(7);
    const std::vector<size_t> col_counts = IsQuantized(GetParam()) ? std::vector<size_t>{32, 64, 96, 1024}
                                                                   : std::vector<size_t>{1, 7, 15, 16, 17, 33, 130, 1000};
    for (size_t rows : {1, 3, 4, 5, 17, 301}) {
      for (size_t cols : col_counts) {
        for (size_t n : {1, 2, 5, 6, 7, 13}) {
          const StoredMatrix w = MakeMatrix(GetParam(), rows, cols, rng);
          const std::vector<float> x = RandomVector(n * cols, rng);
          std::vector<float> y(n * rows + 1, 12345.0f);  // guard element after the output
          MatMul(w.view, x.data(), n, y.data(), pool);
          for (size_t t = 0; t < n; ++t) {
            for (size_t r = 0; r < rows; ++r) {
              double expected = 0, magnitude = 0;
              for (size_t c = 0; c < cols; ++c) {
                expected += w.values[r * cols + c] * x[t * cols + c];
                magnitude += std::fabs(w.values[r * cols + c] * x[t * cols + c]);
              }
              ASSERT_NEAR(y[t * rows + r], expected, 1e-6 * (1 + magnitude) * std::sqrt(cols))
                  << "rows " << rows << " cols " << cols << " n " << n << " t " << t << " r " << r;
            }
          }
          ASSERT_EQ(y.back(), 12345.0f);
        }
      }
    }
  });
}

// Batched decoding equals single-sequence decoding bit for bit, and a prompt
// gives the same values whole or in chunks, only because every output is
// accumulated the same way whatever the batch, the tile and the thread count.
TEST_P(MatMulTest, OutputsDoNotDependOnBatchTileOrThreads) {
  std::mt19937 rng(11);
  const size_t kRows = 517, kCols = IsQuantized(GetParam()) ? 1024 : 1001, kTokens = 13;  // large enough to run on the pool
  const StoredMatrix w = MakeMatrix(GetParam(), kRows, kCols, rng);
  const std::vector<float> x = RandomVector(kTokens * kCols, rng);
  ThreadPool one(1), three(3);
  test::ForEachSimdTarget([&](int64_t) {
    std::vector<float> single(kRows);
    std::vector<std::vector<float>> per_token;
    for (size_t t = 0; t < kTokens; ++t) {
      MatMul(w.view, x.data() + t * kCols, 1, single.data(), one);
      per_token.push_back(single);
    }
    for (size_t n = 2; n <= kTokens; ++n) {
      std::vector<float> batched(n * kRows);
      MatMul(w.view, x.data(), n, batched.data(), three);
      for (size_t t = 0; t < n; ++t) {
        for (size_t r = 0; r < kRows; ++r) ASSERT_EQ(batched[t * kRows + r], per_token[t][r]) << "n " << n;
      }
    }
  });
}

// The targets really differ: wider vectors sum in another order, so at least
// two targets disagree somewhere in the last bits. Guards against a test
// helper that silently runs one target every time.
TEST(MatMulTargets, DispatchReachesEachTarget) {
  if (hwy::SupportedAndGeneratedTargets().size() < 2) GTEST_SKIP() << "only one SIMD target on this machine";
  std::mt19937 rng(3);
  const StoredMatrix w = MakeMatrix(DType::kF32, 64, 4099, rng);
  const std::vector<float> x = RandomVector(4099, rng);
  ThreadPool one(1);
  std::map<std::vector<float>, int> distinct;
  test::ForEachSimdTarget([&](int64_t) {
    std::vector<float> y(64);
    MatMul(w.view, x.data(), 1, y.data(), one);
    ++distinct[y];
  });
  EXPECT_GE(distinct.size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(AllStorageTypes, MatMulTest, ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0),
                         [](const auto& param_info) { return std::string(DTypeName(param_info.param)); });

}  // namespace
}  // namespace hymba

// The tiled matrix product on every SIMD target against a double-precision loop.
#include "kernels/matmul.h"

#include "hymba/error.h"
#include "kernels/matmul_bf16.h"
#include "kernels/matmul_int8.h"
#include "kernels/quantize.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "simd_targets.h"

namespace hymba {
namespace {

// Weights stored in `type`, interleaved as a loaded model holds them, plus
// the exact f32 values they decode to.
struct StoredMatrix {
  std::vector<std::byte> bytes;
  std::vector<double> values;
  MatView view;
};

StoredMatrix MakeMatrix(DType type, size_t rows, size_t cols, std::mt19937& rng, Layout layout = Layout::kGroups) {
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
  InterleaveRows(type, layout, rows, cols, {data, RowBytes(type, cols) * rows});
  m.view = MatView{type, data, rows, cols, layout};
  return m;
}

std::vector<float> RandomVector(size_t size, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(size);
  for (float& value : v) value = normal(rng);
  return v;
}

// Row r of w times token x in double, and the sum of the terms' magnitudes.
// Quantized weights multiply the activations as QuantizeActivations gives them.
std::pair<double, double> Expected(const StoredMatrix& w, const float* x, size_t r) {
  const size_t cols = w.view.cols;
  std::vector<double> activations(x, x + cols);
  if (IsQuantized(w.view.type)) {
    Int8Activations q;
    QuantizeActivations(w.view.type, x, 1, cols, q);
    for (size_t c = 0; c < cols; ++c) activations[c] = double{q.scales[c / kQuantBlock]} * q.quants[c];
  }
  double expected = 0, magnitude = 0;
  for (size_t c = 0; c < cols; ++c) {
    expected += w.values[r * cols + c] * activations[c];
    magnitude += std::fabs(w.values[r * cols + c] * activations[c]);
  }
  return {expected, magnitude};
}

class MatMulTest : public ::testing::TestWithParam<DType> {};

// Shapes around the vector width, the 4-row x 6-token tile and the pool split.
TEST_P(MatMulTest, MatchesDoubleLoopOnEveryTarget) {
  ThreadPool pool(3);
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(7);
    const std::vector<size_t> col_counts = IsQuantized(GetParam()) ? std::vector<size_t>{32, 64, 96, 1024}
                                                                   : std::vector<size_t>{1, 7, 15, 16, 17, 33, 130, 1000};
    for (size_t rows : {1, 3, 4, 5, 16, 17, 301}) {
      for (size_t cols : col_counts) {
        for (size_t n : {1, 2, 5, 6, 7, 8, 9, 17}) {
          const StoredMatrix w = MakeMatrix(GetParam(), rows, cols, rng);
          const std::vector<float> x = RandomVector(n * cols, rng);
          std::vector<float> y(n * rows + 1, 12345.0f);  // guard element after the output
          MatMul(w.view, x.data(), n, y.data(), pool);
          for (size_t t = 0; t < n; ++t) {
            for (size_t r = 0; r < rows; ++r) {
              const auto [expected, magnitude] = Expected(w, &x[t * cols], r);
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

// The interleaved layout holds the same weights: every element decodes to
// what the row held, for short last groups and short last chunks too.
TEST_P(MatMulTest, InterleavedRowsDecodeToTheOriginalWeights) {
  std::mt19937 rng(5);
  for (size_t rows : {1, 15, 16, 17, 33, 50}) {
    for (size_t cols : IsQuantized(GetParam()) ? std::vector<size_t>{32, 64, 1600} : std::vector<size_t>{1, 31, 32, 33, 100, 1600}) {
      const StoredMatrix w = MakeMatrix(GetParam(), rows, cols, rng);
      std::vector<float> row(cols);
      for (size_t r = 0; r < rows; ++r) {
        w.view.DecodeRow(r, row);
        for (size_t c = 0; c < cols; ++c) ASSERT_EQ(row[c], w.values[r * cols + c]) << rows << "x" << cols << " r " << r << " c " << c;
      }
    }
  }
}

TEST_P(MatMulTest, RefusesRowsThatWereNotInterleaved) {
  std::vector<std::byte> bytes(RowBytes(GetParam(), 32) * 4);
  const MatView view{GetParam(), bytes.data(), 4, 32};
  std::vector<float> x(32), y(4);
  ThreadPool pool(1);
  EXPECT_THROW(MatMul(view, x.data(), 1, y.data(), pool), Error);
}

class Int8MatMulTest : public ::testing::TestWithParam<DType> {};

// Enough tokens that the blocks are split over the pool.
TEST_P(Int8MatMulTest, QuantizedActivationsRoundToTheBlockScale) {
  constexpr size_t kTokens = 1100, kCols = 64, kBlocks = kTokens * kCols / kQuantBlock;
  std::mt19937 rng(9);
  std::vector<float> x = RandomVector(kTokens * kCols, rng);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // token 1, block 0: all zero
  x[200] = std::nanf("");                           // token 3, block 0
  x[1000] = std::numeric_limits<float>::infinity();  // token 15, block 1
  const int zero_point = GetParam() == DType::kQ8_0 ? 128 : 8;
  ThreadPool pool(2);
  for (Int8Kernel kernel : {Int8Kernel::kPortable, Int8Kernel::kVnni}) {
    if (kernel == Int8Kernel::kVnni && !CpuHasVnni()) continue;
    SCOPED_TRACE(kernel == Int8Kernel::kVnni ? "AVX-512" : "portable");
    Int8Activations q;
    QuantizeActivations(GetParam(), x.data(), kTokens, kCols, q, &pool, kernel);
    ASSERT_EQ(q.tokens, kTokens);
    ASSERT_EQ(q.blocks, 2u);
    for (size_t block = 0; block < kBlocks; ++block) {  // in x's order: token block / 2, column block block % 2
      const size_t stored = block % 2 * kTokens + block / 2;  // block-major
      const float scale = q.scales[stored];
      const bool special = block == 6 || block == 31;
      int sum = 0, max_abs = 0;
      for (size_t e = 0; e < kQuantBlock; ++e) {
        const size_t i = block * kQuantBlock + e;
        const int quant = q.quants[stored * kQuantBlock + e];
        sum += quant;
        max_abs = std::max(max_abs, std::abs(quant));
        if (!special) {
          ASSERT_LE(std::fabs(x[i] - scale * quant), 0.5001f * scale) << "element " << i;
        }
      }
      ASSERT_EQ(q.offsets[stored], -zero_point * sum) << "block " << block;
      if (block == 2) {
        EXPECT_EQ(scale, 0.0f);
        EXPECT_EQ(max_abs, 0);
      } else if (special) {
        EXPECT_TRUE(std::isnan(scale)) << "a NaN or infinite input must reach the output, block " << block;
      } else {
        ASSERT_EQ(max_abs, 127) << "block " << block;
      }
    }
  }
}

// The VNNI and AVX2 kernels compute the same integers and the same f32
// operations in the same order as the portable one.
TEST_P(Int8MatMulTest, SimdKernelsEqualPortableKernelBitForBit) {
  const std::vector<std::pair<Int8Kernel, bool>> kernels = {{Int8Kernel::kAvx2, CpuHasAvx2()},
                                                            {Int8Kernel::kVnni, CpuHasVnni()}};
  std::mt19937 rng(13);
  size_t compared = 0;
  for (size_t rows : {1, 7, 16, 17, 40}) {
    for (size_t n : {1, 3, 8, 11}) {
      const size_t cols = 320;
      const StoredMatrix w = MakeMatrix(GetParam(), rows, cols, rng);
      std::vector<float> x = RandomVector(n * cols, rng);
      x[5] = 1e30f;  // a block whose other values all round to zero
      std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
      x[40] = 1e-37f;  // a block whose scale is subnormal: zeros, not 0 * inf
      Int8Activations q_portable;
      QuantizeActivations(GetParam(), x.data(), n, cols, q_portable, nullptr, Int8Kernel::kPortable);
      const size_t groups = (rows + kInterleaveRows - 1) / kInterleaveRows;
      std::vector<float> portable(n * rows);
      MatMulInt8(w.view, q_portable, portable.data(), rows, 0, groups, Int8Kernel::kPortable);
      for (const auto& [kernel, supported] : kernels) {
        if (!supported) continue;
        SCOPED_TRACE(kernel == Int8Kernel::kVnni ? "VNNI" : "AVX2");
        Int8Activations q;
        QuantizeActivations(GetParam(), x.data(), n, cols, q, nullptr, kernel);
        ASSERT_EQ(q.quants, q_portable.quants);
        for (size_t e = 0; e < kQuantBlock; ++e) ASSERT_EQ(q.quants[1 * n * kQuantBlock + e], 0) << "tiny block";
        ASSERT_EQ(q.scales, q_portable.scales);
        ASSERT_EQ(q.offsets, q_portable.offsets);
        std::vector<float> simd(n * rows);
        MatMulInt8(w.view, q, simd.data(), rows, 0, groups, kernel);
        ASSERT_EQ(portable, simd) << "rows " << rows << " n " << n;
        ++compared;
      }
    }
  }
  if (compared == 0) GTEST_SKIP() << "neither AVX2 nor AVX-512 VNNI on this machine";
}

// Compute type bf16: products of bf16 weights with activations rounded to
// bf16, exact in f32, so the only error besides the f32 sums is the rounding.
TEST(Bf16Products, RoundingIsToNearestEvenAndKeepsNaN) {
  const std::vector<float> x = {1.0f, 1.00390625f /* halfway: stays 1 */, 1.01171875f /* halfway: up to 1.015625 */,
                                -2.5f, std::nanf(""), std::numeric_limits<float>::infinity(), 3.0e-39f};
  std::vector<uint16_t> bits;
  ThreadPool one(1);
  RoundActivationsToBf16(x.data(), 1, x.size(), bits, one);
  auto value = [&](size_t i) { return std::bit_cast<float>(uint32_t{bits[i]} << 16); };
  EXPECT_EQ(value(0), 1.0f);
  EXPECT_EQ(value(1), 1.0f);
  EXPECT_EQ(value(2), 1.015625f);
  EXPECT_EQ(value(3), -2.5f);
  EXPECT_TRUE(std::isnan(value(4)));
  EXPECT_EQ(value(5), std::numeric_limits<float>::infinity());
  EXPECT_NEAR(value(6), 3.0e-39f, 0.02 * 3.0e-39);  // subnormals are rounded (to fewer bits), not flushed
}

TEST(Bf16Products, MatchDoubleLoopAndDoNotDependOnBatchOrThreads) {
  std::mt19937 rng(17);
  ThreadPool one(1), three(3);
  // Short last groups below and above one vector's 16 rows, odd columns,
  // and more tokens than one pass of the kernel takes.
  for (size_t cols : {1, 31, 32, 33, 100, 1600}) {
    for (size_t rows : {1, 5, 17, 31, 32, 33, 301}) {
      const StoredMatrix w = MakeMatrix(DType::kBF16, rows, cols, rng, Layout::kBf16Pairs);
      const size_t n = 13;
      const std::vector<float> x = RandomVector(n * cols, rng);
      std::vector<uint16_t> rounded;
      RoundActivationsToBf16(x.data(), n, cols, rounded, three);
      std::vector<float> batched(n * rows), single(rows);
      MatMul(w.view, x.data(), n, batched.data(), three);
      for (size_t t = 0; t < n; ++t) {
        MatMul(w.view, &x[t * cols], 1, single.data(), one);
        for (size_t r = 0; r < rows; ++r) {
          ASSERT_EQ(batched[t * rows + r], single[r]) << "rows " << rows << " cols " << cols << " t " << t;
          double expected = 0, magnitude = 0;
          for (size_t c = 0; c < cols; ++c) {
            const double product = w.values[r * cols + c] * double{std::bit_cast<float>(uint32_t{rounded[t * cols + c]} << 16)};
            expected += product;
            magnitude += std::fabs(product);
          }
          ASSERT_NEAR(single[r], expected, 1e-6 * (1 + magnitude) * std::sqrt(cols)) << "cols " << cols << " r " << r;
        }
      }
    }
  }
}

TEST(Bf16Products, PairedRowsDecodeToTheOriginalWeights) {
  std::mt19937 rng(23);
  for (size_t rows : {1, 15, 16, 17, 32, 33, 70}) {
    for (size_t cols : {1, 2, 3, 31, 100, 1601}) {
      const StoredMatrix w = MakeMatrix(DType::kBF16, rows, cols, rng, Layout::kBf16Pairs);
      std::vector<float> row(cols);
      for (size_t r = 0; r < rows; ++r) {
        w.view.DecodeRow(r, row);
        for (size_t c = 0; c < cols; ++c) ASSERT_EQ(row[c], w.values[r * cols + c]) << rows << "x" << cols << " r " << r << " c " << c;
      }
    }
  }
}

TEST(Bf16Products, Avx512KernelAgreesWithPortableKernel) {
  if (!CpuHasAvx512Bf16()) GTEST_SKIP() << "no AVX-512 BF16 on this machine";
  std::mt19937 rng(19);
  const size_t rows = 37, cols = 1001, n = 13;
  const StoredMatrix w = MakeMatrix(DType::kBF16, rows, cols, rng, Layout::kBf16Pairs);
  const std::vector<float> x = RandomVector(n * cols, rng);
  std::vector<uint16_t> rounded;
  ThreadPool three(3);
  RoundActivationsToBf16(x.data(), n, cols, rounded, three);
  std::vector<float> portable(n * rows), avx512(n * rows);
  const size_t groups = (rows + kBf16PairRows - 1) / kBf16PairRows;
  MatMulBf16Groups(w.view, rounded.data(), n, portable.data(), 0, groups, Bf16Kernel::kPortable);
  MatMulBf16Groups(w.view, rounded.data(), n, avx512.data(), 0, groups, Bf16Kernel::kAvx512);
  for (size_t i = 0; i < portable.size(); ++i) ASSERT_NEAR(avx512[i], portable[i], 1e-4f * (1 + std::fabs(portable[i]))) << i;
}

INSTANTIATE_TEST_SUITE_P(QuantizedTypes, Int8MatMulTest, ::testing::Values(DType::kQ8_0, DType::kQ4_0),
                         [](const auto& param_info) { return std::string(DTypeName(param_info.param)); });

INSTANTIATE_TEST_SUITE_P(AllStorageTypes, MatMulTest, ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0),
                         [](const auto& param_info) { return std::string(DTypeName(param_info.param)); });

}  // namespace
}  // namespace hymba

// `hymba bench`: prompt processing and text generation speed on synthetic
// tokens, as llama-bench measures them, each beside a yardstick measured in the
// same run: the machine's memory read bandwidth for decoding (which is bound by
// reading every weight once per token) and OpenBLAS sgemm at the model's own
// matrix shapes for prompt processing (which is bound by arithmetic).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "hymba/model.h"

namespace hymba {

struct BenchOptions {
  std::filesystem::path model;
  std::vector<int> prompt_sizes{512};    // pp tests; 0 entries are skipped
  std::vector<int> generate_sizes{128};  // tg tests
  std::vector<int> depths{0};            // tokens already in the sequence before each test
  std::vector<int> threads{0};           // 0 = one per core
  // Sequences decoding together in tg tests (Model::AppendBatch, as the
  // server's continuous batching runs them); tokens/s counts all of them.
  std::vector<int> parallel{1};
  int repetitions = 5;
  Numerics numerics{};
  std::function<void(const std::string&)> progress;  // one line per finished measurement, optional
};

struct BenchResult {
  std::string test;  // "pp512", "tg128", with " @ d4096" when a depth is set
  int threads = 0;
  int tokens = 0;
  int depth = 0;
  int streams = 1;                 // sequences decoding together (tg)
  bool prompt = false;             // pp (true) or tg (false)
  std::vector<double> samples;     // tokens/s of each repetition
  double mean = 0, stddev = 0;     // tokens/s
  // Yardstick, as tokens/s: the bandwidth roofline for tg (for N streams, N
  // tokens per reading of the weights), sgemm at the model's shapes for pp;
  // achieved = mean / yardstick.
  double yardstick_tokens_per_second = 0;
  double achieved = 0;
  double engine_rate = 0;          // GB/s of weights read (tg) or GFLOP/s of matrix products (pp)
  double yardstick_rate = 0;       // read bandwidth GB/s (tg: read before each repetition, averaged) or sgemm GFLOP/s (pp)
  // tg: the K/V bytes a step reads beside the weights, averaged over the
  // test's steps (CacheLayout::DecodeReadBytes); outside the yardstick.
  int64_t kv_read_bytes_per_token = 0;
};

struct BenchReport {
  std::string model_name;      // directory name
  std::string weight_type;     // storage type holding most of the bytes, e.g. "BF16"
  int64_t parameters = 0;
  int64_t weight_bytes = 0;
  int64_t bytes_per_token = 0;          // weight bytes a decode step reads
  int64_t matmul_flops_per_token = 0;   // 2 x multiply-adds of the matrix products per prompt token
  std::string cpu;                      // model name from /proc/cpuinfo
  std::vector<BenchResult> results;
};

BenchReport RunBench(const BenchOptions& options);

// Yardsticks, exposed for their tests.
// A STREAM-like read: each thread sums its slice of a buffer far larger than
// the caches, in huge-page memory like the weights, with the widest vectors
// the CPU has. The median of the repetitions.
double MeasureReadBandwidth(size_t threads, size_t bytes, int repetitions);  // GB/s
struct MatrixShape {
  int64_t rows = 0, cols = 0, count = 0;  // count: how many matrices of the model have this shape
};
// OpenBLAS sgemm over the shapes at M = tokens. The best of the repetitions.
double MeasureSgemm(std::span<const MatrixShape> shapes, int64_t tokens, size_t threads, int repetitions);  // GFLOP/s

}  // namespace hymba

#include "hymba/bench.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <thread>

#include "hymba/error.h"
#include "hymba/model.h"
#include "kernels/sum.h"

namespace hymba {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

std::string CpuName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown CPU";
}

// The matrices one prompt token multiplies (the head is excluded: only the last
// position of a prompt needs logits).
std::vector<MatrixShape> LayerMatrixShapes(const Config& c) {
  std::map<std::pair<int64_t, int64_t>, int64_t> counts;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    ++counts[{c.InProjRows(layer), c.hidden_size}];
    ++counts[{c.mamba_dt_rank + 2 * c.mamba_d_state, c.d_inner}];
    ++counts[{c.d_inner, c.mamba_dt_rank}];
    ++counts[{c.hidden_size, c.d_inner}];
    if (c.intermediate_size > 0) {
      counts[{c.intermediate_size, c.hidden_size}] += c.mlp_activation == MlpActivation::kSilu ? 2 : 1;
      ++counts[{c.hidden_size, c.intermediate_size}];
    }
  }
  std::vector<MatrixShape> shapes;
  for (const auto& [shape, count] : counts) shapes.push_back({shape.first, shape.second, count});
  return shapes;
}

void MeanAndDeviation(BenchResult& result) {
  const auto n = static_cast<double>(result.samples.size());
  result.mean = std::accumulate(result.samples.begin(), result.samples.end(), 0.0) / n;
  double squares = 0;
  for (double s : result.samples) squares += (s - result.mean) * (s - result.mean);
  result.stddev = n > 1 ? std::sqrt(squares / (n - 1)) : 0.0;
}

std::vector<int32_t> RandomTokens(std::mt19937& rng, int64_t vocab, int count) {
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  for (int32_t& token : tokens) token = pick(rng);
  return tokens;
}

}  // namespace

double MeasureReadBandwidth(size_t threads, size_t bytes, int repetitions) {
  threads = std::max<size_t>(threads, 1);
  std::vector<float> buffer(bytes / sizeof(float), 1.0f);  // written once so every page is resident
  const size_t slice = buffer.size() / threads;
  std::vector<float> sums(threads * 16);  // one cache line per thread
  double best = 0;
  for (int rep = 0; rep < repetitions + 1; ++rep) {  // the first run warms up
    std::vector<std::jthread> workers;
    const auto start = Clock::now();
    for (size_t t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] { sums[t * 16] = Sum(buffer.data() + t * slice, slice); });
    }
    workers.clear();  // joins
    if (rep > 0) best = std::max(best, static_cast<double>(slice * threads * sizeof(float)) / Seconds(start) / 1e9);
  }
  return best;
}

double MeasureSgemm(std::span<const MatrixShape> shapes, int64_t tokens, size_t threads, int repetitions) {
  openblas_set_num_threads(static_cast<int>(std::max<size_t>(threads, 1)));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  double flops = 0, seconds = 0;
  for (const MatrixShape& shape : shapes) {
    std::vector<float> a(static_cast<size_t>(tokens * shape.cols)), b(static_cast<size_t>(shape.rows * shape.cols));
    std::vector<float> c(static_cast<size_t>(tokens * shape.rows));
    for (float& v : a) v = value(rng);
    for (float& v : b) v = value(rng);
    double best = INFINITY;
    for (int rep = 0; rep < repetitions + 1; ++rep) {  // the first run warms up
      const auto start = Clock::now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tokens), static_cast<int>(shape.rows),
                  static_cast<int>(shape.cols), 1.0f, a.data(), static_cast<int>(shape.cols), b.data(),
                  static_cast<int>(shape.cols), 0.0f, c.data(), static_cast<int>(shape.rows));
      if (rep > 0) best = std::min(best, Seconds(start));
    }
    flops += 2.0 * static_cast<double>(tokens * shape.rows * shape.cols * shape.count);
    seconds += best * static_cast<double>(shape.count);
  }
  return flops / seconds / 1e9;
}

BenchReport RunBench(const BenchOptions& options) {
  if (options.repetitions < 1) throw Error("bench: -r must be at least 1, got " + std::to_string(options.repetitions));
  auto check_sizes = [](const std::vector<int>& sizes, const char* flag) {
    for (int size : sizes) {
      if (size < 0) throw Error(std::string("bench: ") + flag + " values must be >= 0, got " + std::to_string(size));
    }
  };
  check_sizes(options.prompt_sizes, "-p");
  check_sizes(options.generate_sizes, "-n");
  check_sizes(options.depths, "-d");
  check_sizes(options.threads, "-t");
  auto say = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };

  BenchReport report;
  report.model_name = std::filesystem::absolute(options.model).lexically_normal().filename().string();
  report.cpu = CpuName();
  constexpr size_t kBandwidthBytes = size_t{512} << 20;  // 16x the largest L3 of a desktop or small server part

  for (int requested_threads : options.threads) {
    Model model = Model::Load(options.model, static_cast<size_t>(requested_threads), options.numerics);
    const Config& c = model.config();
    const WeightStorage& storage = model.storage();
    const auto threads = static_cast<int>(model.threads());
    report.parameters = storage.parameters;
    report.weight_bytes = storage.bytes;
    report.bytes_per_token = storage.bytes;  // every matrix once, the embedding as the head
    report.weight_type = model.type_label();
    const std::vector<MatrixShape> shapes = LayerMatrixShapes(c);
    report.matmul_flops_per_token = 0;
    for (const MatrixShape& s : shapes) report.matmul_flops_per_token += 2 * s.rows * s.cols * s.count;

    const double bandwidth = MeasureReadBandwidth(static_cast<size_t>(threads), kBandwidthBytes, 5);
    say("read bandwidth, " + std::to_string(threads) + " thread(s): " + std::to_string(bandwidth) + " GB/s");
    std::mt19937 rng(42);

    for (int depth : options.depths) {
      auto prepared = [&] {
        Sequence sequence = model.NewSequence();
        if (depth > 0) model.Append(sequence, RandomTokens(rng, c.vocab_size, depth));
        return sequence;
      };
      const Sequence start = prepared();
      for (int prompt : options.prompt_sizes) {
        if (prompt == 0) continue;
        const double sgemm = MeasureSgemm(shapes, prompt, static_cast<size_t>(threads), 2);
        BenchResult r;
        r.test = "pp" + std::to_string(prompt) + (depth > 0 ? " @ d" + std::to_string(depth) : "");
        r.threads = threads, r.tokens = prompt, r.depth = depth, r.prompt = true;
        for (int rep = 0; rep < options.repetitions + 1; ++rep) {  // the first run warms up
          Sequence sequence = start.Clone();
          const std::vector<int32_t> tokens = RandomTokens(rng, c.vocab_size, prompt);
          const auto begin = Clock::now();
          model.Append(sequence, tokens);
          if (rep > 0) r.samples.push_back(prompt / Seconds(begin));
        }
        MeanAndDeviation(r);
        r.yardstick_rate = sgemm;
        r.yardstick_tokens_per_second = sgemm * 1e9 / static_cast<double>(report.matmul_flops_per_token);
        r.engine_rate = r.mean * static_cast<double>(report.matmul_flops_per_token) / 1e9;
        r.achieved = r.mean / r.yardstick_tokens_per_second;
        say(r.test + ", " + std::to_string(threads) + " thread(s): " + std::to_string(r.mean) + " tokens/s");
        report.results.push_back(std::move(r));
      }
      for (int generate : options.generate_sizes) {
        if (generate == 0) continue;
        BenchResult r;
        r.test = "tg" + std::to_string(generate) + (depth > 0 ? " @ d" + std::to_string(depth) : "");
        r.threads = threads, r.tokens = generate, r.depth = depth, r.prompt = false;
        for (int rep = 0; rep < options.repetitions + 1; ++rep) {
          Sequence sequence = start.Clone();
          const std::vector<int32_t> tokens = RandomTokens(rng, c.vocab_size, rep == 0 ? 1 : generate);
          const auto begin = Clock::now();
          for (int32_t token : tokens) model.Append(sequence, std::span(&token, 1));
          if (rep > 0) r.samples.push_back(generate / Seconds(begin));
        }
        MeanAndDeviation(r);
        r.yardstick_rate = bandwidth;
        r.yardstick_tokens_per_second = bandwidth * 1e9 / static_cast<double>(report.bytes_per_token);
        r.engine_rate = r.mean * static_cast<double>(report.bytes_per_token) / 1e9;
        r.achieved = r.mean / r.yardstick_tokens_per_second;
        say(r.test + ", " + std::to_string(threads) + " thread(s): " + std::to_string(r.mean) + " tokens/s");
        report.results.push_back(std::move(r));
      }
    }
  }
  return report;
}

}  // namespace hymba

#include "core/huge_page_buffer.h"
#include "hymba/bench.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
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
  // In memory like the weights' (huge pages), written once so every page is resident.
  const HugePageBuffer memory(bytes);
  const std::span<float> buffer(reinterpret_cast<float*>(memory.bytes().data()), bytes / sizeof(float));
  std::fill(buffer.begin(), buffer.end(), 1.0f);
  const size_t slice = buffer.size() / threads;
  std::vector<float> sums(threads * 16);  // one cache line per thread
  std::vector<double> rates;
  for (int rep = 0; rep < repetitions + 1; ++rep) {  // the first run warms up
    std::vector<std::jthread> workers;
    const auto start = Clock::now();
    for (size_t t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] { sums[t * 16] = Sum(buffer.data() + t * slice, slice); });
    }
    workers.clear();  // joins
    if (rep > 0) rates.push_back(static_cast<double>(slice * threads * sizeof(float)) / Seconds(start) / 1e9);
  }
  // The median: this VM's bandwidth has bursts of half as much again that a
  // best-of figure would take for the machine's.
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
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
  for (int streams : options.parallel) {
    if (streams < 1) throw Error("bench: --parallel values must be >= 1, got " + std::to_string(streams));
  }
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

    const double bandwidth = MeasureReadBandwidth(static_cast<size_t>(threads), kBandwidthBytes, 7);
    say("read bandwidth, " + std::to_string(threads) + " thread(s): " + std::to_string(bandwidth) + " GB/s");
    std::mt19937 rng(42);

    // Every depth's start first, then each repetition runs a test at every
    // depth in turn: the machine's bandwidth drifts by tens of percent within
    // minutes here, and depths compared within the same seconds see the same.
    std::vector<Sequence> starts;
    for (int depth : options.depths) {
      starts.push_back(model.NewSequence());
      if (depth > 0) model.Append(starts.back(), RandomTokens(rng, c.vocab_size, depth));
    }
    std::vector<std::vector<BenchResult>> by_depth(options.depths.size());  // reported depth by depth
    auto run_test = [&](int tokens, bool prompt, int streams, double yardstick_rate, double yardstick_tokens_per_second,
                        double work_per_token) {
      std::vector<BenchResult> at_depth(options.depths.size());
      for (size_t i = 0; i < at_depth.size(); ++i) {
        const int depth = options.depths[i];
        BenchResult& r = at_depth[i];
        r.test = (prompt ? "pp" : "tg") + std::to_string(tokens) + (streams > 1 ? " x" + std::to_string(streams) : "") +
                 (depth > 0 ? " @ d" + std::to_string(depth) : "");
        r.threads = threads, r.tokens = tokens, r.depth = depth, r.streams = streams, r.prompt = prompt;
      }
      for (int rep = 0; rep < options.repetitions + 1; ++rep) {  // the first run warms up
        for (size_t i = 0; i < at_depth.size(); ++i) {
          std::vector<Sequence> sequences;
          for (int s = 0; s < streams; ++s) sequences.push_back(starts[i].Clone());
          // A warm-up decode step is one token; a prompt is timed whole.
          const std::vector<int32_t> input = RandomTokens(rng, c.vocab_size, rep == 0 && !prompt ? 1 : tokens);
          const auto begin = Clock::now();
          if (prompt) {
            model.Append(sequences[0], input);
          } else if (streams == 1) {
            for (int32_t token : input) model.Append(sequences[0], std::span(&token, 1));
          } else {
            std::vector<Model::BatchItem> batch;
            for (Sequence& sequence : sequences) batch.push_back({&sequence, {}});
            for (const int32_t& token : input) {
              for (Model::BatchItem& item : batch) item.tokens = std::span(&token, 1);
              model.AppendBatch(batch);
            }
          }
          if (rep > 0) at_depth[i].samples.push_back(static_cast<double>(tokens) * streams / Seconds(begin));
        }
      }
      for (size_t i = 0; i < at_depth.size(); ++i) {
        BenchResult& r = at_depth[i];
        MeanAndDeviation(r);
        r.yardstick_rate = yardstick_rate;
        r.yardstick_tokens_per_second = yardstick_tokens_per_second;
        r.engine_rate = r.mean * work_per_token;
        r.achieved = r.mean / yardstick_tokens_per_second;
        say(r.test + ", " + std::to_string(threads) + " thread(s): " + std::to_string(r.mean) + " tokens/s");
        by_depth[i].push_back(std::move(r));
      }
    };
    for (int prompt : options.prompt_sizes) {
      if (prompt == 0) continue;
      const double sgemm = MeasureSgemm(shapes, prompt, static_cast<size_t>(threads), 2);
      const auto flops = static_cast<double>(report.matmul_flops_per_token);
      run_test(prompt, true, 1, sgemm, sgemm * 1e9 / flops, flops / 1e9);
    }
    for (int generate : options.generate_sizes) {
      if (generate == 0) continue;
      const auto bytes = static_cast<double>(report.bytes_per_token);
      for (int streams : options.parallel) {
        run_test(generate, false, streams, bandwidth, streams * bandwidth * 1e9 / bytes, bytes / 1e9 / streams);
      }
    }
    for (auto& results : by_depth) std::move(results.begin(), results.end(), std::back_inserter(report.results));
  }
  return report;
}

}  // namespace hymba

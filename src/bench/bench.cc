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
#include "hymba/info.h"
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

// The decode yardstick's buffer, made once per bench run: a STREAM-like sum
// in which each thread reads its slice, in memory like the weights' (huge
// pages), written once so every page is resident.
class ReadBandwidthProbe {
 public:
  ReadBandwidthProbe(size_t threads, size_t bytes)
      : threads_(std::max<size_t>(threads, 1)),
        memory_(bytes),
        buffer_(reinterpret_cast<float*>(memory_.bytes().data()), bytes / sizeof(float)),
        sums_(threads_ * 16) {
    std::fill(buffer_.begin(), buffer_.end(), 1.0f);
  }

  // GB/s: the median of `repetitions` reads after one that warms up. A
  // median, not a best: this VM has bursts of half as much bandwidth again.
  double Measure(int repetitions) {
    const size_t slice = buffer_.size() / threads_;
    std::vector<double> rates;
    for (int rep = 0; rep < repetitions + 1; ++rep) {
      std::vector<std::jthread> workers;
      const auto start = Clock::now();
      for (size_t t = 0; t < threads_; ++t) {
        workers.emplace_back([&, t] { sums_[t * 16] = Sum(buffer_.data() + t * slice, slice); });  // a line per thread
      }
      workers.clear();  // joins
      if (rep > 0) rates.push_back(static_cast<double>(slice * threads_ * sizeof(float)) / Seconds(start) / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
  }

 private:
  size_t threads_;
  HugePageBuffer memory_;
  std::span<float> buffer_;
  std::vector<float> sums_;
};

}  // namespace

double MeasureReadBandwidth(size_t threads, size_t bytes, int repetitions) {
  return ReadBandwidthProbe(threads, bytes).Measure(repetitions);
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
    const CacheLayout cache = DescribeModel(c, false, model.numerics().cache).engine;
    report.matmul_flops_per_token = 0;
    for (const MatrixShape& s : shapes) report.matmul_flops_per_token += 2 * s.rows * s.cols * s.count;

    ReadBandwidthProbe bandwidth_probe(static_cast<size_t>(threads), kBandwidthBytes);
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
    // A prompt's yardstick (sgemm) is measured before the test. Decoding's,
    // the read bandwidth, is read before every repetition and averaged, so
    // that it samples the same minutes as the test: this VM's bandwidth
    // drifts by tens of percent within minutes.
    auto run_test = [&](int tokens, bool prompt, int streams, double sgemm_gflops) {
      std::vector<BenchResult> at_depth(options.depths.size());
      for (size_t i = 0; i < at_depth.size(); ++i) {
        const int depth = options.depths[i];
        BenchResult& r = at_depth[i];
        r.test = (prompt ? "pp" : "tg") + std::to_string(tokens) + (streams > 1 ? " x" + std::to_string(streams) : "") +
                 (depth > 0 ? " @ d" + std::to_string(depth) : "");
        r.threads = threads, r.tokens = tokens, r.depth = depth, r.streams = streams, r.prompt = prompt;
        if (!prompt) {
          for (int t = 0; t < tokens; ++t) r.kv_read_bytes_per_token += cache.DecodeReadBytes(c, depth + t);
          r.kv_read_bytes_per_token /= tokens;
        }
      }
      std::vector<double> bandwidths;
      for (int rep = 0; rep < options.repetitions + 1; ++rep) {  // the first run warms up
        if (rep > 0 && !prompt) bandwidths.push_back(bandwidth_probe.Measure(3));
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
      const auto flops = static_cast<double>(report.matmul_flops_per_token);
      const auto bytes = static_cast<double>(report.bytes_per_token);
      const double bandwidth = prompt ? 0.0 : std::accumulate(bandwidths.begin(), bandwidths.end(), 0.0) / bandwidths.size();
      if (!prompt) say("read bandwidth, " + std::to_string(threads) + " thread(s): " + std::to_string(bandwidth) + " GB/s");
      for (size_t i = 0; i < at_depth.size(); ++i) {
        BenchResult& r = at_depth[i];
        MeanAndDeviation(r);
        r.yardstick_rate = prompt ? sgemm_gflops : bandwidth;
        // For N streams the roofline is N tokens per reading of the weights.
        r.yardstick_tokens_per_second = prompt ? sgemm_gflops * 1e9 / flops : streams * bandwidth * 1e9 / bytes;
        r.engine_rate = prompt ? r.mean * flops / 1e9 : r.mean * bytes / 1e9 / streams;
        r.achieved = r.mean / r.yardstick_tokens_per_second;
        say(r.test + ", " + std::to_string(threads) + " thread(s): " + std::to_string(r.mean) + " tokens/s");
        by_depth[i].push_back(std::move(r));
      }
    };
    for (int prompt : options.prompt_sizes) {
      if (prompt == 0) continue;
      run_test(prompt, true, 1, MeasureSgemm(shapes, prompt, static_cast<size_t>(threads), 2));
    }
    for (int generate : options.generate_sizes) {
      if (generate == 0) continue;
      for (int streams : options.parallel) run_test(generate, false, streams, 0.0);
    }
    for (auto& results : by_depth) std::move(results.begin(), results.end(), std::back_inserter(report.results));
  }
  return report;
}

}  // namespace hymba

// `hymba bench`: a llama-bench-shaped table (or JSON) of prompt processing and
// text generation speed, each result beside its yardstick.
#include <cstdio>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "hymba/bench.h"

namespace hymba::cli {
namespace {

std::string Format(const char* format, double a, double b = 0, double c = 0) {
  char buffer[128];
  std::snprintf(buffer, sizeof buffer, format, a, b, c);
  return buffer;
}

void PrintMarkdown(const BenchReport& report) {
  std::cout << "| model | size | params | type | threads | test | t/s | engine | yardstick | of yardstick |\n"
            << "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | --- | ---: |\n";
  const std::string size = Format("%.2f GiB", static_cast<double>(report.weight_bytes) / (1u << 30));
  const std::string params = Format("%.2f B", static_cast<double>(report.parameters) / 1e9);
  for (const BenchResult& r : report.results) {
    const std::string engine = r.prompt ? Format("%.1f GFLOP/s", r.engine_rate) : Format("%.1f GB/s", r.engine_rate);
    const std::string yardstick =
        r.prompt ? Format("sgemm %.1f GFLOP/s = %.2f t/s", r.yardstick_rate, r.yardstick_tokens_per_second)
                 : (r.streams > 1 ? std::to_string(r.streams) + " x " : "") +
                       Format("%.1f GB/s / %.2f GB = %.2f t/s", r.yardstick_rate,
                              static_cast<double>(report.bytes_per_token) / 1e9, r.yardstick_tokens_per_second);
    std::cout << "| " << report.model_name << " | " << size << " | " << params << " | " << report.weight_type << " | "
              << r.threads << " | " << r.test << " | " << Format("%.2f ± %.2f", r.mean, r.stddev) << " | " << engine
              << " | " << yardstick << " | " << Format("%.1f %%", 100.0 * r.achieved) << " |\n";
  }
  std::cout << "\nCPU: " << report.cpu << ". tg yardstick: memory read bandwidth / weight bytes read per token; "
            << "pp yardstick: OpenBLAS sgemm over the model's matrix shapes ("
            << Format("%.2f GFLOP per token", static_cast<double>(report.matmul_flops_per_token) / 1e9) << ").\n";
  std::string kv_reads;
  for (const BenchResult& r : report.results) {
    if (r.prompt || r.threads != report.results.front().threads) continue;
    kv_reads += (kv_reads.empty() ? "" : ", ") + r.test + " " +
                Format("%.1f MB", static_cast<double>(r.kv_read_bytes_per_token) / 1e6);
  }
  if (!kv_reads.empty()) std::cout << "K/V a tg step also reads (the cache, outside the yardstick): " << kv_reads << ".\n";
}

void PrintJson(const BenchReport& report) {
  nlohmann::json results = nlohmann::json::array();
  for (const BenchResult& r : report.results) {
    results.push_back({{"test", r.test},
                       {"threads", r.threads},
                       {"tokens", r.tokens},
                       {"depth", r.depth},
                       {"streams", r.streams},
                       {"samples_ts", r.samples},
                       {"avg_ts", r.mean},
                       {"stddev_ts", r.stddev},
                       {r.prompt ? "engine_gflops" : "engine_gbps", r.engine_rate},
                       {r.prompt ? "sgemm_gflops" : "read_bandwidth_gbps", r.yardstick_rate},
                       {"yardstick_ts", r.yardstick_tokens_per_second},
                       {"kv_read_bytes_per_token", r.kv_read_bytes_per_token},
                       {"of_yardstick", r.achieved}});
  }
  const nlohmann::json out = {{"model", report.model_name},
                              {"type", report.weight_type},
                              {"parameters", report.parameters},
                              {"weight_bytes", report.weight_bytes},
                              {"bytes_per_token", report.bytes_per_token},
                              {"matmul_flops_per_token", report.matmul_flops_per_token},
                              {"cpu", report.cpu},
                              {"results", results}};
  std::cout << out.dump(2) << "\n";
}

}  // namespace

void AddBenchCommand(CLI::App& app, BenchFlags& flags) {
  CLI::App* bench = app.add_subcommand("bench", "Prompt processing and generation speed beside their yardsticks");
  flags.command = bench;
  bench->add_option("-m,--model", flags.options.model, "Hugging Face model directory or GGUF file")->required();
  bench->add_option("-p,--n-prompt", flags.options.prompt_sizes, "Prompt sizes (pp tests), comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_option("-n,--n-gen", flags.options.generate_sizes, "Generated token counts (tg tests), comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_option("-d,--n-depth", flags.options.depths, "Tokens already in the sequence, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_option("-t,--threads", flags.options.threads, "Thread counts, comma-separated; 0 = one per core")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_option("--parallel", flags.options.parallel,
                    "Sequences decoding together in tg tests (batched, as the server runs them), comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  AddNumericsOptions(bench, flags.options.numerics);
  bench->add_option("-r,--repetitions", flags.options.repetitions, "Timed repetitions of each test")
      ->capture_default_str();
  bench->add_option("-o,--output", flags.format, "Output format")
      ->check(CLI::IsMember({"md", "json"}))
      ->capture_default_str();
}

void RunBench(const BenchFlags& flags) {
  BenchOptions options = flags.options;
  options.progress = [](const std::string& line) { std::cerr << "bench: " << line << "\n"; };
  const BenchReport report = hymba::RunBench(options);
  if (flags.format == "json") {
    PrintJson(report);
  } else {
    PrintMarkdown(report);
  }
}

}  // namespace hymba::cli

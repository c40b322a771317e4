// Subcommands of the hymba CLI. Each throws hymba::Error on bad input; main()
// turns that into a message and a non-zero exit.
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "hymba/bench.h"
#include "hymba/generate.h"
#include "hymba/quality.h"
#include "hymba/sampling.h"
#include "server.h"

namespace hymba::cli {

void RunInfo(const std::filesystem::path& model_dir, bool json, CacheType cache);

struct SamplingFlags {
  SamplingParams params;
  int64_t seed = -1;  // llama.cpp's spelling: -1 = random
  std::vector<std::string> logit_bias;  // as typed, parsed by Resolve()
  SamplingParams Resolve() const;
};
void AddSamplingOptions(CLI::App* command, SamplingFlags& flags);
// --compute-type f32|bf16 and --cache-type f32|f16|q8 (see hymba::Numerics).
void AddNumericsOptions(CLI::App* command, Numerics& numerics);
void AddCacheTypeOption(CLI::App* command, CacheType& cache);

struct GenerateFlags {
  std::string model_dir;
  std::string prompt;
  std::string prompt_file;  // -f: the prompt read from a file instead
  bool prompt_given = false, prompt_from_file = false;
  int max_tokens = -1;
  std::vector<std::string> stop;
  bool json = false;
  int threads = 0;
  Numerics numerics{};
  SamplingFlags sampling;
};
void RunGenerate(const GenerateFlags& flags);

struct ChatFlags {
  std::string model_dir;
  std::string system;
  int max_tokens = -1;
  std::vector<std::string> stop;
  int threads = 0;
  Numerics numerics{};
  SamplingFlags sampling;
};
void RunChat(const ChatFlags& flags);
void RunPrompt(const std::filesystem::path& model_dir, const std::filesystem::path& messages_file, bool generation_prompt);

struct BenchFlags {
  BenchOptions options;
  std::string format = "md";
  CLI::App* command = nullptr;
};
void AddBenchCommand(CLI::App& app, BenchFlags& flags);

struct ConvertFlags {
  std::string model_dir;
  std::string output;
  std::string type = "bf16";
  CLI::App* command = nullptr;
};
void AddConvertCommand(CLI::App& app, ConvertFlags& flags);
void RunConvert(const ConvertFlags& flags);

struct PerplexityFlags {
  QualityOptions options;
  std::string base_model;
  bool json = false;
  CLI::App* command = nullptr;
};
void AddPerplexityCommand(CLI::App& app, PerplexityFlags& flags);
void RunPerplexity(const PerplexityFlags& flags);
void RunBench(const BenchFlags& flags);

struct ServeFlags {
  server::ServerOptions options;
  int64_t cache_mib = 1024;
  CLI::App* command = nullptr;
};
void AddServeCommand(CLI::App& app, ServeFlags& flags);
void RunServe(const ServeFlags& flags);

// Loads a model with the -t thread count (0 = one per core).
Model LoadModel(const std::string& model_dir, int threads, Numerics numerics);

// llama.cpp-style timing lines on stderr.
void PrintTimings(const GenerationResult& result);

}  // namespace hymba::cli

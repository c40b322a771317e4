// `hymba convert`: HF directory -> GGUF, with a progress bar on stderr.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <unistd.h>

#include "commands.h"
#include "hymba/convert.h"

namespace hymba::cli {

void AddConvertCommand(CLI::App& app, ConvertFlags& flags) {
  CLI::App* convert = app.add_subcommand("convert", "Write a Hugging Face Hymba directory as one GGUF file");
  flags.command = convert;
  convert->add_option("model_dir", flags.model_dir, "Hugging Face model directory")->required();
  convert->add_option("-o,--output", flags.output, "GGUF file to write (must not exist)")->required();
  convert->add_option("--type", flags.type, "Weight type: f32, f16, bf16, q8_0 or q4_0")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0"}))
      ->capture_default_str();
}

void RunConvert(const ConvertFlags& flags) {
  const auto start = std::chrono::steady_clock::now();
  const bool terminal = isatty(fileno(stderr)) != 0;
  auto progress = [&](size_t done, size_t total) {
    constexpr int kWidth = 40;
    const int filled = static_cast<int>(kWidth * done / total);
    if (!terminal && done != total) return;  // one line in logs, a live bar on a terminal
    std::fprintf(stderr, "\rconvert [%.*s%*s] %zu/%zu tensors", filled, "########################################",
                 kWidth - filled, "", done, total);
    if (done == total) std::fprintf(stderr, "\n");
  };
  ConvertToGguf(flags.model_dir, flags.output, flags.type, progress);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "wrote %s (%s weights, %.1f MB) in %.1f s\n", flags.output.c_str(), flags.type.c_str(),
               static_cast<double>(std::filesystem::file_size(flags.output)) / 1e6, seconds);
}

}  // namespace hymba::cli

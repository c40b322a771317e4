// The hymba command line: every subcommand and its flags. Parsing fills the
// flags and Run() does the parsed subcommand's work; main() and the CLI fuzz
// target share it.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "commands.h"
#include "hymba/hymba.h"

namespace hymba::cli {

class Cli {
 public:
  Cli();
  Cli(const Cli&) = delete;  // the options write into this object's members
  Cli& operator=(const Cli&) = delete;

  CLI::App& app() { return app_; }
  // The checks of the parsed flags that read no file (token lists, sampling
  // flags), as Run() makes them; throws hymba::Error.
  void CheckFlags() const;
  // Throws hymba::Error (or another std::exception) on failure.
  void Run() const;

 private:
  CLI::App app_;
  CLI::App *info = nullptr, *logits = nullptr, *tokenize = nullptr, *detokenize = nullptr, *generate = nullptr,
           *chat = nullptr, *prompt = nullptr;
  std::string model_dir;
  bool json = false;
  CacheType info_cache = CacheType::kF32;
  std::string tokens_text, out_path;
  int top = 0;
  LogitsMode mode = LogitsMode::kFull;
  int chunk = 7;
  int logits_threads = 0;
  Numerics logits_numerics{};
  std::string text;
  bool bos = false, no_special = false;
  GenerateFlags generate_flags;
  ChatFlags chat_flags;
  std::string messages_file;
  bool no_generation_prompt = false;
  BenchFlags bench_flags;
  ConvertFlags convert_flags;
  PerplexityFlags perplexity_flags;
  ServeFlags serve_flags;
};

}  // namespace hymba::cli

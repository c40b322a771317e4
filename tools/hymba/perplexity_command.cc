// `hymba perplexity`: perplexity of a text, and divergence from a base model.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"

namespace hymba::cli {

void AddPerplexityCommand(CLI::App& app, PerplexityFlags& flags) {
  CLI::App* command = app.add_subcommand("perplexity", "Perplexity of a text file; KL divergence from a base model");
  flags.command = command;
  command->add_option("-m,--model", flags.options.model, "Hugging Face model directory or GGUF file")->required();
  command->add_option("-f,--file", flags.options.text_file, "Text file to score")->required();
  command->add_option("-c,--ctx-size", flags.options.context, "Tokens per chunk")->capture_default_str();
  command->add_option("--chunks", flags.options.max_chunks, "Score at most this many chunks; 0 = all")
      ->capture_default_str();
  command->add_option("--kl-base", flags.base_model, "Base model (e.g. the f32 conversion) to compare against");
  command->add_option("-t,--threads", flags.options.threads, "Threads; 0 = one per core")->capture_default_str();
  AddNumericsOptions(command, flags.options.numerics);
  command->add_flag("--json", flags.json, "Print one JSON object");
}

void RunPerplexity(const PerplexityFlags& flags) {
  QualityOptions options = flags.options;
  if (!flags.base_model.empty()) options.base_model = flags.base_model;
  const QualityReport r = MeasureQuality(options);
  if (flags.json) {
    nlohmann::json out = {{"model", r.model_name}, {"type", r.weight_type},         {"chunks", r.chunks},
                          {"tokens", r.tokens_scored}, {"perplexity", r.perplexity}};
    if (r.mean_kl) {
      out["base_perplexity"] = *r.base_perplexity;
      out["mean_kl"] = *r.mean_kl;
      out["top1_agreement"] = *r.top1_agreement;
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("| model | type | chunks x ctx | tokens scored | perplexity | mean KL vs base | top-1 agreement |\n");
  std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
  std::printf("| %s | %s | %d x %d | %lld | %.4f | ", r.model_name.c_str(), r.weight_type.c_str(), r.chunks,
              options.context, static_cast<long long>(r.tokens_scored), r.perplexity);
  if (r.mean_kl) {
    std::printf("%.6f | %.2f %% |\n", *r.mean_kl, 100.0 * *r.top1_agreement);
  } else {
    std::printf("- | - |\n");
  }
}

}  // namespace hymba::cli

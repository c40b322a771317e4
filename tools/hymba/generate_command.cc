// hymba generate: a prompt in, streamed text out, llama.cpp's flags.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "hymba/hymba.h"
#include "io/text_file.h"

namespace hymba::cli {
namespace {

// llama.cpp's --logit-bias spelling: TOKEN+BIAS, TOKEN-BIAS, TOKEN-inf.
std::pair<int32_t, float> ParseLogitBias(const std::string& text) {
  const size_t sign = text.find_first_of("+-", 1);
  auto fail = [&]() -> std::pair<int32_t, float> {
    throw Error("--logit-bias: \"" + text + "\" is not TOKEN+BIAS or TOKEN-BIAS (e.g. 15043+1.5, 2-inf)");
  };
  if (sign == std::string::npos) return fail();
  try {
    size_t used = 0;
    const int token = std::stoi(text.substr(0, sign), &used);
    if (used != sign) return fail();
    const std::string amount = text.substr(sign + 1);
    float bias = amount == "inf" ? std::numeric_limits<float>::infinity() : std::stof(amount, &used);
    if (amount != "inf" && used != amount.size()) return fail();
    return {token, text[sign] == '-' ? -bias : bias};
  } catch (const std::logic_error&) {
    return fail();
  }
}

}  // namespace

void AddSamplingOptions(CLI::App* command, SamplingFlags& flags) {
  SamplingParams& p = flags.params;
  command->add_option("--temp", p.temperature, "Temperature; 0 = greedy")->capture_default_str();
  command->add_option("--top-k", p.top_k, "Keep the K most likely tokens; 0 = off")->capture_default_str();
  command->add_option("--top-p", p.top_p, "Nucleus: keep the most likely tokens up to this mass; 1 = off")
      ->capture_default_str();
  command->add_option("--min-p", p.min_p, "Drop tokens below this fraction of the best one; 0 = off")
      ->capture_default_str();
  command->add_option("--repeat-penalty", p.repeat_penalty, "Penalise tokens of the last --repeat-last-n; 1 = off")
      ->capture_default_str();
  command->add_option("--repeat-last-n", p.repeat_last_n, "Penalty window in tokens; 0 = off, -1 = whole context")
      ->capture_default_str();
  command->add_option("--presence-penalty", p.presence_penalty, "Subtracted once from tokens in the window")
      ->capture_default_str();
  command->add_option("--frequency-penalty", p.frequency_penalty, "Subtracted per occurrence in the window")
      ->capture_default_str();
  command->add_option("--logit-bias", flags.logit_bias, "TOKEN+BIAS or TOKEN-BIAS, repeatable; TOKEN-inf bans");
  command->add_option("--seed", flags.seed, "Random seed; -1 = random")->capture_default_str();
}

SamplingParams SamplingFlags::Resolve() const {
  SamplingParams resolved = params;
  resolved.seed = seed < 0 ? SamplingParams{}.seed : static_cast<uint64_t>(seed);
  for (const std::string& entry : logit_bias) {
    const auto [token, bias] = ParseLogitBias(entry);
    resolved.logit_bias[token] += bias;
  }
  return resolved;
}

void PrintTimings(const GenerationResult& result) {
  auto rate = [](double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; };
  std::fprintf(stderr, "\nprompt eval: %5d tokens in %9.2f ms (%8.2f tokens/s)\n", result.prompt_tokens,
               1e3 * result.prompt_seconds, rate(result.prompt_tokens, result.prompt_seconds));
  std::fprintf(stderr, "generation:  %5zu tokens in %9.2f ms (%8.2f tokens/s), stop: %s\n", result.tokens.size(),
               1e3 * result.generation_seconds,
               rate(static_cast<double>(result.tokens.size()), result.generation_seconds),
               StopReasonName(result.stop_reason));
}

void AddNumericsOptions(CLI::App* command, Numerics& numerics) {
  const std::map<std::string, ComputeType> compute_types = {{"f32", ComputeType::kF32}, {"bf16", ComputeType::kBF16}};
  command->add_option("--compute-type", numerics.compute,
                      "Products with bf16 weights: f32 (exact, the default) or bf16 (activations rounded to bf16, "
                      "faster prompts; see README)")
      ->transform(CLI::CheckedTransformer(compute_types));
  AddCacheTypeOption(command, numerics.cache);
}

void AddCacheTypeOption(CLI::App* command, CacheType& cache) {
  const std::map<std::string, CacheType> types = {
      {"f32", CacheType::kF32}, {"f16", CacheType::kF16}, {"q8", CacheType::kQ8}};
  command->add_option("--cache-type", cache,
                      "Attention keys and values: f32 (exact, the default), f16 (half the cache, faster long "
                      "contexts; llama.cpp's -ctk f16 -ctv f16) or q8 (int8 with a scale per position and K/V "
                      "head, about a quarter; see README)")
      ->transform(CLI::CheckedTransformer(types));
}

Model LoadModel(const std::string& model_dir, int threads, Numerics numerics) {
  if (threads < 0) throw Error("-t: " + std::to_string(threads) + " threads");
  return Model::Load(model_dir, static_cast<size_t>(threads), numerics);
}

void RunGenerate(const GenerateFlags& flags) {
  if (!flags.prompt_given && !flags.prompt_from_file) throw Error("give the prompt with -p TEXT or -f FILE");
  const std::string prompt_text = flags.prompt_from_file ? ReadSmallFile(flags.prompt_file) : flags.prompt;
  const Model model = LoadModel(flags.model_dir, flags.threads, flags.numerics);
  const Tokenizer tokenizer = Tokenizer::Load(flags.model_dir);
  GenerationOptions options;
  options.max_tokens = flags.max_tokens;
  options.stop = flags.stop;
  options.sampling = flags.sampling.Resolve();
  const std::vector<int32_t> prompt =
      tokenizer.Encode(prompt_text, {.add_bos = tokenizer.add_bos_token(), .parse_special = true});
  if (prompt.empty()) throw Error("the prompt is empty and the tokenizer adds no BOS; nothing to continue");

  Sequence sequence = model.NewSequence();
  const bool stream = !flags.json;
  const GenerationResult result = Generate(model, tokenizer, sequence, prompt, options, [&](std::string_view text) {
    if (!stream) return;
    std::cout << text << std::flush;
  });
  if (result.stop_reason == StopReason::kContextLimit) {
    std::fprintf(stderr, "\nhymba: generation stopped at the context limit (max_position_embeddings %lld, %lld of them meta tokens)\n",
                 static_cast<long long>(model.config().max_position_embeddings),
                 static_cast<long long>(model.config().num_memory_tokens));
  }
  if (flags.json) {
    const nlohmann::json out = {
        {"prompt_tokens", result.prompt_tokens},
        {"tokens", result.tokens},
        {"text", result.text},
        {"stop_reason", StopReasonName(result.stop_reason)},
        {"timings",
         {{"prompt_ms", 1e3 * result.prompt_seconds},
          {"generation_ms", 1e3 * result.generation_seconds},
          {"prompt_tokens_per_second", result.prompt_seconds > 0 ? result.prompt_tokens / result.prompt_seconds : 0.0},
          {"generation_tokens_per_second",
           result.generation_seconds > 0 ? static_cast<double>(result.tokens.size()) / result.generation_seconds : 0.0}}}};
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";  // text may end mid-character
  } else {
    std::cout << "\n";
  }
  PrintTimings(result);
}

}  // namespace hymba::cli

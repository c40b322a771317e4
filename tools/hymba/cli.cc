// The hymba command line: subcommands, their flags and what each runs.
#include "cli.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "hymba/hymba.h"
#include "io/npy.h"

namespace hymba::cli {
namespace {

std::vector<int32_t> ParseTokenList(const std::string& text) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) {
      if (text.find_first_not_of(" \t,") == std::string::npos) throw Error("--tokens: the token list is empty");
      throw Error("--tokens: empty entry in \"" + text + "\"");
    }
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size()) throw Error("--tokens: \"" + item + "\" is not a token id");
    if (value < 0 || value > INT32_MAX) throw Error("--tokens: token id " + item + " is out of range");
    ids.push_back(static_cast<int32_t>(value));
    start = end + 1;
  }
  return ids;
}

void WarnUnusedTensors(const Model& model) {
  const auto& unused = model.storage().unused_tensors;
  if (unused.empty()) return;
  std::cerr << "warning: " << unused.size() << " tensor(s) in the checkpoint are not used by this config, e.g. \""
            << unused.front() << "\"\n";
}

// The `top` most likely next tokens after the last position, with the text of
// each when the model directory has a tokenizer.
void PrintTopNextTokens(const std::filesystem::path& model_dir, std::span<const float> last_row, int top) {
  std::vector<int32_t> order(last_row.size());
  std::iota(order.begin(), order.end(), 0);
  const auto count = std::min<size_t>(static_cast<size_t>(top), order.size());
  // NaN (a model whose numbers overflowed) ranks last, so that the order stays a strict weak one.
  const auto rank_key = [&](int32_t id) {
    const float logit = last_row[static_cast<size_t>(id)];
    return std::isnan(logit) ? -std::numeric_limits<float>::infinity() : logit;
  };
  std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(count), order.end(),
                    [&](int32_t a, int32_t b) { return rank_key(a) > rank_key(b); });
  const float max_logit = last_row[static_cast<size_t>(order[0])];
  double normalizer = 0;
  for (float logit : last_row) normalizer += std::exp(static_cast<double>(logit - max_logit));
  std::optional<Tokenizer> tokenizer;
  if (std::filesystem::is_regular_file(model_dir) || std::filesystem::exists(model_dir / "tokenizer.model")) {
    try {
      tokenizer.emplace(Tokenizer::Load(model_dir));
    } catch (const Error& error) {  // a GGUF converted without a tokenizer: ids only
      std::fprintf(stderr, "hymba: token texts not shown: %s\n", error.what());
    }
  }
  std::printf("| rank | token | probability | logit | text |\n|---:|---:|---:|---:|---|\n");
  for (size_t rank = 0; rank < count; ++rank) {
    const int32_t id = order[rank];
    const float logit = last_row[static_cast<size_t>(id)];
    std::string text = tokenizer && id < tokenizer->vocab_size() ? nlohmann::json(tokenizer->Decode(std::vector<int32_t>{id})).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) : "";
    std::printf("| %zu | %d | %.4f | %.4f | %s |\n", rank + 1, id, std::exp(static_cast<double>(logit - max_logit)) / normalizer,
                static_cast<double>(logit), text.c_str());
  }
}

void RunLogits(const std::filesystem::path& model_dir, const std::string& tokens_text, const std::filesystem::path& out,
               int top, LogitsMode mode, int chunk, int threads, Numerics numerics) {
  const std::vector<int32_t> tokens = ParseTokenList(tokens_text);
  if (out.empty() && top == 0) throw Error("logits: give -o OUT.npy, --top N, or both");
  if (top < 0) throw Error("--top: " + std::to_string(top) + " is negative");
  if (chunk < 1) throw Error("--chunk: " + std::to_string(chunk) + " must be at least 1");
  const Model model = LoadModel(model_dir.string(), threads, numerics);
  WarnUnusedTensors(model);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<float> logits = model.Logits(tokens, mode, static_cast<size_t>(chunk));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto vocab = static_cast<size_t>(model.config().vocab_size);
  if (!out.empty()) {
    const int64_t shape[2] = {static_cast<int64_t>(tokens.size()), model.config().vocab_size};
    WriteNpyF32(out, shape, logits);
  }
  if (top > 0) PrintTopNextTokens(model_dir, std::span(logits).subspan(logits.size() - vocab), top);
  std::fprintf(stderr, "logits: %zu tokens (+%lld meta) in %.3f s, %.1f tokens/s%s%s\n", tokens.size(),
               static_cast<long long>(model.config().num_memory_tokens), seconds,
               static_cast<double>(tokens.size()) / seconds, out.empty() ? "" : " -> ", out.string().c_str());
}

void RunTokenize(const std::filesystem::path& model_dir, const std::string& text, bool bos, bool no_special) {
  const Tokenizer tokenizer = Tokenizer::Load(model_dir);
  const std::vector<int32_t> ids = tokenizer.Encode(text, {.add_bos = bos, .parse_special = !no_special});
  std::cout << nlohmann::json(ids).dump() << "\n";
}

void RunDetokenize(const std::filesystem::path& model_dir, const std::string& tokens_text) {
  const Tokenizer tokenizer = Tokenizer::Load(model_dir);
  std::cout << tokenizer.Decode(ParseTokenList(tokens_text)) << "\n";
}

}  // namespace

Cli::Cli() : app_("hymba.cpp: inference for NVIDIA Hymba models") {
  CLI::App& app = app_;
  app.require_subcommand(1);
  auto add_model = [this](CLI::App* command) {
    command->add_option("-m,--model", model_dir, "Hugging Face model directory or GGUF file")->required();
  };

  info = app.add_subcommand("info", "Parameters, layer roles, weight and cache memory");
  add_model(info);
  info->add_flag("--json", json, "Print one JSON object");
  AddCacheTypeOption(info, info_cache);

  logits = app.add_subcommand("logits", "Logits at every position of a token list, as .npy");
  add_model(logits);
  logits->add_option("--tokens", tokens_text, "Comma-separated token ids, e.g. 5,9,13 (no BOS is added)")->required();
  logits->add_option("-o,--output", out_path, "Output .npy file, float32 [n_tokens, vocab_size]");
  logits->add_option("--top", top, "Print the N most likely next tokens after the last position");
  const std::map<std::string, LogitsMode> modes = {
      {"full", LogitsMode::kFull}, {"chunked", LogitsMode::kChunked}, {"incremental", LogitsMode::kIncremental}};
  logits->add_option("--mode", mode, "full: one pass with the meta tokens; chunked: --chunk tokens at a time after "
                                     "the cached meta prefix; incremental: one token at a time")
      ->transform(CLI::CheckedTransformer(modes, CLI::ignore_case));
  logits->add_option("--chunk", chunk, "Tokens per step in chunked mode");
  logits->add_option("-t,--threads", logits_threads, "Threads; 0 = one per core")->capture_default_str();
  AddNumericsOptions(logits, logits_numerics);

  tokenize = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  add_model(tokenize);
  tokenize->add_option("--text", text, "Text to tokenize")->required();
  tokenize->add_flag("--bos", bos, "Prepend the BOS token");
  tokenize->add_flag("--no-special", no_special, "Treat special-token text such as </s> as plain text");

  detokenize = app.add_subcommand("detokenize", "Print the text of comma-separated token ids");
  add_model(detokenize);
  detokenize->add_option("--tokens", tokens_text, "Comma-separated token ids")->required();

  generate = app.add_subcommand("generate", "Continue a prompt, streaming the text");
  generate->add_option("-m,--model", generate_flags.model_dir, "Hugging Face model directory or GGUF file")->required();
  CLI::Option* prompt_text =
      generate->add_option("-p,--prompt", generate_flags.prompt, "Prompt text (BOS added as tokenizer_config says)")
          ->each([this](const std::string&) { generate_flags.prompt_given = true; });
  generate->add_option("-f,--file", generate_flags.prompt_file, "Read the prompt from this file or pipe (any bytes, up to 64 MiB)")
      ->each([this](const std::string&) { generate_flags.prompt_from_file = true; })
      ->excludes(prompt_text);
  generate->add_option("-n,--n-predict", generate_flags.max_tokens, "Tokens to generate; -1 = until EOS or the context limit")
      ->capture_default_str();
  generate->add_option("--stop", generate_flags.stop, "Stop when this text appears (not printed); repeatable");
  generate->add_flag("--json", generate_flags.json, "Print one JSON object instead of streaming");
  generate->add_option("-t,--threads", generate_flags.threads, "Threads; 0 = one per core")->capture_default_str();
  AddNumericsOptions(generate, generate_flags.numerics);
  AddSamplingOptions(generate, generate_flags.sampling);

  chat = app.add_subcommand("chat", "Interactive multi-turn chat through the model's chat template");
  chat->add_option("-m,--model", chat_flags.model_dir, "Hugging Face model directory or GGUF file")->required();
  chat->add_option("--system", chat_flags.system, "System message");
  chat->add_option("-n,--n-predict", chat_flags.max_tokens, "Tokens per reply at most; -1 = no limit")->capture_default_str();
  chat->add_option("--stop", chat_flags.stop, "Also stop a reply at this text; repeatable");
  chat->add_option("-t,--threads", chat_flags.threads, "Threads; 0 = one per core")->capture_default_str();
  AddNumericsOptions(chat, chat_flags.numerics);
  AddSamplingOptions(chat, chat_flags.sampling);

  prompt = app.add_subcommand("prompt", "Print the chat template's rendering of a conversation");
  add_model(prompt);
  prompt->add_option("--messages", messages_file, "JSON file: a list of {role, content}, or an object with messages")
      ->required();
  prompt->add_flag("--no-generation-prompt", no_generation_prompt, "Do not open an assistant turn at the end");

  AddBenchCommand(app, bench_flags);
  AddConvertCommand(app, convert_flags);
  AddPerplexityCommand(app, perplexity_flags);
  AddServeCommand(app, serve_flags);
}

void Cli::CheckFlags() const {
  if (logits->parsed() || detokenize->parsed()) ParseTokenList(tokens_text);
  if (generate->parsed()) generate_flags.sampling.Resolve();
  if (chat->parsed()) chat_flags.sampling.Resolve();
}

void Cli::Run() const {
  if (info->parsed()) RunInfo(model_dir, json, info_cache);
  if (logits->parsed()) RunLogits(model_dir, tokens_text, out_path, top, mode, chunk, logits_threads, logits_numerics);
  if (tokenize->parsed()) RunTokenize(model_dir, text, bos, no_special);
  if (detokenize->parsed()) RunDetokenize(model_dir, tokens_text);
  if (generate->parsed()) RunGenerate(generate_flags);
  if (chat->parsed()) RunChat(chat_flags);
  if (prompt->parsed()) RunPrompt(model_dir, messages_file, !no_generation_prompt);
  if (bench_flags.command->parsed()) RunBench(bench_flags);
  if (convert_flags.command->parsed()) RunConvert(convert_flags);
  if (perplexity_flags.command->parsed()) RunPerplexity(perplexity_flags);
  if (serve_flags.command->parsed()) RunServe(serve_flags);
}

}  // namespace hymba::cli

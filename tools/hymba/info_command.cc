// hymba info: what a model is made of and what it costs in memory.
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "hymba/hymba.h"

namespace hymba::cli {
namespace {

using nlohmann::json;

std::string Thousands(int64_t value) {
  const std::string digits = std::to_string(value < 0 ? -value : value);
  std::string grouped = value < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) grouped += ',';
    grouped += digits[i];
  }
  return grouped;
}

std::string Megabytes(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

std::string RoleText(const Config& c, int layer) {
  const LayerRole& role = c.layers[layer];
  std::string text = role.global_attention ? "global          " : "sliding window  ";
  if (role.OwnsKv(layer)) {
    text += c.HasSlidingWindow() && !role.global_attention && c.KeepsFullHistory(layer) ? "owns K/V (keeps full history for a global reader)"
                                                                                          : "owns K/V";
  } else {
    text += "reads K/V of layer " + std::to_string(role.kv_source);
  }
  return text;
}

constexpr int64_t kContextPoints[] = {1024, 8192, 32768};

json LayoutJson(const Config& c, const CacheLayout& layout) {
  json sizes = json::array();
  for (int64_t tokens : kContextPoints) {
    sizes.push_back({{"text_tokens", tokens},
                     {"bytes_with_meta_kv", layout.BytesAt(c, tokens, true)},
                     {"bytes_without_meta_kv", layout.BytesAt(c, tokens, false)},
                     {"decode_step_kv_read_bytes", layout.DecodeReadBytes(c, tokens)}});
  }
  return {{"name", layout.name},
          {"kv_bytes_per_value", layout.kv_bytes_per_value},
          {"state_bytes_per_value", layout.ssm_bytes_per_value},
          {"window_entries", layout.window_entries},
          {"kv_bytes_per_token_per_owner", layout.kv_bytes_per_token_per_owner},
          {"kv_bytes_per_token_full_history", layout.growing_bytes_per_token},
          {"kv_bytes_per_token_while_windows_fill", layout.filling_bytes_per_token},
          {"meta_kv_bytes", layout.meta_kv_bytes},
          {"sliding_window_cap_bytes", layout.window_cap_bytes},
          {"ssm_state_bytes", layout.ssm_state_bytes},
          {"conv_state_bytes", layout.conv_state_bytes},
          {"sequence_bytes", sizes}};
}

void PrintText(const std::filesystem::path& dir, const Config& c, const ModelReport& report,
               const std::optional<WeightStorage>& storage) {
  std::printf("model:       %s\n", dir.string().c_str());
  std::printf("shape:       %d layers, hidden %lld, %d heads / %d KV heads (GQA %d), head dim %lld (q,k) / %lld (v)\n",
              c.num_hidden_layers, static_cast<long long>(c.hidden_size), c.num_attention_heads,
              c.num_key_value_heads, c.num_attention_heads / c.num_key_value_heads,
              static_cast<long long>(c.head_dim_qk), static_cast<long long>(c.head_dim_v));
  std::printf("             SSM width %lld, state %lld, conv %lld, dt rank %lld; %lld meta tokens; window %s; vocab %lld\n",
              static_cast<long long>(c.d_inner), static_cast<long long>(c.mamba_d_state),
              static_cast<long long>(c.mamba_d_conv), static_cast<long long>(c.mamba_dt_rank),
              static_cast<long long>(c.num_memory_tokens),
              c.HasSlidingWindow() ? std::to_string(c.sliding_window).c_str() : "none (all global)",
              static_cast<long long>(c.vocab_size));

  std::printf("\n| component | parameters | share |\n|---|---:|---:|\n");
  for (const ParameterGroup& group : report.parameters) {
    if (group.count == 0) continue;
    std::printf("| %s | %s | %.2f %% |\n", group.name.c_str(), Thousands(group.count).c_str(),
                100.0 * static_cast<double>(group.count) / static_cast<double>(report.total_parameters));
  }
  std::printf("| **total** | **%s** | |\n", Thousands(report.total_parameters).c_str());

  std::printf("\n| layer | attention | K/V |\n|---:|---|---|\n");
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string role = RoleText(c, layer);
    std::printf("| %d | %s | %s |\n", layer, role.substr(0, 16).c_str(), role.substr(16).c_str());
  }

  if (storage) {
    std::printf("\nweights:     %s bytes in %zu file(s), %lld tensors, %s parameters stored (",
                Thousands(storage->bytes).c_str(), storage->files.size(), static_cast<long long>(storage->tensors),
                Thousands(storage->parameters).c_str());
    bool first = true;
    for (const auto& [dtype, bytes] : storage->bytes_by_dtype) {
      std::printf("%s%s %s", first ? "" : ", ", dtype.c_str(), Thousands(bytes).c_str());
      first = false;
    }
    std::printf(")\n");
  } else {
    std::printf("\nweights:     no weight files; %s bytes in bf16, %s in f32\n",
                Thousands(2 * report.total_parameters).c_str(), Thousands(4 * report.total_parameters).c_str());
  }

  const CacheLayout& hf = report.official;
  const CacheLayout& engine = report.engine;
  std::printf("\n| cache per sequence (bytes) | %s | %s |\n|---|---:|---:|\n", hf.name.c_str(), engine.name.c_str());
  auto row = [](const char* name, int64_t a, int64_t b) {
    std::printf("| %s | %s | %s |\n", name, Thousands(a).c_str(), Thousands(b).c_str());
  };
  row("K+V per token, per KV-owning layer", hf.kv_bytes_per_token_per_owner, engine.kv_bytes_per_token_per_owner);
  row("K/V added per token (full-history layers)", hf.growing_bytes_per_token, engine.growing_bytes_per_token);
  row("K/V added per token while windows fill", hf.filling_bytes_per_token, engine.filling_bytes_per_token);
  row("meta-token K/V (fixed)", hf.meta_kv_bytes, engine.meta_kv_bytes);
  row("sliding-window caches when full (incl. meta)", hf.window_cap_bytes, engine.window_cap_bytes);
  row("SSM state (fixed)", hf.ssm_state_bytes, engine.ssm_state_bytes);
  row("conv state (fixed)", hf.conv_state_bytes, engine.conv_state_bytes);

  std::printf("\nLlama-3.2-3B-shaped cache (28 layers, 8 KV heads of dim 128, bf16): %s bytes per token\n",
              Thousands(report.llama32_3b_bytes_per_token).c_str());
  std::printf("\n| text tokens | HF bf16 (with meta K/V) | HF bf16 (without) | %s | Llama-3.2-3B | ratio (with / without meta) "
              "| K/V the next decode step reads, %s |\n",
              engine.name.c_str(), engine.name.c_str());
  std::printf("|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t tokens : kContextPoints) {
    const int64_t with_meta = hf.BytesAt(c, tokens, true), without_meta = hf.BytesAt(c, tokens, false);
    const int64_t llama = report.llama32_3b_bytes_per_token * tokens;
    std::printf("| %s | %s | %s | %s | %s | %.2fx / %.2fx | %s |\n", Thousands(tokens).c_str(),
                Megabytes(with_meta).c_str(), Megabytes(without_meta).c_str(),
                Megabytes(engine.BytesAt(c, tokens, true)).c_str(), Megabytes(llama).c_str(),
                static_cast<double>(llama) / static_cast<double>(with_meta),
                static_cast<double>(llama) / static_cast<double>(without_meta),
                Megabytes(engine.DecodeReadBytes(c, tokens)).c_str());
  }
}

}  // namespace

void RunInfo(const std::filesystem::path& model_dir, bool as_json, CacheType cache) {
  if (!std::filesystem::exists(model_dir)) throw Error("model " + model_dir.string() + " does not exist");
  const bool gguf = !std::filesystem::is_directory(model_dir);
  if (!gguf && !std::filesystem::exists(model_dir / "config.json")) throw Error(model_dir.string() + ": missing config.json");
  // A directory may hold only config and tokenizer (as the real 1.5B config in
  // tests/data does); weights, when present, must load.
  const bool has_weights = gguf || std::filesystem::exists(model_dir / "model.safetensors") ||
                           std::filesystem::exists(model_dir / "model.safetensors.index.json");
  std::optional<Model> model;
  if (has_weights) model.emplace(Model::Load(model_dir));
  const Config config = model ? model->config() : LoadConfig(model_dir / "config.json");
  const bool separate_head = model ? model->storage().separate_lm_head : !config.tie_word_embeddings;
  const ModelReport report = DescribeModel(config, separate_head, cache);
  std::optional<WeightStorage> storage;
  if (model) storage = model->storage();

  if (!as_json) {
    PrintText(model_dir, config, report, storage);
    return;
  }
  json out;
  out["model"] = model_dir.string();
  out["total_parameters"] = report.total_parameters;
  for (const ParameterGroup& group : report.parameters) out["parameters"][group.name] = group.count;
  json layers = json::array();
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    const LayerRole& role = config.layers[layer];
    layers.push_back({{"layer", layer},
                      {"attention", role.global_attention ? "global" : "sliding_window"},
                      {"kv_source", role.kv_source},
                      {"owns_kv", role.OwnsKv(layer)}});
  }
  out["layers"] = layers;
  if (storage) {
    out["weights"] = {{"bytes", storage->bytes},
                      {"tensors", storage->tensors},
                      {"parameters", storage->parameters},
                      {"bytes_by_dtype", storage->bytes_by_dtype}};
  } else {
    out["weights"] = nullptr;
  }
  out["cache"] = {{"official", LayoutJson(config, report.official)}, {"engine", LayoutJson(config, report.engine)}};
  out["llama32_3b_bytes_per_token"] = report.llama32_3b_bytes_per_token;
  std::cout << out.dump(2) << "\n";
}

}  // namespace hymba::cli

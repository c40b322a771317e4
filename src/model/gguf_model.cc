#include "model/gguf_model.h"


#include <nlohmann/json.hpp>

#include "hymba/convert.h"
#include "hymba/error.h"
#include "io/gguf_keys.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/text_file.h"
#include "kernels/quantize.h"

namespace hymba {
namespace {

using gguf_keys::kConfig, gguf_keys::kGenerationConfig, gguf_keys::kSentencePiece, gguf_keys::kTokenizerConfig;

// The typed keys other GGUF tools read, all derived from the config.
std::vector<std::pair<std::string, uint32_t>> TypedKeys(const Config& c) {
  std::vector<std::pair<std::string, uint32_t>> keys = {
      {"hymba.context_length", static_cast<uint32_t>(c.max_position_embeddings)},
      {"hymba.embedding_length", static_cast<uint32_t>(c.hidden_size)},
      {"hymba.block_count", static_cast<uint32_t>(c.num_hidden_layers)},
      {"hymba.feed_forward_length", static_cast<uint32_t>(c.intermediate_size)},
      {"hymba.attention.head_count", static_cast<uint32_t>(c.num_attention_heads)},
      {"hymba.attention.head_count_kv", static_cast<uint32_t>(c.num_key_value_heads)},
      {"hymba.ssm.inner_size", static_cast<uint32_t>(c.d_inner)},
      {"hymba.ssm.state_size", static_cast<uint32_t>(c.mamba_d_state)},
      {"hymba.ssm.conv_kernel", static_cast<uint32_t>(c.mamba_d_conv)},
      {"hymba.ssm.time_step_rank", static_cast<uint32_t>(c.mamba_dt_rank)},
      {"hymba.meta_token_count", static_cast<uint32_t>(c.num_memory_tokens)},
  };
  if (c.HasSlidingWindow()) keys.emplace_back("hymba.attention.sliding_window", static_cast<uint32_t>(c.sliding_window));
  return keys;
}

std::optional<DType> TypeFromName(const std::string& name) {
  if (name == "f32") return DType::kF32;
  if (name == "f16") return DType::kF16;
  if (name == "bf16") return DType::kBF16;
  if (name == "q8_0") return DType::kQ8_0;
  if (name == "q4_0") return DType::kQ4_0;
  return std::nullopt;
}

// llama.cpp's general.file_type numbers.
uint32_t FileType(DType type) {
  switch (type) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kQ4_0: return 2;
    case DType::kQ8_0: return 7;
    case DType::kBF16: return 32;
  }
  return 0;
}

// Matrices the forward pass multiplies or looks rows up in take the chosen
// type; everything decoded once to f32 at load time stays f32.
DType StorageType(const std::string& name, const std::vector<int64_t>& shape, DType chosen) {
  const bool matrix = shape.size() == 2 && name.find("A_log") == std::string::npos && name != "model.memory_tokens";
  if (!matrix) return DType::kF32;
  if (IsQuantized(chosen) && shape[1] % static_cast<int64_t>(kQuantBlock) != 0) return DType::kF16;
  return chosen;
}

}  // namespace

void ApplyGenerationConfig(Config& config, const std::string& json_text, const std::string& source) {
  const nlohmann::json root = ParseJson(json_text, source);
  if (!root.is_object() || !root.contains("eos_token_id") || root["eos_token_id"].is_null()) return;
  const nlohmann::json& eos = root["eos_token_id"];
  std::vector<int64_t> ids;
  for (const nlohmann::json& id : eos.is_array() ? eos : nlohmann::json::array({eos})) {
    if (!id.is_number_integer()) throw Error(source + ": eos_token_id must be an integer or a list of them");
    ids.push_back(id.get<int64_t>());
    if (ids.back() < 0 || ids.back() >= config.vocab_size) {
      throw Error(source + ": eos_token_id " + std::to_string(ids.back()) + " is outside the vocabulary (vocab_size " +
                  std::to_string(config.vocab_size) + ")");
    }
  }
  if (ids.empty()) throw Error(source + ": eos_token_id is an empty list");
  config.eos_token_ids = ids;
}

std::unique_ptr<GgufFile> OpenModelGguf(const std::filesystem::path& path) {
  if (!GgufFile::HasMagic(path)) {
    throw Error(path.string() + " is neither a model directory nor a GGUF file (it does not start with \"GGUF\")");
  }
  auto file = std::make_unique<GgufFile>(path);
  const std::string architecture = file->GetString("general.architecture");
  if (architecture != "hymba") {
    throw Error(path.string() + ": general.architecture is \"" + architecture + "\"; this engine runs \"hymba\" models");
  }
  return file;
}

Config ConfigFromGguf(const GgufFile& file) {
  Config config = ParseConfig(file.GetString(kConfig), file.path().string() + " (" + kConfig + ")");
  if (file.metadata().contains(kGenerationConfig)) {
    ApplyGenerationConfig(config, file.GetString(kGenerationConfig),
                          file.path().string() + " (" + kGenerationConfig + ")");
  }
  for (const auto& [key, expected] : TypedKeys(config)) {
    auto it = file.metadata().find(key);
    if (it == file.metadata().end()) continue;
    const GgufValue& value = it->second;
    if (value.type != GgufValueType::kUint32 || value.value.get<uint32_t>() != expected) {
      throw Error(file.path().string() + ": GGUF metadata \"" + key + "\" is " + JsonExcerpt(value.value) +
                  " but " + kConfig + " gives " + std::to_string(expected));
    }
  }
  return config;
}

void ConvertToGguf(const std::filesystem::path& model_dir, const std::filesystem::path& output, const std::string& type,
                   const std::function<void(size_t, size_t)>& progress) {
  const std::optional<DType> chosen = TypeFromName(type);
  if (!chosen) throw Error("--type " + type + " is not one of f32, f16, bf16, q8_0, q4_0");
  if (!std::filesystem::is_directory(model_dir)) {
    throw Error(model_dir.string() + " is not a directory; convert reads a Hugging Face model directory");
  }
  if (std::filesystem::exists(output)) {
    throw Error(output.string() + " already exists; remove it or choose another output name");
  }
  const std::string config_text = ReadSmallFile(model_dir / "config.json");
  const Config config = ParseConfig(config_text, (model_dir / "config.json").string());
  const Checkpoint checkpoint = Checkpoint::Open(model_dir);

  GgufWriter writer;
  writer.Set("general.architecture", GgufValue::String("hymba"));
  writer.Set("general.name", GgufValue::String(std::filesystem::absolute(model_dir).lexically_normal().filename().string()));
  writer.Set("general.file_type", GgufValue::Uint32(FileType(*chosen)));
  if (IsQuantized(*chosen)) writer.Set("general.quantization_version", GgufValue::Uint32(2));
  writer.Set(kConfig, GgufValue::String(config_text));
  if (std::filesystem::exists(model_dir / "generation_config.json")) {
    writer.Set(kGenerationConfig, GgufValue::String(ReadSmallFile(model_dir / "generation_config.json")));
  }
  for (const auto& [key, value] : TypedKeys(config)) writer.Set(key, GgufValue::Uint32(value));
  writer.Set("hymba.rope.freq_base", GgufValue::Float64(config.rope_theta));
  writer.Set("hymba.attention.layer_norm_rms_epsilon", GgufValue::Float64(config.rms_norm_eps));

  if (std::filesystem::exists(model_dir / "tokenizer.model")) {
    writer.Set("tokenizer.ggml.model", GgufValue::String("llama"));
    writer.Set(kSentencePiece, GgufValue::Bytes(ReadSmallFile(model_dir / "tokenizer.model")));
    writer.Set("tokenizer.ggml.bos_token_id", GgufValue::Uint32(static_cast<uint32_t>(config.bos_token_id)));
    writer.Set("tokenizer.ggml.eos_token_id", GgufValue::Uint32(static_cast<uint32_t>(config.eos_token_ids.front())));
    writer.Set("tokenizer.ggml.padding_token_id", GgufValue::Uint32(static_cast<uint32_t>(config.pad_token_id)));
    if (std::filesystem::exists(model_dir / "tokenizer_config.json")) {
      const std::string tokenizer_config = ReadSmallFile(model_dir / "tokenizer_config.json");
      writer.Set(kTokenizerConfig, GgufValue::String(tokenizer_config));
      const nlohmann::json parsed = ParseJson(tokenizer_config, (model_dir / "tokenizer_config.json").string());
      if (parsed.is_object() && parsed.contains("chat_template") && parsed["chat_template"].is_string()) {
        writer.Set("tokenizer.chat_template", GgufValue::String(parsed["chat_template"].get<std::string>()));
      }
    }
  }

  for (const auto& [name, record] : checkpoint.tensors()) {
    if (!record->dtype) throw Error(record->file.string() + ": tensor \"" + name + "\" has dtype " + record->dtype_name);
    const DType target = StorageType(name, record->shape, *chosen);
    std::vector<int64_t> dims(record->shape.rbegin(), record->shape.rend());
    if (dims.empty()) dims.push_back(1);
    const TensorRecord* source = record;
    writer.AddTensor(name, GgmlFromDType(target), dims, [source, target](std::span<std::byte> out) {
      const auto cols = static_cast<size_t>(source->shape.empty() ? 1 : source->shape.back());
      const size_t rows = static_cast<size_t>(source->elements()) / std::max<size_t>(cols, 1);
      std::vector<float> row(cols);
      for (size_t r = 0; r < rows; ++r) {
        for (size_t c = 0; c < cols; ++c) row[c] = LoadAsF32(*source->dtype, source->data.data(), r * cols + c);
        QuantizeRow(target, row, out.data() + r * RowBytes(target, cols));
      }
    });
  }
  writer.Write(output, progress);
}

}  // namespace hymba

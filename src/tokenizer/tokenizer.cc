// SentencePiece with HF LlamaTokenizer (legacy=true) special-token handling (E7):
// the text is split on the added tokens of tokenizer_config.json, each piece
// between them is encoded on its own, and special tokens are skipped on decode.
#include "hymba/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "hymba/error.h"
#include "io/gguf.h"
#include "io/gguf_keys.h"
#include "io/json.h"
#include "io/text_file.h"

namespace hymba {
namespace {

using nlohmann::json;

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
};

json ReadJson(const std::filesystem::path& path) {
  return ParseJson(ReadSmallFile(path), path.string());
}

}  // namespace

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
  std::vector<AddedToken> added;  // longest content first, for leftmost-longest splitting
  std::map<int32_t, const AddedToken*> added_by_id;
  int32_t bos = 1;
  bool add_bos = true;
  std::string chat_template;
  int32_t vocab_size = 0;

  std::string TokenText(int32_t id) const {
    if (auto it = added_by_id.find(id); it != added_by_id.end()) return it->second->content;
    if (id >= 0 && id < processor.GetPieceSize()) return processor.IdToPiece(id);
    return "";
  }

  std::vector<int32_t> EncodePiece(std::string_view text) const {
    std::vector<int> ids;
    if (const auto status = processor.Encode(text, &ids); !status.ok()) {
      throw Error("SentencePiece cannot encode text: " + status.ToString());
    }
    return {ids.begin(), ids.end()};
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

// What a tokenizer is built from, read from a model directory or a GGUF file.
struct TokenizerSources {
  std::string sentencepiece_model;  // serialized ModelProto
  std::string sentencepiece_source;  // for messages
  std::optional<json> tokenizer_config;
  std::string tokenizer_config_source;
  std::optional<json> model_config;
};

TokenizerSources ReadDirectory(const std::filesystem::path& model_dir) {
  TokenizerSources sources;
  const std::filesystem::path model_path = model_dir / "tokenizer.model";
  if (!std::filesystem::exists(model_path)) throw Error(model_dir.string() + ": missing tokenizer.model");
  sources.sentencepiece_model = ReadSmallFile(model_path);
  sources.sentencepiece_source = model_path.string();
  sources.tokenizer_config_source = (model_dir / "tokenizer_config.json").string();
  if (std::filesystem::exists(model_dir / "tokenizer_config.json")) {
    sources.tokenizer_config = ReadJson(model_dir / "tokenizer_config.json");
  }
  if (std::filesystem::exists(model_dir / "config.json")) sources.model_config = ReadJson(model_dir / "config.json");
  return sources;
}

TokenizerSources ReadGguf(const std::filesystem::path& path) {
  if (!GgufFile::HasMagic(path)) {
    throw Error(path.string() + " is neither a model directory nor a GGUF file (it does not start with \"GGUF\")");
  }
  const GgufFile file(path, FileAccess::kMap);
  auto parse = [&](const char* key) {
    return ParseJson(file.GetString(key), path.string() + ": GGUF metadata \"" + key + "\"");
  };
  TokenizerSources sources;
  const GgufValue& model = file.Get(gguf_keys::kSentencePiece);
  if (model.type != GgufValueType::kArray || model.element_type != GgufValueType::kUint8) {
    throw Error(path.string() + ": GGUF metadata \"" + std::string(gguf_keys::kSentencePiece) + "\" is not a byte array");
  }
  sources.sentencepiece_model = model.bytes;
  sources.sentencepiece_source = path.string() + " (" + gguf_keys::kSentencePiece + ")";
  sources.tokenizer_config_source = path.string() + " (" + gguf_keys::kTokenizerConfig + ")";
  if (file.metadata().contains(gguf_keys::kTokenizerConfig)) sources.tokenizer_config = parse(gguf_keys::kTokenizerConfig);
  if (file.metadata().contains(gguf_keys::kConfig)) sources.model_config = parse(gguf_keys::kConfig);
  return sources;
}

}  // namespace

Tokenizer Tokenizer::Load(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw Error("model " + path.string() + " does not exist");
  const TokenizerSources sources = std::filesystem::is_directory(path) ? ReadDirectory(path) : ReadGguf(path);
  auto impl = std::make_unique<Impl>();
  if (const auto status = impl->processor.LoadFromSerializedProto(sources.sentencepiece_model); !status.ok()) {
    throw Error(sources.sentencepiece_source + ": cannot load SentencePiece model: " + status.ToString());
  }
  impl->vocab_size = impl->processor.GetPieceSize();

  const std::string& config_source = sources.tokenizer_config_source;
  if (sources.tokenizer_config) {
    const json& config = *sources.tokenizer_config;
    if (config.contains("add_bos_token")) {
      if (!config["add_bos_token"].is_boolean()) throw Error(config_source + ": add_bos_token is not true or false");
      impl->add_bos = config["add_bos_token"].get<bool>();
    }
    if (config.contains("chat_template") && !config["chat_template"].is_null()) {
      if (!config["chat_template"].is_string()) {
        throw Error(config_source + ": chat_template must be a string (named template lists are not supported)");
      }
      impl->chat_template = config["chat_template"].get<std::string>();
    }
    if (config.contains("added_tokens_decoder")) {
      const json& decoder = config["added_tokens_decoder"];
      if (!decoder.is_object()) throw Error(config_source + ": added_tokens_decoder is not an object");
      for (const auto& [key, entry] : decoder.items()) {
        int32_t id = -1;
        try {
          size_t used = 0;
          id = std::stoi(key, &used);
          if (used != key.size() || id < 0) id = -1;
        } catch (const std::exception&) {
        }
        if (id < 0 || id == INT32_MAX || !entry.is_object() || !entry.contains("content") ||
            !entry["content"].is_string() || entry["content"].get<std::string>().empty() ||
            (entry.contains("special") && !entry["special"].is_boolean())) {
          throw Error(config_source + ": added_tokens_decoder entry \"" + key + "\" is not {id: {content, special}}");
        }
        impl->added.push_back({id, entry["content"].get<std::string>(), entry.value("special", false)});
        impl->vocab_size = std::max(impl->vocab_size, id + 1);
      }
    }
  }
  std::stable_sort(impl->added.begin(), impl->added.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  for (const AddedToken& token : impl->added) impl->added_by_id[token.id] = &token;

  impl->bos = impl->processor.bos_id();
  if (sources.model_config) {
    const json& config = *sources.model_config;
    if (config.contains("bos_token_id") && config["bos_token_id"].is_number_integer()) {
      impl->bos = config["bos_token_id"].get<int32_t>();
    }
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  if (options.add_bos) ids.push_back(impl_->bos);
  auto append_text = [&](std::string_view piece) {
    if (piece.empty()) return;
    const std::vector<int32_t> encoded = impl_->EncodePiece(piece);
    ids.insert(ids.end(), encoded.begin(), encoded.end());
  };
  if (!options.parse_special) {
    append_text(text);
    return ids;
  }
  size_t piece_start = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* match = nullptr;
    for (const AddedToken& token : impl_->added) {  // longest first
      if (text.substr(i, token.content.size()) == token.content) {
        match = &token;
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    append_text(text.substr(piece_start, i - piece_start));
    ids.push_back(match->id);
    i += match->content.size();
    piece_start = i;
  }
  append_text(text.substr(piece_start));
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids) const {
  std::string text;
  std::vector<int> run;  // consecutive SentencePiece ids, decoded together
  auto flush = [&] {
    if (run.empty()) return;
    text += impl_->processor.DecodeIds(run);
    run.clear();
  };
  for (int32_t id : ids) {
    if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) {
      if (it->second->special) continue;
      flush();
      text += it->second->content;
    } else if (id >= 0 && id < impl_->processor.GetPieceSize()) {
      if (impl_->processor.IsControl(id)) continue;
      run.push_back(id);
    } else {
      throw Error("token id " + std::to_string(id) + " is outside the tokenizer's vocabulary (" +
                  std::to_string(impl_->vocab_size) + " ids)");
    }
  }
  flush();
  return text;
}

std::optional<uint8_t> Tokenizer::ByteValue(int32_t id) const {
  if (id < 0 || id >= impl_->processor.GetPieceSize() || !impl_->processor.IsByte(id)) return std::nullopt;
  const std::string piece = impl_->processor.IdToPiece(id);  // "<0xF0>"
  return static_cast<uint8_t>(std::stoi(piece.substr(3, 2), nullptr, 16));
}

std::string Tokenizer::PieceText(int32_t id) const {
  if (const std::optional<uint8_t> byte = ByteValue(id)) return std::string(1, static_cast<char>(*byte));
  std::string text = impl_->TokenText(id);
  static constexpr std::string_view kWordBoundary = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  for (size_t at = text.find(kWordBoundary); at != std::string::npos; at = text.find(kWordBoundary, at + 1)) {
    text.replace(at, kWordBoundary.size(), " ");
  }
  return text;
}

const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
std::string Tokenizer::bos_token() const { return impl_->TokenText(impl_->bos); }
std::string Tokenizer::eos_token() const { return impl_->TokenText(impl_->processor.eos_id()); }

int32_t Tokenizer::bos_id() const { return impl_->bos; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

}  // namespace hymba

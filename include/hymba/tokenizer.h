// Llama-style SentencePiece tokenizer with the special tokens of
// tokenizer_config.json, following HF LlamaTokenizer with legacy=true (E7).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hymba {

struct EncodeOptions {
  bool add_bos = false;
  bool parse_special = true;  // split on special tokens such as "</s>"
};

class Tokenizer {
 public:
  // Reads tokenizer.model and tokenizer_config.json (and config.json for the
  // BOS id when present) from a model directory, or the same from the
  // metadata of a GGUF file written by `hymba convert`.
  static Tokenizer Load(const std::filesystem::path& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options) const;
  // Special tokens are skipped; byte-fallback pieces are joined into UTF-8.
  std::string Decode(std::span<const int32_t> ids) const;

  // The text one token stands for inside decoded text, as OpenAI's logprobs
  // show it: the word-boundary mark as a space, a byte-fallback piece as its
  // single byte (possibly part of a UTF-8 character), special tokens as written.
  std::string PieceText(int32_t id) const;

  // The byte of a byte-fallback piece such as <0xF0>; nullopt for other ids.
  std::optional<uint8_t> ByteValue(int32_t id) const;

  // tokenizer_config.json's chat_template, empty when it has none.
  const std::string& chat_template() const;
  // The text of the BOS and EOS tokens, as chat templates receive them.
  std::string bos_token() const;
  std::string eos_token() const;

  int32_t bos_id() const;
  // tokenizer_config.json's add_bos_token (true when absent, as for Llama):
  // whether a plain prompt starts with BOS.
  bool add_bos_token() const;
  // Largest id the tokenizer can produce, plus one.
  int32_t vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hymba

// The GGUF metadata keys hymba.cpp writes beyond llama.cpp's common ones: the
// original JSON files, so one GGUF carries everything the HF directory did.
#pragma once

namespace hymba::gguf_keys {

inline constexpr const char* kConfig = "hymba.config_json";
inline constexpr const char* kGenerationConfig = "hymba.generation_config_json";
inline constexpr const char* kSentencePiece = "tokenizer.hymba.sentencepiece_model";
inline constexpr const char* kTokenizerConfig = "tokenizer.hymba.tokenizer_config_json";

}  // namespace hymba::gguf_keys

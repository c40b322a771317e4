// JSON from files nobody vetted (configs, safetensors headers, indexes,
// tokenizer configs, GGUF metadata): parsed with the nesting bounded, so that
// no later step (printing a value in an error, walking it) can recurse
// without limit, and optionally with duplicate keys refused.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace hymba {

constexpr int kMaxJsonDepth = 64;  // real configs nest 3 levels

enum class DuplicateKeys { kLastWins, kRefuse };

// Throws hymba::Error "where: malformed JSON: ..." or naming the depth or the
// duplicated key. Json: nlohmann::json, or nlohmann::ordered_json where key
// order matters (chat messages, which templates print).
template <typename Json = nlohmann::json>
Json ParseJson(std::string_view text, const std::string& where, DuplicateKeys duplicates = DuplicateKeys::kLastWins);
extern template nlohmann::json ParseJson(std::string_view, const std::string&, DuplicateKeys);
extern template nlohmann::ordered_json ParseJson(std::string_view, const std::string&, DuplicateKeys);

// A value as JSON text for an error message: at most about 80 characters.
std::string JsonExcerpt(const nlohmann::json& value);

}  // namespace hymba

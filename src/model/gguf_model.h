// Hymba in GGUF: the metadata keys this engine writes and checks.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "hymba/config.h"
#include "io/gguf.h"

namespace hymba {

// Opens a GGUF file and checks it holds a Hymba model.
std::unique_ptr<GgufFile> OpenModelGguf(const std::filesystem::path& path);

// The config stored in the file (hymba.config_json, with generation_config's
// EOS ids when present), checked against the typed hymba.* keys.
Config ConfigFromGguf(const GgufFile& file);

// E8: generation_config.json's eos_token_id wins over config.json's.
void ApplyGenerationConfig(Config& config, const std::string& json_text, const std::string& source);

}  // namespace hymba

// `hymba convert`: a Hugging Face Hymba directory to one GGUF v3 file holding
// the config, the tokenizer, the chat template and the weights.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>

namespace hymba {

// type: "f32", "f16", "bf16", "q8_0" or "q4_0" for the weight matrices (the
// embedding included). Norms, biases, A_log, D, the conv kernel and the meta
// tokens stay f32; a matrix whose rows are not whole 32-weight blocks (the
// dt_proj of Hymba-1.5B, 100 columns) is stored f16 in quantized files.
// The output must not exist; it appears only once complete.
// progress(done, total) is called after each tensor.
void ConvertToGguf(const std::filesystem::path& model_dir, const std::filesystem::path& output, const std::string& type,
                   const std::function<void(size_t, size_t)>& progress = {});

}  // namespace hymba

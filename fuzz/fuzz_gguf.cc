// The GGUF reader on arbitrary file contents: the generic reader, then the
// Hymba checks, the config, the tensors and the tokenizer taken from it.
#include <cstddef>
#include <cstdint>

#include "fuzz_input.h"
#include "hymba/error.h"
#include "hymba/tokenizer.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/gguf_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hymba::fuzz::ScratchDir dir;
  const auto path = dir.Write("model.gguf", hymba::fuzz::AsText(data, size));
  try {
    const hymba::GgufFile file(path, hymba::FileAccess::kMap);
    for (const hymba::GgufTensor& tensor : file.tensors()) {
      hymba::fuzz::TouchEveryPage(tensor.data.data(), tensor.data.size());
    }
    auto model_file = hymba::OpenModelGguf(path);
    hymba::ConfigFromGguf(*model_file);
    const hymba::Checkpoint checkpoint = hymba::Checkpoint::FromGguf(std::move(model_file));
    for (const auto& [name, tensor] : checkpoint.tensors()) {
      hymba::fuzz::TouchEveryPage(tensor->data.data(), tensor->data.size());
    }
    hymba::Tokenizer::Load(path);
  } catch (const hymba::Error&) {
  }
  return 0;
}

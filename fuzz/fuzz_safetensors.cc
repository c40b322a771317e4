// The safetensors reader on arbitrary file contents.
#include <cstddef>
#include <cstdint>

#include "fuzz_input.h"
#include "hymba/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hymba::fuzz::ScratchDir dir;
  const auto path = dir.Write("model.safetensors", hymba::fuzz::AsText(data, size));
  try {
    const hymba::SafetensorsFile file(path);
    for (const auto& [name, tensor] : file.tensors()) {
      hymba::fuzz::TouchEveryPage(tensor.data.data(), tensor.data.size());
    }
  } catch (const hymba::Error&) {
  }
  return 0;
}

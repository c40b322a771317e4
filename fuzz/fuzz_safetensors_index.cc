// model.safetensors.index.json on arbitrary contents, beside the three
// shards of the sharded fixture.
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "fuzz_input.h"
#include "hymba/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hymba::fuzz::ScratchDir dir;
  static const bool shards_copied = [] {
    for (const auto& entry : std::filesystem::directory_iterator(HYMBA_TEST_DATA "/fixtures/sharded_mixed")) {
      if (entry.path().extension() == ".safetensors") {
        std::filesystem::copy_file(entry.path(), dir.path() / entry.path().filename());
      }
    }
    return true;
  }();
  (void)shards_copied;
  dir.Write("model.safetensors.index.json", hymba::fuzz::AsText(data, size));
  try {
    const hymba::Checkpoint checkpoint = hymba::Checkpoint::Open(dir.path());
    for (const auto& [name, tensor] : checkpoint.tensors()) {
      hymba::fuzz::TouchEveryPage(tensor->data.data(), tensor->data.size());
    }
  } catch (const hymba::Error&) {
  }
  return 0;
}

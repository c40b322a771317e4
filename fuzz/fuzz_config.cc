// config.json validation on arbitrary text, and the memory accounting of
// `hymba info` on every config that passes (sizes multiply there).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_input.h"
#include "hymba/config.h"
#include "hymba/error.h"
#include "hymba/info.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const hymba::Config config = hymba::ParseConfig(std::string(hymba::fuzz::AsText(data, size)), "config.json");
    for (bool separate_lm_head : {false, true}) {
      const hymba::ModelReport report = hymba::DescribeModel(config, separate_lm_head, hymba::CacheType::kF16);
      report.engine.BytesAt(config, 4096, true);
    }
  } catch (const hymba::Error&) {
  }
  return 0;
}

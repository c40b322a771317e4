// The tokenizer of the real Hymba-1.5B files on arbitrary bytes: encode with
// every option, decode the result, and decode arbitrary id lists.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_input.h"
#include "hymba/error.h"
#include "hymba/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hymba::Tokenizer tokenizer = hymba::Tokenizer::Load(HYMBA_TEST_DATA "/hymba-1.5b");
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const std::string_view text = hymba::fuzz::AsText(data + 1, size - 1);
  if ((flags & 1) == 0) {
    const hymba::EncodeOptions options{.add_bos = (flags & 2) != 0, .parse_special = (flags & 4) != 0};
    const std::vector<int32_t> ids = tokenizer.Encode(text, options);
    for (int32_t id : ids) {
      if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();  // an id no model row has
    }
    tokenizer.Decode(ids);
    return 0;
  }
  std::vector<int32_t> ids(text.size() / sizeof(int32_t));
  if (!ids.empty()) std::memcpy(ids.data(), text.data(), ids.size() * sizeof(int32_t));
  try {
    tokenizer.Decode(ids);
  } catch (const hymba::Error&) {  // ids outside the vocabulary
  }
  return 0;
}

// The chat-template engine: an arbitrary template with a fixed conversation,
// and Hymba's own template with arbitrary messages (input: template, NUL,
// messages as JSON, read as every JSON document is: nesting bounded).
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "hymba/chat_template.h"
#include "hymba/error.h"
#include "io/json.h"

namespace {

nlohmann::ordered_json Context(nlohmann::ordered_json messages) {
  return {{"messages", std::move(messages)}, {"add_generation_prompt", true}, {"bos_token", "<s>"},
          {"eos_token", "</s>"}};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hymba::ChatTemplate hymba_template = [] {
    std::ifstream in(HYMBA_TEST_DATA "/hymba-1.5b/tokenizer_config.json");
    return hymba::ChatTemplate(nlohmann::json::parse(in).at("chat_template").get<std::string>());
  }();
  static const nlohmann::ordered_json conversation = Context(nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi <s> there"},
      {"role": "assistant", "content": "Hello!"},
      {"role": "user", "content": "\u00e9\u4e2d\ud83d\ude00"}])"));

  const auto parts = hymba::fuzz::SplitAtNul(hymba::fuzz::AsText(data, size), 2);
  try {
    hymba::ChatTemplate(std::string(parts[0])).Render(conversation);
  } catch (const hymba::Error&) {
  }
  try {
    hymba_template.Render(Context(hymba::ParseJson<nlohmann::ordered_json>(parts[1], "messages")));
  } catch (const hymba::Error&) {
  }
  return 0;
}

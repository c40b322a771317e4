// The server's reading of request bodies: arbitrary bytes as the body of
// POST /v1/chat/completions and /v1/completions, with the real Hymba
// tokenizer and chat template. A request is either accepted or refused with
// an ApiError (a 400 naming the field); anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_input.h"
#include "hymba/chat_template.h"
#include "hymba/error.h"
#include "hymba/tokenizer.h"
#include "io/json.h"
#include "openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hymba::Tokenizer tokenizer = hymba::Tokenizer::Load(HYMBA_TEST_DATA "/hymba-1.5b");
  static const hymba::ChatTemplate chat(tokenizer.chat_template());
  hymba::server::Body body;
  try {
    body = hymba::ParseJson<hymba::server::Body>(hymba::fuzz::AsText(data, size), "request body");
  } catch (const hymba::Error&) {
    return 0;
  }
  for (const bool chat_endpoint : {true, false}) {
    try {
      const hymba::server::ApiRequest request = chat_endpoint ? hymba::server::ParseChatRequest(body, chat, tokenizer)
                                                              : hymba::server::ParseCompletionRequest(body, tokenizer);
      if (request.completion.prompt.empty()) __builtin_trap();  // accepted requests always have a prompt
      size_t text_offset = 0;
      hymba::server::Dump(hymba::server::StreamChunk({chat_endpoint, "id", 0, "m"}, "text", {}, request, true,
                                                     hymba::FinishReason::kNone, tokenizer, text_offset));
    } catch (const hymba::server::ApiError& e) {
      if (e.status != 400) __builtin_trap();
    }
  }
  return 0;
}

// OpenAI's chat and text completion protocol: request bodies checked field by
// field into an engine request, and the response and stream-chunk objects.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hymba/chat_template.h"
#include "hymba/engine.h"
#include "hymba/tokenizer.h"

namespace hymba::server {

using Json = nlohmann::ordered_json;  // responses: keys in the order OpenAI writes them
// Request bodies: a sorted map, so that a body of many keys parses in
// n log n (ordered_json looks up every inserted key linearly).
using Body = nlohmann::json;

// A request the client got wrong, reported as OpenAI does:
// {"error": {"message", "type", "param", "code"}} with an HTTP status.
class ApiError : public std::runtime_error {
 public:
  ApiError(int http_status, const std::string& message, std::string error_type = "invalid_request_error",
           std::string error_param = "", std::string error_code = "")
      : std::runtime_error(message),
        status(http_status),
        type(std::move(error_type)),
        param(std::move(error_param)),
        code(std::move(error_code)) {}
  Json Body() const;
  int status;
  std::string type, param, code;
};

struct ApiRequest {
  CompletionRequest completion;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // chat: "logprobs": true; completions: "logprobs": N
};

// {"messages": [...]} from a request's messages, checked: roles system
// (or developer), user, assistant; content as text or a list of text parts.
Json ParseConversation(const Body& body);
// POST /v1/chat/completions: messages rendered with the model's template.
ApiRequest ParseChatRequest(const Body& body, const ChatTemplate& chat, const Tokenizer& tokenizer);
// POST /v1/completions: "prompt" as a string or a list of token ids.
ApiRequest ParseCompletionRequest(const Body& body, const Tokenizer& tokenizer);

// What every object of one response shares.
struct ResponseHeader {
  bool chat = true;
  std::string id;  // "chatcmpl-…" or "cmpl-…", the same in every chunk
  int64_t created = 0;
  std::string model;
};

Json Usage(const JobUpdate& totals);
// The finished response of a request that was not streamed.
Json FinalResponse(const ResponseHeader& header, const std::string& text, const std::vector<GeneratedToken>& tokens,
                   const ApiRequest& request, FinishReason finish, const JobUpdate& totals, const Tokenizer& tokenizer);
// One streamed chunk; `role` only in a chat's first chunk, `finish` only in
// the last. `text_offset` carries the completions logprobs' offsets across chunks.
Json StreamChunk(const ResponseHeader& header, const std::string& text, const std::vector<GeneratedToken>& tokens,
                 const ApiRequest& request, bool role, FinishReason finish, const Tokenizer& tokenizer,
                 size_t& text_offset);
// The chunk after the last one when stream_options.include_usage is set.
Json UsageChunk(const ResponseHeader& header, const JobUpdate& totals);

// Serializes without throwing on invalid UTF-8 (a token that is one byte of a
// character): such bytes become U+FFFD, as the "bytes" arrays keep the truth.
std::string Dump(const Json& json);
std::string Dump(const Body& json);

}  // namespace hymba::server

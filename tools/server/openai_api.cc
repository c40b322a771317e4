#include "openai_api.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace hymba::server {
namespace {

std::string Excerpt(const Body& value) {
  std::string text = Dump(value);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

// A present, non-null field, or nullptr.
const Body* Field(const Body& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

[[noreturn]] void Fail(const char* name, const std::string& what, const Body& value) {
  throw ApiError(400, std::string("'") + name + "' " + what + ", got " + Excerpt(value), "invalid_request_error", name);
}

std::string Bound(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

double Number(const Body& body, const char* name, double low, double high, double fallback) {
  const Body* value = Field(body, name);
  if (value == nullptr) return fallback;
  const auto range = "[" + Bound(low) + ", " + Bound(high) + "]";
  if (!value->is_number()) Fail(name, "must be a number in " + range, *value);
  const double number = value->get<double>();
  if (!(number >= low && number <= high)) Fail(name, "must be in " + range, *value);
  return number;
}

int64_t Integer(const Body& body, const char* name, int64_t low, int64_t high, int64_t fallback) {
  const Body* value = Field(body, name);
  if (value == nullptr) return fallback;
  const auto range = "[" + std::to_string(low) + ", " + std::to_string(high) + "]";
  if (!value->is_number_integer()) Fail(name, "must be an integer in " + range, *value);
  const int64_t number = value->is_number_unsigned() && value->get<uint64_t>() > uint64_t{INT64_MAX}
                             ? INT64_MAX
                             : value->get<int64_t>();
  if (number < low || number > high) Fail(name, "must be in " + range, *value);
  return number;
}

bool Boolean(const Body& body, const char* name, bool fallback) {
  const Body* value = Field(body, name);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) Fail(name, "must be true or false", *value);
  return value->get<bool>();
}

// Fields both endpoints share: lengths, sampling, stop strings, streaming.
ApiRequest ParseCommon(const Body& body, const Tokenizer& tokenizer) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object, got " + Excerpt(body));
  ApiRequest request;
  CompletionRequest& completion = request.completion;
  if (Integer(body, "n", 1, INT32_MAX, 1) != 1) {
    throw ApiError(400, "'n' must be 1: this server returns one choice per request", "invalid_request_error", "n");
  }
  for (const char* unsupported : {"tools", "functions"}) {
    if (const Body* value = Field(body, unsupported); value != nullptr && !value->empty()) {
      throw ApiError(400, std::string("'") + unsupported + "' is not supported by this server", "invalid_request_error",
                     unsupported);
    }
  }
  if (const Body* format = Field(body, "response_format")) {
    if (!format->is_object() || format->value("type", Body()) != "text") {
      throw ApiError(400, "'response_format' must be {\"type\": \"text\"}, got " + Excerpt(*format),
                     "invalid_request_error", "response_format");
    }
  }
  const int64_t max_tokens = Integer(body, "max_tokens", 0, INT32_MAX, -1);
  completion.max_tokens = static_cast<int>(Integer(body, "max_completion_tokens", 0, INT32_MAX, max_tokens));

  SamplingParams& sampling = completion.sampling;
  sampling.temperature = static_cast<float>(Number(body, "temperature", 0, 2, sampling.temperature));
  sampling.top_p = static_cast<float>(Number(body, "top_p", 0, 1, sampling.top_p));
  if (sampling.top_p == 0) Fail("top_p", "must be in (0, 1]", *Field(body, "top_p"));
  sampling.top_k = static_cast<int>(Integer(body, "top_k", 0, INT32_MAX, sampling.top_k));
  sampling.min_p = static_cast<float>(Number(body, "min_p", 0, 1, sampling.min_p));
  sampling.presence_penalty = static_cast<float>(Number(body, "presence_penalty", -2, 2, 0));
  sampling.frequency_penalty = static_cast<float>(Number(body, "frequency_penalty", -2, 2, 0));
  sampling.repeat_penalty = static_cast<float>(Number(body, "repeat_penalty", 0, 10, sampling.repeat_penalty));
  if (sampling.repeat_penalty == 0) Fail("repeat_penalty", "must be in (0, 10]", *Field(body, "repeat_penalty"));
  if (sampling.presence_penalty != 0 || sampling.frequency_penalty != 0) sampling.repeat_last_n = -1;  // OpenAI: the whole text
  if (const Body* seed = Field(body, "seed")) {
    if (!seed->is_number_integer()) Fail("seed", "must be an integer", *seed);
    // -1 draws a random seed, as in llama.cpp.
    sampling.seed = seed->get<int64_t>() == -1 ? 0xFFFFFFFF : seed->get<uint64_t>();
  }
  if (const Body* bias = Field(body, "logit_bias")) {
    if (!bias->is_object()) Fail("logit_bias", "must be an object of token ids to numbers", *bias);
    for (const auto& [key, value] : bias->items()) {
      size_t used = 0;
      int64_t id = -1;
      try {
        id = std::stoll(key, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != key.size() || id < 0 || id >= tokenizer.vocab_size()) {
        throw ApiError(400, "'logit_bias' key \"" + key.substr(0, 40) + "\" is not a token id in [0, " +
                                std::to_string(tokenizer.vocab_size() - 1) + "]",
                       "invalid_request_error", "logit_bias");
      }
      if (!value.is_number() || !(value.get<double>() >= -100 && value.get<double>() <= 100)) {
        Fail("logit_bias", "values must be numbers in [-100, 100]", value);
      }
      sampling.logit_bias[static_cast<int32_t>(id)] = value.get<float>();
    }
  }
  if (const Body* stop = Field(body, "stop")) {
    const Body list = stop->is_string() ? Body::array({*stop}) : *stop;
    if (!list.is_array() || list.size() > 16) Fail("stop", "must be a string or a list of at most 16 strings", *stop);
    for (const Body& item : list) {
      if (!item.is_string() || item.get<std::string>().empty() || item.get<std::string>().size() > 256) {
        Fail("stop", "must hold non-empty strings of at most 256 bytes", item);
      }
      completion.stop.push_back(item.get<std::string>());
    }
  }
  request.stream = Boolean(body, "stream", false);
  if (const Body* options = Field(body, "stream_options")) {
    if (!request.stream) throw ApiError(400, "'stream_options' is only allowed with \"stream\": true", "invalid_request_error", "stream_options");
    if (!options->is_object()) Fail("stream_options", "must be an object", *options);
    request.include_usage = Boolean(*options, "include_usage", false);
  }
  return request;
}

// Message content as text: a string, or a list of {"type": "text"} parts.
std::string ContentText(const Body& content, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw ApiError(400, "'" + where + "' must be a string or a list of text parts", "invalid_request_error", "messages");
  std::string text;
  for (const Body& part : content) {
    if (!part.is_object() || part.value("type", Body()) != "text" || !part.contains("text") || !part["text"].is_string()) {
      throw ApiError(400, "'" + where + "' parts must be {\"type\": \"text\", \"text\": ...}; this model reads text only, got " +
                              Excerpt(part),
                     "invalid_request_error", "messages");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

Json Bytes(const std::string& text) {
  Json bytes = Json::array();
  for (char c : text) bytes.push_back(static_cast<uint8_t>(c));
  return bytes;
}

Json ChatLogprobs(const std::vector<GeneratedToken>& tokens, const Tokenizer& tokenizer) {
  Json content = Json::array();
  for (const GeneratedToken& token : tokens) {
    const std::string text = tokenizer.PieceText(token.id);
    Json top = Json::array();
    for (const TokenLogprob& alternative : token.top) {
      const std::string alternative_text = tokenizer.PieceText(alternative.id);
      top.push_back({{"token", alternative_text}, {"logprob", alternative.logprob}, {"bytes", Bytes(alternative_text)}});
    }
    content.push_back({{"token", text}, {"logprob", token.logprob}, {"bytes", Bytes(text)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

// The legacy completions format: parallel lists, alternatives as objects.
Json CompletionLogprobs(const std::vector<GeneratedToken>& tokens, const Tokenizer& tokenizer, size_t& offset) {
  Json texts = Json::array(), logprobs = Json::array(), tops = Json::array(), offsets = Json::array();
  for (const GeneratedToken& token : tokens) {
    const std::string text = tokenizer.PieceText(token.id);
    texts.push_back(text);
    logprobs.push_back(token.logprob);
    offsets.push_back(offset);
    offset += text.size();
    Json top = Json::object();
    for (const TokenLogprob& alternative : token.top) top[tokenizer.PieceText(alternative.id)] = alternative.logprob;
    tops.push_back(top);
  }
  return {{"tokens", texts}, {"token_logprobs", logprobs}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

Json LogprobsField(const ResponseHeader& header, const std::vector<GeneratedToken>& tokens, const ApiRequest& request,
                   const Tokenizer& tokenizer, size_t& text_offset) {
  if (!request.logprobs) return nullptr;
  return header.chat ? ChatLogprobs(tokens, tokenizer) : CompletionLogprobs(tokens, tokenizer, text_offset);
}

Json FinishField(FinishReason finish) {
  if (finish == FinishReason::kNone) return nullptr;
  return FinishReasonName(finish);
}

}  // namespace

Json ApiError::Body() const {
  return {{"error",
           {{"message", what()},
            {"type", type},
            {"param", param.empty() ? Json() : Json(param)},
            {"code", code.empty() ? Json() : Json(code)}}}};
}

std::string Dump(const Json& json) { return json.dump(-1, ' ', false, Json::error_handler_t::replace); }
std::string Dump(const Body& json) { return json.dump(-1, ' ', false, Body::error_handler_t::replace); }

Json ParseConversation(const Body& body) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object, got " + Excerpt(body));
  const Body* messages = Field(body, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    throw ApiError(400, "'messages' must be a non-empty list of {\"role\", \"content\"} objects", "invalid_request_error", "messages");
  }
  Json conversation = {{"messages", Json::array()}};
  for (size_t i = 0; i < messages->size(); ++i) {
    const Body& message = (*messages)[i];
    if (!message.is_object() || !message.contains("role") || !message["role"].is_string()) {
      throw ApiError(400, "'messages[" + std::to_string(i) + "]' must be an object with a string \"role\", got " + Excerpt(message),
                     "invalid_request_error", "messages");
    }
    const std::string role = message["role"].get<std::string>();
    if (role != "system" && role != "developer" && role != "user" && role != "assistant") {
      throw ApiError(400, "'messages[" + std::to_string(i) + "].role' must be system, developer, user or assistant, got \"" +
                              role.substr(0, 40) + "\"",
                     "invalid_request_error", "messages");
    }
    conversation["messages"].push_back(
        {{"role", role == "developer" ? "system" : role}, {"content", ContentText(message.value("content", Body()), i)}});
  }
  return conversation;
}

ApiRequest ParseChatRequest(const Body& body, const ChatTemplate& chat, const Tokenizer& tokenizer) {
  ApiRequest request = ParseCommon(body, tokenizer);
  const Json conversation = ParseConversation(body);
  if (Boolean(body, "logprobs", false)) {
    request.logprobs = true;
    request.completion.top_logprobs = static_cast<int>(Integer(body, "top_logprobs", 0, 20, 0));
  } else if (Field(body, "top_logprobs") != nullptr) {
    throw ApiError(400, "'top_logprobs' needs \"logprobs\": true", "invalid_request_error", "top_logprobs");
  }
  try {
    request.completion.prompt = EncodeConversation(chat, conversation, tokenizer);
  } catch (const Error& e) {
    throw ApiError(400, std::string("the chat template could not render these messages: ") + e.what(), "invalid_request_error", "messages");
  }
  for (std::string& stop : ReplyStopStrings(chat)) request.completion.stop.push_back(std::move(stop));
  return request;
}

ApiRequest ParseCompletionRequest(const Body& body, const Tokenizer& tokenizer) {
  ApiRequest request = ParseCommon(body, tokenizer);
  request.completion.keep_leading_space = true;
  const Body* prompt = Field(body, "prompt");
  if (prompt != nullptr && prompt->is_array() && prompt->size() == 1 && ((*prompt)[0].is_string() || (*prompt)[0].is_array())) {
    prompt = &(*prompt)[0];  // a batch of one
  }
  if (prompt == nullptr) throw ApiError(400, "'prompt' is required: a string or a list of token ids", "invalid_request_error", "prompt");
  if (prompt->is_string()) {
    request.completion.prompt =
        tokenizer.Encode(prompt->get<std::string>(), {.add_bos = tokenizer.add_bos_token(), .parse_special = true});
  } else if (prompt->is_array()) {
    for (const Body& id : *prompt) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= tokenizer.vocab_size()) {
        if (id.is_string() || id.is_array()) {
          throw ApiError(400, "'prompt' holds several prompts; send one per request", "invalid_request_error", "prompt");
        }
        Fail("prompt", "token ids must be integers in [0, " + std::to_string(tokenizer.vocab_size() - 1) + "]", id);
      }
      request.completion.prompt.push_back(id.get<int32_t>());
    }
  } else {
    Fail("prompt", "must be a string or a list of token ids", *prompt);
  }
  if (request.completion.prompt.empty()) {
    throw ApiError(400, "'prompt' is empty and this tokenizer adds no BOS: nothing to continue", "invalid_request_error", "prompt");
  }
  if (Field(body, "logprobs") != nullptr) {
    request.logprobs = true;
    request.completion.top_logprobs = static_cast<int>(Integer(body, "logprobs", 0, 5, 0));
  }
  if (Boolean(body, "echo", false)) throw ApiError(400, "'echo' is not supported", "invalid_request_error", "echo");
  if (Field(body, "suffix") != nullptr) throw ApiError(400, "'suffix' is not supported", "invalid_request_error", "suffix");
  return request;
}

Json Usage(const JobUpdate& totals) {
  return {{"prompt_tokens", totals.prompt_tokens},
          {"completion_tokens", totals.completion_tokens},
          {"total_tokens", totals.prompt_tokens + totals.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", totals.cached_tokens}}}};
}

Json FinalResponse(const ResponseHeader& header, const std::string& text, const std::vector<GeneratedToken>& tokens,
                   const ApiRequest& request, FinishReason finish, const JobUpdate& totals, const Tokenizer& tokenizer) {
  Json choice = {{"index", 0}};
  if (header.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  size_t text_offset = 0;
  choice["logprobs"] = LogprobsField(header, tokens, request, tokenizer, text_offset);
  choice["finish_reason"] = FinishField(finish);
  return {{"id", header.id},
          {"object", header.chat ? "chat.completion" : "text_completion"},
          {"created", header.created},
          {"model", header.model},
          {"choices", Json::array({choice})},
          {"usage", Usage(totals)}};
}

Json StreamChunk(const ResponseHeader& header, const std::string& text, const std::vector<GeneratedToken>& tokens,
                 const ApiRequest& request, bool role, FinishReason finish, const Tokenizer& tokenizer,
                 size_t& text_offset) {
  Json choice = {{"index", 0}};
  if (header.chat) {
    Json delta = Json::object();
    if (role) delta["role"] = "assistant";
    if (role || !text.empty() || finish == FinishReason::kNone) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = tokens.empty() ? Json() : LogprobsField(header, tokens, request, tokenizer, text_offset);
  choice["finish_reason"] = FinishField(finish);
  Json chunk = {{"id", header.id},
                {"object", header.chat ? "chat.completion.chunk" : "text_completion"},
                {"created", header.created},
                {"model", header.model},
                {"choices", Json::array({choice})}};
  if (request.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

Json UsageChunk(const ResponseHeader& header, const JobUpdate& totals) {
  return {{"id", header.id},
          {"object", header.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", header.created},
          {"model", header.model},
          {"choices", Json::array()},
          {"usage", Usage(totals)}};
}

}  // namespace hymba::server

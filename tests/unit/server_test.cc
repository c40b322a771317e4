// The HTTP server in-process, through cpp-httplib's client: every endpoint,
// every error status, streaming frames, disconnects, conversation reuse.
#include "server.h"

#include <httplib.h>

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "test_util.h"

namespace hymba::server {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::ordered_json;


class RunningServer {
 public:
  explicit RunningServer(ServerOptions options) : server_([&] {
    options.port = 0;
    options.threads = 2;
    return options;
  }()) {
    server_.Start();
  }
  httplib::Client Client() const {
    httplib::Client client("127.0.0.1", server_.port());
    client.set_read_timeout(60, 0);
    return client;
  }
  int port() const { return server_.port(); }

 private:
  Server server_;
};

ServerOptions Options(const std::filesystem::path& model = test::ShippedModelDir()) {
  ServerOptions options;
  options.model_path = model.string();
  return options;
}

Json Body(const httplib::Result& result) {
  EXPECT_TRUE(result) << "no response";
  if (!result) return {};
  return Json::parse(result->body);
}

// POSTs JSON; returns the status and parsed body.
std::pair<int, Json> Post(httplib::Client& client, const std::string& path, const Json& body,
                          const httplib::Headers& headers = {}) {
  const httplib::Result result = client.Post(path, headers, body.dump(), "application/json");
  if (!result) return {-1, {}};
  return {result->status, result->body.empty() ? Json() : Json::parse(result->body)};
}

void ExpectApiError(const std::pair<int, Json>& response, int status, const std::string& fragment) {
  EXPECT_EQ(response.first, status) << response.second.dump();
  ASSERT_TRUE(response.second.contains("error")) << response.second.dump();
  const Json& error = response.second["error"];
  EXPECT_NE(error["message"].get<std::string>().find(fragment), std::string::npos) << error.dump();
  EXPECT_TRUE(error.contains("type") && error.contains("param") && error.contains("code")) << error.dump();
}

// The "data:" payloads of a server-sent event stream.
std::vector<std::string> Events(const std::string& stream) {
  std::vector<std::string> events;
  size_t start = 0;
  while (start < stream.size()) {
    const size_t end = stream.find("\n\n", start);
    EXPECT_NE(end, std::string::npos) << "unterminated frame: " << stream.substr(start);
    if (end == std::string::npos) break;
    const std::string frame = stream.substr(start, end - start);
    EXPECT_EQ(frame.rfind("data: ", 0), 0u) << frame;
    events.push_back(frame.substr(6));
    start = end + 2;
  }
  return events;
}

Json Chat(const std::string& user, int max_tokens) {
  return {{"model", "anything"}, {"messages", {{{"role", "user"}, {"content", user}}}}, {"max_tokens", max_tokens},
          {"temperature", 0}};
}

TEST(Server, CompletionsChatModelsAndHealth) {
  RunningServer server(Options());
  httplib::Client client = server.Client();
  EXPECT_EQ(Body(client.Get("/health")), Json({{"status", "ok"}}));
  const Json models = Body(client.Get("/v1/models"));
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "hymba-kjv-tiny");

  auto [status, completion] = Post(client, "/v1/completions", {{"prompt", "And God said"}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(status, 200) << completion.dump();
  EXPECT_EQ(completion["object"], "text_completion");
  EXPECT_EQ(completion["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(completion["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(completion["usage"]["completion_tokens"], 12);
  EXPECT_FALSE(completion["choices"][0]["text"].get<std::string>().empty());

  // The same prompt as token ids gives the same text.
  const Json ids = Body(client.Post("/tokenize", Json({{"content", "And God said"}, {"add_special", true}}).dump(), "application/json"))["tokens"];
  auto [id_status, by_ids] = Post(client, "/v1/completions", {{"prompt", ids}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(id_status, 200);
  EXPECT_EQ(by_ids["choices"][0]["text"], completion["choices"][0]["text"]);
  EXPECT_EQ(by_ids["usage"]["prompt_tokens_details"]["cached_tokens"], ids.size());  // saved by the first request

  auto [chat_status, chat] = Post(client, "/v1/chat/completions", Chat("Who was Moses?", 10));
  ASSERT_EQ(chat_status, 200) << chat.dump();
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat["model"], "hymba-kjv-tiny");
  EXPECT_GT(chat["usage"]["prompt_tokens"].get<int>(), 5);
}

TEST(Server, TokenizeDetokenizeApplyTemplatePropsMetrics) {
  RunningServer server(Options());
  httplib::Client client = server.Client();
  auto [status, tokens] = Post(client, "/tokenize", {{"content", "In the beginning"}, {"with_pieces", true}});
  ASSERT_EQ(status, 200);
  std::vector<int32_t> ids;
  std::string pieces;
  for (const Json& token : tokens["tokens"]) {
    ids.push_back(token["id"].get<int32_t>());
    pieces += token["piece"].get<std::string>();
  }
  EXPECT_EQ(pieces, " In the beginning");
  auto [detokenize_status, text] = Post(client, "/detokenize", {{"tokens", ids}});
  EXPECT_EQ(detokenize_status, 200);
  EXPECT_EQ(text["content"], "In the beginning");
  ExpectApiError(Post(client, "/detokenize", {{"tokens", {1, 99999}}}), 400, "token ids in [0, 1023]");

  auto [template_status, rendered] =
      Post(client, "/apply-template", {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}}});
  EXPECT_EQ(template_status, 200);
  EXPECT_EQ(rendered["prompt"], "<extra_id_0>System\nBe brief.\n\n<extra_id_1>User\nHi\n<extra_id_1>Assistant\n");

  const Json props = Body(client.Get("/props"));
  EXPECT_EQ(props["n_ctx"], 2048);
  EXPECT_EQ(props["total_slots"], 4);
  EXPECT_TRUE(props["ready"].get<bool>());

  Post(client, "/v1/completions", {{"prompt", "Jesus"}, {"max_tokens", 3}});
  const httplib::Result metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("# TYPE hymba_generated_tokens_total counter\nhymba_generated_tokens_total 3\n"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("hymba_requests_total 1\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("hymba_slots_busy 0\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("hymba_queue_length 0\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("hymba_http_responses_total{status=\"200\"}"), std::string::npos);
}

TEST(Server, StreamingFramesAsOpenAISendsThem) {
  RunningServer server(Options());
  httplib::Client client = server.Client();
  Json request = Chat("Who was Moses?", 9);
  request["stream"] = true;
  request["stream_options"] = {{"include_usage", true}};
  const httplib::Result result = client.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/event-stream");
  const std::vector<std::string> events = Events(result->body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  const Json first = Json::parse(events[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  std::string finish;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    const Json chunk = Json::parse(events[i]);
    EXPECT_EQ(chunk["id"], first["id"]);
    EXPECT_TRUE(chunk["usage"].is_null());
    const Json& choice = chunk["choices"][0];
    if (choice["delta"].contains("content")) text += choice["delta"]["content"].get<std::string>();
    if (!choice["finish_reason"].is_null()) {
      EXPECT_EQ(i + 3, events.size()) << "finish_reason before the last chunk";
      finish = choice["finish_reason"];
    }
  }
  EXPECT_EQ(finish, "length");
  const Json usage = Json::parse(events[events.size() - 2]);
  EXPECT_EQ(usage["id"], first["id"]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 9);

  // The streamed text is the text of the same request unstreamed.
  auto [status, whole] = Post(client, "/v1/chat/completions", Chat("Who was Moses?", 9));
  ASSERT_EQ(status, 200);
  EXPECT_EQ(text, whole["choices"][0]["message"]["content"]);
}

// A random model with the real 32,001-piece tokenizer draws byte-fallback
// pieces often: the chunks must carry whole characters only, so that they
// join into exactly the text of the same request unstreamed.
TEST(Server, StreamNeverSplitsACharacter) {
  RunningServer server(Options(test::FixtureDir("real_tokenizer_bf16")));
  httplib::Client client = server.Client();
  Json request = {{"prompt", "Emoji: "}, {"max_tokens", 300}, {"temperature", 2}, {"top_k", 0}, {"top_p", 1},
                  {"min_p", 0},          {"seed", 7}};
  // Favour the byte pieces <0x80>..<0xFF> (ids 131..258) so that multi-byte
  // characters, and broken ones, appear.
  Json bias = Json::object();
  for (int id = 131; id <= 258; ++id) bias[std::to_string(id)] = 6;
  request["logit_bias"] = bias;
  auto [status, whole] = Post(client, "/v1/completions", request);
  ASSERT_EQ(status, 200) << whole.dump();
  const std::string expected = whole["choices"][0]["text"];
  request["stream"] = true;
  const httplib::Result result = client.Post("/v1/completions", request.dump(), "application/json");
  ASSERT_TRUE(result);
  std::string joined;
  int chunks = 0;
  for (const std::string& event : Events(result->body)) {
    if (event == "[DONE]") continue;
    joined += Json::parse(event)["choices"][0]["text"].get<std::string>();
    ++chunks;
  }
  EXPECT_GT(chunks, 20);
  EXPECT_EQ(joined, expected);
  EXPECT_NE(expected.find("\xEF\xBF\xBD"), std::string::npos) << "no broken byte sequence was drawn: a weak test";
}

TEST(Server, SecondTurnReusesTheFirstExchange) {
  RunningServer server(Options());
  httplib::Client client = server.Client();
  Json request = Chat("Who was Moses?", 12);
  auto [status, first] = Post(client, "/v1/chat/completions", request);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  request["messages"].push_back({{"role", "assistant"}, {"content", first["choices"][0]["message"]["content"]}});
  request["messages"].push_back({{"role", "user"}, {"content", "And Aaron?"}});
  auto [second_status, second] = Post(client, "/v1/chat/completions", request);
  ASSERT_EQ(second_status, 200);
  const int cached = second["usage"]["prompt_tokens_details"]["cached_tokens"];
  // At least the first prompt; the whole first exchange when the reply
  // re-tokenizes as it was generated.
  EXPECT_GE(cached, first["usage"]["prompt_tokens"].get<int>());
  EXPECT_LT(cached, second["usage"]["prompt_tokens"].get<int>());
}

TEST(Server, ErrorsAsOpenAIReportsThem) {
  ServerOptions options = Options();
  options.engine.context = 64;
  options.max_body_bytes = 4096;
  RunningServer server(options);
  httplib::Client client = server.Client();
  const httplib::Result bad_json = client.Post("/v1/chat/completions", "{\"messages\": [", "application/json");
  ASSERT_TRUE(bad_json);
  EXPECT_EQ(bad_json->status, 400);
  EXPECT_NE(bad_json->body.find("not valid JSON"), std::string::npos);

  ExpectApiError(Post(client, "/v1/chat/completions", Json::array()), 400, "must be a JSON object");
  ExpectApiError(Post(client, "/v1/chat/completions", {{"messages", Json::array()}}), 400, "'messages' must be a non-empty list");
  ExpectApiError(Post(client, "/v1/chat/completions", {{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}), 400,
                 "'messages[0].role' must be system");
  ExpectApiError(Post(client, "/v1/chat/completions",
                      {{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", "x"}}}}}}}}),
                 400, "this model reads text only");
  Json hot = Chat("x", 1);
  hot["temperature"] = "hot";
  ExpectApiError(Post(client, "/v1/chat/completions", hot), 400, "'temperature' must be a number in [0, 2], got \"hot\"");
  Json two = Chat("x", 1);
  two["n"] = 2;
  ExpectApiError(Post(client, "/v1/chat/completions", two), 400, "'n' must be 1");
  Json bias = Chat("x", 1);
  bias["logit_bias"] = {{"99999", 1}};
  ExpectApiError(Post(client, "/v1/chat/completions", bias), 400, "'logit_bias' key \"99999\" is not a token id");
  Json top = Chat("x", 1);
  top["top_logprobs"] = 3;
  ExpectApiError(Post(client, "/v1/chat/completions", top), 400, "'top_logprobs' needs \"logprobs\": true");
  ExpectApiError(Post(client, "/v1/completions", {{"max_tokens", 1}}), 400, "'prompt' is required");
  ExpectApiError(Post(client, "/v1/completions", {{"prompt", "x"}, {"stop", std::string(300, 'a')}}), 400,
                 "'stop' must hold non-empty strings of at most 256 bytes");
  ExpectApiError(Post(client, "/v1/completions", {{"prompt", {1, -4}}}), 400, "token ids must be integers in [0, 1023], got -4");
  ExpectApiError(Post(client, "/v1/completions", {{"prompt", {"a", "b"}}}), 400, "send one per request");

  const std::pair<int, Json> overflow = Post(client, "/v1/completions", {{"prompt", std::vector<int>(80, 5)}});
  ExpectApiError(overflow, 400, "maximum context length is 64 tokens, but the prompt has 80 tokens");
  EXPECT_EQ(overflow.second["error"]["code"], "context_length_exceeded");

  const httplib::Result missing = client.Get("/v2/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(Json::parse(missing->body)["error"]["message"].get<std::string>().find("no such endpoint: GET /v2/nothing"),
            std::string::npos);

  // Many keys parse in n log n; unknown fields are ignored.
  ServerOptions roomy = Options();
  RunningServer large(roomy);
  httplib::Client large_client = large.Client();
  nlohmann::json many = {{"prompt", "x"}, {"max_tokens", 1}};  // a sorted map here too: built in n log n
  for (int i = 0; i < 100000; ++i) many["k" + std::to_string(i)] = i;
  const httplib::Result accepted = large_client.Post("/v1/completions", many.dump(), "application/json");
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->status, 200);

  const httplib::Result big = client.Post("/v1/completions", std::string(5000, ' '), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_NE(Json::parse(big->body)["error"]["message"].get<std::string>().find("exceeds 4096 bytes"), std::string::npos);
}

TEST(Server, ApiKeyAndCors) {
  ServerOptions options = Options();
  options.api_key = "sesame";
  RunningServer server(options);
  httplib::Client client = server.Client();
  EXPECT_EQ(client.Get("/health")->status, 200);  // open, for load balancers
  EXPECT_EQ(client.Get("/")->status, 200);
  ExpectApiError(Post(client, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}), 401, "invalid or missing API key");
  ExpectApiError(Post(client, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}, {{"Authorization", "Bearer sesamE"}}), 401,
                 "API key");
  EXPECT_EQ(client.Get("/v1/models", {{"Authorization", "Bearer sesam"}})->status, 401);
  EXPECT_EQ(client.Get("/metrics")->status, 401);
  EXPECT_EQ(Post(client, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}, {{"Authorization", "Bearer sesame"}}).first, 200);
  EXPECT_FALSE(client.Get("/health")->has_header("Access-Control-Allow-Origin"));  // CORS off by default

  ServerOptions cors = Options();
  cors.cors_origin = "https://example.org";
  RunningServer open(cors);
  httplib::Client cors_client = open.Client();
  const httplib::Result preflight = cors_client.Options(
      "/v1/chat/completions", {{"Access-Control-Request-Headers", "authorization, content-type, x-stainless-os"}});
  ASSERT_TRUE(preflight);
  EXPECT_EQ(preflight->status, 204);
  EXPECT_EQ(preflight->get_header_value("Access-Control-Allow-Origin"), "https://example.org");
  EXPECT_EQ(preflight->get_header_value("Access-Control-Allow-Headers"), "authorization, content-type, x-stainless-os");
  EXPECT_EQ(cors_client.Get("/v1/models")->get_header_value("Access-Control-Allow-Origin"), "https://example.org");
}

TEST(Server, HealthIs503WhileTheModelLoads) {
  std::promise<int> port;
  std::promise<void> checked;
  ServerOptions options = Options();
  options.port = 0;
  std::unique_ptr<Server> server;
  options.on_listening = [&] {
    port.set_value(server->port());
    checked.get_future().wait();
  };
  server = std::make_unique<Server>(options);
  std::thread start([&] { server->Start(); });
  httplib::Client client("127.0.0.1", port.get_future().get());
  const httplib::Result loading = client.Get("/health");
  ASSERT_TRUE(loading);
  EXPECT_EQ(loading->status, 503);
  EXPECT_EQ(Json::parse(loading->body)["error"]["code"], "model_loading");
  EXPECT_EQ(Post(client, "/v1/completions", {{"prompt", "x"}}).first, 503);
  checked.set_value();
  start.join();
  EXPECT_EQ(client.Get("/health")->status, 200);
}

// A full queue answers 503; a client that goes away frees its slot.
TEST(Server, FullQueueAndDisconnectedClients) {
  ServerOptions options = Options();
  options.engine.slots = 1;
  options.engine.max_queued = 0;
  RunningServer server(options);
  const Json endless = {{"prompt", "And"}, {"logit_bias", {{"2", -100}}}, {"stream", true}};  // never EOS

  std::atomic<bool> hang_up{false};
  std::thread streaming([&] {
    httplib::Client client = server.Client();
    httplib::Request request;
    request.method = "POST";
    request.path = "/v1/completions";
    request.body = endless.dump();
    request.set_header("Content-Type", "application/json");
    // A receiver that stops reading when told: the client hangs up.
    request.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return !hang_up; };
    client.send(request);
  });
  httplib::Client client = server.Client();
  auto metric = [&](const std::string& name) {
    const std::string text = client.Get("/metrics")->body;
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + name.size() + 2));
  };
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (metric("hymba_slots_busy") != 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  ExpectApiError(Post(client, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}), 503, "the server is busy");
  hang_up = true;
  streaming.join();
  while (metric("hymba_requests_cancelled_total") != 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(metric("hymba_requests_cancelled_total"), 1);
  EXPECT_EQ(metric("hymba_slots_busy"), 0);
  EXPECT_EQ(metric("hymba_requests_refused_total"), 1);
  EXPECT_EQ(Post(client, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}).first, 200);  // the slot is free
}

TEST(Server, BadModelAndPortAreErrors) {
  ServerOptions options = Options("/nonexistent/model");
  options.port = 0;
  Server server(options);
  test::ExpectError([&] { server.Start(); }, {"/nonexistent/model"});
  RunningServer running(Options());
  ServerOptions clash = Options();
  clash.port = running.port();
  Server second(clash);
  test::ExpectError([&] { second.Start(); }, {"cannot listen on 127.0.0.1:" + std::to_string(running.port())});
  ServerOptions negative = Options();
  negative.engine.max_queued = -100;
  test::ExpectError([&] { Server(negative).Start(); }, {"--max-queue must be in [0, 4096], got -100"});
}

TEST(Server, ChatPageIsServed) {
  RunningServer server(Options());
  const httplib::Result page = server.Client().Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("/v1/chat/completions"), std::string::npos);
}

}  // namespace
}  // namespace hymba::server

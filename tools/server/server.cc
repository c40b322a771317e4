#include "server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "connection.h"
#include "hymba/chat_template.h"
#include "hymba/error.h"
#include "hymba/tokenizer.h"
#include "io/json.h"
#include "openai_api.h"

namespace hymba::server {

extern const char kChatPage[];  // chat_page.html, compiled in (chat_page.cc.in)

namespace {

using namespace std::chrono_literals;

constexpr auto kPollInterval = 50ms;  // how often a waiting handler checks its client

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

bool SameSecret(const std::string& given, const std::string& expected) {
  // Compares every byte whatever the first difference, so the time taken does
  // not reveal how much of a guessed key was right.
  unsigned char difference = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) difference |= static_cast<unsigned char>(given[i] ^ expected[i % std::max<size_t>(expected.size(), 1)]);
  return difference == 0;
}

std::string RandomSuffix() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string suffix(24, ' ');
  for (char& c : suffix) c = kAlphabet[generator() % (sizeof kAlphabet - 1)];
  return suffix;
}

int64_t UnixTime() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string ModelId(const ServerOptions& options) {
  if (!options.alias.empty()) return options.alias;
  std::filesystem::path path = std::filesystem::path(options.model_path).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  return path.filename().string();
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  std::string model_id;
  int64_t started = UnixTime();
  httplib::Server http;
  std::thread listener;
  std::atomic<bool> listen_returned{false};
  int port = -1;

  std::atomic<bool> ready{false};
  std::optional<Model> model;
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat;
  std::unique_ptr<Engine> engine;

  // Completion handlers still answering: Stop() lets them end their responses
  // (a cancelled stream still sends its error event and [DONE]) before the
  // HTTP server stops writing.
  std::atomic<int> active_completions{0};

  std::mutex status_mutex;
  std::map<int, int64_t> responses_by_status;

  explicit Impl(ServerOptions server_options) : options(std::move(server_options)), model_id(ModelId(options)) {}

  void RequireReady() const {
    if (!ready) throw ApiError(503, "the model is loading", "unavailable_error", "", "model_loading");
  }

  static Body ParseBody(const httplib::Request& req) {
    try {
      return ParseJson<Body>(req.body, "request body");
    } catch (const Error& e) {
      throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
    }
  }

  // Runs a handler, answering errors as OpenAI does.
  httplib::Server::Handler Guard(std::function<void(const httplib::Request&, httplib::Response&)> handler) {
    return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const ApiError& e) {
        SendJson(res, e.status, e.Body());
      } catch (const Error& e) {
        SendJson(res, 400, ApiError(400, e.what()).Body());
      } catch (const std::exception& e) {
        SendJson(res, 500, ApiError(500, std::string("internal error: ") + e.what(), "server_error").Body());
      }
    };
  }

  void Routes();
  void Complete(const httplib::Request& req, httplib::Response& res, bool chat_endpoint);
  // One call of a stream's content provider: waits up to kPollInterval for
  // the job and sends what arrived; false ends the response.
  bool Stream(Job& job, const PeerProbe& probe, const ResponseHeader& header, const ApiRequest& request, bool& first,
              size_t& text_offset, httplib::DataSink& sink);
  std::string Metrics();
  Json Props() const;
};

void Server::Impl::Complete(const httplib::Request& req, httplib::Response& res, bool chat_endpoint) {
  RequireReady();
  const Body body = ParseBody(req);
  if (chat_endpoint && !chat) {
    throw ApiError(400, "this model has no chat template; use /v1/completions", "invalid_request_error", "messages");
  }
  const ApiRequest request = chat_endpoint ? ParseChatRequest(body, *chat, *tokenizer) : ParseCompletionRequest(body, *tokenizer);
  std::shared_ptr<Job> job;
  try {
    job = engine->Submit(request.completion);
  } catch (const ContextError& e) {
    throw ApiError(400,
                   "this model's maximum context length is " + std::to_string(e.context_tokens) +
                       " tokens, but the prompt has " + std::to_string(e.prompt_tokens) + " tokens",
                   "invalid_request_error", chat_endpoint ? "messages" : "prompt", "context_length_exceeded");
  }
  if (job == nullptr) {
    throw ApiError(503,
                   "the server is busy: " + std::to_string(engine->options().slots) + " requests are running and " +
                       std::to_string(engine->options().max_queued) + " waiting; retry later",
                   "unavailable_error", "", "queue_full");
  }
  const ResponseHeader header{chat_endpoint, (chat_endpoint ? "chatcmpl-" : "cmpl-") + RandomSuffix(), UnixTime(), model_id};
  auto probe = std::make_shared<PeerProbe>(req.remote_addr, req.remote_port, req.local_port);
  // Held while this request answers: by the handler, or by the stream's provider.
  struct Answering {
    explicit Answering(std::atomic<int>& counter) : count(counter) { ++count; }
    ~Answering() { --count; }
    std::atomic<int>& count;
  };
  auto active = std::make_shared<Answering>(active_completions);

  if (!request.stream) {
    std::string text;
    std::vector<GeneratedToken> tokens;
    JobUpdate update;
    do {
      update = job->Wait(kPollInterval);
      text += update.text;
      tokens.insert(tokens.end(), update.tokens.begin(), update.tokens.end());
      if (update.finish == FinishReason::kNone && probe->Closed()) {
        job->Cancel();
        res.status = 499;  // nobody to answer; counted as nginx counts a client that left
        return;
      }
    } while (update.finish == FinishReason::kNone);
    if (update.finish == FinishReason::kError) throw ApiError(500, "generation failed: " + update.error, "server_error");
    if (update.finish == FinishReason::kCancelled) throw ApiError(503, "the server is shutting down", "unavailable_error");
    SendJson(res, 200, FinalResponse(header, text, tokens, request, update.finish, update, *tokenizer));
    return;
  }

  // Server-sent events: a chat's first chunk names the role, every chunk has
  // the response's id, the last has finish_reason, then usage if asked, then
  // [DONE]. Text arrives only in whole UTF-8 characters (TextStream).
  struct StreamState {
    bool first = true;
    size_t text_offset = 0;
  };
  auto state = std::make_shared<StreamState>();
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, probe, state, active, header, request](size_t, httplib::DataSink& sink) {
        try {
          return Stream(*job, *probe, header, request, state->first, state->text_offset, sink);
        } catch (const std::exception&) {  // httplib does not catch exceptions from a provider
          job->Cancel();
          return false;
        }
      },
      [job](bool) { job->Cancel(); });  // a no-op once the job has finished
}

bool Server::Impl::Stream(Job& job, const PeerProbe& probe, const ResponseHeader& header, const ApiRequest& request,
                          bool& first, size_t& text_offset, httplib::DataSink& sink) {
        auto send = [&](const Json& event) {
          const std::string frame = "data: " + Dump(event) + "\n\n";
          return sink.write(frame.data(), frame.size());
        };
        bool ok = true;
        if (first && header.chat) {
          ok = send(StreamChunk(header, "", {}, request, true, FinishReason::kNone, *tokenizer, text_offset));
        }
        first = false;
        const JobUpdate update = job.Wait(kPollInterval);
        if (ok && (!update.text.empty() || !update.tokens.empty())) {
          ok = send(StreamChunk(header, update.text, update.tokens, request, false, FinishReason::kNone, *tokenizer,
                                text_offset));
        }
        if (ok && update.finish != FinishReason::kNone) {
          if (update.finish == FinishReason::kStop || update.finish == FinishReason::kLength) {
            ok = send(StreamChunk(header, "", {}, request, false, update.finish, *tokenizer, text_offset));
            if (ok && request.include_usage) ok = send(UsageChunk(header, update));
          } else {
            const ApiError error = update.finish == FinishReason::kError
                                       ? ApiError(500, "generation failed: " + update.error, "server_error")
                                       : ApiError(503, "the server is shutting down", "unavailable_error");
            ok = send(error.Body());
          }
          static constexpr std::string_view kDone = "data: [DONE]\n\n";
          if (ok) ok = sink.write(kDone.data(), kDone.size());
          if (ok) sink.done();
          return ok;
        }
        if (!ok || probe.Closed()) {
          job.Cancel();
          return false;
        }
        return true;
}


std::string Server::Impl::Metrics() {
  std::string text;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    text += std::string("# HELP hymba_") + name + " " + help + "\n# TYPE hymba_" + name + " " + type + "\nhymba_" + name +
            " " + std::to_string(value) + "\n";
  };
  const EngineMetrics m = ready ? engine->metrics() : EngineMetrics{};
  metric("requests_total", "counter", "Requests that finished (stop or length).", m.requests_finished);
  metric("requests_cancelled_total", "counter", "Requests cancelled (client gone) or failed.", m.requests_cancelled);
  metric("requests_refused_total", "counter", "Requests refused because the queue was full.", m.requests_refused);
  metric("prompt_tokens_total", "counter", "Prompt tokens of finished requests.", m.prompt_tokens);
  metric("prompt_tokens_processed_total", "counter", "Prompt tokens fed to the model (cached ones are not).",
         m.prompt_tokens_processed);
  metric("cached_tokens_total", "counter", "Prompt tokens continued from saved states.", m.cached_tokens);
  metric("generated_tokens_total", "counter", "Tokens generated.", m.generated_tokens);
  metric("steps_total", "counter", "Batched model steps.", m.steps);
  metric("busy_seconds_total", "counter", "Seconds spent in model steps.", m.busy_seconds);
  metric("slots", "gauge", "Sequences that can run together (--parallel).", ready ? engine->options().slots : 0);
  metric("slots_busy", "gauge", "Sequences running now.", m.busy_slots);
  metric("queue_length", "gauge", "Requests waiting for a slot.", m.queued);
  metric("saved_states", "gauge", "Sequence states kept for conversation reuse.", m.cache_entries);
  metric("saved_state_bytes", "gauge", "Bytes of those states.", m.cache_bytes);
  text += "# HELP hymba_http_responses_total HTTP responses by status.\n# TYPE hymba_http_responses_total counter\n";
  std::lock_guard lock(status_mutex);
  for (const auto& [status, count] : responses_by_status) {
    text += "hymba_http_responses_total{status=\"" + std::to_string(status) + "\"} " + std::to_string(count) + "\n";
  }
  return text;
}

Json Server::Impl::Props() const {
  const SamplingParams defaults;
  Json props = {{"model", model_id},
                {"model_path", options.model_path},
                {"ready", ready.load()},
                {"total_slots", options.engine.slots},
                {"max_queued", options.engine.max_queued},
                {"prefill_chunk", options.engine.prefill_chunk},
                {"saved_state_budget_bytes", options.engine.cache_bytes},
                {"default_generation_settings",
                 {{"temperature", defaults.temperature},
                  {"top_k", defaults.top_k},
                  {"top_p", defaults.top_p},
                  {"min_p", defaults.min_p},
                  {"repeat_penalty", defaults.repeat_penalty},
                  {"max_tokens", -1}}}};
  if (ready) {
    props["n_ctx"] = engine->context();
    props["type"] = model->type_label();
    props["threads"] = model->threads();
    props["chat_template"] = tokenizer->chat_template();
    props["bos_token"] = tokenizer->bos_token();
    props["eos_token"] = tokenizer->eos_token();
  }
  return props;
}

void Server::Impl::Routes() {
  http.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(kChatPage, "text/html; charset=utf-8"); });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (ready) {
      SendJson(res, 200, {{"status", "ok"}});
    } else {
      SendJson(res, 503, ApiError(503, "the model is loading", "unavailable_error", "", "model_loading").Body());
    }
  });
  http.Get("/v1/models", Guard([this](const httplib::Request&, httplib::Response& res) {
    Json entry = {{"id", model_id}, {"object", "model"}, {"created", started}, {"owned_by", "hymba.cpp"}};
    if (ready) entry["meta"] = {{"type", model->type_label()}, {"n_ctx", engine->context()}, {"vocab_size", model->config().vocab_size}};
    SendJson(res, 200, {{"object", "list"}, {"data", Json::array({entry})}});
  }));
  http.Post("/v1/chat/completions",
            Guard([this](const httplib::Request& req, httplib::Response& res) { Complete(req, res, true); }));
  http.Post("/v1/completions",
            Guard([this](const httplib::Request& req, httplib::Response& res) { Complete(req, res, false); }));
  http.Post("/tokenize", Guard([this](const httplib::Request& req, httplib::Response& res) {
    RequireReady();
    const Body body = ParseBody(req);
    if (!body.is_object() || !body.contains("content") || !body["content"].is_string()) {
      throw ApiError(400, "'content' must be a string", "invalid_request_error", "content");
    }
    auto flag = [&](const char* name) {
      if (!body.contains(name)) return false;
      if (!body[name].is_boolean()) throw ApiError(400, std::string("'") + name + "' must be true or false", "invalid_request_error", name);
      return body[name].get<bool>();
    };
    const std::vector<int32_t> ids =
        tokenizer->Encode(body["content"].get<std::string>(), {.add_bos = flag("add_special"), .parse_special = true});
    Json tokens = Json::array();
    const bool with_pieces = flag("with_pieces");
    for (int32_t id : ids) {
      if (with_pieces) {
        tokens.push_back({{"id", id}, {"piece", tokenizer->PieceText(id)}});
      } else {
        tokens.push_back(id);
      }
    }
    SendJson(res, 200, {{"tokens", tokens}});
  }));
  http.Post("/detokenize", Guard([this](const httplib::Request& req, httplib::Response& res) {
    RequireReady();
    const Body body = ParseBody(req);
    if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array()) {
      throw ApiError(400, "'tokens' must be a list of token ids", "invalid_request_error", "tokens");
    }
    std::vector<int32_t> ids;
    for (const Body& id : body["tokens"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= tokenizer->vocab_size()) {
        throw ApiError(400, "'tokens' must hold token ids in [0, " + std::to_string(tokenizer->vocab_size() - 1) + "], got " + Dump(id),
                       "invalid_request_error", "tokens");
      }
      ids.push_back(id.get<int32_t>());
    }
    SendJson(res, 200, {{"content", tokenizer->Decode(ids)}});
  }));
  http.Post("/apply-template", Guard([this](const httplib::Request& req, httplib::Response& res) {
    RequireReady();
    if (!chat) throw ApiError(400, "this model has no chat template", "invalid_request_error", "messages");
    const Json conversation = ParseConversation(ParseBody(req));
    try {
      SendJson(res, 200, {{"prompt", RenderConversation(*chat, conversation, true, *tokenizer)}});
    } catch (const Error& e) {
      throw ApiError(400, std::string("the chat template could not render these messages: ") + e.what(), "invalid_request_error", "messages");
    }
  }));
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(Metrics(), "text/plain; version=0.0.4");
  });
  http.Get("/props", Guard([this](const httplib::Request&, httplib::Response& res) { SendJson(res, 200, Props()); }));
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() { Stop(); }

int Server::port() const { return impl_->port; }

void Server::Start() {
  Impl& s = *impl_;
  const ServerOptions& options = s.options;
  if (options.port < 0 || options.port > 65535) throw Error("--port must be in [0, 65535], got " + std::to_string(options.port));
  if (options.engine.slots < 1 || options.engine.slots > 256) {
    throw Error("--parallel must be in [1, 256], got " + std::to_string(options.engine.slots));
  }
  if (options.engine.max_queued < 0 || options.engine.max_queued > 4096) {
    throw Error("--max-queue must be in [0, 4096], got " + std::to_string(options.engine.max_queued));
  }
  // Enough handler threads for every slot and every queued request, plus
  // idle keep-alive connections and the cheap endpoints.
  const size_t handler_threads = static_cast<size_t>(options.engine.slots + options.engine.max_queued) + 16;
  s.http.new_task_queue = [handler_threads] { return new httplib::ThreadPool(handler_threads); };  // httplib takes ownership
  s.http.set_payload_max_length(options.max_body_bytes);
  // httplib's default also sets SO_REUSEPORT, which would let a second server
  // share a port that is in use instead of failing. TCP_NODELAY, which
  // accepted connections inherit, sends each streamed token at once instead
  // of waiting up to 40 ms for the client to acknowledge the previous one.
  s.http.set_socket_options([](int socket) {
    const int yes = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  });
  s.http.set_keep_alive_max_count(1000);

  s.http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const Impl& impl = *impl_;
    if (req.method == "OPTIONS" || impl.options.api_key.empty() || req.path == "/" || req.path == "/health") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    if (!SameSecret(req.get_header_value("Authorization"), "Bearer " + impl.options.api_key)) {
      SendJson(res, 401, ApiError(401, "invalid or missing API key: send \"Authorization: Bearer KEY\"",
                                  "invalid_request_error", "", "invalid_api_key")
                             .Body());
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  if (!options.cors_origin.empty()) {
    s.http.Options(".*", [](const httplib::Request& req, httplib::Response& res) {
      res.status = 204;
      // Clients send headers of their own (the openai package sends X-Stainless-*).
      if (req.has_header("Access-Control-Request-Headers")) {
        res.set_header("Access-Control-Allow-Headers", req.get_header_value("Access-Control-Request-Headers"));
      }
    });
  }
  s.http.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
    if (impl_->options.cors_origin.empty()) return;
    res.set_header("Access-Control-Allow-Origin", impl_->options.cors_origin);
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    if (!res.has_header("Access-Control-Allow-Headers")) {
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
    }
  });
  s.http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || res.is_chunked_content_provider_) return;
    std::string message = "error " + std::to_string(res.status);
    if (res.status == 404) message = "no such endpoint: " + req.method + " " + req.path;
    if (res.status == 413) message = "the request body exceeds " + std::to_string(impl_->options.max_body_bytes) + " bytes";
    if (res.status == 400) message = "malformed HTTP request";
    SendJson(res, res.status, ApiError(res.status, message, res.status == 404 ? "not_found_error" : "invalid_request_error").Body());
  });
  s.http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    std::lock_guard lock(impl_->status_mutex);
    ++impl_->responses_by_status[res.status];
    std::fprintf(stderr, "hymba serve: %s %s %d\n", req.method.c_str(), req.path.c_str(), res.status);
  });
  s.Routes();

  s.port = options.port == 0 ? s.http.bind_to_any_port(options.host) : (s.http.bind_to_port(options.host, options.port) ? options.port : -1);
  if (s.port < 0) {
    throw Error("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                ": the port is in use or the address is not one of this machine's");
  }
  s.listener = std::thread([&s] {
    s.http.listen_after_bind();
    s.listen_returned = true;
  });
  // httplib's stop() is lost if it comes before the accept loop has started.
  while (!s.http.is_running() && !s.listen_returned) std::this_thread::sleep_for(1ms);
  std::fprintf(stderr, "hymba serve: listening on http://%s:%d, loading %s\n", options.host.c_str(), s.port,
               options.model_path.c_str());
  try {
    if (options.on_listening) options.on_listening();
    if (options.threads < 0) throw Error("-t: " + std::to_string(options.threads) + " threads");
    s.model.emplace(Model::Load(options.model_path, static_cast<size_t>(options.threads), options.numerics));
    s.tokenizer.emplace(Tokenizer::Load(options.model_path));
    if (!s.tokenizer->chat_template().empty()) s.chat.emplace(s.tokenizer->chat_template());
    s.engine = std::make_unique<Engine>(*s.model, *s.tokenizer, options.engine);
  } catch (...) {
    Stop();
    throw;
  }
  s.ready = true;
  std::fprintf(stderr, "hymba serve: ready: %s (%s), %d slots, context %lld tokens\n", s.model_id.c_str(),
               s.model->type_label().c_str(), options.engine.slots, static_cast<long long>(s.engine->context()));
}

void Server::Stop() {
  Impl& s = *impl_;
  if (s.engine) s.engine->Shutdown();  // running handlers see their jobs cancelled and return
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (s.active_completions > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  if (s.listener.joinable()) {
    s.http.stop();
    s.listener.join();
  }
}

}  // namespace hymba::server

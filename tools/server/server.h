// `hymba serve`: an OpenAI-compatible HTTP server over the batching engine.
//
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
// GET /health, POST /tokenize, /detokenize, /apply-template, GET /metrics
// (Prometheus), GET /props, and a chat page at /.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "hymba/engine.h"
#include "hymba/model.h"

namespace hymba::server {

struct ServerOptions {
  std::string model_path;
  std::string alias;  // the model id clients see; default: the file or directory name
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see Server::port())
  int threads = 0;  // compute threads, 0: one per core
  Numerics numerics{};
  EngineOptions engine{};
  std::string api_key;      // empty: no key needed
  std::string cors_origin;  // empty: no CORS headers
  size_t max_body_bytes = 8 << 20;
  // Called once the port is open and before the model loads (tests use it to
  // see /health answer 503 while loading).
  std::function<void()> on_listening;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();  // stops serving
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Opens the port, then loads the model while /health answers 503. Returns
  // once the model is loaded and requests are served; throws hymba::Error when
  // the port cannot be opened or the model cannot be loaded.
  void Start();
  int port() const;  // the bound port
  // Stops accepting, cancels running requests and joins the threads.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hymba::server

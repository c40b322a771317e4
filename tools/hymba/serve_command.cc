// hymba serve: the OpenAI-compatible server (tools/server/) until SIGINT or SIGTERM.
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "commands.h"
#include "server.h"

namespace hymba::cli {

void AddServeCommand(CLI::App& app, ServeFlags& flags) {
  CLI::App* serve = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  flags.command = serve;
  server::ServerOptions& options = flags.options;
  serve->add_option("-m,--model", options.model_path, "Hugging Face model directory or GGUF file")->required();
  serve->add_option("--host", options.host, "Address to listen on")->capture_default_str();
  serve->add_option("--port", options.port, "Port to listen on; 0 picks a free one")->capture_default_str();
  serve->add_option("--np,--parallel", options.engine.slots, "Requests that generate together")->capture_default_str();
  serve->add_option("-c,--ctx", options.engine.context,
                    "Tokens per request, prompt and reply; 0 = all that max_position_embeddings allows")
      ->capture_default_str();
  serve->add_option("--max-queue", options.engine.max_queued, "Requests that may wait for a slot; more get 503")
      ->capture_default_str();
  serve->add_option("--prefill-chunk", options.engine.prefill_chunk,
                    "Prompt tokens processed per step, shared with the running replies")
      ->capture_default_str();
  serve->add_option("--cache-mib", flags.cache_mib, "MiB of saved sequence states kept for conversation reuse")
      ->capture_default_str();
  serve->add_option("--api-key", options.api_key, "Require \"Authorization: Bearer KEY\" (all but / and /health)");
  serve->add_option("--cors", options.cors_origin, "Send CORS headers allowing this origin (e.g. \"*\"); off by default");
  serve->add_option("--alias", options.alias, "Model id shown to clients; default: the model's file or directory name");
  serve->add_option("--max-body", options.max_body_bytes, "Largest request body in bytes; larger ones get 413")
      ->capture_default_str();
  serve->add_option("-t,--threads", options.threads, "Compute threads; 0 = one per core")->capture_default_str();
  AddNumericsOptions(serve, options.numerics);
}

void RunServe(const ServeFlags& flags) {
  server::ServerOptions options = flags.options;
  if (flags.cache_mib < 0 || flags.cache_mib > (int64_t{1} << 30)) {
    throw Error("--cache-mib must be in [0, 2^30], got " + std::to_string(flags.cache_mib));
  }
  options.engine.cache_bytes = flags.cache_mib << 20;
  // Every thread started from here on inherits the blocked signals, so only
  // sigwait below receives them; SIGUSR1 says that loading failed.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  server::Server server(options);
  std::atomic<bool> started{false};
  std::exception_ptr failure;
  const pthread_t main_thread = pthread_self();
  std::thread starter([&] {
    try {
      server.Start();
      started = true;
    } catch (...) {
      failure = std::current_exception();
      pthread_kill(main_thread, SIGUSR1);
    }
  });
  int received = 0;
  sigwait(&signals, &received);
  if (received == SIGUSR1) {
    starter.join();
    std::rethrow_exception(failure);
  }
  if (!started) {
    // The model is still loading and cannot be interrupted: nothing was
    // written, so leaving at once loses nothing.
    std::fprintf(stderr, "hymba serve: %s while loading\n", received == SIGINT ? "interrupted" : "terminated");
    std::_Exit(128 + received);
  }
  starter.join();
  std::fprintf(stderr, "hymba serve: %s, stopping\n", received == SIGINT ? "interrupted" : "terminated");
  server.Stop();
}

}  // namespace hymba::cli

// Serving many requests on one model: continuous batching with chunked
// prefill, and reuse of saved sequence states across requests.
//
// One engine thread runs steps. In each step every running sequence that is
// generating feeds its last sampled token, and sequences still reading their
// prompt feed their next chunk of it, all in one Model::AppendBatch, so every
// weight is read once per step for all of them. Requests wait in a queue for a
// free slot and join between steps. The logits of a sequence do not depend on
// what else is in the batch or on where its prompt was cut into chunks (the
// kernels compute rows independently; tests/unit/sequence_test.cc), so a
// request gives the same tokens, for a given seed, however busy the engine is.
//
// Conversation reuse: after a request's prompt and again after its reply, the
// sequence state (SSM, conv and K/V) is kept in a cache keyed by the tokens it
// was fed. A later prompt that starts with such a key continues from a copy of
// that state instead of re-reading the shared part, as a multi-turn chat does.
// Hymba's SSM state cannot be rolled back, so only an exact prefix helps; the
// cache keeps the least recently used states within a byte budget.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "hymba/error.h"
#include "hymba/generate.h"
#include "hymba/model.h"
#include "hymba/sampling.h"
#include "hymba/tokenizer.h"

namespace hymba {

struct EngineOptions {
  int slots = 4;           // sequences that advance together (--parallel)
  int max_queued = 64;     // requests waiting for a slot (at most 4096); more are refused
  int prefill_chunk = 256; // prompt tokens a sequence feeds per step
  // Text tokens per request, prompt and reply together (the meta tokens come
  // on top); 0: as many as max_position_embeddings leaves.
  int64_t context = 0;
  int64_t cache_bytes = int64_t{1} << 30;  // saved states kept for reuse
};

struct CompletionRequest {
  std::vector<int32_t> prompt;
  int max_tokens = -1;  // -1: until EOS, a stop string or the context limit
  std::vector<std::string> stop;
  SamplingParams sampling;
  int top_logprobs = -1;  // -1: no log-probabilities; 0..20: the chosen token's and this many alternatives
  bool keep_leading_space = false;  // the text continues the prompt's (completions); see TextStream
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;  // log-softmax of the model's logits over DrawableIds(), before any sampling setting
};

struct GeneratedToken {
  int32_t id = 0;
  float logprob = 0;
  std::vector<TokenLogprob> top;  // the most likely tokens, most likely first
};

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* FinishReasonName(FinishReason reason);  // "", "stop", "length", "cancelled", "error"

// What a request has produced since the consumer last looked.
struct JobUpdate {
  std::string text;                     // text that became final (UTF-8 never split)
  std::vector<GeneratedToken> tokens;   // tokens generated since the last update
  FinishReason finish = FinishReason::kNone;
  std::string error;                    // when finish is kError
  int prompt_tokens = 0;
  int cached_tokens = 0;                // prompt tokens continued from a saved state
  int completion_tokens = 0;
};

// A submitted request. The engine thread fills it; one consumer reads it.
class Job {
 public:
  // Waits up to `timeout` for something new; returns what arrived (empty text
  // and tokens, finish kNone, when nothing did).
  JobUpdate Wait(std::chrono::milliseconds timeout);
  // Stops the request; its slot is freed before the next step.
  void Cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Engine;
  void Publish(const std::string& text, std::vector<GeneratedToken> tokens, FinishReason finish,
               const std::string& error = "");

  CompletionRequest request_;
  std::chrono::steady_clock::time_point submitted_;
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
  JobUpdate pending_;  // accumulated since the last Wait
  bool finished_ = false;
  int prompt_tokens_ = 0, cached_tokens_ = 0, completion_tokens_ = 0;
};

struct EngineMetrics {
  int64_t requests_finished = 0;
  int64_t requests_cancelled = 0;
  int64_t requests_refused = 0;  // queue full
  int64_t prompt_tokens = 0;     // prompt tokens of finished requests
  int64_t prompt_tokens_processed = 0;  // fed to the model (prompt tokens minus cached ones)
  int64_t cached_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t steps = 0;
  double busy_seconds = 0;       // time spent in model steps
  int busy_slots = 0;
  int queued = 0;
  int64_t cache_entries = 0;
  int64_t cache_bytes = 0;
};

class Engine {
 public:
  // The model and tokenizer must outlive the engine. Throws hymba::Error on
  // options out of range.
  Engine(const Model& model, const Tokenizer& tokenizer, EngineOptions options);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();  // Shutdown()

  // Cancels every queued and running request and stops the engine thread;
  // later submissions are refused. Idempotent.
  void Shutdown();

  // Text tokens a request may use, prompt and reply.
  int64_t context() const { return context_; }
  const EngineOptions& options() const { return options_; }

  // Queues a request. Throws hymba::Error when the prompt is empty, holds an
  // id outside the vocabulary, or does not fit the context (ContextError), or
  // when the sampling settings are invalid; returns nullptr when the queue is
  // full.
  std::shared_ptr<Job> Submit(CompletionRequest request);

  EngineMetrics metrics() const;

 private:
  struct Slot;
  void Loop();
  // Removes queued requests whose client has gone (mutex_ held).
  void DropCancelledQueued();
  // Gives a queued request a slot, from the longest saved prefix of its prompt.
  void Join(const std::shared_ptr<Job>& job);
  void Step();
  void RemoveFinishedSlots();  // those Finish() emptied
  // Draws the slot's next token from `logits` and publishes it, or finishes
  // (with kError when sampling or decoding throws).
  void Sample(Slot& slot, std::span<const float> logits);
  void SampleOrFinish(Slot& slot, std::span<const float> logits);
  // `logits` (after the last fed token) are saved with the state for reuse.
  void Finish(Slot& slot, FinishReason reason, std::span<const float> logits, const std::string& error = "");

  const Model& model_;
  const Tokenizer& tokenizer_;
  const int32_t drawable_ids_;  // DrawableIds(): the logits a sampler sees
  EngineOptions options_;
  int64_t context_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  EngineMetrics metrics_;

  // Owned by the engine thread.
  std::vector<std::unique_ptr<Slot>> slots_;
  struct Cache;
  std::unique_ptr<Cache> cache_;

  std::thread thread_;  // last: starts after everything above exists
};

// A prompt longer than the context: the request is refused.
class ContextError : public Error {
 public:
  ContextError(int64_t prompt_tokens, int64_t context_tokens);
  int64_t prompt_tokens, context_tokens;
};

}  // namespace hymba

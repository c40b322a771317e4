#include "hymba/engine.h"

#include <algorithm>
#include <cmath>
#include <list>
#include <numeric>

namespace hymba {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "?";
}

ContextError::ContextError(int64_t prompt, int64_t context)
    : Error("the prompt has " + std::to_string(prompt) + " tokens, more than the context of " + std::to_string(context) +
            " tokens"),
      prompt_tokens(prompt),
      context_tokens(context) {}

// ---------------------------------------------------------------- Job

JobUpdate Job::Wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] {
    return !pending_.text.empty() || !pending_.tokens.empty() || pending_.finish != FinishReason::kNone;
  });
  JobUpdate update = std::move(pending_);
  pending_ = JobUpdate{};
  update.prompt_tokens = prompt_tokens_;
  update.cached_tokens = cached_tokens_;
  update.completion_tokens = completion_tokens_;
  return update;
}

void Job::Publish(const std::string& text, std::vector<GeneratedToken> tokens, FinishReason finish,
                  const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    pending_.text += text;
    completion_tokens_ += static_cast<int>(tokens.size());
    for (GeneratedToken& token : tokens) pending_.tokens.push_back(std::move(token));
    if (finish != FinishReason::kNone) {
      pending_.finish = finish;
      pending_.error = error;
      finished_ = true;
    }
  }
  changed_.notify_all();
}

// ---------------------------------------------------------------- Saved states

// Sequence states keyed by the tokens they were fed, least recently used last.
struct Engine::Cache {
  struct Entry {
    std::vector<int32_t> tokens;
    Sequence state;
    std::vector<float> logits;  // after the last token: what the next token is drawn from
    int64_t bytes = 0;
  };
  int64_t budget = 0;
  int64_t bytes = 0;
  std::list<Entry> entries;

  static bool IsPrefix(const std::vector<int32_t>& prefix, const std::vector<int32_t>& tokens) {
    return prefix.size() <= tokens.size() && std::equal(prefix.begin(), prefix.end(), tokens.begin());
  }

  // The longest saved prefix of `prompt`, moved to the front.
  const Entry* Find(const std::vector<int32_t>& prompt) {
    auto best = entries.end();
    for (auto it = entries.begin(); it != entries.end(); ++it) {
      if (IsPrefix(it->tokens, prompt) && (best == entries.end() || it->tokens.size() > best->tokens.size())) best = it;
    }
    if (best == entries.end()) return nullptr;
    entries.splice(entries.begin(), entries, best);
    return &entries.front();
  }

  static int64_t EntryBytes(const Sequence& state, size_t tokens, size_t logits) {
    return static_cast<int64_t>(state.held_bytes() + (tokens + logits) * sizeof(float));
  }
  bool Fits(const Sequence& state, size_t tokens, size_t logits) const {
    return EntryBytes(state, tokens, logits) <= budget;
  }

  void Store(std::vector<int32_t> tokens, Sequence state, std::vector<float> logits) {
    const int64_t entry_bytes = EntryBytes(state, tokens.size(), logits.size());
    if (entry_bytes > budget) return;
    std::erase_if(entries, [&](const Entry& e) {
      if (e.tokens != tokens) return false;
      bytes -= e.bytes;
      return true;
    });
    while (bytes + entry_bytes > budget) {
      bytes -= entries.back().bytes;
      entries.pop_back();
    }
    entries.push_front({std::move(tokens), std::move(state), std::move(logits), entry_bytes});
    bytes += entry_bytes;
  }
};

// ---------------------------------------------------------------- Slots

struct Engine::Slot {
  std::shared_ptr<Job> job;
  Sequence sequence;
  std::vector<int32_t> fed;  // text tokens the sequence holds
  size_t prompt_fed = 0;     // prompt tokens in the sequence, cached ones included
  Sampler sampler;
  TextStream stream;
  std::optional<int32_t> next_token;  // sampled, fed in the next step
  int generated = 0;

  const CompletionRequest& request() const { return job->request_; }
  bool reading_prompt() const { return prompt_fed < request().prompt.size(); }
};

namespace {

std::vector<GeneratedToken> Logprobs(std::span<const float> logits, int32_t chosen, int top) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float logit : logits) sum += std::exp(static_cast<double>(logit) - max_logit);
  const double log_sum = std::log(sum) + max_logit;
  auto logprob = [&](int32_t id) { return static_cast<float>(logits[static_cast<size_t>(id)] - log_sum); };
  GeneratedToken token{chosen, logprob(chosen), {}};
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  const auto count = std::min(static_cast<size_t>(top), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(count), ids.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
           (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  });
  for (size_t i = 0; i < count; ++i) token.top.push_back({ids[i], logprob(ids[i])});
  return {std::move(token)};
}

}  // namespace

// ---------------------------------------------------------------- Engine

Engine::Engine(const Model& model, const Tokenizer& tokenizer, EngineOptions options)
    : model_(model), tokenizer_(tokenizer), drawable_ids_(DrawableIds(model, tokenizer)), options_(options), cache_(std::make_unique<Cache>()) {
  const Config& config = model.config();
  const int64_t most = config.max_position_embeddings - config.num_memory_tokens;
  if (options_.slots < 1 || options_.slots > 256) throw Error("--parallel must be in [1, 256], got " + std::to_string(options_.slots));
  if (options_.max_queued < 0 || options_.max_queued > 4096) {
    throw Error("--max-queue must be in [0, 4096], got " + std::to_string(options_.max_queued));
  }
  if (options_.prefill_chunk < 1) throw Error("the prefill chunk must be at least 1 token");
  if (options_.context < 0 || options_.context > most) {
    throw Error("--ctx must be in [1, " + std::to_string(most) + "] (max_position_embeddings " +
                std::to_string(config.max_position_embeddings) + " minus " + std::to_string(config.num_memory_tokens) +
                " meta tokens), got " + std::to_string(options_.context));
  }
  if (options_.cache_bytes < 0) throw Error("the state cache size must not be negative");
  context_ = options_.context == 0 ? most : options_.context;
  cache_->budget = options_.cache_bytes;
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  for (const std::shared_ptr<Job>& job : queue_) job->Publish("", {}, FinishReason::kCancelled);
  queue_.clear();
}

std::shared_ptr<Job> Engine::Submit(CompletionRequest request) {
  if (request.prompt.empty()) throw Error("the prompt is empty");
  const int32_t vocab = static_cast<int32_t>(model_.config().vocab_size);
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (request.prompt[i] < 0 || request.prompt[i] >= vocab) {
      throw Error("prompt token " + std::to_string(request.prompt[i]) + " at index " + std::to_string(i) +
                  " is outside the vocabulary (" + std::to_string(vocab) + " tokens)");
    }
  }
  if (static_cast<int64_t>(request.prompt.size()) > context_) {
    throw ContextError(static_cast<int64_t>(request.prompt.size()), context_);
  }
  if (request.max_tokens < -1) throw Error("max_tokens must be -1 (no limit) or at least 0");
  if (request.top_logprobs > 20) throw Error("top_logprobs must be at most 20");
  const Sampler check(request.sampling, drawable_ids_);  // throws on invalid settings
  request.sampling.seed = check.seed();         // a random seed is drawn once, here

  auto job = std::make_shared<Job>();
  job->request_ = std::move(request);
  job->submitted_ = std::chrono::steady_clock::now();
  job->prompt_tokens_ = static_cast<int>(job->request_.prompt.size());
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return nullptr;
    DropCancelledQueued();
    if (static_cast<int>(queue_.size()) >= options_.max_queued + options_.slots - metrics_.busy_slots) {
      ++metrics_.requests_refused;
      return nullptr;
    }
    queue_.push_back(job);
    metrics_.queued = static_cast<int>(queue_.size());
  }
  wake_.notify_all();
  return job;
}

void Engine::DropCancelledQueued() {
  std::erase_if(queue_, [&](const std::shared_ptr<Job>& job) {
    if (!job->cancelled()) return false;
    job->Publish("", {}, FinishReason::kCancelled);
    ++metrics_.requests_cancelled;
    return true;
  });
  metrics_.queued = static_cast<int>(queue_.size());
}

EngineMetrics Engine::metrics() const {
  std::lock_guard lock(mutex_);
  return metrics_;
}

void Engine::Loop() {
  while (true) {
    std::vector<std::shared_ptr<Job>> joining;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !slots_.empty(); });
      if (stopping_) break;
      DropCancelledQueued();
      while (!queue_.empty() && static_cast<int>(slots_.size() + joining.size()) < options_.slots) {
        joining.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      metrics_.queued = static_cast<int>(queue_.size());
      metrics_.busy_slots = static_cast<int>(slots_.size() + joining.size());
    }
    for (std::shared_ptr<Job>& job : joining) {
      auto end_unstarted = [&](FinishReason reason, const std::string& error) {
        {
          std::lock_guard lock(mutex_);
          ++metrics_.requests_cancelled;
          --metrics_.busy_slots;
        }
        job->Publish("", {}, reason, error);
      };
      if (job->cancelled()) {
        end_unstarted(FinishReason::kCancelled, "");
        continue;
      }
      try {
        Join(job);
      } catch (const std::exception& e) {  // out of memory copying a state: this request fails, not the server
        end_unstarted(FinishReason::kError, e.what());
      }
    }
    RemoveFinishedSlots();
    if (!slots_.empty()) Step();
  }
  for (const std::unique_ptr<Slot>& slot : slots_) slot->job->Publish("", {}, FinishReason::kCancelled);
}

void Engine::Join(const std::shared_ptr<Job>& job) {
  const CompletionRequest& request = job->request_;
  std::vector<float> cached_logits;
  auto slot = std::make_unique<Slot>(Slot{job, model_.NewSequence(), {}, 0,
                                          Sampler(request.sampling, drawable_ids_),
                                          TextStream(tokenizer_, request.stop, request.keep_leading_space), std::nullopt, 0});
  if (const Cache::Entry* saved = cache_->Find(request.prompt)) {
    slot->sequence = saved->state.Clone();
    slot->fed = saved->tokens;
    slot->prompt_fed = saved->tokens.size();
    cached_logits = saved->logits;
    std::lock_guard lock(job->mutex_);  // Wait() reads it on the consumer's thread
    job->cached_tokens_ = static_cast<int>(saved->tokens.size());
  }
  for (int32_t token : request.prompt) slot->sampler.Accept(token);
  slots_.push_back(std::move(slot));
  // A prompt that was saved whole needs no step: draw its first token now.
  if (!slots_.back()->reading_prompt()) Sample(*slots_.back(), cached_logits);
}

void Engine::RemoveFinishedSlots() {
  std::erase_if(slots_, [](const std::unique_ptr<Slot>& slot) { return slot->job == nullptr; });
}

void Engine::Step() {
  for (const std::unique_ptr<Slot>& slot : slots_) {
    if (slot->job->cancelled()) Finish(*slot, FinishReason::kCancelled, {});
  }
  RemoveFinishedSlots();
  if (slots_.empty()) return;

  // Every generating sequence feeds its token; prompts share one chunk's worth
  // of positions, in the order their requests arrived.
  std::vector<Model::BatchItem> batch;
  std::vector<Slot*> owners;
  int64_t prompt_budget = options_.prefill_chunk;
  int64_t prompt_tokens = 0;
  for (const std::unique_ptr<Slot>& slot : slots_) {
    if (slot->reading_prompt()) {
      if (prompt_budget == 0) continue;
      const std::vector<int32_t>& prompt = slot->request().prompt;
      const auto take = std::min<int64_t>(prompt_budget, static_cast<int64_t>(prompt.size() - slot->prompt_fed));
      batch.push_back({&slot->sequence, std::span(prompt).subspan(slot->prompt_fed, static_cast<size_t>(take))});
      prompt_budget -= take;
      prompt_tokens += take;
    } else {
      batch.push_back({&slot->sequence, std::span(&*slot->next_token, 1)});
    }
    owners.push_back(slot.get());
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<float>> logits;
  try {
    logits = model_.AppendBatch(batch);
  } catch (const std::exception& e) {
    for (Slot* slot : owners) Finish(*slot, FinishReason::kError, {}, e.what());
    RemoveFinishedSlots();
    return;
  }
  {
    std::lock_guard lock(mutex_);
    metrics_.busy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++metrics_.steps;
    metrics_.prompt_tokens_processed += prompt_tokens;
  }

  for (size_t i = 0; i < owners.size(); ++i) {
    Slot& slot = *owners[i];
    const std::span<const int32_t> fed = batch[i].tokens;
    slot.fed.insert(slot.fed.end(), fed.begin(), fed.end());
    if (slot.reading_prompt()) {
      slot.prompt_fed += fed.size();
      if (slot.reading_prompt()) continue;
      try {
        if (cache_->Fits(slot.sequence, slot.fed.size(), logits[i].size())) {
          cache_->Store(slot.fed, slot.sequence.Clone(), logits[i]);
        }
      } catch (const std::bad_alloc&) {  // no copy saved: the request goes on without one
      }
    }
    Sample(slot, logits[i]);
  }
  RemoveFinishedSlots();
}

void Engine::Sample(Slot& slot, std::span<const float> logits) {
  try {
    SampleOrFinish(slot, logits);
  } catch (const std::exception& e) {  // e.g. every token banned by logit_bias
    Finish(slot, FinishReason::kError, {}, e.what());
  }
}

void Engine::SampleOrFinish(Slot& slot, std::span<const float> logits) {
  const CompletionRequest& request = slot.request();
  if (request.max_tokens >= 0 && slot.generated >= request.max_tokens) {
    Finish(slot, FinishReason::kLength, logits);
    return;
  }
  const std::span<const float> drawable = logits.first(static_cast<size_t>(drawable_ids_));
  const int32_t token = slot.sampler.Sample(drawable);
  const auto& eos = model_.config().eos_token_ids;
  if (std::find(eos.begin(), eos.end(), token) != eos.end()) {
    Finish(slot, FinishReason::kStop, logits);
    return;
  }
  ++slot.generated;
  slot.sampler.Accept(token);
  std::vector<GeneratedToken> generated =
      request.top_logprobs >= 0 ? Logprobs(drawable, token, request.top_logprobs) : std::vector<GeneratedToken>{{token, 0, {}}};
  slot.job->Publish(slot.stream.Push(token), std::move(generated), FinishReason::kNone);
  if (slot.stream.stopped()) {
    Finish(slot, FinishReason::kStop, logits);
  } else if ((request.max_tokens >= 0 && slot.generated >= request.max_tokens) ||
             static_cast<int64_t>(slot.fed.size()) + 1 >= context_) {  // prompt + completion fill the context
    Finish(slot, FinishReason::kLength, logits);
  } else {
    slot.next_token = token;
  }
}

void Engine::Finish(Slot& slot, FinishReason reason, std::span<const float> logits, const std::string& error) {
  const bool completed = reason == FinishReason::kStop || reason == FinishReason::kLength;
  const std::string text = completed ? slot.stream.Finish() : "";
  if (completed && !logits.empty()) {
    cache_->Store(std::move(slot.fed), std::move(slot.sequence), {logits.begin(), logits.end()});
  }
  {
    // Counted before the job hears it has finished, so that what the job's
    // owner reads next in metrics() already includes it.
    std::lock_guard lock(mutex_);
    --metrics_.busy_slots;
    if (completed) {
      ++metrics_.requests_finished;
      metrics_.prompt_tokens += slot.job->prompt_tokens_;
      metrics_.cached_tokens += slot.job->cached_tokens_;
      metrics_.generated_tokens += slot.generated;
    } else {
      ++metrics_.requests_cancelled;
    }
    metrics_.cache_entries = static_cast<int64_t>(cache_->entries.size());
    metrics_.cache_bytes = cache_->bytes;
  }
  slot.job->Publish(text, {}, reason, error);
  slot.job = nullptr;
}

}  // namespace hymba

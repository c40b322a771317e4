#include "hymba/engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <future>

#include "test_util.h"

namespace hymba {
namespace {

using namespace std::chrono_literals;

struct Shipped {
  Model model = Model::Load(test::ShippedModelDir(), 2);
  Tokenizer tokenizer = Tokenizer::Load(test::ShippedModelDir());
};
const Shipped& shipped() {
  static const Shipped instance;
  return instance;
}

struct Outcome {
  std::string text;
  std::vector<GeneratedToken> tokens;
  FinishReason finish = FinishReason::kNone;
  std::string error;
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  std::vector<int32_t> ids() const {
    std::vector<int32_t> ids;
    for (const GeneratedToken& t : tokens) ids.push_back(t.id);
    return ids;
  }
};

Outcome Collect(Job& job) {
  Outcome outcome;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (outcome.finish == FinishReason::kNone) {
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("a job did not finish in 120 s");
    JobUpdate update = job.Wait(100ms);
    outcome.text += update.text;
    for (GeneratedToken& t : update.tokens) outcome.tokens.push_back(std::move(t));
    outcome.finish = update.finish;
    outcome.error = update.error;
    outcome.prompt_tokens = update.prompt_tokens;
    outcome.cached_tokens = update.cached_tokens;
    outcome.completion_tokens = update.completion_tokens;
  }
  return outcome;
}

std::vector<int32_t> Prompt(const std::string& text) {
  return shipped().tokenizer.Encode(text, {.add_bos = true, .parse_special = true});
}

CompletionRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
  CompletionRequest request;
  request.prompt = std::move(prompt);
  request.max_tokens = max_tokens;
  request.sampling.temperature = 0;
  return request;
}

// A greedy request that never draws EOS: only cancelling or the context ends it.
CompletionRequest Endless() {
  CompletionRequest request = Greedy(Prompt("And"), -1);
  request.sampling.logit_bias[2] = -INFINITY;
  return request;
}

// Submits Endless() and waits for its first token: it is running.
std::shared_ptr<Job> StartEndless(Engine& engine) {
  std::shared_ptr<Job> job = engine.Submit(Endless());
  if (job == nullptr) throw std::runtime_error("the endless request was refused");
  while (job->Wait(100ms).tokens.empty()) {
  }
  return job;
}

// The same request through the one-sequence generation loop.
GenerationResult Alone(const CompletionRequest& request) {
  GenerationOptions options;
  options.max_tokens = request.max_tokens;
  options.stop = request.stop;
  options.sampling = request.sampling;
  Sequence sequence = shipped().model.NewSequence();
  return Generate(shipped().model, shipped().tokenizer, sequence, request.prompt, options);
}

FinishReason Expected(StopReason reason) {
  return reason == StopReason::kEos || reason == StopReason::kStopString ? FinishReason::kStop : FinishReason::kLength;
}

// More requests than slots, prompts longer than the prefill chunk, sampled
// and greedy: each gives exactly what it gives alone.
TEST(Engine, ConcurrentRequestsEqualEachServedAlone) {
  Engine engine(shipped().model, shipped().tokenizer, {.slots = 3, .max_queued = 16, .prefill_chunk = 5});
  const std::vector<std::string> texts = {"In the beginning God created", "And the earth was without form, and void;",
                                          "Jesus wept.", "And God said, Let there be light: and there was light.",
                                          "The LORD is my shepherd; I shall not want.", "Blessed are the meek"};
  std::vector<CompletionRequest> requests;
  for (size_t i = 0; i < texts.size(); ++i) {
    CompletionRequest request = Greedy(Prompt(texts[i]), 10 + static_cast<int>(i) * 3);
    if (i % 2 == 1) {
      request.sampling = SamplingParams{};
      request.sampling.seed = 1234 + i;
    }
    if (i == 4) request.stop = {"the"};
    requests.push_back(request);
  }
  std::vector<std::shared_ptr<Job>> jobs;
  for (const CompletionRequest& request : requests) jobs.push_back(engine.Submit(request));
  for (size_t i = 0; i < jobs.size(); ++i) {
    ASSERT_NE(jobs[i], nullptr);
    const Outcome outcome = Collect(*jobs[i]);
    const GenerationResult alone = Alone(requests[i]);
    EXPECT_EQ(outcome.finish, Expected(alone.stop_reason)) << i;
    EXPECT_EQ(outcome.text, alone.text) << i;
    EXPECT_EQ(outcome.ids(), alone.tokens) << i;
    EXPECT_EQ(outcome.prompt_tokens, static_cast<int>(requests[i].prompt.size()));
    EXPECT_EQ(outcome.completion_tokens, static_cast<int>(alone.tokens.size()));
  }
  const EngineMetrics metrics = engine.metrics();
  EXPECT_EQ(metrics.requests_finished, static_cast<int64_t>(requests.size()));
  EXPECT_EQ(metrics.busy_slots, 0);
  EXPECT_EQ(metrics.queued, 0);
}

// A long prompt is read a chunk per step while a running stream keeps
// receiving a token every step: it does not wait for the whole prompt.
TEST(Engine, LongPromptsDoNotStallRunningStreams) {
  Engine engine(shipped().model, shipped().tokenizer, {.slots = 2, .prefill_chunk = 16});
  const std::shared_ptr<Job> stream = StartEndless(engine);
  const int64_t steps_before = engine.metrics().steps;
  std::vector<int32_t> long_prompt(1000, 5);
  const std::shared_ptr<Job> reader = engine.Submit(Greedy(long_prompt, 1));
  int tokens_while_reading = 0;
  JobUpdate update;
  do {
    update = reader->Wait(1ms);
    tokens_while_reading += static_cast<int>(stream->Wait(0ms).tokens.size());
  } while (update.finish == FinishReason::kNone);
  stream->Cancel();
  // 1000 prompt tokens at 16 per step: at least 62 steps, each of which also
  // advanced the running stream.
  EXPECT_GE(engine.metrics().steps - steps_before, 62);
  EXPECT_GE(tokens_while_reading, 60);
}

// A second turn continues from the state saved after the first reply; the
// same prompt twice needs no prompt step at all. Results equal a cold engine's.
TEST(Engine, ConversationContinuesFromTheSavedState) {
  Engine engine(shipped().model, shipped().tokenizer, {.prefill_chunk = 4});
  const CompletionRequest first = Greedy(Prompt("And God said,"), 8);
  const Outcome one = Collect(*engine.Submit(first));
  EXPECT_EQ(one.cached_tokens, 0);
  ASSERT_EQ(one.finish, FinishReason::kLength);

  // The follow-up: the prompt, the reply as it was fed, and new text.
  CompletionRequest second = first;
  const std::vector<int32_t> reply = one.ids();
  second.prompt.insert(second.prompt.end(), reply.begin(), reply.end() - 1);  // the last token was never fed
  const std::vector<int32_t> more = shipped().tokenizer.Encode(" and the", {.add_bos = false});
  second.prompt.insert(second.prompt.end(), more.begin(), more.end());
  const Outcome two = Collect(*engine.Submit(second));
  EXPECT_EQ(two.cached_tokens, static_cast<int>(first.prompt.size() + reply.size() - 1));

  Engine cold(shipped().model, shipped().tokenizer, {.cache_bytes = 0});
  const Outcome fresh = Collect(*cold.Submit(second));
  EXPECT_EQ(fresh.cached_tokens, 0);
  EXPECT_EQ(two.ids(), fresh.ids());
  EXPECT_EQ(two.text, fresh.text);

  const Outcome again = Collect(*engine.Submit(second));
  EXPECT_EQ(again.cached_tokens, static_cast<int>(second.prompt.size()));
  EXPECT_EQ(again.ids(), fresh.ids());
  EXPECT_GT(engine.metrics().cached_tokens, 0);
}

TEST(Engine, SavedStatesStayWithinTheirBudget) {
  const int64_t one_state = static_cast<int64_t>(shipped().model.NewSequence().held_bytes());
  const int64_t budget = 3 * one_state;
  Engine engine(shipped().model, shipped().tokenizer, {.cache_bytes = budget});
  for (int i = 0; i < 6; ++i) Collect(*engine.Submit(Greedy(Prompt("Verse " + std::to_string(i)), 2)));
  const EngineMetrics metrics = engine.metrics();
  EXPECT_LE(metrics.cache_bytes, budget);
  EXPECT_GE(metrics.cache_entries, 1);
  EXPECT_LT(metrics.cache_entries, 12);  // two states per request were offered
}

TEST(Engine, CancelFreesTheSlotForTheNextRequest) {
  Engine engine(shipped().model, shipped().tokenizer, {.slots = 1, .max_queued = 1});
  const std::shared_ptr<Job> running = StartEndless(engine);
  const std::shared_ptr<Job> waiting = engine.Submit(Greedy(Prompt("Jesus"), 3));
  ASSERT_NE(waiting, nullptr);
  EXPECT_EQ(engine.Submit(Greedy(Prompt("full"), 3)), nullptr);  // one running, one queued: full
  EXPECT_EQ(engine.metrics().requests_refused, 1);
  running->Cancel();
  EXPECT_EQ(Collect(*running).finish, FinishReason::kCancelled);
  EXPECT_EQ(Collect(*waiting).finish, FinishReason::kLength);
  EXPECT_EQ(engine.metrics().requests_cancelled, 1);
}

// A request cancelled while it waits gives its place in the queue back.
TEST(Engine, CancelledWhileQueuedLeavesTheQueue) {
  Engine engine(shipped().model, shipped().tokenizer, {.slots = 1, .max_queued = 1});
  const std::shared_ptr<Job> running = StartEndless(engine);
  const std::shared_ptr<Job> waiting = engine.Submit(Greedy(Prompt("Jesus"), 3));
  ASSERT_NE(waiting, nullptr);
  waiting->Cancel();
  const std::shared_ptr<Job> next = engine.Submit(Greedy(Prompt("Moses"), 3));
  ASSERT_NE(next, nullptr) << "the cancelled request still held the queue";
  EXPECT_EQ(Collect(*waiting).finish, FinishReason::kCancelled);
  running->Cancel();
  EXPECT_EQ(Collect(*next).finish, FinishReason::kLength);
}

TEST(Engine, ContextLimits) {
  Engine engine(shipped().model, shipped().tokenizer, {.context = 12});
  EXPECT_EQ(engine.context(), 12);
  try {
    engine.Submit(Greedy(std::vector<int32_t>(13, 5), 1));
    FAIL() << "a prompt longer than the context was accepted";
  } catch (const ContextError& e) {
    EXPECT_EQ(e.prompt_tokens, 13);
    EXPECT_EQ(e.context_tokens, 12);
  }
  CompletionRequest request = Greedy(std::vector<int32_t>(9, 5), -1);
  request.sampling.logit_bias[2] = -INFINITY;
  const Outcome outcome = Collect(*engine.Submit(request));
  EXPECT_EQ(outcome.finish, FinishReason::kLength);
  EXPECT_EQ(outcome.completion_tokens, 3);  // prompt and completion fill the 12 tokens
  const int64_t most = shipped().model.config().max_position_embeddings - shipped().model.config().num_memory_tokens;
  test::ExpectError([&] { Engine(shipped().model, shipped().tokenizer, {.context = most + 1}); }, {"--ctx must be in [1, 2048]"});
  test::ExpectError([&] { Engine(shipped().model, shipped().tokenizer, {.slots = 0}); }, {"--parallel"});
}

TEST(Engine, BadRequestsAreRefusedWithTheReason) {
  Engine engine(shipped().model, shipped().tokenizer, {});
  test::ExpectError([&] { engine.Submit(Greedy({}, 1)); }, {"the prompt is empty"});
  test::ExpectError([&] { engine.Submit(Greedy({1, 5000}, 1)); }, {"prompt token 5000 at index 1 is outside the vocabulary"});
  CompletionRequest hot = Greedy({1, 2, 3}, 1);
  hot.sampling.top_p = 2;
  test::ExpectError([&] { engine.Submit(hot); }, {"--top-p must be in (0, 1]"});
  CompletionRequest many = Greedy({1, 2, 3}, 1);
  many.top_logprobs = 21;
  test::ExpectError([&] { engine.Submit(many); }, {"top_logprobs must be at most 20"});
}

// Log-probabilities are the model's: log-softmax of the logits Model::Append gives.
TEST(Engine, LogprobsAreTheModelsLogSoftmax) {
  Engine engine(shipped().model, shipped().tokenizer, {});
  CompletionRequest request = Greedy(Prompt("And the LORD"), 1);
  request.top_logprobs = 5;
  const Outcome outcome = Collect(*engine.Submit(request));
  ASSERT_EQ(outcome.tokens.size(), 1u);
  Sequence sequence = shipped().model.NewSequence();
  const std::vector<float> logits = shipped().model.Append(sequence, request.prompt);
  double sum = 0;
  for (float logit : logits) sum += std::exp(static_cast<double>(logit));
  const GeneratedToken& token = outcome.tokens[0];
  EXPECT_NEAR(token.logprob, logits[static_cast<size_t>(token.id)] - std::log(sum), 1e-4);
  ASSERT_EQ(token.top.size(), 5u);
  EXPECT_EQ(token.top[0].id, token.id);  // greedy: the most likely token
  for (size_t i = 1; i < token.top.size(); ++i) EXPECT_LE(token.top[i].logprob, token.top[i - 1].logprob);
  for (const TokenLogprob& alternative : token.top) {
    EXPECT_NEAR(alternative.logprob, logits[static_cast<size_t>(alternative.id)] - std::log(sum), 1e-4);
  }
}

// A model that scores more ids than its tokenizer has (a padded vocabulary):
// hot sampling from random weights draws, and logprobs name, only ids with
// text; the log-softmax runs over those.
TEST(Engine, PaddedVocabularyNeverDrawsAnIdWithoutText) {
  const Model model = Model::Load(test::FixtureDir("real_tokenizer_bf16"));  // 32,001 ids
  ASSERT_LT(shipped().tokenizer.vocab_size() * 8, model.config().vocab_size);
  Engine engine(model, shipped().tokenizer, {});
  CompletionRequest request = Greedy(Prompt("And"), 24);
  request.sampling.temperature = 50;  // nearly uniform over whatever may be drawn
  request.sampling.top_k = 0, request.sampling.top_p = 1, request.sampling.min_p = 0, request.sampling.seed = 3;
  request.sampling.logit_bias[2] = -INFINITY;  // no EOS: every draw counts
  request.top_logprobs = 20;
  const Outcome outcome = Collect(*engine.Submit(request));
  ASSERT_EQ(outcome.finish, FinishReason::kLength) << outcome.error;
  ASSERT_EQ(outcome.tokens.size(), 24u);
  const int32_t drawable = shipped().tokenizer.vocab_size();
  for (const GeneratedToken& token : outcome.tokens) {
    EXPECT_LT(token.id, drawable);
    for (const TokenLogprob& alternative : token.top) EXPECT_LT(alternative.id, drawable);
  }
  // The 20 most likely of N ids hold at least 20/N of the probability.
  double top_mass = 0;
  for (const TokenLogprob& alternative : outcome.tokens[0].top) top_mass += std::exp(static_cast<double>(alternative.logprob));
  EXPECT_GE(top_mass, 20.0 / drawable * 0.999);
  CompletionRequest padding_bias = Greedy(Prompt("And"), 1);
  padding_bias.sampling.logit_bias[drawable] = 1;
  test::ExpectError([&] { engine.Submit(padding_bias); }, {"outside the vocabulary (" + std::to_string(drawable) + ")"});
}

// A request that cannot go on fails alone; the engine serves the next one.
TEST(Engine, AFailingRequestEndsWithItsErrorAndTheEngineGoesOn) {
  Engine engine(shipped().model, shipped().tokenizer, {});
  CompletionRequest banned = Greedy(Prompt("And"), 4);
  for (int32_t id = 0; id < 1024; ++id) banned.sampling.logit_bias[id] = -INFINITY;
  const Outcome failed = Collect(*engine.Submit(banned));
  EXPECT_EQ(failed.finish, FinishReason::kError);
  EXPECT_NE(failed.error.find("every token is banned"), std::string::npos) << failed.error;
  EXPECT_EQ(Collect(*engine.Submit(Greedy(Prompt("And"), 4))).finish, FinishReason::kLength);
  EXPECT_EQ(engine.metrics().busy_slots, 0);
}

TEST(Engine, DestroyingTheEngineCancelsWhatIsLeft) {
  std::shared_ptr<Job> job;
  {
    Engine engine(shipped().model, shipped().tokenizer, {.slots = 1});
    job = engine.Submit(Endless());
  }
  EXPECT_EQ(Collect(*job).finish, FinishReason::kCancelled);
}

}  // namespace
}  // namespace hymba

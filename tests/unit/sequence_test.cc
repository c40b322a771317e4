// Sequence state: memory accounting, batched steps, limits.
#include <gtest/gtest.h>

#include <algorithm>
#include <malloc.h>

#include <cstdio>

#include "hymba/error.h"
#include "hymba/info.h"
#include "hymba/model.h"
#include "test_util.h"

namespace hymba {
namespace {

int32_t Greedy(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

std::vector<int32_t> FixtureTokens(const std::string& name) {
  return test::ReadJson(test::FixtureDir(name) / "tokens.json").get<std::vector<int32_t>>();
}

class SequenceTest : public ::testing::TestWithParam<std::string> {};

// The state of a sequence is exactly what `hymba info` says it costs (E3, E6):
// meta K/V, windows of sliding_window + 1 keys, full history where a global
// layer reads, conv and SSM state.
TEST_P(SequenceTest, BytesMatchTheEngineCacheLayout) {
  for (CacheType cache : {CacheType::kF32, CacheType::kF16, CacheType::kQ8}) {
    const Model model = Model::Load(test::FixtureDir(GetParam()), 0, {.cache = cache});
    const CacheLayout layout = DescribeModel(model.config(), model.storage().separate_lm_head, cache).engine;
    Sequence sequence = model.NewSequence();
    EXPECT_EQ(sequence.positions(), model.config().num_memory_tokens);
    EXPECT_EQ(static_cast<int64_t>(sequence.bytes()), layout.BytesAt(model.config(), 0, true));
    const std::vector<int32_t> tokens = FixtureTokens(GetParam());
    int64_t owners = 0;
    for (int layer = 0; layer < model.config().num_hidden_layers; ++layer) owners += model.config().IsOwner(layer) ? 1 : 0;
    const int64_t block_bytes = 256 * layout.kv_bytes_per_token_per_owner;
    for (size_t n = 0; n < tokens.size(); ++n) {
      model.Append(sequence, std::span(tokens).subspan(n, 1));
      const auto bytes = static_cast<int64_t>(sequence.bytes()), held = static_cast<int64_t>(sequence.held_bytes());
      ASSERT_EQ(bytes, layout.BytesAt(model.config(), static_cast<int64_t>(n + 1), true))
          << "after " << n + 1 << " tokens, cache type " << CacheTypeName(cache);
      // What it holds: whole blocks of 256 positions, less than one more per owner.
      ASSERT_EQ((held - layout.ssm_state_bytes - layout.conv_state_bytes) % block_bytes, 0);
      ASSERT_GE(held, bytes);
      ASSERT_LT(held - bytes, std::max<int64_t>(owners, 1) * block_bytes);
    }
  }
}

// Prefill, chunks of any size and token-by-token decoding, on one thread or
// two, give the same bits with the f32 cache (the f16 cache: below): attention
// splits each token's keys into ranges by position alone, whatever the
// chunk or thread count, and a key's score does not depend on where it sits
// in the kernel's tiles.
TEST_P(SequenceTest, FeedingModesAndThreadCountsGiveTheSameBits) {
  const Model two = Model::Load(test::FixtureDir(GetParam()), 2);
  const Model one = Model::Load(test::FixtureDir(GetParam()), 1);
  const std::vector<int32_t> tokens = FixtureTokens(GetParam());
  const std::vector<float> full = two.Logits(tokens, LogitsMode::kFull);
  EXPECT_EQ(two.Logits(tokens, LogitsMode::kIncremental), full);
  EXPECT_EQ(two.Logits(tokens, LogitsMode::kChunked, 3), full);
  EXPECT_EQ(one.Logits(tokens, LogitsMode::kFull), full);
  EXPECT_EQ(one.Logits(tokens, LogitsMode::kIncremental), full);
}

// Cache types f16 and q8 round each key and value once, where it is stored:
// every way of feeding the tokens (E5), on one thread or two, reads the same
// entries and gives the same bits, and the logits stay close to the f32
// cache's: f16 keeps 11 significant bits, q8 steps of a row's absmax / 127.
TEST_P(SequenceTest, RoundingCachesFeedAlikeAndStayCloseToF32) {
  const Model exact = Model::Load(test::FixtureDir(GetParam()));
  const std::vector<int32_t> tokens = FixtureTokens(GetParam());
  const std::vector<float> reference = exact.Logits(tokens);
  for (const auto& [cache, tolerance] : {std::pair{CacheType::kF16, 1e-2f}, std::pair{CacheType::kQ8, 5e-2f}}) {
    const Model rounding = Model::Load(test::FixtureDir(GetParam()), 2, {.cache = cache});
    const Model one_thread = Model::Load(test::FixtureDir(GetParam()), 1, {.cache = cache});
    EXPECT_EQ(rounding.type_label(), exact.type_label() + " (" + std::string(CacheTypeName(cache)) + " cache)");
    const std::vector<float> full = rounding.Logits(tokens, LogitsMode::kFull);
    EXPECT_EQ(rounding.Logits(tokens, LogitsMode::kIncremental), full);
    EXPECT_EQ(rounding.Logits(tokens, LogitsMode::kChunked, 5), full);
    EXPECT_EQ(one_thread.Logits(tokens, LogitsMode::kIncremental), full);
    EXPECT_NE(full, reference);
    float max_logit = 0, max_difference = 0;
    for (size_t i = 0; i < full.size(); ++i) {
      max_logit = std::max(max_logit, std::fabs(reference[i]));
      max_difference = std::max(max_difference, std::fabs(full[i] - reference[i]));
    }
    EXPECT_LT(max_difference, tolerance * (1 + max_logit)) << CacheTypeName(cache);
  }
}

// N sequences advanced together give the same logits, bit for bit, and so the
// same greedy tokens, as each advanced alone: prompts of different lengths in
// one prefill batch, then decode steps in lockstep.
TEST_P(SequenceTest, BatchedStepsEqualSingleSequenceSteps) {
  const Model model = Model::Load(test::FixtureDir(GetParam()));
  const std::vector<int32_t> tokens = FixtureTokens(GetParam());
  const std::vector<std::vector<int32_t>> prompts = {
      {tokens.begin(), tokens.begin() + 3}, {tokens.begin() + 2, tokens.end()}, {tokens[5]}};
  constexpr int kSteps = 12;

  std::vector<std::vector<int32_t>> alone(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    Sequence sequence = model.NewSequence();
    int32_t next = Greedy(model.Append(sequence, prompts[i]));
    for (int step = 0; step < kSteps; ++step) {
      alone[i].push_back(next);
      next = Greedy(model.Append(sequence, std::span(&alone[i].back(), 1)));
    }
  }

  std::vector<Sequence> sequences;
  std::vector<Model::BatchItem> batch;
  for (size_t i = 0; i < prompts.size(); ++i) sequences.push_back(model.NewSequence());
  for (size_t i = 0; i < prompts.size(); ++i) batch.push_back({&sequences[i], prompts[i]});
  std::vector<std::vector<float>> logits = model.AppendBatch(batch);
  std::vector<std::vector<int32_t>> together(prompts.size());
  for (int step = 0; step < kSteps; ++step) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      together[i].push_back(Greedy(logits[i]));
      batch[i].tokens = std::span(&together[i].back(), 1);
    }
    std::vector<std::vector<float>> next = model.AppendBatch(batch);
    if (step + 1 < kSteps) {
      // Compare the logits, not only their argmax, against one more lone step.
      Sequence check = model.NewSequence();
      std::vector<int32_t> history = prompts[0];
      history.insert(history.end(), together[0].begin(), together[0].end());
      EXPECT_EQ(model.Append(check, history), next[0]) << "step " << step;
    }
    logits = std::move(next);
  }
  EXPECT_EQ(together, alone);
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, SequenceTest, ::testing::ValuesIn(test::FixtureNames()),
                         [](const auto& fixture) { return fixture.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SequenceTest);

// GCC says it is under AddressSanitizer with __SANITIZE_ADDRESS__, clang with
// __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define HYMBA_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HYMBA_UNDER_ASAN 1
#endif
#endif

// Resident memory, as the kernel counts it, grows by what Sequence::bytes()
// (and so `hymba info`) says: 8 sequences of 1,200 tokens on the shipped model.
TEST(Sequence, ResidentMemoryAgreesWithTheAccounting) {
#if defined(HYMBA_UNDER_ASAN)
  GTEST_SKIP() << "AddressSanitizer's shadow memory inflates the resident set";
#else
  auto resident_bytes = [] {
    malloc_trim(0);  // count live memory, not what the allocator keeps for reuse
    long pages_total = 0, pages_resident = 0;
    FILE* statm = std::fopen("/proc/self/statm", "r");
    if (statm == nullptr || std::fscanf(statm, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = -1;
    if (statm != nullptr) std::fclose(statm);
    return static_cast<double>(pages_resident) * 4096.0;
  };
  const Model model = Model::Load(test::ShippedModelDir());
  std::vector<int32_t> tokens(1200);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(3 + i % 1000);
  {
    // Warm up outside the measurement: the meta prefix (computed once per
    // model), the mapped weights' pages and the code.
    Sequence warm_up = model.NewSequence();
    model.Append(warm_up, std::span(tokens).first(300));
  }
  const double before = resident_bytes();
  std::vector<Sequence> sequences;
  for (int i = 0; i < 8; ++i) sequences.push_back(model.NewSequence());
  for (size_t first = 0; first < tokens.size(); first += 300) {
    std::vector<Model::BatchItem> batch;
    for (Sequence& sequence : sequences) batch.push_back({&sequence, std::span(tokens).subspan(first, 300)});
    model.AppendBatch(batch);
  }
  const double measured = resident_bytes() - before;
  double accounted = 0;
  for (const Sequence& sequence : sequences) accounted += static_cast<double>(sequence.bytes());
  EXPECT_EQ(static_cast<int64_t>(sequences[0].bytes()),
            DescribeModel(model.config(), false).engine.BytesAt(model.config(), 1200, true));
  EXPECT_GT(measured, 0.9 * accounted) << "measured " << measured << " accounted " << accounted;
  EXPECT_LT(measured, 1.15 * accounted + (4 << 20)) << "measured " << measured << " accounted " << accounted;
  std::printf("8 sequences x 1200 tokens: %.2f MB resident, %.2f MB accounted\n", measured / 1e6, accounted / 1e6);
#endif
}

TEST(Sequence, ContextLimitCountsMetaTokens) {
  const Model model = Model::Load(test::FixtureDir("swa_meta_bf16"));
  const int64_t limit = model.config().max_position_embeddings - model.config().num_memory_tokens;
  Sequence sequence = model.NewSequence();
  model.Append(sequence, std::vector<int32_t>(static_cast<size_t>(limit - 1), 7));
  model.Append(sequence, std::vector<int32_t>{7});
  try {
    model.Append(sequence, std::vector<int32_t>{7});
    FAIL() << "appended past the context limit";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context limit"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("max_position_embeddings (256)"), std::string::npos) << e.what();
  }
  EXPECT_EQ(sequence.positions(), model.config().max_position_embeddings);  // the failed call changed nothing
}

TEST(Sequence, BatchRejectsTheSameSequenceTwiceAndBadTokens) {
  const Model model = Model::Load(test::FixtureDir("swa_meta_bf16"));
  Sequence sequence = model.NewSequence();
  const std::vector<int32_t> tokens = {1, 2};
  const std::vector<Model::BatchItem> twice = {{&sequence, tokens}, {&sequence, tokens}};
  EXPECT_THROW(model.AppendBatch(twice), Error);
  const std::vector<int32_t> bad = {1, 9999};
  const std::vector<Model::BatchItem> bad_batch = {{&sequence, bad}};
  EXPECT_THROW(model.AppendBatch(bad_batch), Error);
  EXPECT_EQ(sequence.positions(), model.config().num_memory_tokens);
}

}  // namespace
}  // namespace hymba

#include "hymba/generate.h"

#include <gtest/gtest.h>

#include "hymba/error.h"
#include "test_util.h"

namespace hymba {
namespace {

const Tokenizer& RealTokenizer() {
  static const Tokenizer tokenizer = Tokenizer::Load(test::DataDir() / "hymba-1.5b");
  return tokenizer;
}

std::vector<std::string> PushAll(TextStream& stream, const std::vector<int32_t>& ids) {
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(stream.Push(id));
  pieces.push_back(stream.Finish());
  return pieces;
}

TEST(TextStream, NeverSplitsACharacterAcrossByteFallbackPieces) {
  const std::vector<int32_t> ids = RealTokenizer().Encode("I 🦙 x", {});  // ▁I ▁ <0xF0> <0x9F> <0xA6> <0x99> ▁x
  ASSERT_EQ(ids.size(), 7u);
  TextStream stream(RealTokenizer(), {});
  const std::vector<std::string> pieces = PushAll(stream, ids);
  EXPECT_EQ(pieces, (std::vector<std::string>{"I", " ", "", "", "", "🦙", " x", ""}));
  EXPECT_EQ(stream.text(), "I 🦙 x");  // the first piece lost its dummy-prefix space
}

// Completion APIs return text that continues the prompt: its first space stays.
TEST(TextStream, KeepsTheLeadingSpaceWhenAsked) {
  const std::vector<int32_t> ids = RealTokenizer().Encode("And God", {});  // ▁And ▁God
  TextStream kept(RealTokenizer(), {}, true);
  EXPECT_EQ(PushAll(kept, ids), (std::vector<std::string>{" And", " God", ""}));
  TextStream stripped(RealTokenizer(), {});
  EXPECT_EQ(PushAll(stripped, ids), (std::vector<std::string>{"And", " God", ""}));
  const std::vector<int32_t> byte_first = RealTokenizer().Encode("🦙 x", {});  // ▁ <0xF0>...
  TextStream emoji(RealTokenizer(), {}, true);
  PushAll(emoji, byte_first);
  EXPECT_EQ(emoji.text(), " 🦙 x");
}

TEST(TextStream, UnfinishedCharacterAtTheEndIsReleasedByFinish) {
  const std::vector<int32_t> ids = RealTokenizer().Encode("🦙", {});
  TextStream stream(RealTokenizer(), {});
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(stream.Push(ids[i]), "");
  EXPECT_EQ(stream.Finish(), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // SentencePiece's U+FFFD per orphan byte
}

TEST(TextStream, StopStringSpanningTokensIsNeverShown) {
  const std::vector<int32_t> ids = RealTokenizer().Encode("Hello world, and more", {});
  TextStream stream(RealTokenizer(), {"o w"});
  std::string shown;
  for (int32_t id : ids) {
    shown += stream.Push(id);
    if (stream.stopped()) break;
  }
  shown += stream.Finish();
  EXPECT_TRUE(stream.stopped());
  EXPECT_EQ(shown, "Hell");
  EXPECT_EQ(stream.text(), "Hell");
}

TEST(TextStream, HeldBackPrefixIsReleasedWhenItDoesNotComplete) {
  const std::vector<int32_t> ids = RealTokenizer().Encode("Hello wo", {});
  TextStream stream(RealTokenizer(), {"world!"});
  std::string shown;
  for (int32_t id : ids) shown += stream.Push(id);
  EXPECT_EQ(shown, "Hello ");  // " wo" might still become "world!"... held back from " w"
  shown += stream.Finish();
  EXPECT_FALSE(stream.stopped());
  EXPECT_EQ(shown, "Hello wo");
}

class GenerateTest : public ::testing::Test {
 protected:
  GenerateTest() : model_(Model::Load(test::FixtureDir("real_tokenizer_bf16"))) {}
  GenerationResult Run(const GenerationOptions& options, std::string* streamed = nullptr) {
    Sequence sequence = model_.NewSequence();
    const std::vector<int32_t> prompt = RealTokenizer().Encode("Once upon a time", {.add_bos = true});
    return Generate(model_, RealTokenizer(), sequence, prompt, options, [&](std::string_view text) {
      if (streamed) *streamed += text;
    });
  }
  Model model_;
};

TEST_F(GenerateTest, GreedyIsDeterministicAndStreamsWhatItReturns) {
  GenerationOptions options;
  options.max_tokens = 16;
  options.sampling.temperature = 0;
  std::string streamed;
  const GenerationResult a = Run(options, &streamed);
  const GenerationResult b = Run(options);
  EXPECT_EQ(a.tokens.size(), 16u);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.stop_reason, StopReason::kMaxTokens);
  EXPECT_EQ(streamed, a.text);
  EXPECT_EQ(a.text, RealTokenizer().Decode(a.tokens));
  EXPECT_EQ(a.prompt_tokens, 5);
}

// Tokens fed before the prompt (a chat's earlier turns) count for the
// penalties like the prompt's own: the greedy first token, once in the
// history, is penalised away.
TEST_F(GenerateTest, PenaltiesSeeTheHistory) {
  GenerationOptions options;
  options.max_tokens = 1;
  options.sampling.temperature = 0;
  options.sampling.presence_penalty = 1000;
  const GenerationResult plain = Run(options);
  ASSERT_EQ(plain.tokens.size(), 1u);
  options.history = {plain.tokens[0]};
  const GenerationResult penalised = Run(options);
  ASSERT_EQ(penalised.tokens.size(), 1u);
  EXPECT_NE(penalised.tokens[0], plain.tokens[0]);
  EXPECT_EQ(penalised.prompt_tokens, plain.prompt_tokens);  // the history is not fed again
}

TEST_F(GenerateTest, SameSeedSameSample) {
  GenerationOptions options;
  options.max_tokens = 12;
  options.sampling.seed = 99;
  options.sampling.temperature = 1.5f;
  EXPECT_EQ(Run(options).tokens, Run(options).tokens);
  options.sampling.seed = 100;
  GenerationOptions other = options;
  other.sampling.seed = 99;
  EXPECT_NE(Run(options).tokens, Run(other).tokens);
}

TEST_F(GenerateTest, StopsAtEos) {
  GenerationOptions options;
  options.max_tokens = 10;
  options.sampling.temperature = 0;
  options.sampling.logit_bias[2] = 1000.0f;  // force </s>
  const GenerationResult result = Run(options);
  EXPECT_EQ(result.stop_reason, StopReason::kEos);
  EXPECT_TRUE(result.tokens.empty());
}

TEST_F(GenerateTest, StopsAtAStopString) {
  GenerationOptions options;
  options.max_tokens = 16;
  options.sampling.temperature = 0;
  const GenerationResult free_run = Run(options);
  ASSERT_GE(free_run.text.size(), 6u);
  options.stop = {free_run.text.substr(3, 3)};
  std::string streamed;
  const GenerationResult stopped = Run(options, &streamed);
  EXPECT_EQ(stopped.stop_reason, StopReason::kStopString);
  EXPECT_EQ(stopped.text, free_run.text.substr(0, free_run.text.find(options.stop[0])));
  EXPECT_EQ(streamed, stopped.text);
}

TEST_F(GenerateTest, StopsAtTheContextLimit) {
  test::TempDir dir;
  nlohmann::json config = test::ReadJson(test::FixtureDir("real_tokenizer_bf16") / "config.json");
  config["max_position_embeddings"] = 128 + 9;  // meta tokens count
  config["orig_max_position_embeddings"] = 128;  // a positive NTK base (more than half of it)
  test::WriteModel(dir.path(), config, test::ReadFixtureTensors("real_tokenizer_bf16"));
  const Model small = Model::Load(dir.path());
  Sequence sequence = small.NewSequence();
  GenerationOptions options;
  options.sampling.temperature = 0;
  const std::vector<int32_t> prompt = RealTokenizer().Encode("Once upon a time", {.add_bos = true});
  const GenerationResult result = Generate(small, RealTokenizer(), sequence, prompt, options);
  EXPECT_EQ(result.stop_reason, StopReason::kContextLimit);
  // 5 prompt tokens and 4 generated ones fill the 9 text positions; the logits
  // of the last position still give a 5th token, which is returned, not fed.
  EXPECT_EQ(result.tokens.size(), 5u);
  EXPECT_EQ(sequence.positions(), 137);
  // A prompt that does not fit at all is an error, not a silent truncation.
  Sequence fresh = small.NewSequence();
  EXPECT_THROW(Generate(small, RealTokenizer(), fresh, std::vector<int32_t>(10, 100), options), Error);
}

// A model that scores more ids than its tokenizer has (a vocabulary padded
// past the tokenizer's): sampling as hot as it goes, from random weights that
// spread the probability over all 32,001 ids, draws only ids with text.
TEST(Generate, PaddedVocabularyNeverDrawsAnIdWithoutText) {
  const Model model = Model::Load(test::FixtureDir("real_tokenizer_bf16"));
  const Tokenizer tokenizer = Tokenizer::Load(test::ShippedModelDir());
  ASSERT_LT(tokenizer.vocab_size() * 8, model.config().vocab_size);
  EXPECT_EQ(DrawableIds(model, tokenizer), tokenizer.vocab_size());
  GenerationOptions options;
  options.max_tokens = 48;
  options.sampling.temperature = 50;  // nearly uniform over whatever may be drawn
  options.sampling.top_k = 0, options.sampling.top_p = 1, options.sampling.min_p = 0, options.sampling.seed = 7;
  options.sampling.logit_bias[2] = -INFINITY;  // no EOS: every draw counts
  Sequence sequence = model.NewSequence();
  const std::vector<int32_t> prompt = tokenizer.Encode("And", {.add_bos = true});
  const GenerationResult result = Generate(model, tokenizer, sequence, prompt, options);
  ASSERT_EQ(result.tokens.size(), 48u);
  for (int32_t token : result.tokens) EXPECT_LT(token, tokenizer.vocab_size());
  EXPECT_EQ(result.text, tokenizer.Decode(result.tokens));
  // A bias on a padding id names an id that can never be drawn: refused.
  options.sampling.logit_bias[tokenizer.vocab_size()] = 1;
  Sequence fresh = model.NewSequence();
  EXPECT_THROW(Generate(model, tokenizer, fresh, prompt, options), Error);
}

TEST(GenerateCli, ContextOverflowIsAClearError) {
  test::TempDir dir;
  nlohmann::json config = test::ReadJson(test::FixtureDir("real_tokenizer_bf16") / "config.json");
  config["max_position_embeddings"] = 128 + 4;
  config["orig_max_position_embeddings"] = 128;
  test::WriteModel(dir.path(), config, test::ReadFixtureTensors("real_tokenizer_bf16"));
  for (const char* file : {"tokenizer.model", "tokenizer_config.json"}) {
    std::filesystem::copy_file(test::FixtureDir("real_tokenizer_bf16") / file, dir / file);
  }
  test::CommandResult result = test::RunCli({"generate", "-m", dir.path().string(), "-p", "one two three four five six"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("context limit"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("max_position_embeddings (132)"), std::string::npos) << result.err;
  result = test::RunCli({"generate", "-m", dir.path().string(), "-p", "one", "--temp", "0"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.err.find("stopped at the context limit"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("stop: context"), std::string::npos) << result.err;
}

// -f takes a prompt of any size and any bytes: a 1 MB prompt is refused
// with its token count against the context, NUL bytes and invalid UTF-8 are
// generated from, and the prompt comes from exactly one of -p and -f.
TEST(GenerateCli, PromptFilesOfAnySizeAndBytes) {
  test::TempDir dir;
  const std::string model = test::FixtureDir("real_tokenizer_bf16").string();
  std::string huge;
  while (huge.size() < (1 << 20)) huge += "In the beginning ";
  test::WriteText(dir / "huge.txt", huge);
  test::CommandResult result = test::RunCli({"generate", "-m", model, "-f", (dir / "huge.txt").string(), "-n", "2"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("context limit"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("exceed max_position_embeddings"), std::string::npos) << result.err;

  test::WriteText(dir / "bytes.txt", std::string("In the\0begin\xffning \xc3", 16));
  result = test::RunCli({"generate", "-m", model, "-f", (dir / "bytes.txt").string(), "-n", "3", "--temp", "0", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(nlohmann::json::parse(result.out)["tokens"].size(), 3u);

  result = test::RunCli({"generate", "-m", model, "-n", "2"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("-p TEXT or -f FILE"), std::string::npos) << result.err;
  result = test::RunCli({"generate", "-m", model, "-p", "Hi", "-f", (dir / "bytes.txt").string()});
  EXPECT_NE(result.exit_code, 0);
  result = test::RunCli({"generate", "-m", model, "-f", (dir / "missing.txt").string()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("missing.txt"), std::string::npos) << result.err;
}

TEST(GenerateCli, JsonOutputAndBadFlags) {
  const std::string model = test::FixtureDir("real_tokenizer_bf16").string();
  test::CommandResult result =
      test::RunCli({"generate", "-m", model, "-p", "Hello", "-n", "5", "--temp", "0", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json out = nlohmann::json::parse(result.out);
  EXPECT_EQ(out["prompt_tokens"], 2);
  EXPECT_EQ(out["tokens"].size(), 5u);
  EXPECT_EQ(out["stop_reason"], "length");
  EXPECT_TRUE(out["timings"].contains("generation_tokens_per_second"));
  EXPECT_NE(result.err.find("prompt eval:"), std::string::npos);
  EXPECT_NE(result.err.find("generation:"), std::string::npos);

  result = test::RunCli({"generate", "-m", model, "-p", "Hello", "-n", "5", "--temp", "0"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, out["text"].get<std::string>() + "\n");

  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--top-p", "1.5"}, {"--min-p", "-1"}, {"--repeat-penalty", "0"}, {"--logit-bias", "12x"},
           {"--logit-bias", "99999+1"}, {"-n", "-7"}, {"--temp", "warm"}}) {
    result = test::RunCli({"generate", "-m", model, "-p", "Hello", flag, value});
    EXPECT_NE(result.exit_code, 0) << flag << " " << value;
    EXPECT_NE(result.err.find(flag), std::string::npos) << flag << ": " << result.err;
  }
}

}  // namespace
}  // namespace hymba

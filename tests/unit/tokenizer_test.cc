// Tokenizer cases whose expected ids come from python3-sentencepiece
// (tests/reference/tokenizer_cases.py), plus the spec's chat prompt.
#include "hymba/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "hymba/error.h"
#include "test_util.h"

namespace hymba {
namespace {

const Tokenizer& RealTokenizer() {
  static const Tokenizer tokenizer = Tokenizer::Load(test::DataDir() / "hymba-1.5b");
  return tokenizer;
}

TEST(Tokenizer, InstructChatPromptGivesTheSpec38Ids) {
  const std::string prompt =
      "<extra_id_0>System\nYou are a helpful assistant.\n\n<extra_id_1>User\nHello\n<extra_id_1>Assistant\n";
  const std::vector<int32_t> expected = {529,   17833, 29918, 333,   29918, 29900, 29958, 3924,  13,    3492,
                                         526,   263,   8444,  20255, 29889, 13,    13,    29966, 17833, 29918,
                                         333,   29918, 29896, 29958, 2659,  13,    10994, 13,    29966, 17833,
                                         29918, 333,   29918, 29896, 29958, 7900,  22137, 13};
  EXPECT_EQ(RealTokenizer().Encode(prompt, {.add_bos = false, .parse_special = true}), expected);
  EXPECT_EQ(RealTokenizer().Decode(expected), prompt);
}

TEST(Tokenizer, BaseModelCardExample) {
  EXPECT_EQ(RealTokenizer().Encode("Hello", {.add_bos = true}), (std::vector<int32_t>{1, 15043}));
  EXPECT_EQ(RealTokenizer().bos_id(), 1);
  EXPECT_EQ(RealTokenizer().vocab_size(), 32001);
}

TEST(Tokenizer, CasesFromPythonSentencePiece) {
  const nlohmann::json cases = test::ReadJson(test::DataDir() / "tokenizer_cases.json");
  ASSERT_GE(cases.size(), 15u);
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const EncodeOptions options{.add_bos = c["bos"].get<bool>(), .parse_special = c["special"].get<bool>()};
    const std::vector<int32_t> ids = c["ids"];
    EXPECT_EQ(RealTokenizer().Encode(text, options), ids) << c["name"];
    EXPECT_EQ(RealTokenizer().Decode(ids), c["decoded"].get<std::string>()) << c["name"];
  }
}

TEST(Tokenizer, SpecialTokensSplitOnlyWhenParsed) {
  const Tokenizer& t = RealTokenizer();
  const std::vector<int32_t> parsed = t.Encode("a</s>b[PAD]", {.parse_special = true});
  EXPECT_NE(std::find(parsed.begin(), parsed.end(), 2), parsed.end());
  EXPECT_NE(std::find(parsed.begin(), parsed.end(), 32000), parsed.end());
  const std::vector<int32_t> plain = t.Encode("a</s>b[PAD]", {.parse_special = false});
  EXPECT_EQ(std::find(plain.begin(), plain.end(), 2), plain.end());
  EXPECT_EQ(std::find(plain.begin(), plain.end(), 32000), plain.end());
  // Special tokens are skipped; each piece around them had its own dummy-prefix space.
  EXPECT_EQ(t.Decode(parsed), "a b");
  EXPECT_EQ(t.Decode(plain), "a</s>b[PAD]");
}

TEST(Tokenizer, ByteFallbackPiecesJoinIntoUtf8) {
  const Tokenizer& t = RealTokenizer();
  const std::string text = "🦙 naïve 你好";
  EXPECT_EQ(t.Decode(t.Encode(text, {})), text);
}

// Prompts are bytes, not always UTF-8: as in SentencePiece itself, each byte
// of an invalid sequence reads as U+FFFD, and NUL is an ordinary character.
// The ids are those of the repaired text, and valid.
TEST(Tokenizer, InvalidUtf8BecomesReplacementCharactersAndNulStays) {
  const Tokenizer& t = RealTokenizer();
  const std::string text("ab\xff\xc3 c\0d\xe4\xb8", 10);
  const std::string replacement = "\xef\xbf\xbd";
  const std::string repaired = "ab" + replacement + replacement + std::string(" c\0d", 4) + replacement + replacement;
  const std::vector<int32_t> ids = t.Encode(text, {});
  for (int32_t id : ids) {
    ASSERT_GE(id, 0);
    ASSERT_LT(id, t.vocab_size());
  }
  EXPECT_EQ(ids, t.Encode(repaired, {}));
  EXPECT_EQ(t.Decode(ids), repaired);
}

TEST(Tokenizer, BadInput) {
  EXPECT_THROW(RealTokenizer().Decode(std::vector<int32_t>{5, 40000}), Error);
  EXPECT_THROW(RealTokenizer().Decode(std::vector<int32_t>{-1}), Error);
  EXPECT_THROW(Tokenizer::Load("/nonexistent"), Error);
  test::TempDir dir;
  EXPECT_THROW(Tokenizer::Load(dir.path()), Error);  // no tokenizer.model
  std::filesystem::copy_file(test::DataDir() / "hymba-1.5b" / "tokenizer.model", dir / "tokenizer.model");
  for (const char* entry : {R"({"32001": {"content": "<x>", "special": "yes"}})", R"({"2147483647": {"content": "<x>"}})"}) {
    test::WriteText(dir / "tokenizer_config.json", std::string(R"({"added_tokens_decoder": )") + entry + "}");
    test::ExpectError([&] { Tokenizer::Load(dir.path()); }, {"tokenizer_config.json", "added_tokens_decoder"});
  }
  std::filesystem::remove(dir / "tokenizer_config.json");
  test::WriteText(dir / "tokenizer.model", "not a protobuf");
  try {
    Tokenizer::Load(dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.model"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hymba

// hymba chat and hymba prompt through the CLI.
#include <sys/wait.h>

#include <gtest/gtest.h>


#include "test_util.h"

namespace hymba {
namespace {

const std::string kModel = test::FixtureDir("real_tokenizer_bf16").string();  // Hymba's tokenizer_config

std::vector<int> PromptEvalCounts(const std::string& err) {
  std::vector<int> counts;
  const std::string label = "prompt eval:";
  for (size_t at = err.find(label); at != std::string::npos; at = err.find(label, at + 1)) {
    counts.push_back(std::stoi(err.substr(at + label.size())));  // stoi skips the padding spaces
  }
  return counts;
}

TEST(ChatCli, PipedThreeTurnConversationFeedsOnlyNewTokens) {
  test::TempDir dir;
  test::WriteText(dir / "in.txt", "Hello there\nWhat is your name?\nTell me more.\n");
  const std::string command = std::string("'") + HYMBA_CLI_PATH + "' chat -m '" + kModel +
                              "' --system 'Be brief.' -n 6 --temp 0 < '" + (dir / "in.txt").string() + "' > '" +
                              (dir / "out").string() + "' 2> '" + (dir / "err").string() + "'";
  ASSERT_EQ(std::system(command.c_str()), 0) << test::ReadText(dir / "err");
  const std::string err = test::ReadText(dir / "err");
  const std::vector<int> counts = PromptEvalCounts(err);
  ASSERT_EQ(counts.size(), 3u) << err;
  // Turn 1 reads the whole rendered prompt; a re-read at turn 3 would cost at
  // least everything turns 1 and 2 fed, plus the replies.
  test::WriteText(dir / "turn1.json", R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}])");
  const test::CommandResult rendered = test::RunCli({"prompt", "-m", kModel, "--messages", (dir / "turn1.json").string()});
  ASSERT_EQ(rendered.exit_code, 0) << rendered.err;
  const test::CommandResult tokens = test::RunCli({"tokenize", "-m", kModel, "--text", rendered.out});
  EXPECT_EQ(counts[0], static_cast<int>(nlohmann::json::parse(tokens.out).size()));
  EXPECT_LT(counts[1], counts[0]);
  EXPECT_LT(counts[2], counts[0] + counts[1]);
  EXPECT_EQ(err.find("re-reading"), std::string::npos) << err;
}

TEST(ChatCli, ClearAndExitCommands) {
  test::TempDir dir;
  test::WriteText(dir / "in.txt", "Hi\n/clear\nHi\n/exit\nnever read\n");
  const std::string command = std::string("'") + HYMBA_CLI_PATH + "' chat -m '" + kModel + "' -n 3 --temp 0 < '" +
                              (dir / "in.txt").string() + "' > '" + (dir / "out").string() + "' 2> '" +
                              (dir / "err").string() + "'";
  ASSERT_EQ(std::system(command.c_str()), 0);
  const std::string err = test::ReadText(dir / "err");
  const std::vector<int> counts = PromptEvalCounts(err);
  ASSERT_EQ(counts.size(), 2u) << err;
  EXPECT_EQ(counts[0], counts[1]);  // after /clear the same first turn is read again from scratch
  EXPECT_NE(err.find("conversation cleared"), std::string::npos);
}

// A turn that fails (here a message beyond the context) is reported and
// leaves the conversation as it was: the next turn continues from the state
// of the turn before it; the exit status tells that a turn failed.
TEST(ChatCli, AFailedTurnDoesNotEndTheChat) {
  test::TempDir dir;
  std::string huge;
  for (int i = 0; i < 9000; ++i) huge += "word ";  // beyond max_position_embeddings (8192)
  test::WriteText(dir / "in.txt", "Hi\n" + huge + "\nHi again\n");
  const std::string command = std::string("'") + HYMBA_CLI_PATH + "' chat -m '" + kModel + "' -n 3 --temp 0 < '" +
                              (dir / "in.txt").string() + "' > '" + (dir / "out").string() + "' 2> '" +
                              (dir / "err").string() + "'";
  const int status = std::system(command.c_str());
  const std::string err = test::ReadText(dir / "err");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << err;
  EXPECT_NE(err.find("context limit: the conversation with this message"), std::string::npos) << err;
  EXPECT_NE(err.find("1 turn(s) of the chat failed"), std::string::npos) << err;
  const std::vector<int> counts = PromptEvalCounts(err);
  ASSERT_EQ(counts.size(), 2u) << err;  // turns 1 and 3 ran
  EXPECT_LT(counts[1], counts[0]);      // turn 3 fed only what it added to turn 1
  EXPECT_EQ(err.find("re-reading"), std::string::npos) << err;
}

TEST(ChatCli, PromptRendersTheTemplate) {
  test::TempDir dir;
  test::WriteText(dir / "m.json", R"([{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello"}])");
  test::CommandResult result = test::RunCli({"prompt", "-m", kModel, "--messages", (dir / "m.json").string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "<extra_id_0>System\nYou are a helpful assistant.\n\n<extra_id_1>User\nHello\n<extra_id_1>Assistant\n");
  result = test::RunCli({"prompt", "-m", kModel, "--messages", (dir / "m.json").string(), "--no-generation-prompt"});
  EXPECT_EQ(result.out, "<extra_id_0>System\nYou are a helpful assistant.\n\n<extra_id_1>User\nHello\n");

  test::WriteText(dir / "bad.json", "[{\"role\": ");
  result = test::RunCli({"prompt", "-m", kModel, "--messages", (dir / "bad.json").string()});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("bad.json: malformed JSON"), std::string::npos) << result.err;
  test::WriteText(dir / "obj.json", R"({"msgs": []})");
  result = test::RunCli({"prompt", "-m", kModel, "--messages", (dir / "obj.json").string()});
  EXPECT_NE(result.err.find("\"messages\""), std::string::npos) << result.err;
  result = test::RunCli({"prompt", "-m", kModel, "--messages", (dir / "missing.json").string()});
  EXPECT_NE(result.err.find("missing.json: cannot open"), std::string::npos) << result.err;
}

TEST(ChatCli, TemplateErrorsAndModelsWithoutTemplate) {
  test::TempDir dir;
  std::filesystem::copy(kModel, dir / "model", std::filesystem::copy_options::recursive);
  nlohmann::json config = test::ReadJson(dir / "model" / "tokenizer_config.json");
  config["chat_template"] = "{% for m in messages %}{{ m.content | shout }}{% endfor %}";
  test::WriteText(dir / "model" / "tokenizer_config.json", config.dump());
  test::WriteText(dir / "m.json", R"([{"role": "user", "content": "Hello"}])");
  test::CommandResult result = test::RunCli({"prompt", "-m", (dir / "model").string(), "--messages", (dir / "m.json").string()});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("line 1, column 37: unsupported filter 'shout'"), std::string::npos) << result.err;
  config.erase("chat_template");
  test::WriteText(dir / "model" / "tokenizer_config.json", config.dump());
  result = test::RunCli({"prompt", "-m", (dir / "model").string(), "--messages", (dir / "m.json").string()});
  EXPECT_NE(result.err.find("no chat_template"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace hymba

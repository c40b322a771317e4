// hymba chat and hymba prompt: conversations through the model's chat template.
//
// The chat keeps one sequence for the whole conversation and feeds it only
// what each turn adds: the rendered conversation of turn k+1 starts with the
// tokens turn k fed, so only the difference is appended. Hymba's SSM state
// cannot be rolled back, so a snapshot taken after each prompt lets a turn
// continue from there when the reply's own tokens differ from how the template
// re-tokenizes it; only when neither matches is the conversation re-read.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "hymba/chat_template.h"
#include "hymba/hymba.h"
#include "io/json.h"
#include "io/text_file.h"

namespace hymba::cli {
namespace {

using Json = nlohmann::ordered_json;

bool StartsWith(const std::vector<int32_t>& tokens, const std::vector<int32_t>& prefix) {
  return prefix.size() <= tokens.size() && std::equal(prefix.begin(), prefix.end(), tokens.begin());
}

// A sequence with the exact tokens it has been fed.
struct FedSequence {
  Sequence sequence;
  std::vector<int32_t> tokens;
};

}  // namespace

void RunPrompt(const std::filesystem::path& model_dir, const std::filesystem::path& messages_file, bool generation_prompt) {
  const Tokenizer tokenizer = Tokenizer::Load(model_dir);
  const ChatTemplate chat = LoadChatTemplate(model_dir, tokenizer);
  Json conversation = ParseJson<Json>(ReadSmallFile(messages_file), messages_file.string());
  if (conversation.is_array()) conversation = Json{{"messages", conversation}};
  if (!conversation.is_object() || !conversation.contains("messages") || !conversation["messages"].is_array()) {
    throw Error(messages_file.string() + ": expected a list of messages or an object with \"messages\"");
  }
  std::cout << RenderConversation(chat, conversation, generation_prompt, tokenizer);
}

void RunChat(const ChatFlags& flags) {
  const Model model = LoadModel(flags.model_dir, flags.threads, flags.numerics);
  const Tokenizer tokenizer = Tokenizer::Load(flags.model_dir);
  const ChatTemplate chat = LoadChatTemplate(flags.model_dir, tokenizer);
  GenerationOptions options;
  options.max_tokens = flags.max_tokens;
  options.sampling = flags.sampling.Resolve();
  options.stop = flags.stop;
  for (std::string& stop : ReplyStopStrings(chat)) options.stop.push_back(std::move(stop));
  const bool interactive = isatty(STDIN_FILENO) != 0;

  Json conversation = {{"messages", Json::array()}};
  if (!flags.system.empty()) conversation["messages"].push_back({{"role", "system"}, {"content", flags.system}});
  std::optional<FedSequence> live;      // after the last reply
  std::optional<FedSequence> snapshot;  // after the last prompt, before the reply
  int failed_turns = 0;

  if (interactive) std::cout << "hymba chat: /clear starts over, /exit or end of input quits\n";
  std::string line;
  while (true) {
    if (interactive) std::cout << "\n> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit") break;
    if (line == "/clear") {
      conversation["messages"] = Json::array();
      if (!flags.system.empty()) conversation["messages"].push_back({{"role", "system"}, {"content", flags.system}});
      live.reset();
      snapshot.reset();
      std::cerr << "(conversation cleared)\n";
      continue;
    }
    if (line.empty()) continue;
    conversation["messages"].push_back({{"role", "user"}, {"content", line}});
    try {
      const std::vector<int32_t> prompt = EncodeConversation(chat, conversation, tokenizer);
      std::optional<FedSequence>* reuse = nullptr;
      if (live && StartsWith(prompt, live->tokens)) {
        reuse = &live;
      } else if (snapshot && StartsWith(prompt, snapshot->tokens)) {
        std::cerr << "(the reply re-tokenizes differently: continuing from the end of the previous prompt)\n";
        reuse = &snapshot;
      } else if (live || snapshot) {
        std::cerr << "(re-reading the conversation: it no longer starts with what was fed)\n";
      }
      const size_t reused = reuse != nullptr ? (*reuse)->tokens.size() : 0;
      const std::vector<int32_t> added(prompt.begin() + static_cast<ptrdiff_t>(reused), prompt.end());
      if (added.empty()) throw Error("the chat template rendered nothing new for this turn");
      // Checked before the state is touched, so that the conversation so far survives.
      const Config& config = model.config();
      const int64_t end = static_cast<int64_t>(prompt.size()) + config.num_memory_tokens;
      if (end > config.max_position_embeddings) {
        throw Error("context limit: the conversation with this message is " + std::to_string(prompt.size()) +
                    " tokens plus " + std::to_string(config.num_memory_tokens) +
                    " meta tokens, beyond max_position_embeddings (" +
                    std::to_string(config.max_position_embeddings) + "); /clear to start over");
      }
      FedSequence current = reuse != nullptr ? std::move(**reuse) : FedSequence{model.NewSequence(), {}};
      live.reset();
      snapshot.reset();

      options.history = current.tokens;
      current.tokens.insert(current.tokens.end(), added.begin(), added.end());
      options.after_prompt = [&](const Sequence& prompted) { snapshot = FedSequence{prompted.Clone(), current.tokens}; };
      GenerationResult result = Generate(model, tokenizer, current.sequence, added, options, [](std::string_view text) {
        std::cout << text << std::flush;
      });
      std::cout << "\n" << std::flush;
      PrintTimings(result);
      if (result.stop_reason == StopReason::kContextLimit) {
        std::cerr << "hymba: the conversation reached the context limit (max_position_embeddings "
                  << config.max_position_embeddings << "); /clear to start over\n";
      }
      // What the sequence was fed: the prompt, then every generated token except
      // the one whose text completed a stop string or hit the context limit.
      const size_t fed_replies = result.tokens.size() - (result.stop_reason == StopReason::kStopString ||
                                                                 result.stop_reason == StopReason::kContextLimit
                                                             ? (result.tokens.empty() ? 0 : 1)
                                                             : 0);
      current.tokens.insert(current.tokens.end(), result.tokens.begin(),
                            result.tokens.begin() + static_cast<ptrdiff_t>(fed_replies));
      live = std::move(current);
      conversation["messages"].push_back({{"role", "assistant"}, {"content", result.text}});
    } catch (const Error& error) {
      // The turn did not happen: its message leaves the conversation and the
      // chat goes on. A state the failure may have left half-fed is dropped
      // (the next turn re-reads the conversation).
      conversation["messages"].erase(conversation["messages"].size() - 1);
      std::cerr << "hymba: " << error.what() << "\n";
      ++failed_turns;
    }
  }
  if (failed_turns > 0) throw Error(std::to_string(failed_turns) + " turn(s) of the chat failed (errors above)");
}

}  // namespace hymba::cli

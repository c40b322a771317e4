// The subset of Jinja2 that Hugging Face chat templates use, rendered the way
// transformers' apply_chat_template renders them: trim_blocks and
// lstrip_blocks on, undefined names empty and falsy, `tojson` as transformers
// defines it (json.dumps with ensure_ascii=False, keys in insertion order).
//
// Supported: {{ }}, {% if/elif/else %}, {% for x in xs %} (also `for k, v in
// d.items()`, loop.index/index0/first/last/length/revindex), {% set %} (with
// Jinja's loop scoping and namespace()), {# #}, whitespace control `-`;
// literals, lists, dicts, attributes, subscripts and slices, + - * / // % ~,
// comparisons, and/or/not, in / not in, `is [not] defined/none/string/number/
// mapping/iterable/sequence/true/false`, inline `a if c else b`; string methods
// strip lstrip rstrip startswith endswith upper lower title split replace,
// dict methods items keys values get; filters trim tojson length count lower
// upper title default join first last string int float list reverse;
// raise_exception(msg). Anything else is an error naming the template line and
// column, never silently ignored.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hymba {
namespace jinja {
struct Node;
}

class ChatTemplate {
 public:
  // Parses the template; throws hymba::Error with "line L, column C" on a
  // syntax error or an unsupported construct.
  explicit ChatTemplate(const std::string& source);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  // context: {"messages": [...], "add_generation_prompt": bool, "bos_token":
  // ..., "eos_token": ..., and anything else the template reads}.
  std::string Render(const nlohmann::ordered_json& context) const;

  // Whether the template text contains `text` (for stop strings such as </s>).
  bool Mentions(const std::string& text) const { return source_.find(text) != std::string::npos; }

 private:
  std::string source_;
  std::unique_ptr<jinja::Node> root_;
};

class Tokenizer;

// The tokenizer's chat template; throws hymba::Error naming `model_path`'s
// tokenizer_config.json (or GGUF file) when the model has none.
ChatTemplate LoadChatTemplate(const std::filesystem::path& model_path, const Tokenizer& tokenizer);

// A conversation ({"messages": [...]} and anything else the template reads)
// rendered as apply_chat_template renders it, with the tokenizer's bos_token
// and eos_token unless the conversation sets them.
std::string RenderConversation(const ChatTemplate& chat, const nlohmann::ordered_json& conversation,
                               bool add_generation_prompt, const Tokenizer& tokenizer);
// The rendering's tokens, as apply_chat_template(tokenize=True) gives them:
// no BOS added, special-token text parsed (E7).
std::vector<int32_t> EncodeConversation(const ChatTemplate& chat, const nlohmann::ordered_json& conversation,
                                        const Tokenizer& tokenizer);
// The strings that end a reply (E8): with a template whose turns start with
// <extra_id_1> (Hymba's), the next turn's marker and </s>.
std::vector<std::string> ReplyStopStrings(const ChatTemplate& chat);

}  // namespace hymba

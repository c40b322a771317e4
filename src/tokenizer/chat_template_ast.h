// The parsed form of a chat template, shared by the parser and the renderer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hymba::jinja {

// Limits that keep a hostile template (chat templates come inside model
// files) to bounded time, memory and stack; real templates stay far below.
constexpr int kMaxNesting = 100;                          // expression and block depth, and nested values
constexpr size_t kMaxRenderBytes = size_t{64} << 20;      // the output, and any one string or list built
constexpr uint64_t kMaxRenderSteps = 1'000'000;           // expressions evaluated and nodes run

struct Expr {
  enum Kind {
    kLiteral,           // value
    kUndefinedLiteral,  // an omitted part (slice bound, missing else)
    kName,              // name
    kList,              // args: items
    kDict,              // args: key, value, key, value, ...
    kAttribute,         // args[0].name
    kSubscript,         // name "index": args[0][args[1]]; "slice": args[0][args[1]:args[2]:args[3]]
    kCall,              // args[0](args[1..]), keywords name the trailing args
    kFilter,            // args[0] | name(args[1..])
    kTest,              // args[0] is name(args[1..])
    kBinary,            // args[0] name args[1]
    kNot,               // not args[0]
    kConditional,       // args[1] if args[0] else args[2]
  };
  Expr(Kind k, size_t at) : kind(k), offset(at) {}
  Kind kind;
  size_t offset;  // in the template source, for error messages
  int depth = 1;  // of the tree below, this node included
  std::string name;
  nlohmann::ordered_json value;
  std::vector<std::unique_ptr<Expr>> args;
  std::vector<std::string> keywords;  // keyword-argument names of the last args of a call
};

struct Node {
  enum Kind {
    kBody,      // children, in order
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // children: branches (kBody with expr = condition); else_body
    kFor,       // targets in expr: children[0]; else_body when empty
    kSet,       // targets = expr (targets: name, or namespace and attribute)
    kBreak,
    kContinue,
  };
  Node(Kind k, size_t at) : kind(k), offset(at) {}
  Kind kind;
  size_t offset;
  std::string text;
  std::unique_ptr<Expr> expr;
  std::vector<std::string> targets;
  std::vector<std::unique_ptr<Node>> children;
  std::unique_ptr<Node> else_body;
};

std::string Position(const std::string& source, size_t offset);
[[noreturn]] void Fail(const std::string& source, size_t offset, const std::string& message);
std::string Render(const std::string& source, const Node& root, const nlohmann::ordered_json& context);

}  // namespace hymba::jinja

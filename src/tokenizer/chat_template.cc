// Parsing of the Jinja subset: the template is cut into text and tags (with
// HF's trim_blocks / lstrip_blocks and `-` whitespace control applied to the
// text), tag contents are tokenised, and a recursive-descent parser builds the
// tree that chat_template_eval.cc renders.
#include "hymba/chat_template.h"

#include <cctype>

#include "hymba/error.h"
#include "hymba/tokenizer.h"
#include "tokenizer/chat_template_ast.h"

namespace hymba {
namespace jinja {

std::string Position(const std::string& source, size_t offset) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

[[noreturn]] void Fail(const std::string& source, size_t offset, const std::string& message) {
  throw Error("chat template, " + Position(source, offset) + ": " + message);
}

namespace {

// ---------------------------------------------------------------- template cutting

struct Piece {
  enum Kind { kText, kOutput, kStatement, kComment } kind;
  std::string text;  // raw text, or the tag's inside without delimiters and '-'
  size_t offset;     // of the text or of the tag's first character
  bool strip_before = false, strip_after = false, keep_indent = false;
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Cuts the template into text and tags, then applies whitespace control.
std::vector<Piece> Cut(const std::string& source) {
  std::vector<Piece> pieces;
  size_t pos = 0;
  while (pos < source.size()) {
    size_t open = source.find('{', pos);
    while (open != std::string::npos && open + 1 < source.size() && source[open + 1] != '{' &&
           source[open + 1] != '%' && source[open + 1] != '#') {
      open = source.find('{', open + 1);
    }
    if (open == std::string::npos || open + 1 >= source.size()) {
      pieces.push_back({Piece::kText, source.substr(pos), pos});
      break;
    }
    if (open > pos) pieces.push_back({Piece::kText, source.substr(pos, open - pos), pos});
    const char type = source[open + 1];
    const std::string close = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    Piece tag{type == '{' ? Piece::kOutput : type == '%' ? Piece::kStatement : Piece::kComment, "", open};
    size_t inner = open + 2;
    if (inner < source.size() && source[inner] == '-') {
      tag.strip_before = true;
      ++inner;
    } else if (inner < source.size() && source[inner] == '+') {
      tag.keep_indent = true;
      ++inner;
    }
    // Find the closing delimiter outside string literals.
    size_t end = inner;
    char quote = 0;
    for (; end + 1 < source.size(); ++end) {
      const char c = source[end];
      if (type != '#' && quote == 0 && (c == '\'' || c == '"')) {
        quote = c;
      } else if (quote != 0 && c == '\\') {
        ++end;
      } else if (quote != 0 && c == quote) {
        quote = 0;
      } else if (quote == 0 && source.compare(end, 2, close) == 0) {
        break;
      }
    }
    if (end + 1 >= source.size()) Fail(source, open, "unterminated tag: no closing \"" + close + "\"");
    size_t inner_end = end;
    if (inner_end > inner && source[inner_end - 1] == '-') {
      tag.strip_after = true;
      --inner_end;
    }
    tag.text = source.substr(inner, inner_end - inner);
    pieces.push_back(tag);
    pos = end + 2;
  }

  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].kind != Piece::kText) continue;
    std::string& text = pieces[i].text;
    const Piece* before = i > 0 ? &pieces[i - 1] : nullptr;
    const Piece* after = i + 1 < pieces.size() ? &pieces[i + 1] : nullptr;
    size_t begin = 0, end = text.size();
    if (before && before->strip_after) {
      while (begin < end && IsSpace(text[begin])) ++begin;
    } else if (before && before->kind != Piece::kOutput && begin < end && text[begin] == '\n') {
      ++begin;  // trim_blocks: the first newline after a block or comment tag
    }
    if (after && after->strip_before) {
      while (end > begin && IsSpace(text[end - 1])) --end;
    } else if (after && after->kind != Piece::kOutput && !after->keep_indent) {
      // lstrip_blocks: spaces and tabs between a line start and a block tag.
      size_t line_start = end;
      while (line_start > begin && (text[line_start - 1] == ' ' || text[line_start - 1] == '\t')) --line_start;
      const bool at_line_start = line_start == 0 ? i == 0 : text[line_start - 1] == '\n';
      if (at_line_start && line_start >= begin) end = line_start;
    }
    text = begin < end ? text.substr(begin, end - begin) : "";
  }
  return pieces;
}

// ---------------------------------------------------------------- expression tokens

struct Token {
  enum Kind { kName, kString, kInt, kFloat, kOp, kEnd } kind;
  std::string text;
  size_t offset;
  nlohmann::ordered_json value;  // literals
};

std::vector<Token> Tokenize(const std::string& source, const std::string& text, size_t base) {
  static const char* kOps[] = {"//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")",
                               "[", "]", "{", "}", ",", ":", ".", "|", "="};
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    const size_t at = base + i;
    if (IsSpace(c)) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < text.size() && (std::isalnum(static_cast<unsigned char>(text[j])) || text[j] == '_')) ++j;
      tokens.push_back({Token::kName, text.substr(i, j - i), at, {}});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool is_float = false;
      while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '_' ||
                                 (text[j] == '.' && j + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[j + 1]))))) {
        is_float |= text[j] == '.';
        ++j;
      }
      if (j < text.size() && (text[j] == 'e' || text[j] == 'E')) {  // exponent: 1e20, 2.5e-3
        size_t k = j + 1;
        if (k < text.size() && (text[k] == '+' || text[k] == '-')) ++k;
        if (k < text.size() && std::isdigit(static_cast<unsigned char>(text[k]))) {
          while (k < text.size() && std::isdigit(static_cast<unsigned char>(text[k]))) ++k;
          j = k;
          is_float = true;
        }
      }
      std::string digits = text.substr(i, j - i);
      std::erase(digits, '_');
      Token token{is_float ? Token::kFloat : Token::kInt, digits, at, {}};
      try {
        token.value = is_float ? nlohmann::ordered_json(std::stod(digits)) : nlohmann::ordered_json(std::stoll(digits));
      } catch (const std::exception&) {
        Fail(source, at, "number " + digits + " is out of range");
      }
      tokens.push_back(token);
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string value;
      size_t j = i + 1;
      for (; j < text.size() && text[j] != c; ++j) {
        if (text[j] != '\\' || j + 1 >= text.size()) {
          value += text[j];
          continue;
        }
        const char escaped = text[++j];
        switch (escaped) {
          case 'n': value += '\n'; break;
          case 't': value += '\t'; break;
          case 'r': value += '\r'; break;
          case '\\': value += '\\'; break;
          case '\'': value += '\''; break;
          case '"': value += '"'; break;
          default: value += '\\'; value += escaped;
        }
      }
      if (j >= text.size()) Fail(source, at, "unterminated string literal");
      tokens.push_back({Token::kString, text.substr(i, j + 1 - i), at, value});
      i = j + 1;
    } else {
      const char* match = nullptr;
      for (const char* op : kOps) {
        if (text.compare(i, std::char_traits<char>::length(op), op) == 0) {
          match = op;
          break;
        }
      }
      if (!match) Fail(source, at, std::string("unexpected character '") + c + "'");
      tokens.push_back({Token::kOp, match, at, {}});
      i += std::char_traits<char>::length(match);
    }
  }
  tokens.push_back({Token::kEnd, "", base + text.size(), {}});
  return tokens;
}

// ---------------------------------------------------------------- parser

class Parser {
 public:
  Parser(const std::string& source, std::vector<Piece> pieces) : source_(source), pieces_(std::move(pieces)) {}

  std::unique_ptr<Node> ParseTemplate() {
    auto root = std::make_unique<Node>(Node::kBody, 0);
    ParseBody(*root, {});
    if (piece_ < pieces_.size()) Fail(source_, pieces_[piece_].offset, "unexpected {% " + Keyword(pieces_[piece_]) + " %}");
    return root;
  }

 private:
  static std::string Keyword(const Piece& piece) {
    size_t begin = 0;
    while (begin < piece.text.size() && IsSpace(piece.text[begin])) ++begin;
    size_t end = begin;
    while (end < piece.text.size() && (std::isalnum(static_cast<unsigned char>(piece.text[end])) || piece.text[end] == '_')) ++end;
    return piece.text.substr(begin, end - begin);
  }

  // Parses pieces into `body` until a statement whose keyword is in `stops`
  // (left unconsumed) or the end of the template.
  void ParseBody(Node& body, const std::vector<std::string>& stops) {
    const Nesting nesting(*this, body.offset);
    while (piece_ < pieces_.size()) {
      const Piece& piece = pieces_[piece_];
      if (piece.kind == Piece::kText) {
        if (!piece.text.empty()) {
          auto text = std::make_unique<Node>(Node::kText, piece.offset);
          text->text = piece.text;
          body.children.push_back(std::move(text));
        }
        ++piece_;
      } else if (piece.kind == Piece::kComment) {
        ++piece_;
      } else if (piece.kind == Piece::kOutput) {
        auto output = std::make_unique<Node>(Node::kOutput, piece.offset);
        output->expr = ParseWholeExpression(piece);
        body.children.push_back(std::move(output));
        ++piece_;
      } else {
        const std::string keyword = Keyword(piece);
        if (std::find(stops.begin(), stops.end(), keyword) != stops.end()) return;
        body.children.push_back(ParseStatement(piece, keyword));
      }
    }
    if (!stops.empty()) {
      Fail(source_, pieces_.empty() ? 0 : pieces_.back().offset, "missing {% " + stops.back() + " %}");
    }
  }

  std::unique_ptr<Node> ParseStatement(const Piece& piece, const std::string& keyword) {
    tokens_ = Tokenize(source_, piece.text, piece.offset + 2 + (piece.strip_before || piece.keep_indent ? 1 : 0));
    position_ = 1;  // past the keyword
    const size_t at = piece.offset;
    ++piece_;
    if (keyword == "if") {
      auto node = std::make_unique<Node>(Node::kIf, at);
      while (true) {
        auto branch = std::make_unique<Node>(Node::kBody, at);
        branch->expr = ParseExpression();
        ExpectEnd();
        ParseBody(*branch, {"elif", "else", "endif"});
        node->children.push_back(std::move(branch));
        const std::string next = Keyword(pieces_[piece_]);
        tokens_ = Tokenize(source_, pieces_[piece_].text, pieces_[piece_].offset + 2);
        position_ = 1;
        ++piece_;
        if (next == "elif") continue;
        if (next == "else") {
          ExpectEnd();
          node->else_body = std::make_unique<Node>(Node::kBody, at);
          ParseBody(*node->else_body, {"endif"});
          ++piece_;
        } else {
          ExpectEnd();
        }
        return node;
      }
    }
    if (keyword == "for") {
      auto node = std::make_unique<Node>(Node::kFor, at);
      node->targets.push_back(ExpectName());
      while (Accept(",")) node->targets.push_back(ExpectName());
      if (!AcceptName("in")) Fail(source_, Peek().offset, "expected 'in' in for loop");
      node->expr = ParseOr();  // no inline if: `for x in xs if cond` is a filter we do not support
      if (Peek().kind == Token::kName && Peek().text == "if") Fail(source_, Peek().offset, "for-loop filters are not supported");
      if (Peek().kind == Token::kName && Peek().text == "recursive") Fail(source_, Peek().offset, "recursive loops are not supported");
      ExpectEnd();
      auto body = std::make_unique<Node>(Node::kBody, at);
      ParseBody(*body, {"else", "endfor"});
      node->children.push_back(std::move(body));
      if (Keyword(pieces_[piece_]) == "else") {
        ++piece_;
        node->else_body = std::make_unique<Node>(Node::kBody, at);
        ParseBody(*node->else_body, {"endfor"});
      }
      ++piece_;
      return node;
    }
    if (keyword == "set") {
      auto node = std::make_unique<Node>(Node::kSet, at);
      node->targets.push_back(ExpectName());
      if (Accept(".")) node->targets.push_back(ExpectName());  // namespace attribute
      if (!Accept("=")) Fail(source_, Peek().offset, "block {% set %} is not supported; use {% set name = value %}");
      node->expr = ParseExpression();
      ExpectEnd();
      return node;
    }
    if (keyword == "break" || keyword == "continue") {
      ExpectEnd();
      return std::make_unique<Node>(keyword == "break" ? Node::kBreak : Node::kContinue, at);
    }
    if (keyword == "generation") {  // transformers' assistant-mask marker: renders its body
      ExpectEnd();
      auto node = std::make_unique<Node>(Node::kBody, at);
      ParseBody(*node, {"endgeneration"});
      ++piece_;
      return node;
    }
    for (const char* closer : {"endif", "endfor", "elif", "else", "endgeneration"}) {
      if (keyword == closer) Fail(source_, at, "unexpected {% " + keyword + " %}");
    }
    Fail(source_, at, "unsupported tag {% " + keyword + " %}");
  }

  std::unique_ptr<Expr> ParseWholeExpression(const Piece& piece) {
    tokens_ = Tokenize(source_, piece.text, piece.offset + 2 + (piece.strip_before ? 1 : 0));
    position_ = 0;
    auto expr = ParseExpression();
    ExpectEnd();
    return expr;
  }

  const Token& Peek(size_t ahead = 0) const { return tokens_[std::min(position_ + ahead, tokens_.size() - 1)]; }
  bool Accept(const std::string& op) {
    if (Peek().kind == Token::kOp && Peek().text == op) {
      ++position_;
      return true;
    }
    return false;
  }
  bool AcceptName(const std::string& name) {
    if (Peek().kind == Token::kName && Peek().text == name) {
      ++position_;
      return true;
    }
    return false;
  }
  void Expect(const std::string& op) {
    if (!Accept(op)) Fail(source_, Peek().offset, "expected '" + op + "'" + Found());
  }
  std::string ExpectName() {
    if (Peek().kind != Token::kName) Fail(source_, Peek().offset, "expected a name" + Found());
    return tokens_[position_++].text;
  }
  void ExpectEnd() {
    if (Peek().kind != Token::kEnd) Fail(source_, Peek().offset, "unexpected '" + Peek().text + "'");
  }
  std::string Found() const { return Peek().kind == Token::kEnd ? ", found the end of the tag" : ", found '" + Peek().text + "'"; }

  std::unique_ptr<Expr> Make(Expr::Kind kind, size_t at) { return std::make_unique<Expr>(kind, at); }

  // Every expression node knows the depth of its tree, so that no tree deeper
  // than kMaxNesting is ever built: evaluating and freeing one recurse.
  void Adopt(Expr& parent, std::unique_ptr<Expr> child) {
    parent.depth = std::max(parent.depth, child->depth + 1);
    if (parent.depth > kMaxNesting) {
      Fail(source_, parent.offset, "expression nested deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    parent.args.push_back(std::move(child));
  }

  // The parser's own recursion (parentheses, `not`, signs, blocks) is bounded
  // the same way.
  class Nesting {
   public:
    Nesting(Parser& parser, size_t at) : parser_(parser) {
      if (++parser_.nesting_ > kMaxNesting) {
        Fail(parser_.source_, at, "template nested deeper than " + std::to_string(kMaxNesting) + " levels");
      }
    }
    ~Nesting() { --parser_.nesting_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    Parser& parser_;
  };
  std::unique_ptr<Expr> Binary(const std::string& op, std::unique_ptr<Expr> left, std::unique_ptr<Expr> right, size_t at) {
    auto node = Make(Expr::kBinary, at);
    node->name = op;
    Adopt(*node, std::move(left));
    Adopt(*node, std::move(right));
    return node;
  }

  std::unique_ptr<Expr> ParseExpression() {
    const Nesting nesting(*this, Peek().offset);
    auto value = ParseOr();
    if (Peek().kind == Token::kName && Peek().text == "if") {
      const size_t at = Peek().offset;
      ++position_;
      auto node = Make(Expr::kConditional, at);
      Adopt(*node, ParseOr());  // condition
      Adopt(*node, std::move(value));
      Adopt(*node, AcceptName("else") ? ParseExpression() : Make(Expr::kUndefinedLiteral, at));
      return node;
    }
    return value;
  }

  std::unique_ptr<Expr> ParseOr() {
    auto left = ParseAnd();
    while (Peek().kind == Token::kName && Peek().text == "or") {
      const size_t at = Peek().offset;
      ++position_;
      left = Binary("or", std::move(left), ParseAnd(), at);
    }
    return left;
  }

  std::unique_ptr<Expr> ParseAnd() {
    auto left = ParseNot();
    while (Peek().kind == Token::kName && Peek().text == "and") {
      const size_t at = Peek().offset;
      ++position_;
      left = Binary("and", std::move(left), ParseNot(), at);
    }
    return left;
  }

  std::unique_ptr<Expr> ParseNot() {
    if (Peek().kind == Token::kName && Peek().text == "not") {
      const Nesting nesting(*this, Peek().offset);
      auto node = Make(Expr::kNot, Peek().offset);
      ++position_;
      Adopt(*node, ParseNot());
      return node;
    }
    return ParseComparison();
  }

  std::unique_ptr<Expr> ParseComparison() {
    auto left = ParseConcat();
    while (true) {
      const Token& token = Peek();
      const size_t at = token.offset;
      if (token.kind == Token::kOp && (token.text == "==" || token.text == "!=" || token.text == "<" ||
                                       token.text == "<=" || token.text == ">" || token.text == ">=")) {
        ++position_;
        left = Binary(token.text, std::move(left), ParseConcat(), at);
      } else if (token.kind == Token::kName && token.text == "in") {
        ++position_;
        left = Binary("in", std::move(left), ParseConcat(), at);
      } else if (token.kind == Token::kName && token.text == "not" && Peek(1).kind == Token::kName && Peek(1).text == "in") {
        position_ += 2;
        auto negated = Make(Expr::kNot, at);
        Adopt(*negated, Binary("in", std::move(left), ParseConcat(), at));
        left = std::move(negated);
      } else if (token.kind == Token::kName && token.text == "is") {
        ++position_;
        const bool negate = AcceptName("not");
        auto test = Make(Expr::kTest, at);
        test->name = ExpectName();
        Adopt(*test, std::move(left));
        if (Peek().kind == Token::kOp && Peek().text == "(") {
          ParseArguments(*test);
        } else if (Peek().kind == Token::kInt || Peek().kind == Token::kString) {
          Adopt(*test, ParsePrimary());  // `is divisibleby 3`
        }
        if (negate) {
          auto negated = Make(Expr::kNot, at);
          Adopt(*negated, std::move(test));
          left = std::move(negated);
        } else {
          left = std::move(test);
        }
      } else {
        return left;
      }
    }
  }

  std::unique_ptr<Expr> ParseConcat() {
    auto left = ParseAdditive();
    while (Peek().kind == Token::kOp && Peek().text == "~") {
      const size_t at = Peek().offset;
      ++position_;
      left = Binary("~", std::move(left), ParseAdditive(), at);
    }
    return left;
  }

  std::unique_ptr<Expr> ParseAdditive() {
    auto left = ParseMultiplicative();
    while (Peek().kind == Token::kOp && (Peek().text == "+" || Peek().text == "-")) {
      const Token op = tokens_[position_++];
      left = Binary(op.text, std::move(left), ParseMultiplicative(), op.offset);
    }
    return left;
  }

  std::unique_ptr<Expr> ParseMultiplicative() {
    auto left = ParseUnary();
    while (Peek().kind == Token::kOp && (Peek().text == "*" || Peek().text == "/" || Peek().text == "//" || Peek().text == "%")) {
      const Token op = tokens_[position_++];
      left = Binary(op.text, std::move(left), ParseUnary(), op.offset);
    }
    return left;
  }

  std::unique_ptr<Expr> ParseUnary() {
    if (Peek().kind == Token::kOp && (Peek().text == "-" || Peek().text == "+")) {
      const Nesting nesting(*this, Peek().offset);
      const Token op = tokens_[position_++];
      auto zero = Make(Expr::kLiteral, op.offset);
      zero->value = 0;
      return Binary(op.text, std::move(zero), ParseUnary(), op.offset);
    }
    return ParsePostfix(ParsePrimary());
  }

  void ParseArguments(Expr& call) {
    Expect("(");
    while (!Accept(")")) {
      if (Peek().kind == Token::kName && Peek(1).kind == Token::kOp && Peek(1).text == "=") {
        call.keywords.push_back(tokens_[position_].text);
        position_ += 2;
      } else if (!call.keywords.empty()) {
        Fail(source_, Peek().offset, "positional argument after a keyword argument");
      }
      Adopt(call, ParseExpression());
      if (!Accept(",")) {
        Expect(")");
        break;
      }
    }
  }

  std::unique_ptr<Expr> ParsePostfix(std::unique_ptr<Expr> value) {
    while (true) {
      const Token& token = Peek();
      if (token.kind != Token::kOp) return value;
      if (token.text == ".") {
        ++position_;
        auto node = Make(Expr::kAttribute, token.offset);
        node->name = ExpectName();
        Adopt(*node, std::move(value));
        value = std::move(node);
      } else if (token.text == "[") {
        ++position_;
        auto node = Make(Expr::kSubscript, token.offset);
        Adopt(*node, std::move(value));
        // [index] or a slice [start:stop:step] with any part omitted.
        std::unique_ptr<Expr> parts[3];
        int colons = 0;
        while (!Accept("]")) {
          if (Accept(":")) {
            if (++colons > 2) Fail(source_, token.offset, "a slice has at most two ':'");
          } else {
            if (parts[colons]) Fail(source_, Peek().offset, "expected ':' or ']'" + Found());
            parts[colons] = ParseExpression();
          }
        }
        if (colons == 0 && !parts[0]) Fail(source_, token.offset, "empty subscript");
        node->name = colons == 0 ? "index" : "slice";
        for (auto& part : parts) Adopt(*node, part ? std::move(part) : Make(Expr::kUndefinedLiteral, token.offset));
        value = std::move(node);
      } else if (token.text == "(") {
        auto node = Make(Expr::kCall, token.offset);
        Adopt(*node, std::move(value));
        ParseArguments(*node);
        value = std::move(node);
      } else if (token.text == "|") {
        ++position_;
        auto node = Make(Expr::kFilter, token.offset);
        node->name = ExpectName();
        Adopt(*node, std::move(value));
        if (Peek().kind == Token::kOp && Peek().text == "(") ParseArguments(*node);
        value = std::move(node);
      } else {
        return value;
      }
    }
  }

  std::unique_ptr<Expr> ParsePrimary() {
    const Token token = Peek();
    ++position_;
    switch (token.kind) {
      case Token::kString: {
        auto node = Make(Expr::kLiteral, token.offset);
        node->value = token.value;
        while (Peek().kind == Token::kString) node->value = node->value.get<std::string>() + tokens_[position_++].value.get<std::string>();
        return node;
      }
      case Token::kInt:
      case Token::kFloat: {
        auto node = Make(Expr::kLiteral, token.offset);
        node->value = token.value;
        return node;
      }
      case Token::kName: {
        auto node = Make(Expr::kLiteral, token.offset);
        if (token.text == "true" || token.text == "True") {
          node->value = true;
        } else if (token.text == "false" || token.text == "False") {
          node->value = false;
        } else if (token.text == "none" || token.text == "None") {
          node->value = nullptr;
        } else {
          node->kind = Expr::kName;
          node->name = token.text;
        }
        return node;
      }
      case Token::kOp:
        if (token.text == "(") {
          auto inner = ParseExpression();
          if (Accept(",")) Fail(source_, token.offset, "tuples are not supported");
          Expect(")");
          return inner;
        }
        if (token.text == "[") {
          auto node = Make(Expr::kList, token.offset);
          while (!Accept("]")) {
            Adopt(*node, ParseExpression());
            if (!Accept(",")) {
              Expect("]");
              break;
            }
          }
          return node;
        }
        if (token.text == "{") {
          auto node = Make(Expr::kDict, token.offset);
          while (!Accept("}")) {
            Adopt(*node, ParseExpression());
            Expect(":");
            Adopt(*node, ParseExpression());
            if (!Accept(",")) {
              Expect("}");
              break;
            }
          }
          return node;
        }
        break;
      case Token::kEnd:
        Fail(source_, token.offset, "expected an expression, found the end of the tag");
    }
    Fail(source_, token.offset, "unexpected '" + token.text + "'");
  }

  const std::string& source_;
  std::vector<Piece> pieces_;
  size_t piece_ = 0;
  int nesting_ = 0;
  std::vector<Token> tokens_;
  size_t position_ = 0;
};

}  // namespace
}  // namespace jinja

ChatTemplate::ChatTemplate(const std::string& source)
    : source_(source), root_(jinja::Parser(source_, jinja::Cut(source_)).ParseTemplate()) {}

ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

std::string ChatTemplate::Render(const nlohmann::ordered_json& context) const {
  return jinja::Render(source_, *root_, context);
}

ChatTemplate LoadChatTemplate(const std::filesystem::path& model_path, const Tokenizer& tokenizer) {
  if (tokenizer.chat_template().empty()) {
    const std::filesystem::path source =
        std::filesystem::is_directory(model_path) ? model_path / "tokenizer_config.json" : model_path;
    throw Error(source.string() + ": no chat_template; this model has no chat format");
  }
  return ChatTemplate(tokenizer.chat_template());
}

std::string RenderConversation(const ChatTemplate& chat, const nlohmann::ordered_json& conversation,
                               bool add_generation_prompt, const Tokenizer& tokenizer) {
  nlohmann::ordered_json context = conversation;
  context["add_generation_prompt"] = add_generation_prompt;
  if (!context.contains("bos_token")) context["bos_token"] = tokenizer.bos_token();
  if (!context.contains("eos_token")) context["eos_token"] = tokenizer.eos_token();
  return chat.Render(context);
}

std::vector<int32_t> EncodeConversation(const ChatTemplate& chat, const nlohmann::ordered_json& conversation,
                                        const Tokenizer& tokenizer) {
  return tokenizer.Encode(RenderConversation(chat, conversation, true, tokenizer), {.add_bos = false, .parse_special = true});
}

std::vector<std::string> ReplyStopStrings(const ChatTemplate& chat) {
  if (chat.Mentions("<extra_id_1>")) return {"<extra_id_1>", "</s>"};
  return {};
}

}  // namespace hymba

// Rendering of a parsed chat template with Python/Jinja semantics: truthiness,
// str() and repr() of values, Jinja's Undefined, loop scoping and the filters,
// tests and methods chat templates use.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "hymba/error.h"
#include "tokenizer/chat_template_ast.h"

namespace hymba::jinja {
namespace {

using Json = nlohmann::ordered_json;

struct Value {
  enum Kind { kUndefined, kData, kNamespace, kFunction } kind = kUndefined;
  Json data;
  std::shared_ptr<Json> ns;  // namespace(): attributes that {% set ns.x = ... %} may change
  std::string name;          // what an undefined value was called, or a function's name

  static Value Undefined(std::string what) { return {kUndefined, {}, nullptr, std::move(what)}; }
  static Value Of(Json json) { return {kData, std::move(json), nullptr, {}}; }
};

// ---------------------------------------------------------------- Python text forms

std::string PythonFloat(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, x, std::chars_format::scientific);
  std::string scientific(buffer, end);  // shortest digits: "-1.2345e-07"
  const size_t e = scientific.find('e');
  const int exponent = std::stoi(scientific.substr(e + 1));
  std::string digits = scientific.substr(0, e);
  const bool negative = digits[0] == '-';
  if (negative) digits.erase(0, 1);
  std::erase(digits, '.');
  std::string text;
  if (exponent >= -4 && exponent < 16) {  // repr() switches to exponent notation outside this range
    if (exponent < 0) {
      text = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      text = digits + std::string(static_cast<size_t>(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      text = digits.substr(0, static_cast<size_t>(exponent) + 1) + "." + digits.substr(static_cast<size_t>(exponent) + 1);
    }
  } else {
    text = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "") + "e" + (exponent < 0 ? "-" : "+") +
           (std::abs(exponent) < 10 ? "0" : "") + std::to_string(std::abs(exponent));
  }
  return negative ? "-" + text : text;
}

std::string PythonRepr(const Json& value);

std::string PythonStr(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "None";
    case Json::value_t::boolean: return value.get<bool>() ? "True" : "False";
    case Json::value_t::string: return value.get<std::string>();
    case Json::value_t::number_integer: return std::to_string(value.get<int64_t>());
    case Json::value_t::number_unsigned: return std::to_string(value.get<uint64_t>());
    case Json::value_t::number_float: return PythonFloat(value.get<double>());
    default: return PythonRepr(value);
  }
}

std::string PythonRepr(const Json& value) {
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    const char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
    std::string out(1, quote);
    for (char c : s) {
      if (c == '\\') out += "\\\\";
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else if (c == quote) out += std::string("\\") + c;
      else out += c;
    }
    return out + quote;
  }
  if (value.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < value.size(); ++i) out += (i ? ", " : "") + PythonRepr(value[i]);
    return out + "]";
  }
  if (value.is_object()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [key, item] : value.items()) {
      out += (first ? "" : ", ") + PythonRepr(Json(key)) + ": " + PythonRepr(item);
      first = false;
    }
    return out + "}";
  }
  return PythonStr(value);
}

// json.dumps(value, ensure_ascii=False, indent=indent), as transformers' tojson.
void JsonDumps(const Json& value, int indent, int depth, std::string& out) {
  const std::string newline = indent >= 0 ? "\n" + std::string(static_cast<size_t>(indent * (depth + 1)), ' ') : "";
  const std::string closing = indent >= 0 ? "\n" + std::string(static_cast<size_t>(indent * depth), ' ') : "";
  const std::string separator = indent >= 0 ? "," : ", ";
  switch (value.type()) {
    case Json::value_t::null: out += "null"; return;
    case Json::value_t::boolean: out += value.get<bool>() ? "true" : "false"; return;
    case Json::value_t::number_float: {
      const double x = value.get<double>();
      out += std::isnan(x) ? "NaN" : std::isinf(x) ? (x > 0 ? "Infinity" : "-Infinity") : PythonFloat(x);
      return;
    }
    case Json::value_t::string: {
      out += '"';
      for (unsigned char c : value.get_ref<const std::string&>()) {
        switch (c) {
          case '"': out += "\\\""; break;
          case '\\': out += "\\\\"; break;
          case '\n': out += "\\n"; break;
          case '\r': out += "\\r"; break;
          case '\t': out += "\\t"; break;
          case '\b': out += "\\b"; break;
          case '\f': out += "\\f"; break;
          default:
            if (c < 0x20) {
              char escaped[8];
              std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
              out += escaped;
            } else {
              out += static_cast<char>(c);
            }
        }
      }
      out += '"';
      return;
    }
    case Json::value_t::array:
      if (value.empty()) {
        out += "[]";
        return;
      }
      out += "[";
      for (size_t i = 0; i < value.size(); ++i) {
        out += (i ? separator : "") + newline;
        JsonDumps(value[i], indent, depth + 1, out);
      }
      out += closing + "]";
      return;
    case Json::value_t::object: {
      if (value.empty()) {
        out += "{}";
        return;
      }
      out += "{";
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        out += (first ? "" : separator) + newline;
        JsonDumps(Json(key), indent, depth + 1, out);
        out += ": ";
        JsonDumps(item, indent, depth + 1, out);
        first = false;
      }
      out += closing + "}";
      return;
    }
    default: out += PythonStr(value);
  }
}

// Python's str.split() / strip() whitespace, ASCII part.
bool IsWhitespace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string Strip(const std::string& s, bool left, bool right, const std::string* chars) {
  auto strippable = [&](char c) { return chars ? chars->find(c) != std::string::npos : IsWhitespace(c); };
  size_t begin = 0, end = s.size();
  while (left && begin < end && strippable(s[begin])) ++begin;
  while (right && end > begin && strippable(s[end - 1])) --end;
  return s.substr(begin, end - begin);
}

std::vector<std::string> Utf8Characters(const std::string& s) {
  std::vector<std::string> characters;
  for (size_t i = 0; i < s.size();) {
    const auto lead = static_cast<unsigned char>(s[i]);
    const size_t length = lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 1;
    characters.push_back(s.substr(i, length));
    i += length;
  }
  return characters;
}

std::string CaseMap(std::string s, int mode) {  // 0 lower, 1 upper, 2 title, 3 capitalize
  bool word_start = true;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const bool upper = mode == 1 || ((mode == 2 && word_start) || (mode == 3 && i == 0));
    s[i] = static_cast<char>(upper ? std::toupper(c) : std::tolower(c));
    word_start = !std::isalpha(c);
  }
  return s;
}

// ---------------------------------------------------------------- renderer

class Renderer {
 public:
  Renderer(const std::string& source, const Json& context) : source_(source) {
    scopes_.emplace_back();
    for (const auto& [key, value] : context.items()) scopes_.back()[key] = Value::Of(value);
    for (const char* function : {"raise_exception", "namespace", "range"}) {
      if (!scopes_.back().contains(function)) scopes_.back()[function] = {Value::kFunction, {}, nullptr, function};
    }
  }

  void Run(const Node& node, std::string& out) {
    Charge(1, node.offset);
    switch (node.kind) {
      case Node::kBody:
        for (const auto& child : node.children) {
          if (control_ != kNone) return;
          Run(*child, out);
        }
        return;
      case Node::kText:
      case Node::kOutput:
        out += node.kind == Node::kText ? node.text : Str(Eval(*node.expr));
        if (out.size() > kMaxRenderBytes) Fail(node.offset, "the output exceeds " + std::to_string(kMaxRenderBytes) + " bytes");
        return;
      case Node::kIf:
        for (const auto& branch : node.children) {
          if (Truthy(Eval(*branch->expr))) {
            Run(*branch, out);
            return;
          }
        }
        if (node.else_body) Run(*node.else_body, out);
        return;
      case Node::kFor: RunFor(node, out); return;
      case Node::kSet: RunSet(node); return;
      case Node::kBreak: control_ = kBreak; return;
      case Node::kContinue: control_ = kContinue; return;
    }
  }

 private:
  enum Control { kNone, kBreak, kContinue };

  [[noreturn]] void Fail(size_t offset, const std::string& message) const { jinja::Fail(source_, offset, message); }

  std::string TypeName(const Value& v) const {
    if (v.kind == Value::kUndefined) return "undefined";
    if (v.kind == Value::kNamespace) return "namespace";
    if (v.kind == Value::kFunction) return "function";
    return v.data.is_string() ? "string" : v.data.is_array() ? "list" : v.data.is_object() ? "dict" : v.data.is_boolean() ? "bool" : v.data.is_null() ? "none" : "number";
  }

  std::string Str(const Value& v) const {
    if (v.kind == Value::kUndefined) return "";
    if (v.kind == Value::kNamespace) return "<Namespace " + PythonRepr(*v.ns) + ">";
    if (v.kind == Value::kFunction) return "<function " + v.name + ">";
    return PythonStr(v.data);
  }

  static bool Truthy(const Value& v) {
    if (v.kind == Value::kUndefined) return false;
    if (v.kind != Value::kData) return true;
    const Json& d = v.data;
    if (d.is_null()) return false;
    if (d.is_boolean()) return d.get<bool>();
    if (d.is_number()) return d.get<double>() != 0.0;
    if (d.is_string()) return !d.get_ref<const std::string&>().empty();  // json::empty() is false for any string
    return !d.empty();
  }

  const Json& Data(const Value& v, const Expr& at, const char* what) const {
    if (v.kind == Value::kUndefined) Fail(at.offset, "'" + v.name + "' is undefined");
    if (v.kind != Value::kData) Fail(at.offset, std::string(what) + " needs a value, got a " + TypeName(v));
    return v.data;
  }

  Value Lookup(const std::string& name) const {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      if (auto it = scope->find(name); it != scope->end()) return it->second;
    }
    return Value::Undefined(name);
  }

  std::vector<Json> Items(const Value& v, const Expr& at) const {
    if (v.kind == Value::kUndefined) return {};
    const Json& d = Data(v, at, "iteration");
    Charge(d.is_string() ? d.get_ref<const std::string&>().size() : d.size(), at.offset);
    std::vector<Json> items;
    if (d.is_array()) {
      items.assign(d.begin(), d.end());
    } else if (d.is_object()) {
      for (const auto& [key, item] : d.items()) items.emplace_back(key);
    } else if (d.is_string()) {
      for (const std::string& c : Utf8Characters(d.get<std::string>())) items.emplace_back(c);
    } else {
      Fail(at.offset, "cannot iterate over a " + TypeName(v));
    }
    return items;
  }

  void RunFor(const Node& node, std::string& out) {
    const std::vector<Json> items = Items(Eval(*node.expr), *node.expr);
    if (items.empty()) {
      if (node.else_body) Run(*node.else_body, out);
      return;
    }
    for (size_t i = 0; i < items.size(); ++i) {
      std::map<std::string, Value> scope;  // each iteration has its own scope, as in Jinja
      if (node.targets.size() == 1) {
        scope[node.targets[0]] = Value::Of(items[i]);
      } else {
        if (!items[i].is_array() || items[i].size() != node.targets.size()) {
          Fail(node.offset, "cannot unpack " + PythonRepr(items[i]) + " into " + std::to_string(node.targets.size()) + " names");
        }
        for (size_t t = 0; t < node.targets.size(); ++t) scope[node.targets[t]] = Value::Of(items[i][t]);
      }
      const auto n = static_cast<int64_t>(items.size()), index = static_cast<int64_t>(i);
      Json loop = {{"index", index + 1}, {"index0", index}, {"revindex", n - index}, {"revindex0", n - index - 1},
                   {"first", i == 0}, {"last", i + 1 == items.size()}, {"length", n}};
      if (i > 0) loop["previtem"] = items[i - 1];
      if (i + 1 < items.size()) loop["nextitem"] = items[i + 1];
      scope["loop"] = Value::Of(std::move(loop));
      scopes_.push_back(std::move(scope));
      Run(*node.children[0], out);
      scopes_.pop_back();
      const Control control = control_;
      control_ = kNone;
      if (control == kBreak) break;
    }
  }

  void RunSet(const Node& node) {
    Value value = Eval(*node.expr);
    if (node.targets.size() == 1) {
      scopes_.back()[node.targets[0]] = std::move(value);
      return;
    }
    const Value target = Lookup(node.targets[0]);
    if (target.kind != Value::kNamespace) {
      Fail(node.offset, "cannot set an attribute of '" + node.targets[0] + "', which is not a namespace()");
    }
    if (value.kind != Value::kData) Fail(node.offset, "a namespace attribute must be a value");
    (*target.ns)[node.targets[1]] = value.data;
  }

  Value Eval(const Expr& e) {
    Charge(1, e.offset);
    switch (e.kind) {
      case Expr::kLiteral: return Value::Of(e.value);
      case Expr::kUndefinedLiteral: return Value::Undefined("");
      case Expr::kName: return Lookup(e.name);
      case Expr::kList: {
        Json list = Json::array();
        for (const auto& item : e.args) list.push_back(Nested(Data(Eval(*item), *item, "a list item"), item->offset));
        return Value::Of(std::move(list));
      }
      case Expr::kDict: {
        Json dict = Json::object();
        for (size_t i = 0; i < e.args.size(); i += 2) {
          dict[Str(Eval(*e.args[i]))] = Nested(Data(Eval(*e.args[i + 1]), *e.args[i + 1], "a dict value"), e.args[i + 1]->offset);
        }
        return Value::Of(std::move(dict));
      }
      case Expr::kAttribute: return Attribute(Eval(*e.args[0]), e.name, e);
      case Expr::kSubscript: return Subscript(e);
      case Expr::kCall: return Call(e);
      case Expr::kFilter: return Filter(e);
      case Expr::kTest: return Value::Of(Test(e));
      case Expr::kNot: return Value::Of(!Truthy(Eval(*e.args[0])));
      case Expr::kConditional: return Truthy(Eval(*e.args[0])) ? Eval(*e.args[1]) : Eval(*e.args[2]);
      case Expr::kBinary: return Binary(e);
    }
    Fail(e.offset, "unknown expression");
  }

  Value Attribute(const Value& object, const std::string& name, const Expr& at) const {
    if (object.kind == Value::kNamespace) {
      return object.ns->contains(name) ? Value::Of((*object.ns)[name]) : Value::Undefined(name);
    }
    const Json& d = Data(object, at, "attribute access");
    if (d.is_object() && d.contains(name)) return Value::Of(d[name]);
    return Value::Undefined(name);
  }

  Value Subscript(const Expr& e) {
    const Value object = Eval(*e.args[0]);
    if (e.name == "index") {
      const Value key = Eval(*e.args[1]);
      if (object.kind == Value::kNamespace && key.data.is_string()) return Attribute(object, key.data.get<std::string>(), e);
      const Json& d = Data(object, e, "subscript");
      const Json& k = Data(key, *e.args[1], "subscript");
      if (d.is_object()) {
        const std::string name = k.is_string() ? k.get<std::string>() : PythonStr(k);
        return d.contains(name) ? Value::Of(d[name]) : Value::Undefined(name);
      }
      if ((d.is_array() || d.is_string()) && k.is_number_integer()) {
        if (d.is_string()) Charge(d.get_ref<const std::string&>().size(), e.offset);
        const Json characters = d.is_string() ? Json(Utf8Characters(d.get<std::string>())) : Json();
        const Json& sequence = d.is_string() ? characters : d;
        int64_t index = k.get<int64_t>();
        if (index < 0) index += static_cast<int64_t>(sequence.size());
        if (index < 0 || index >= static_cast<int64_t>(sequence.size())) return Value::Undefined(PythonRepr(k));
        return Value::Of(sequence[static_cast<size_t>(index)]);
      }
      return Value::Undefined(PythonRepr(k));
    }
    const Json& d = Data(object, e, "slicing");
    if (!d.is_array() && !d.is_string()) Fail(e.offset, "cannot slice a " + TypeName(object));
    Charge(d.is_string() ? d.get_ref<const std::string&>().size() : d.size(), e.offset);
    const Json characters = d.is_string() ? Json(Utf8Characters(d.get<std::string>())) : Json();
    const Json& sequence = d.is_string() ? characters : d;
    const auto n = static_cast<int64_t>(sequence.size());
    auto bound = [&](const Expr& part, int64_t fallback) -> int64_t {
      const Value v = Eval(part);
      if (v.kind == Value::kUndefined || v.data.is_null()) return fallback;
      if (!v.data.is_number_integer()) Fail(part.offset, "slice bounds must be integers");
      return v.data.get<int64_t>();
    };
    const int64_t step = bound(*e.args[3], 1);
    if (step == 0) Fail(e.offset, "slice step cannot be zero");
    auto clamp = [&](int64_t i, int64_t low, int64_t high) { return std::clamp(i < 0 ? i + n : i, low, high); };
    int64_t start = step > 0 ? clamp(bound(*e.args[1], 0), 0, n) : clamp(bound(*e.args[1], n - 1), -1, n - 1);
    const int64_t stop = step > 0 ? clamp(bound(*e.args[2], n), 0, n) : clamp(bound(*e.args[2], -n - 1), -1, n - 1);
    Json result = Json::array();
    // start and stop lie in [-1, n]: stepping by index count never overflows.
    const uint64_t distance = step > 0 ? (stop > start ? static_cast<uint64_t>(stop - start) : 0)
                                       : (start > stop ? static_cast<uint64_t>(start - stop) : 0);
    const uint64_t stride = step > 0 ? static_cast<uint64_t>(step) : static_cast<uint64_t>(-(step + 1)) + 1;
    for (uint64_t k = 0; distance > 0 && k <= (distance - 1) / stride; ++k) {
      result.push_back(sequence[static_cast<size_t>(step > 0 ? start + static_cast<int64_t>(k * stride)
                                                             : start - static_cast<int64_t>(k * stride))]);
    }
    if (!d.is_string()) return Value::Of(result);
    std::string text;
    for (const Json& c : result) text += c.get<std::string>();
    return Value::Of(text);
  }

  std::vector<Value> Arguments(const Expr& e, size_t first) {
    std::vector<Value> values;
    for (size_t i = first; i < e.args.size(); ++i) values.push_back(Eval(*e.args[i]));
    return values;
  }

  // Positional argument i, or the keyword argument `name`, or nothing.
  const Value* Argument(const Expr& e, const std::vector<Value>& values, size_t i, const std::string& name) const {
    const size_t positional = values.size() - e.keywords.size();
    if (i < positional) return &values[i];
    for (size_t k = 0; k < e.keywords.size(); ++k) {
      if (e.keywords[k] == name) return &values[positional + k];
    }
    return nullptr;
  }

  std::string StringArgument(const Expr& e, const std::vector<Value>& values, size_t i, const std::string& name) const {
    const Value* v = Argument(e, values, i, name);
    if (!v || v->kind != Value::kData || !v->data.is_string()) Fail(e.offset, "argument '" + name + "' must be a string");
    return v->data.get<std::string>();
  }

  Value Call(const Expr& e) {
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::kAttribute) return Method(Eval(*callee.args[0]), callee.name, e);
    const Value function = Eval(callee);
    const std::vector<Value> args = Arguments(e, 1);
    if (function.kind != Value::kFunction) Fail(e.offset, "'" + callee.name + "' is not callable");
    if (function.name == "raise_exception") {
      throw Error("chat template raised an exception at " + Position(source_, e.offset) + ": " +
                  (args.empty() ? "" : Str(args[0])));
    }
    if (function.name == "namespace") {
      auto ns = std::make_shared<Json>(Json::object());
      const size_t positional = args.size() - e.keywords.size();
      for (size_t k = 0; k < e.keywords.size(); ++k) (*ns)[e.keywords[k]] = Data(args[positional + k], e, "namespace()");
      return {Value::kNamespace, {}, ns, {}};
    }
    // range(stop) / range(start, stop[, step])
    std::vector<int64_t> bounds;
    for (const Value& arg : args) {
      if (arg.kind != Value::kData || !arg.data.is_number_integer()) Fail(e.offset, "range() takes integers");
      bounds.push_back(arg.data.get<int64_t>());
    }
    if (bounds.empty() || bounds.size() > 3) Fail(e.offset, "range() takes 1 to 3 arguments");
    const int64_t start = bounds.size() > 1 ? bounds[0] : 0, stop = bounds.size() > 1 ? bounds[1] : bounds[0];
    const int64_t step = bounds.size() > 2 ? bounds[2] : 1;
    if (step == 0) Fail(e.offset, "range() step cannot be zero");
    // Counted in unsigned arithmetic: start + k * step may not fit in int64
    // one step past stop, and stop - start may not fit either.
    const bool ascending = step > 0;
    const uint64_t distance = ascending ? (stop > start ? static_cast<uint64_t>(stop) - static_cast<uint64_t>(start) : 0)
                                        : (start > stop ? static_cast<uint64_t>(start) - static_cast<uint64_t>(stop) : 0);
    const uint64_t stride = ascending ? static_cast<uint64_t>(step) : static_cast<uint64_t>(-(step + 1)) + 1;
    const uint64_t count = distance == 0 ? 0 : (distance - 1) / stride + 1;
    CheckSize(static_cast<size_t>(std::min<uint64_t>(count, kMaxRenderBytes + 1)), e.offset);
    Reserve(count * sizeof(Json), e.offset);
    Json list = Json::array();
    for (uint64_t k = 0; k < count; ++k) list.push_back(static_cast<int64_t>(static_cast<uint64_t>(start) + k * static_cast<uint64_t>(step)));
    return Value::Of(std::move(list));
  }

  Value Method(const Value& object, const std::string& name, const Expr& e) {
    const std::vector<Value> args = Arguments(e, 1);
    const Json& d = Data(object, e, ("." + name + "()").c_str());
    if (d.is_string()) {
      const std::string& s = d.get_ref<const std::string&>();
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const Value* chars = Argument(e, args, 0, "chars");
        std::string set;
        if (chars && chars->kind == Value::kData && chars->data.is_string()) set = chars->data.get<std::string>();
        return Value::Of(Strip(s, name != "rstrip", name != "lstrip", chars && chars->data.is_string() ? &set : nullptr));
      }
      if (name == "startswith" || name == "endswith") {
        const std::string affix = StringArgument(e, args, 0, "prefix");
        const bool match = affix.size() <= s.size() &&
                           (name == "startswith" ? s.compare(0, affix.size(), affix) == 0
                                                 : s.compare(s.size() - affix.size(), affix.size(), affix) == 0);
        return Value::Of(match);
      }
      if (name == "upper") return Value::Of(CaseMap(s, 1));
      if (name == "lower") return Value::Of(CaseMap(s, 0));
      if (name == "title") return Value::Of(CaseMap(s, 2));
      if (name == "capitalize") return Value::Of(CaseMap(s, 3));
      if (name == "replace") {
        const std::string from = StringArgument(e, args, 0, "old"), to = StringArgument(e, args, 1, "new");
        if (from.empty()) Fail(e.offset, "replace() with an empty pattern is not supported");
        std::string result;
        size_t pos = 0;
        for (size_t found; (found = s.find(from, pos)) != std::string::npos; pos = found + from.size()) {
          CheckSize(result.size() + (found - pos) + to.size(), e.offset);
          result += s.substr(pos, found - pos) + to;
        }
        return Built(Value::Of(result + s.substr(pos)), e.offset);
      }
      if (name == "split") {
        const Value* separator = Argument(e, args, 0, "sep");
        Reserve(s.size() * (1 + sizeof(Json)), e.offset);  // at most a part per byte
        Json parts = Json::array();
        if (!separator || separator->kind != Value::kData || separator->data.is_null()) {
          std::string word;
          for (char c : s) {
            if (!IsWhitespace(c)) {
              word += c;
            } else if (!word.empty()) {
              parts.push_back(word);
              word.clear();
            }
          }
          if (!word.empty()) parts.push_back(word);
          return Value::Of(parts);
        }
        const std::string sep = StringArgument(e, args, 0, "sep");
        if (sep.empty()) Fail(e.offset, "split() with an empty separator");
        size_t pos = 0;
        for (size_t found; (found = s.find(sep, pos)) != std::string::npos; pos = found + sep.size()) {
          parts.push_back(s.substr(pos, found - pos));
        }
        parts.push_back(s.substr(pos));
        return Value::Of(parts);
      }
      if (name == "join") {
        const Value* items = Argument(e, args, 0, "iterable");
        if (!items) Fail(e.offset, "join() needs an iterable");
        std::string joined;
        bool first = true;
        for (const Json& item : Items(*items, e)) {
          const std::string text = PythonStr(item);
          CheckSize(joined.size() + s.size() + text.size(), e.offset);
          joined += (first ? "" : s) + text;
          first = false;
        }
        return Value::Of(joined);
      }
    } else if (d.is_object()) {
      if (name == "items" || name == "keys" || name == "values") {
        Json list = Json::array();
        for (const auto& [key, item] : d.items()) {
          list.push_back(name == "items" ? Json::array({key, item}) : name == "keys" ? Json(key) : item);
        }
        return Value::Of(list);
      }
      if (name == "get") {
        const std::string key = StringArgument(e, args, 0, "key");
        if (d.contains(key)) return Value::Of(d[key]);
        const Value* fallback = Argument(e, args, 1, "default");
        return fallback ? *fallback : Value::Of(nullptr);
      }
    }
    Fail(e.offset, "unsupported method " + TypeName(object) + "." + name + "()");
  }

  Value Filter(const Expr& e) {
    const Value input = Eval(*e.args[0]);
    const std::vector<Value> args = Arguments(e, 1);
    const std::string& name = e.name;
    if (name == "default" || name == "d") {
      const Value* fallback = Argument(e, args, 0, "default_value");
      const Value* boolean = Argument(e, args, 1, "boolean");
      const bool use_fallback = input.kind == Value::kUndefined || (boolean && Truthy(*boolean) && !Truthy(input));
      return use_fallback ? (fallback ? *fallback : Value::Of("")) : input;
    }
    if (name == "length" || name == "count") {
      if (input.kind == Value::kUndefined) return Value::Of(0);
      const Json& d = Data(input, e, "length");
      if (d.is_string()) return Value::Of(Utf8Characters(d.get<std::string>()).size());
      if (d.is_array() || d.is_object()) return Value::Of(d.size());
      Fail(e.offset, "a " + TypeName(input) + " has no length");
    }
    if (name == "tojson") {
      const Value* indent = Argument(e, args, 0, "indent");
      std::string out;
      const int64_t width = indent && indent->data.is_number_integer() ? indent->data.get<int64_t>() : -1;
      if (width > 64) Fail(e.offset, "tojson indent " + std::to_string(width) + " is above 64");
      Reserve(ByteSize(Data(input, e, "tojson"), e.offset) * static_cast<uint64_t>(std::max<int64_t>(width, 1)), e.offset);
      JsonDumps(Data(input, e, "tojson"), static_cast<int>(width), 0, out);
      return Built(Value::Of(out), e.offset);
    }
    if (name == "string") return Value::Of(Str(input));
    if (name == "trim") return Value::Of(Strip(Str(input), true, true, nullptr));
    if (name == "lower") return Value::Of(CaseMap(Str(input), 0));
    if (name == "upper") return Value::Of(CaseMap(Str(input), 1));
    if (name == "title") return Value::Of(CaseMap(Str(input), 2));
    if (name == "capitalize") return Value::Of(CaseMap(Str(input), 3));
    if (name == "safe") return input;
    if (name == "join") {
      const Value* separator = Argument(e, args, 0, "d");
      const std::string sep = separator ? Str(*separator) : "";
      std::string joined;
      bool first = true;
      for (const Json& item : Items(input, e)) {
        const std::string text = PythonStr(item);
        CheckSize(joined.size() + sep.size() + text.size(), e.offset);
        joined += (first ? "" : sep) + text;
        first = false;
      }
      return Value::Of(joined);
    }
    if (name == "first" || name == "last") {
      const std::vector<Json> items = Items(input, e);
      if (items.empty()) return Value::Undefined(name);
      return Value::Of(name == "first" ? items.front() : items.back());
    }
    if (name == "list") return Value::Of(Json(Items(input, e)));
    if (name == "reverse") {
      const Json& d = Data(input, e, "reverse");
      std::vector<Json> items = Items(input, e);
      std::reverse(items.begin(), items.end());
      if (!d.is_string()) return Value::Of(Json(items));
      std::string text;
      for (const Json& c : items) text += c.get<std::string>();
      return Value::Of(text);
    }
    if (name == "int" || name == "float") {
      const Json& d = Data(input, e, name.c_str());
      double number = 0;
      if (d.is_number()) {
        number = d.get<double>();
      } else if (d.is_string()) {
        try {
          number = std::stod(d.get<std::string>());
        } catch (const std::exception&) {
          number = 0;  // Jinja's default for unparsable text
        }
      } else if (d.is_boolean()) {
        number = d.get<bool>() ? 1 : 0;
      }
      if (name == "float") return Value::Of(number);
      if (!(number >= -9.2233720368547758e18 && number < 9.2233720368547758e18)) {  // [-2^63, 2^63), not NaN
        Fail(e.offset, "int() of " + PythonRepr(d) + " is outside the 64-bit range");
      }
      return Value::Of(static_cast<int64_t>(number));
    }
    Fail(e.offset, "unsupported filter '" + name + "'");
  }

  bool Test(const Expr& e) {
    const std::string& name = e.name;
    const Value v = Eval(*e.args[0]);
    if (name == "defined") return v.kind != Value::kUndefined;
    if (name == "undefined") return v.kind == Value::kUndefined;
    const bool data = v.kind == Value::kData;
    if (name == "none") return data && v.data.is_null();
    if (name == "string") return data && v.data.is_string();
    if (name == "number") return data && v.data.is_number();
    if (name == "integer") return data && v.data.is_number_integer();
    if (name == "float") return data && v.data.is_number_float();
    if (name == "boolean") return data && v.data.is_boolean();
    if (name == "true") return data && v.data.is_boolean() && v.data.get<bool>();
    if (name == "false") return data && v.data.is_boolean() && !v.data.get<bool>();
    if (name == "mapping") return (data && v.data.is_object()) || v.kind == Value::kNamespace;
    if (name == "iterable" || name == "sequence") return data && (v.data.is_array() || v.data.is_string() || v.data.is_object());
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (!data || !v.data.is_number_integer()) Fail(e.offset, "test '" + name + "' needs an integer");
      int64_t divisor = 2;
      if (name == "divisibleby") {
        if (e.args.size() < 2) Fail(e.offset, "divisibleby needs a number");
        const Value arg = Eval(*e.args[1]);
        if (!arg.data.is_number_integer() || arg.data.get<int64_t>() == 0) Fail(e.offset, "divisibleby needs a non-zero integer");
        divisor = arg.data.get<int64_t>();
      }
      const int64_t remainder = divisor == -1 ? 0 : v.data.get<int64_t>() % divisor;  // INT64_MIN % -1 traps
      return name == "odd" ? remainder != 0 : remainder == 0;
    }
    Fail(e.offset, "unsupported test 'is " + name + "'");
  }

  static bool Equal(const Value& a, const Value& b) {
    if (a.kind != Value::kData || b.kind != Value::kData) return a.kind == b.kind && a.kind == Value::kUndefined;
    if (a.data.is_number() && b.data.is_number() && !a.data.is_boolean() && !b.data.is_boolean()) {
      return a.data.get<double>() == b.data.get<double>();
    }
    return a.data == b.data;
  }

  Value Binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value left = Eval(*e.args[0]);
      return Truthy(left) ? Eval(*e.args[1]) : left;
    }
    if (op == "or") {
      Value left = Eval(*e.args[0]);
      return Truthy(left) ? left : Eval(*e.args[1]);
    }
    const Value left = Eval(*e.args[0]);
    const Value right = Eval(*e.args[1]);
    if (op == "~") return Built(Value::Of(Str(left) + Str(right)), e.offset);
    if (op == "==") return Value::Of(Equal(left, right));
    if (op == "!=") return Value::Of(!Equal(left, right));
    if (op == "in") {
      if (right.kind == Value::kUndefined) return Value::Of(false);
      const Json& container = Data(right, *e.args[1], "'in'");
      if (container.is_string()) {
        return Value::Of(container.get<std::string>().find(Str(left)) != std::string::npos);
      }
      if (container.is_object()) return Value::Of(left.kind == Value::kData && container.contains(Str(left)));
      if (container.is_array()) {
        return Value::Of(std::any_of(container.begin(), container.end(), [&](const Json& item) { return Equal(left, Value::Of(item)); }));
      }
      Fail(e.offset, "'in' needs a string, list or dict on the right, got a " + TypeName(right));
    }
    const Json& a = Data(left, *e.args[0], ("'" + op + "'").c_str());
    const Json& b = Data(right, *e.args[1], ("'" + op + "'").c_str());
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      int order = 0;
      if (a.is_number() && b.is_number()) {
        order = a.get<double>() < b.get<double>() ? -1 : a.get<double>() > b.get<double>() ? 1 : 0;
      } else if (a.is_string() && b.is_string()) {
        order = a.get<std::string>().compare(b.get<std::string>());
      } else {
        Fail(e.offset, "cannot compare a " + TypeName(left) + " with a " + TypeName(right));
      }
      return Value::Of(op == "<" ? order < 0 : op == "<=" ? order <= 0 : op == ">" ? order > 0 : order >= 0);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        Reserve(a.get_ref<const std::string&>().size() + b.get_ref<const std::string&>().size(), e.offset);
        return Value::Of(a.get<std::string>() + b.get<std::string>());  // reserved above
      }
      if (a.is_array() && b.is_array()) {
        Reserve(ByteSize(a, e.offset) + ByteSize(b, e.offset), e.offset);
        Json joined = a;
        joined.insert(joined.end(), b.begin(), b.end());
        return Value::Of(std::move(joined));  // reserved above
      }
    }
    if (op == "*" && (a.is_string() || a.is_array()) && b.is_number_integer()) {
      const bool empty = a.is_string() ? a.get_ref<const std::string&>().empty() : a.empty();
      const uint64_t unit = a.is_string() ? a.get_ref<const std::string&>().size() : ByteSize(a, e.offset);
      const uint64_t times = empty ? 0 : static_cast<uint64_t>(std::max<int64_t>(b.get<int64_t>(), 0));
      if (times > 0 && times > kMaxRenderBytes / unit) CheckSize(kMaxRenderBytes + 1, e.offset);
      Reserve(unit * times, e.offset);
      Json repeated = a.is_string() ? Json("") : Json::array();
      for (uint64_t i = 0; i < times; ++i) {
        if (a.is_string()) repeated.get_ref<std::string&>() += a.get_ref<const std::string&>();
        else repeated.insert(repeated.end(), a.begin(), a.end());
      }
      return Value::Of(std::move(repeated));  // reserved above
    }
    if (!a.is_number() || !b.is_number()) {
      Fail(e.offset, "unsupported operand types for " + op + ": " + TypeName(left) + " and " + TypeName(right));
    }
    const bool integers = a.is_number_integer() && b.is_number_integer();
    if (integers && op != "/") {
      const int64_t x = a.get<int64_t>(), y = b.get<int64_t>();
      if ((op == "//" || op == "%") && y == 0) Fail(e.offset, "division by zero");
      // Python's integers have no bounds; these have 64 bits, and say so.
      int64_t result = 0;
      const bool overflow = op == "+"   ? __builtin_add_overflow(x, y, &result)
                            : op == "-" ? __builtin_sub_overflow(x, y, &result)
                            : op == "*" ? __builtin_mul_overflow(x, y, &result)
                                        : x == INT64_MIN && y == -1;
      if (overflow) Fail(e.offset, "integer overflow in " + op + " (64-bit integers)");
      if (op == "+" || op == "-" || op == "*") return Value::Of(result);
      const int64_t quotient = x / y - ((x % y != 0) && ((x < 0) != (y < 0)) ? 1 : 0);  // floor division
      return op == "//" ? Value::Of(quotient) : Value::Of(x - quotient * y);
    }
    const double x = a.get<double>(), y = b.get<double>();
    if ((op == "/" || op == "//" || op == "%") && y == 0) Fail(e.offset, "division by zero");
    if (op == "+") return Value::Of(x + y);
    if (op == "-") return Value::Of(x - y);
    if (op == "*") return Value::Of(x * y);
    if (op == "/") return Value::Of(x / y);
    if (op == "//") return Value::Of(std::floor(x / y));
    return Value::Of(x - std::floor(x / y) * y);
  }

  // Work done so far, in steps: one per node run and expression evaluated,
  // plus the size of every value copied, walked or built (strings in units
  // of 64 bytes), so that rendering ends in bounded time (kMaxRenderSteps).
  void Charge(size_t units, size_t offset) const {
    steps_ += units;
    if (steps_ > kMaxRenderSteps) {
      Fail(offset, "the template takes more than " + std::to_string(kMaxRenderSteps) + " steps to render");
    }
  }
  // A value about to be built of about `bytes` bytes: refused beyond
  // kMaxRenderBytes, charged (64 bytes a step) before anything is allocated.
  void CheckSize(uint64_t bytes, size_t offset) const {
    if (bytes > kMaxRenderBytes) {
      Fail(offset, "the template builds a value of " + std::to_string(bytes) + " bytes (at most " +
                       std::to_string(kMaxRenderBytes) + ")");
    }
  }
  void Reserve(uint64_t bytes, size_t offset) const {
    CheckSize(bytes, offset);
    Charge(static_cast<size_t>(bytes / 64), offset);
  }
  // About how many bytes `value` holds (strings by length, other values as
  // one JSON node each); the walk is charged.
  uint64_t ByteSize(const Json& value, size_t offset) const {
    if (value.is_string()) return sizeof(Json) + value.get_ref<const std::string&>().size();
    if (!value.is_array() && !value.is_object()) return sizeof(Json);
    Charge(value.size(), offset);
    uint64_t bytes = sizeof(Json);
    for (const auto& [key, item] : value.items()) bytes += key.size() + ByteSize(item, offset);
    return bytes;
  }
  // A string built by an operation whose size could not be known before.
  Value Built(Value value, size_t offset) const {
    if (value.kind == Value::kData && value.data.is_string()) Reserve(value.data.get_ref<const std::string&>().size(), offset);
    return value;
  }
  // Whether `value` nests deeper than `limit` levels, walking at most that deep.
  bool NestsDeeper(const Json& value, int limit, size_t offset) const {
    if (!value.is_array() && !value.is_object()) return false;
    if (limit == 0) return true;
    Charge(value.size(), offset);
    for (const Json& item : value) {
      if (NestsDeeper(item, limit - 1, offset)) return true;
    }
    return false;
  }
  Json Nested(Json item, size_t offset) const {
    if (NestsDeeper(item, kMaxNesting - 1, offset)) {
      Fail(offset, "the template builds a value nested deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    return item;
  }

  const std::string& source_;
  std::vector<std::map<std::string, Value>> scopes_;
  Control control_ = kNone;
  mutable uint64_t steps_ = 0;
};

}  // namespace

std::string Render(const std::string& source, const Node& root, const Json& context) {
  std::string out;
  Renderer(source, context).Run(root, out);
  return out;
}

}  // namespace hymba::jinja

// The Jinja subset against python3-jinja2 configured as transformers
// configures it (tests/reference/template_cases.py), byte for byte.
#include "hymba/chat_template.h"

#include <gtest/gtest.h>

#include "hymba/error.h"
#include "test_util.h"

namespace hymba {
namespace {

using Json = nlohmann::ordered_json;

TEST(ChatTemplate, MatchesJinja2OnEveryCase) {
  const Json cases = Json::parse(test::ReadText(test::DataDir() / "template_cases.json"));
  ASSERT_GE(cases.size(), 100u);
  for (const Json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    try {
      const std::string rendered = ChatTemplate(c["template"].get<std::string>()).Render(c["context"]);
      ASSERT_TRUE(c.contains("expected")) << "rendered, but jinja2 raised: " << c["error"];
      EXPECT_EQ(rendered, c["expected"].get<std::string>());
    } catch (const Error& e) {
      ASSERT_TRUE(c.contains("error")) << "failed, but jinja2 rendered: " << e.what();
      EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos) << e.what();
    }
  }
}

TEST(ChatTemplate, HymbaInstructPrompt) {
  const Json config = Json::parse(test::ReadText(test::DataDir() / "hymba-1.5b" / "tokenizer_config.json"));
  const ChatTemplate hymba(config["chat_template"].get<std::string>());
  const Json context = {{"messages", Json::array({{{"role", "system"}, {"content", "You are a helpful assistant."}},
                                                  {{"role", "user"}, {"content", "Hello"}}})},
                        {"add_generation_prompt", true}};
  EXPECT_EQ(hymba.Render(context),
            "<extra_id_0>System\nYou are a helpful assistant.\n\n<extra_id_1>User\nHello\n<extra_id_1>Assistant\n");
}

void ExpectRejected(const std::string& source, const std::vector<std::string>& fragments, const Json& context = Json::object()) {
  try {
    ChatTemplate(source).Render(context);
    ADD_FAILURE() << "accepted " << source;
  } catch (const Error& e) {
    for (const std::string& fragment : fragments) EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, UnsupportedOrBrokenTemplatesPointAtThePosition) {
  ExpectRejected("ab\n{{ x | frobnicate }}", {"line 2, column 6", "unsupported filter 'frobnicate'"});
  ExpectRejected("{% macro m() %}x{% endmacro %}", {"line 1, column 1", "unsupported tag {% macro %}"});
  ExpectRejected("{% if true %}never closed", {"missing {% endif %}"});
  ExpectRejected("text {{ x ", {"line 1, column 6", "unterminated tag"});
  ExpectRejected("{{ 'abc }}", {"unterminated"});
  ExpectRejected("{% for x in xs if x %}{% endfor %}", {"for-loop filters are not supported"});
  ExpectRejected("{{ x.frob() }}", {"unsupported method dict.frob()"}, Json{{"x", Json::object()}});
  ExpectRejected("{{ 1 + }}", {"expected an expression"});
  ExpectRejected("{{ a.b }}", {"'a' is undefined"});
  ExpectRejected("{% endif %}", {"unexpected {% endif %}"});
  ExpectRejected("{{ raise_exception('no system role') }}", {"raised an exception at line 1, column 19: no system role"});
  ExpectRejected("{{ x is frob }}", {"unsupported test 'is frob'"});
  ExpectRejected("{{ 1 // 0 }}", {"division by zero"});
}

std::string Repeat(const std::string& text, size_t times) {
  std::string out;
  for (size_t i = 0; i < times; ++i) out += text;
  return out;
}

// Templates come inside model files: a hostile one fails in bounded time,
// memory and stack, naming what it exceeded.
TEST(ChatTemplate, HostileTemplatesHitTheirLimits) {
  ExpectRejected("{{ " + Repeat("(", 100000) + "1" + Repeat(")", 100000) + " }}", {"nested deeper than 100 levels"});
  ExpectRejected("{{ " + Repeat("not ", 100000) + "x }}", {"nested deeper than 100 levels"});
  ExpectRejected("{{ " + Repeat("-", 100000) + "1 }}", {"nested deeper than 100 levels"});
  ExpectRejected("{{ 1" + Repeat(" + 1", 100000) + " }}", {"expression nested deeper than 100 levels"});
  ExpectRejected("{{ x" + Repeat(".a", 100000) + " }}", {"expression nested deeper than 100 levels"});
  ExpectRejected(Repeat("{% if x %}", 10000) + Repeat("{% endif %}", 10000), {"nested deeper than 100 levels"});
  ExpectRejected("{{ 'ab' * 10000000000 }}", {"builds a value of"});
  ExpectRejected("{{ [1, 2] * 9223372036854775807 }}", {"builds a value of"});
  ExpectRejected("{{ range(10000000000) }}", {"builds a value of"});
  ExpectRejected("{{ ('a' * 1000000).replace('a', 'b' * 1000) }}", {"builds a value of"});
  ExpectRejected("{% for i in range(2000) %}" + std::string(40000, 'x') + "{% endfor %}", {"the output exceeds"});
  ExpectRejected("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
                 "{% endfor %}{% endfor %}{% endfor %}",
                 {"steps to render"});
  ExpectRejected("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}",
                 {"value nested deeper than 100 levels"});
  ExpectRejected("{{ ['a' * 60000000] * 2 }}", {"builds a value of"});
  ExpectRejected("{{ ('a' * 60000000).split('a') }}", {"builds a value of"});
  ExpectRejected("{{ ['x', 'y', 'z'] | join('s' * 40000000) }}", {"builds a value of"});
  ExpectRejected("{{ x | tojson(indent=100000) }}", {"indent 100000 is above 64"}, Json{{"x", Json::array({1})}});
  ExpectRejected("{{ 9223372036854775807 + 1 }}", {"integer overflow in +"});
  ExpectRejected("{{ (-9223372036854775807 - 2) }}", {"integer overflow in -"});
  ExpectRejected("{{ 4294967296 * 4294967296 }}", {"integer overflow in *"});
  ExpectRejected("{{ (-9223372036854775807 - 1) // -1 }}", {"integer overflow in //"});
  ExpectRejected("{{ 1e300 | int }}", {"outside the 64-bit range"});
  const Json none = Json::object();
  EXPECT_EQ(ChatTemplate("{{ '' * 9223372036854775807 }}|{{ [] * 9223372036854775807 }}").Render(none), "|[]");
  EXPECT_EQ(ChatTemplate("{{ (-9223372036854775807 - 1) is divisibleby(-1) }}").Render(none), "True");
  EXPECT_EQ(ChatTemplate("{{ [1, 2, 3][1::9223372036854775807] }}").Render(none), "[2]");
  EXPECT_EQ(ChatTemplate("{% set s = -9223372036854775807 %}{{ [1, 2, 3][::s] }}").Render(none), "[3]");
  EXPECT_EQ(ChatTemplate("{{ " + Repeat("(", 90) + "1" + Repeat(")", 90) + " }}").Render(none), "1");
  // Near the ends of int64, range() counts without overflowing.
  EXPECT_EQ(ChatTemplate("{{ range(9223372036854775806, 9223372036854775807, 10) | list }}").Render(Json::object()),
            "[9223372036854775806]");
  EXPECT_EQ(ChatTemplate("{{ range(-9223372036854775807, -9223372036854775807 - 1, -3) | length }}").Render(Json::object()),
            "1");
}

}  // namespace
}  // namespace hymba

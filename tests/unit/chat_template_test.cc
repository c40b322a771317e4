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

}  // namespace
}  // namespace hymba

"""Expected renderings for tests/unit/chat_template_test.cc, produced by
Debian's python3-jinja2 configured as transformers' apply_chat_template
configures it: ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks
and the loopcontrols extension, raise_exception as a global and tojson as
json.dumps(ensure_ascii=False). --check re-renders and compares with the
committed tests/data/template_cases.json.

Run with /usr/bin/python3."""
import json
import os

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

import golden_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data"))
OUTPUT = os.path.join(DATA, "template_cases.json")

with open(os.path.join(DATA, "hymba-1.5b", "tokenizer_config.json")) as f:
    HYMBA = json.load(f)["chat_template"]

# Renditions of widely used chat templates, in the style their model repos publish.
CHATML = ("{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
          "{%- endif %}{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
          "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
          "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}"
          "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
          "{% else %}{% set content = message['content'] %}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
          "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
          " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
          "{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}"
           "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
           "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
         "{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}"
         "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
         "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
         "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
         "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
          "{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
          "{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
          "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n"
          "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
PHI3 = ("{% for message in messages %}{% if message['role'] == 'system' %}"
        "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
        "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
        "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}")

CONVERSATIONS = {
    "system_user": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello"}],
    "user_only": [{"role": "user", "content": "Hi"}],
    "multi_turn": [{"role": "system", "content": "  Be brief.\n"}, {"role": "user", "content": "What is 2+2?"},
                   {"role": "assistant", "content": " 4 \n"}, {"role": "user", "content": "And 3+3?\n\nThanks"}],
    "alternating": [{"role": "user", "content": "Héllo, 世界 🦙"}, {"role": "assistant", "content": "Hi!"},
                    {"role": "user", "content": "  spaced  "}],
    "empty_content": [{"role": "user", "content": ""}],
    "bad_order": [{"role": "assistant", "content": "I speak first"}, {"role": "user", "content": "Hm"}],
}
TEMPLATES = {"hymba": HYMBA, "chatml": CHATML, "llama2": LLAMA2, "llama3": LLAMA3, "mistral": MISTRAL,
             "gemma": GEMMA, "zephyr": ZEPHYR, "phi3": PHI3}

# One construct at a time.
SYNTHETIC = [
    ("loop_vars", "{% for x in items %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ loop.revindex }}"
                  "{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %};{% endfor %}", {"items": ["a", "b", "c"]}),
    ("set_scoping", "{% set x = 1 %}{% for i in [1, 2] %}[{{ x }}]{% set x = i * 10 %}({{ x }}){% endfor %}<{{ x }}>"
                    "{% if true %}{% set x = 5 %}{% endif %}{{ x }}", {}),
    ("namespace", "{% set ns = namespace(found=false, n=0) %}{% for m in items %}{% if m > 1 %}{% set ns.found = true %}"
                  "{% set ns.n = ns.n + m %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.n }}", {"items": [1, 2, 3]}),
    ("elif_chain", "{% for v in [1, 2, 3, 4] %}{% if v == 1 %}one{% elif v == 2 %}two{% elif v == 3 %}three"
                   "{% else %}many{% endif %} {% endfor %}", {}),
    ("filters", "{{ '  pad  ' | trim }}|{{ items | length }}|{{ 'Ab' | lower }}{{ 'Ab' | upper }}|{{ missing | default('dflt') }}"
                "|{{ items | join(', ') }}|{{ items | first }}{{ items | last }}|{{ 42 | string }}|{{ '7' | int + 1 }}"
                "|{{ 'héllo' | length }}|{{ items | reverse | join }}|{{ '' | default('e', true) }}", {"items": ["x", "y", "z"]}),
    ("tojson", "{{ tools | tojson }} {{ {'b': 1, 'a': [true, none, 1.5, 'é\"\\n']} | tojson }} {{ 'x' | tojson }}",
     {"tools": [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}),
    ("tojson_indent", "{{ data | tojson(indent=2) }}", {"data": {"a": [1, 2], "b": {}, "c": []}}),
    ("string_methods", "{{ '  a b  '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'xxaxx'.rstrip('x') }}|{{ 'hello'.startswith('he') }}"
                       "|{{ 'hello'.endswith('lo') }}|{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}|{{ 'a,b,,c'.split(',') }}"
                       "|{{ ' a  b '.split() }}|{{ 'aaa'.replace('a', 'bb') }}|{{ 'hello world'.title() }}|{{ '-'.join(['a', 'b']) }}", {}),
    ("dict_methods", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('a') }}{{ d.get('zz', 'none') }}"
                     "{{ d.keys() | list }}{{ d['b'] }}{{ d.b }}", {"d": {"a": 1, "b": 2}}),
    ("slices", "{{ s[1:3] }}|{{ s[::-1] }}|{{ l[1:] }}|{{ l[:-1] }}|{{ l[-1] }}|{{ l[0] }}|{{ s[-2:] }}|{{ l[::2] }}",
     {"s": "abcdef", "l": [1, 2, 3, 4]}),
    ("membership", "{{ 'a' in 'cat' }}{{ 'z' not in 'cat' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1] }}", {}),
    ("inline_if", "{{ 'yes' if flag else 'no' }}|{{ 'only' if flag }}|{{ 'only' if not flag }}|{{ x if x is defined else 'undef' }}",
     {"flag": True}),
    ("tests", "{{ x is defined }}{{ y is defined }}{{ y is not defined }}{{ n is none }}{{ s is string }}{{ 3 is number }}"
              "{{ d is mapping }}{{ l is iterable }}{{ 4 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}",
     {"x": 1, "n": None, "s": "str", "d": {}, "l": []}),
    ("arithmetic", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2.5 + 1 }}"
                   " {{ 'ab' ~ 1 ~ none }} {{ [1] + [2] }} {{ 'x' * 3 }} {{ 1 == 1.0 }} {{ 'b' > 'a' }} {{ 0.1 + 0.2 }}", {}),
    ("logic", "{{ true and false }}{{ true or false }}{{ not true }}{{ none or 'fallback' }}{{ 0 and 1 }}{{ [] or 'empty' }}", {}),
    ("whitespace_control", "a  {{- ' b ' -}}  c\n  {%- if true %}\n d\n {%+ if true %}e{% endif %}\n{% endif -%}\n  f", {}),
    ("trim_lstrip_blocks", "line1\n    {% if true %}\n    inner\n    {% endif %}\nline2 {% if true %}x{% endif %}\n"
                           "{# comment #}\nafter\n  {# indented comment #}\nend", {}),
    ("loop_controls", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}"
                      "{{ i }}{% endfor %}", {}),
    ("for_else_and_strings", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for c in 'hé' %}[{{ c }}]{% endfor %}"
                             "|{% for k in {'p': 1, 'q': 2} %}{{ k }}{% endfor %}", {}),
    ("undefined_values", "[{{ missing }}]{% if missing %}T{% else %}F{% endif %}{{ missing | length }}{% for x in missing %}x{% endfor %}"
                         "{{ m.absent is defined }}", {"m": {}}),
    ("str_forms", "{{ 1.0 }} {{ 1e20 }} {{ 0.00001 }} {{ [1, 'a', none, true, 2.5] }} {{ {'k': \"it's\"} }} {{ none }} {{ false }}", {}),
]


def environment():
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def render(env, template, context):
    try:
        return {"expected": env.from_string(template).render(**context)}
    except TemplateError as e:
        return {"error": str(e)}


def build():
    env = environment()
    cases = []
    for name, template in TEMPLATES.items():
        for conversation_name, messages in CONVERSATIONS.items():
            for generation_prompt in (True, False):
                context = {"messages": messages, "add_generation_prompt": generation_prompt, "bos_token": "<s>",
                           "eos_token": "</s>"}
                cases.append({"name": f"{name}/{conversation_name}/{'gen' if generation_prompt else 'nogen'}",
                              "template": template, "context": context, **render(env, template, context)})
    hymba_tools = {"messages": CONVERSATIONS["system_user"], "add_generation_prompt": True, "bos_token": "<s>",
                   "eos_token": "</s>",
                   "tools": [{"name": "search", "description": "Search <the> web & more", "parameters": {"q": "str"}}],
                   "contexts": ["  The sky is blue.  ", "Grass is green."]}
    cases.append({"name": "hymba/tools_and_contexts", "template": HYMBA, "context": hymba_tools,
                  **render(env, HYMBA, hymba_tools)})
    for name, template, context in SYNTHETIC:
        cases.append({"name": f"synthetic/{name}", "template": template, "context": context,
                      **render(env, template, context)})
    return cases


if __name__ == "__main__":
    golden_file.main(__doc__, build, OUTPUT, "template cases")

#!/usr/bin/env python3
"""Reference renderings of the published chat templates, from transformers.

For every ../shared/chat_templates/*.jinja and every case of the corpus
below, with add_generation_prompt true and false (a prefill case: false,
with continue_final_message), this calls Hugging Face's
apply_chat_template(..., tokenize=False) and writes what it returned, or
the exception it raised, to t/data/chat/.  t/unit/test_jinja.c renders
the same cases with src/proto/jinja.c and compares byte for byte.

    python3 -m venv /work/venv-jinja
    /work/venv-jinja/bin/pip install -r tools/ref/requirements-chat.txt
    /work/venv-jinja/bin/python tools/ref/chat_templates.py

Written:
    t/data/chat/corpus.json      the cases: messages, tools, documents,
                                 extra template variables, prefill
    t/data/chat/NAME.json        one per template NAME.jinja: for each case
                                 and add_generation_prompt, "output" (the
                                 text) or "error" ("Type: message")

The tokenizer is ../shared/tokenizers/llama3 (only its apply_chat_template
is used, with the template passed as chat_template=); bos_token and
eos_token are passed explicitly so that the template sees exactly the
variables corpus.json names.  strftime_now reads a fixed clock,
CLOCK below, which the C test injects too.
"""

import argparse
import datetime as dt
import json
import os
import sys

# What strftime_now() sees: a fixed local time, so the references do not
# depend on the day they were made.
CLOCK = dt.datetime(2026, 3, 5, 14, 7, 9)

COMMON = {"bos_token": "<s>", "eos_token": "</s>"}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string",
                         "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                         "description": "Temperature unit"},
            },
            "required": ["city"],
        },
    },
}

SEARCH = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "Search the web and return the top results.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Search terms"},
                "max_results": {"type": "integer",
                                "description": "How many results",
                                "default": 3},
                "safe": {"type": "boolean"},
                "sites": {"type": "array", "items": {"type": "string"},
                          "description": "Restrict to these sites"},
                "filters": {
                    "type": "object",
                    "properties": {
                        "year": {"type": "number"},
                        "lang": {"type": "string"},
                    },
                },
            },
            "required": ["query"],
        },
    },
}

# Markup-escaped characters in a description (a template that adds
# "..."|safe + text escapes the text), numbers of every kind, a union type,
# and a tool without parameters.
CALC = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Evaluate an expression like '2 < 3 && 4 > 1' "
                       "and return \"the\" result.",
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {"type": "string"},
                "precision": {"type": "integer", "minimum": 0,
                              "maximum": 15, "default": 6},
                "scale": {"type": "number", "default": 0.5},
                "mode": {"type": ["string", "null"],
                         "enum": ["exact", "approx", None]},
            },
            "required": ["expression"],
        },
    },
}

NOW = {
    "type": "function",
    "function": {"name": "current_time",
                 "description": "The current time (no parameters).",
                 "parameters": {"type": "object", "properties": {}}},
}

TOOLS = [WEATHER, SEARCH]

# Variables a template reads that transformers passes only when the caller
# gives them: firefunction-v2 formats its system prompt from `functions`
# (the functions as a JSON string) and `datetime`, and fails without them.
TEMPLATE_VARS = {
    "fireworks-ai-llama-3-firefunction-v2.jinja": {
        "functions": json.dumps([t["function"] for t in TOOLS], indent=2),
        "datetime": "2026-03-05 14:07",
    },
}


def call(id_, name, args, as_string=False):
    return {"id": id_, "type": "function",
            "function": {"name": name,
                         "arguments": json.dumps(args) if as_string
                         else args}}


SYS = {"role": "system", "content": "You are a concise assistant."}

CASES = [
    {"name": "user",
     "messages": [{"role": "user", "content": "Hello!"}]},
    {"name": "system_user",
     "messages": [SYS, {"role": "user", "content": "What is 2+2?"}]},
    {"name": "multi_turn",
     "messages": [SYS,
                  {"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4."},
                  {"role": "user", "content": "And 3+3?"}]},
    {"name": "multi_turn_nosys",
     "messages": [{"role": "user", "content": "Hi there"},
                  {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "Tell me a joke."}]},
    {"name": "ends_assistant",
     "messages": [SYS,
                  {"role": "user", "content": "Name a color."},
                  {"role": "assistant", "content": "Blue."}]},
    {"name": "three_rounds",
     "messages": [SYS,
                  {"role": "user", "content": "One"},
                  {"role": "assistant", "content": "Two"},
                  {"role": "user", "content": "Three"},
                  {"role": "assistant", "content": "Four"},
                  {"role": "user", "content": "Five"}]},
    {"name": "non_ascii",
     "messages": [{"role": "system",
                   "content": "Réponds en français, s'il te plaît."},
                  {"role": "user",
                   "content": "Привет! 你好，世界 🌍 — “quotes” and "
                              "'apostrophes' \"double\" \\ back\tslash"},
                  {"role": "assistant", "content": "¡Hola! ñ ü ß Ω"},
                  {"role": "user", "content": "Ça va? 日本語で答えて。"}]},
    {"name": "whitespace",
     "messages": [{"role": "user",
                   "content": "  padded with spaces and\nnewlines\n\n  "},
                  {"role": "assistant", "content": "\n  answer  \n"},
                  {"role": "user", "content": "next\n"}]},
    {"name": "empty_content",
     "messages": [{"role": "user", "content": ""}]},
    {"name": "content_parts",
     "messages": [{"role": "user",
                   "content": [{"type": "text", "text": "Describe this"},
                               {"type": "text", "text": "in one word."}]}]},
    {"name": "system_only",
     "messages": [SYS]},
    {"name": "two_users",
     "messages": [{"role": "user", "content": "First"},
                  {"role": "user", "content": "Second"}]},
    {"name": "assistant_first",
     "messages": [{"role": "assistant", "content": "I speak first."},
                  {"role": "user", "content": "Fine."}]},
    {"name": "tools_query", "tools": TOOLS,
     "messages": [SYS, {"role": "user",
                        "content": "What's the weather in Paris?"}]},
    {"name": "tools_nosys", "tools": [WEATHER],
     "messages": [{"role": "user", "content": "Weather in Oslo?"}]},
    {"name": "tool_call", "tools": TOOLS,
     "messages": [{"role": "user", "content": "What's the weather in Paris?"},
                  {"role": "assistant", "content": "",
                   "tool_calls": [call("call_1", "get_weather",
                                       {"city": "Paris",
                                        "unit": "celsius"})]},
                  {"role": "tool", "tool_call_id": "call_1",
                   "name": "get_weather",
                   "content": "{\"temperature\": 18, \"sky\": \"clear\"}"}]},
    {"name": "tool_call_string_args", "tools": TOOLS,
     "messages": [SYS,
                  {"role": "user", "content": "Search for nginx modules"},
                  {"role": "assistant", "content": None,
                   "tool_calls": [call("call_a", "search_web",
                                       {"query": "nginx modules",
                                        "max_results": 2}, True)]},
                  {"role": "tool", "tool_call_id": "call_a",
                   "content": "1. ngx_http_infer_module"},
                  {"role": "assistant",
                   "content": "The top result is ngx_http_infer_module."},
                  {"role": "user", "content": "Thanks!"}]},
    {"name": "parallel_tool_calls", "tools": TOOLS,
     "messages": [{"role": "user", "content": "Weather in Paris and Köln?"},
                  {"role": "assistant", "content": "Checking both.",
                   "tool_calls": [call("call_p", "get_weather",
                                       {"city": "Paris"}),
                                  call("call_k", "get_weather",
                                       {"city": "Köln", "unit": "celsius"})]},
                  {"role": "tool", "tool_call_id": "call_p",
                   "name": "get_weather", "content": "sunny, 21°C"},
                  {"role": "tool", "tool_call_id": "call_k",
                   "name": "get_weather", "content": "rain, 12°C"},
                  {"role": "assistant",
                   "content": "Paris is sunny; Köln is rainy."}]},
    {"name": "reasoning",
     "messages": [{"role": "user", "content": "What is 6*7?"},
                  {"role": "assistant", "content": "42",
                   "reasoning_content": "6 times 7 is 42."},
                  {"role": "user", "content": "And 7*8?"}]},
    {"name": "thinking_off", "kwargs": {"enable_thinking": False},
     "messages": [{"role": "user", "content": "Quick: capital of Peru?"}]},
    {"name": "thinking_on", "kwargs": {"enable_thinking": True},
     "messages": [SYS, {"role": "user", "content": "Prove it step by step."}]},
    {"name": "documents",
     "documents": [{"title": "Nginx", "text": "nginx is a web server."},
                   {"title": "Jinja", "text": "Jinja is a template engine."}],
     "messages": [{"role": "user", "content": "What is nginx?"}]},
    {"name": "tool_values", "tools": [CALC, NOW],
     "messages": [SYS,
                  {"role": "user", "content": "Compute 1/3 to 4 places, then "
                                              "the time."},
                  {"role": "assistant",
                   "tool_calls": [call("abcDEF123", "calculate",
                                       {"expression": "1/3", "precision": 4,
                                        "scale": 1e-07, "big": 1e16,
                                        "neg": -2, "flag": True,
                                        "none": None, "list": [1, 2.5, "x"],
                                        "nested": {"a": {"b": []}}}),
                                  call("XYZ987abc", "current_time", {})]},
                  {"role": "tool", "tool_call_id": "abcDEF123",
                   "name": "calculate", "content": "0.3333"},
                  {"role": "tool", "tool_call_id": "XYZ987abc",
                   "name": "current_time",
                   "content": "{\"time\": \"14:07\", \"ok\": true}"}]},
    {"name": "mistral_ids", "tools": [WEATHER],
     "messages": [{"role": "user", "content": "Weather in Rome?"},
                  {"role": "assistant", "content": "",
                   "tool_calls": [call("a1B2c3D4e", "get_weather",
                                       {"city": "Rome"})]},
                  {"role": "tool", "tool_call_id": "a1B2c3D4e",
                   "name": "get_weather", "content": "hot"},
                  {"role": "assistant", "content": "It is hot in Rome."},
                  {"role": "user", "content": "Thanks."}]},
    {"name": "long_chat",
     "messages": [SYS] + [m for i in range(6) for m in (
                  {"role": "user", "content": "Question %d?" % i},
                  {"role": "assistant", "content": "Answer %d." % i})]
                 + [{"role": "user", "content": "Last one."}]},
    {"name": "control_chars",
     "messages": [{"role": "user",
                   "content": "bell\u0007 esc\u001b tab\t cr\r "
                              "nbsp\u00a0 zwj\u200d ls\u2028 end"},
                  {"role": "assistant", "content": "<b>&amp;</b> 'q' \"dq\""},
                  {"role": "user", "content": "ok"}]},
    {"name": "system_parts",
     "messages": [{"role": "system",
                   "content": [{"type": "text", "text": "Be brief."}]},
                  {"role": "user",
                   "content": [{"type": "text", "text": "Hi!"}]}]},
    {"name": "named_users",
     "messages": [{"role": "system", "content": "Group chat."},
                  {"role": "user", "name": "alice", "content": "Hi bot"},
                  {"role": "assistant", "content": "Hi Alice"},
                  {"role": "user", "name": "bob", "content": "And me?"}]},
    {"name": "thinking_off_history", "kwargs": {"enable_thinking": False},
     "messages": [{"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4",
                   "reasoning_content": "Simple."},
                  {"role": "user", "content": "3+3?"}]},
    {"name": "prefill", "continue_final_message": True,
     "messages": [{"role": "user", "content": "Write a haiku about rain."},
                  {"role": "assistant", "content": "Soft rain on the roof"}]},
    {"name": "prefill_system", "continue_final_message": True,
     "messages": [SYS,
                  {"role": "user", "content": "Finish: the answer is"},
                  {"role": "assistant", "content": "The answer is "}]},
    {"name": "prefill_parts", "continue_final_message": True,
     "messages": [{"role": "user", "content": "Say hi."},
                  {"role": "assistant",
                   "content": [{"type": "text", "text": "Hi"},
                               {"type": "text", "text": "there"}]}]},
]


# Small templates that pin down one construct each, rendered by jinja2 in
# the environment transformers compiles chat templates in.  Variables: V.
V = {"xs": [3, 1, 2], "s": "  Hello, Wörld!  ", "d": {"b": 2, "a": 1, "C": 3},
     "users": [{"name": "bob", "age": 30, "role": "user"},
               {"name": "Alice", "age": 25, "role": "admin"},
               {"name": "carol", "role": "user"}],
     "n": None, "t": True, "f": 1.5, "e": "", "empty": [],
     "nested": {"a": {"b": [10, 20, {"c": "deep"}]}}}

SNIPPETS = [
    # whitespace control, trim_blocks, lstrip_blocks, the source's newlines
    ("ws_lstrip", "a\n  {% if true %}\nb\n  {% endif %}\nc"),
    ("ws_minus", "x  {%- if true -%}  y  {%- endif -%}  z"),
    ("ws_var_minus", "a  {{- ' b ' -}}  c\n{{ 'd' }}\n"),
    ("ws_for", "{% for i in xs %}\n{{ i }}\n{% endfor %}\nend"),
    ("ws_comment", "a\n  {# c #}\nb {#- c -#} c\n{#+ k +#}\nd"),
    ("ws_plus", "a\n\t {%+ if true %}x{% endif +%}\nb"),
    ("ws_raw", "{% raw %}{{ x }}{% if %}{% endraw %}\n{%- raw -%}  r  "
               "{%- endraw %}|"),
    ("ws_trailing_newline", "x\n"),
    ("ws_crlf", "a\r\n{% if 1 %}\r\nb\r{% endif %}\r\n\r\n"),
    ("ws_unicode_space", "a\u3000{%- if 1 %}b{% endif %}\n\u00a0 {% if 1 %}c"
                         "{% endif %}"),
    ("ws_block_after_var", "{{ 1 }}  {% if 1 %}x{% endif %}"),
    ("ws_set_block", "{% set x %}\n  a  \n{% endset %}[{{ x }}]"),
    # scopes
    ("scope_for", "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}"
                  "{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}"),
    ("scope_if", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}"),
    ("scope_ns", "{% set ns = namespace(c=0, l=[]) %}{% for i in xs %}"
                 "{% set ns.c = ns.c + i %}{% endfor %}{{ ns.c }} {{ ns.l }} "
                 "{{ ns.missing is defined }}"),
    ("scope_macro", "{% set x = 1 %}{% macro m(a, b=a * 2) %}{{ a }}-{{ b }}"
                    "-{{ x }}{% endmacro %}{% set x = 2 %}{{ m(1) }} "
                    "{{ m(1, 5) }} {{ m(b=3, a=4) }}"),
    ("scope_macro_varargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}"
                            "{% endmacro %}{{ m(1, 2, 3, k=4) }}"),
    ("scope_macro_missing", "{% macro m(a, b) %}[{{ b }}]{% endmacro %}"
                            "{{ m(1) }}"),
    ("scope_macro_recursion", "{% macro f(n) %}{% if n > 0 %}{{ n }}"
                              "{{ f(n - 1) }}{% endif %}{% endmacro %}"
                              "{{ f(5) }}"),
    ("scope_call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</"
                         "{{ tag }}>{% endmacro %}{% call wrap('b') %}bold "
                         "{{ 1 }}{% endcall %}"),
    ("scope_call_args", "{% macro each(xs) %}{% for x in xs %}"
                        "{{ caller(x, loop.index) }}{% endfor %}{% endmacro %}"
                        "{% call(item, i) each(['a', 'b']) %}[{{ i }}:"
                        "{{ item }}]{% endcall %}"),
    ("scope_caller_undefined", "{% macro m() %}[{{ caller is defined }}]"
                               "{% endmacro %}{{ m() }}"),
    ("scope_setblock_filter", "{% set x | upper | trim %}  abc  {% endset %}"
                              "[{{ x }}]"),
    ("scope_filterblock", "{% filter upper %}a{{ 'b' }}{% endfilter %}"),
    ("scope_with", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}"
                   "{{ a is defined }}"),
    ("scope_tuple_set", "{% set a, b = [1, 2] %}{{ b }}{{ a }}"),
    ("scope_generation", "{% generation %}gen {{ 1 }}{% endgeneration %}"),
    # loops
    ("loop_vars", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}"
                  "{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}"
                  "{{ loop.last }}{{ loop.length }}|{% endfor %}"),
    ("loop_prev_next", "{% for x in xs %}{{ loop.previtem }}<{{ x }}>"
                       "{{ loop.nextitem }};{% endfor %}"),
    ("loop_cycle", "{% for x in xs %}{{ loop.cycle('a', 'b') }}{% endfor %}"),
    ("loop_filter", "{% for x in xs if x > 1 %}{{ x }}{{ loop.index }}"
                    "{{ loop.length }}{% endfor %}"),
    ("loop_else", "{% for x in empty %}x{% else %}none{% endfor %}"),
    ("loop_break", "{% for x in xs %}{% if x == 1 %}{% break %}{% endif %}"
                   "{{ x }}{% endfor %}{% for x in xs %}{% if x == 1 %}"
                   "{% continue %}{% endif %}{{ x }}{% endfor %}"),
    ("loop_nested", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}"
                    "{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}"),
    ("loop_dict", "{% for k in d %}{{ k }}{% endfor %} {% for k, v in "
                  "d.items() %}{{ k }}={{ v }}{% endfor %}"),
    ("loop_string", "{% for c in 'hé🌍' %}[{{ c }}]{% endfor %}"),
    ("loop_unpack_error", "{% for a, b in [[1, 2, 3]] %}{% endfor %}"),
    # expressions
    ("expr_arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7 % 3 }} "
                   "{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 1 / 4 }} {{ 7.5 // 2 }} "
                   "{{ -7.5 % 2 }} {{ 10 / 3 }} {{ 3 * 'ab' }} {{ [0] * 3 }}"
                   " {{ true + 1 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}"),
    ("expr_float_repr", "{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 1e-5 }} "
                        "{{ 0.0001 }} {{ 123456789.0 }} {{ 1.5e300 * 1e10 }}"
                        " {{ -0.0 }} {{ 2.5 }} {{ 1/3 }} {{ 100.0 }}"),
    ("expr_strings", "{{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ 'abc'[-1] }} "
                     "{{ 'abcdef'[1::2] }} {{ 'ab' ~ 1 ~ none ~ n }} "
                     "{{ 'a' 'b' }} {{ 'x' + 'y' }} {{ 'é'|length }}"),
    ("expr_escapes", "{{ 'a\\nb\\t\\'\\\"\\x41\\u00e9\\U0001F600\\101"
                     "\\q\\\\' }}"),
    ("expr_compare", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} "
                     "{{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ true == 1 }} "
                     "{{ {'a': 1} == {'a': 1} }} {{ (1, 2) == [1, 2] }} "
                     "{{ 2 >= 2 }} {{ n == none }}"),
    ("expr_in", "{{ 'ell' in 'hello' }} {{ 2 in xs }} {{ 'a' in d }} "
                "{{ 'z' not in d }} {{ '' in 'x' }} {{ 1 in empty }}"),
    ("expr_logic", "{{ 0 or 'x' }} {{ '' and 1 }} {{ 1 and 2 }} "
                   "{{ not 0 }} {{ none or empty or 'last' }}"),
    ("expr_condexpr", "[{{ 'y' if t }}] [{{ 'y' if n }}] "
                      "[{{ 'a' if n else 'b' if t else 'c' }}]"),
    ("expr_repr", "{{ [1, 'a', none, true, 1.5, {'k': 'v'}] }} {{ ('a',) }}"
                  " {{ () }} {{ {'a': [1, (2, 3)]} }} {{ [\"it's\", 'say \"hi\"',"
                  " 'both \\' \"'] }} {{ ['\\n\\t\\x07é\\u00a0\\u200b'] }}"
                  " {{ d }} {{ users[0] }}"),
    ("expr_attr_item", "{{ nested.a.b[2].c }} {{ nested['a']['b'][-1]['c'] }}"
                       " {{ xs.0 }} {{ d.get('a') }} {{ d.get('z', 9) }} "
                       "{{ d['items'] is defined }} {{ d.items is defined }}"),
    ("expr_list_dict", "{{ [1, 2,] }} {{ {'a': 1, 'b': [2]}['b'] }} "
                       "{{ (1, 2)[1] }} {{ [1, 2] + [3] }} {{ [[1], [2]][1][0] }}"),
    ("expr_unary", "{{ -xs[0] }} {{ -f }} {{ +1 }} {{ -1|abs }}"),
    # filters
    ("filter_strings", "[{{ s|trim }}] [{{ s|trim(' H!') }}] {{ s|upper }} "
                       "{{ s|lower }} {{ 'hello world'|capitalize }} "
                       "{{ 'hello-world (foo) [bar]x'|title }} "
                       "{{ 'aaa'|replace('a', 'b', 2) }} {{ 'ß'|upper }} "
                       "{{ 'ÀÉÎ'|lower }} {{ 'one two  three'|wordcount }} "
                       "[{{ 'ab'|center(6) }}]"),
    ("filter_length", "{{ xs|length }} {{ 'héllo'|length }} {{ d|count }} "
                      "{{ undefined_var|length }} {{ empty|length }}"),
    ("filter_default", "{{ undefined_var|default('dflt') }} {{ n|default('x')"
                       " }} {{ e|default('y', true) }} {{ e|d('z', boolean="
                       "true) }} [{{ undefined_var|default }}]"),
    ("filter_join", "{{ xs|join(', ') }} {{ users|join('/', attribute="
                    "'name') }} {{ [1, none, 'x']|join }}"),
    ("filter_select", "{{ users|selectattr('role', 'equalto', 'user')|"
                      "map(attribute='name')|list }} {{ users|rejectattr("
                      "'age', 'defined')|map(attribute='name')|join }} "
                      "{{ xs|select('odd')|list }} {{ xs|reject('==', 1)|list"
                      " }} {{ users|selectattr('age')|list|length }} "
                      "{{ [0, 1, '', 'a']|select|list }}"),
    ("filter_map", "{{ ['a', 'b']|map('upper')|list }} {{ users|map("
                   "attribute='age', default=0)|list }} {{ nested.a.b|map("
                   "'string')|join('|') }}"),
    ("filter_first_last", "{{ xs|first }} {{ xs|last }} {{ 'abc'|first }} "
                          "{{ d|first }} [{{ empty|first }}]"),
    ("filter_list_string", "{{ 'abc'|list }} {{ d|list }} {{ xs|string }} "
                           "{{ none|string }} {{ (1,)|list }}"),
    ("filter_int_float", "{{ '42'|int }} {{ ' 7 '|int }} {{ '3.9'|int }} "
                         "{{ 'x'|int }} {{ 'x'|int(-1) }} {{ 4.7|int }} "
                         "{{ '0x1A'|int(0, 16) }} {{ '1_000'|int }} "
                         "{{ '2.5'|float }} {{ 'x'|float }} {{ 3|float }} "
                         "{{ true|int }} {{ none|int }}"),
    ("filter_sort", "{{ xs|sort }} {{ xs|sort(reverse=true) }} "
                    "{{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort("
                    "case_sensitive=true) }} {{ users|sort(attribute='name')"
                    "|map(attribute='name')|list }} {{ d|dictsort }} "
                    "{{ d|dictsort(by='value', reverse=true) }}"),
    ("filter_unique_min_max", "{{ ['a', 'A', 'b', 'a']|unique|list }} "
                              "{{ xs|min }} {{ xs|max }} {{ ['b', 'A']|min }}"
                              " {{ users|min(attribute='name') }} "
                              "{{ users|selectattr('age')|max(attribute="
                              "'age') }}"),
    ("filter_items", "{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %} "
                     "{{ d|items|list }} {{ undefined_var|items|list }}"),
    ("filter_tojson", "{{ d|tojson }} {{ d|tojson(indent=2) }} "
                      "{{ users|tojson(sort_keys=true) }} {{ 'é\"\\n'|tojson"
                      " }} {{ 'é🌍'|tojson(ensure_ascii=true) }} "
                      "{{ [1.0, 1e16, 0.5, none, true]|tojson }} "
                      "{{ {'a': []}|tojson(indent=' ') }} {{ d|tojson("
                      "separators=(',', ':')) }} {{ {1: 'x', none: 2}|tojson "
                      "}} {{ [[], {}]|tojson(indent=2) }}"),
    ("filter_indent", "{{ 'a\nb\n\nc'|indent }}|{{ 'a\nb'|indent(2, true) }}"
                      "|{{ 'a\n\nb'|indent('> ', blank=true) }}|"
                      "{{ 'x\r\ny\u2028z'|indent(1) }}"),
    ("filter_misc", "{{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} "
                    "{{ 3.5|round }} {{ 2.1|round(0, 'ceil') }} "
                    "{{ xs|sum }} {{ users|selectattr('age')|sum(attribute="
                    "'age') }} {{ xs|reverse|list }} {{ 'abc'|reverse }}"),
    ("filter_safe", "{{ ('<a>'|safe + \"'b' & <c>\") }} {{ 'x' + '<y>'|safe }}"
                    " {{ '<a>'|safe ~ '<b>' }} {{ '<&>'|escape }} "
                    "{{ ('<p>'|safe)|length }}"),
    # tests
    ("tests", "{{ n is none }} {{ s is string }} {{ d is mapping }} "
              "{{ xs is iterable }} {{ 'x' is iterable }} {{ 1 is iterable }} "
              "{{ f is number }} {{ t is number }} {{ xs is sequence }} "
              "{{ d is sequence }} {{ t is boolean }} {{ 1 is integer }} "
              "{{ f is float }} {{ t is true }} {{ 0 is false }} "
              "{{ undefined_var is undefined }} {{ 6 is divisibleby 3 }} "
              "{{ 3 is odd }} {{ 4 is even }} {{ 'ab' is lower }} "
              "{{ 'AB' is upper }} {{ 2 is in xs }} {{ 1 is eq 1 }} "
              "{{ 1 is ne 2 }} {{ 1 is lt 2 }} {{ 3 is ge 3 }} "
              "{{ n is sameas none }} {{ range is callable }} "
              "{{ 'upper' is filter }} {{ 'odd' is test }} "
              "{{ undefined_var is iterable }} {{ undefined_var is sequence }}"
              " {{ users is not mapping }}"),
    # str methods
    ("methods", "[{{ s.strip() }}] [{{ s.lstrip() }}] [{{ s.rstrip(' !') }}]"
                " {{ 'a,b,,c'.split(',') }} {{ ' a  b c '.split() }} "
                "{{ 'a b c'.split(None, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} "
                "{{ ' a b c '.rsplit(None, 1) }} {{ 'x\ny\r\nz'.splitlines() }}"
                " {{ 'abc'.startswith('ab') }} {{ 'abc'.startswith(('x', "
                "'a')) }} {{ 'abc'.endswith('bc') }} {{ 'aXbX'.replace('X',"
                " '-') }} {{ 'hello world'.title() }} {{ \"they're\".title()"
                " }} {{ 'hELLO'.capitalize() }} {{ 'hello'.find('l') }} "
                "{{ 'hello'.rfind('l') }} {{ 'héllo'.find('l') }} "
                "{{ 'hello'.count('l') }} {{ '-'.join(['a', 'b']) }} "
                "{{ '{} and {}'.format(1, 'x') }} {{ '{0}{name}'.format(7, "
                "name='n') }} {{ 'a=b=c'.partition('=') }} "
                "{{ 'prefix_x'.removeprefix('prefix_') }} {{ '42'.zfill(5) }}"
                " {{ '12'.isdigit() }} {{ '  '.isspace() }} {{ 'ab'.upper() "
                "}} {{ 'AbC'.swapcase() }} {{ 'x'.center(5, '*') }}"),
    ("methods_dict_list", "{{ d.keys()|list }} {{ d.values()|list }} "
                          "{{ d.items()|list }} {{ xs.index(2) }} "
                          "{{ xs.count(3) }} {{ d.get('missing') }}"),
    ("strftime", "{{ strftime_now('%Y-%m-%d %H:%M:%S') }} {{ strftime_now("
                 "'%d %b %Y') }} {{ strftime_now('%B %d, %Y') }} "
                 "{{ strftime_now('%A %a %j %I%p %y %%') }}"),
    ("globals", "{{ range(3)|list }} {{ range(1, 10, 3)|list }} "
                "{{ range(5, 0, -2)|list }} {{ dict(a=1, b=2) }} "
                "{{ namespace(a=1).a }} {{ strftime_now is defined }}"),
    # errors
    ("err_raise", "{{ raise_exception('bad ' ~ 1) }}"),
    ("err_undefined_attr", "{{ undefined_var.attr }}"),
    ("err_undefined_name_call", "{{ undefined_fn() }}"),
    ("err_undefined_item", "{{ d.missing.x }}"),
    ("err_undefined_elem", "{{ xs[10].x }}"),
    ("err_none_attr", "{{ n.x.y }}"),
    ("err_str_plus_int", "{{ 'a' + 1 }}"),
    ("err_int_plus_str", "{{ 1 + 'a' }}"),
    ("err_list_plus_str", "{{ xs + 'a' }}"),
    ("err_none_iter", "{% for x in n %}{% endfor %}"),
    ("err_int_len", "{{ 5|length }}"),
    ("err_compare", "{{ 1 < 'a' }}"),
    ("err_zero_div", "{{ 1 / 0 }}"),
    ("err_zero_floordiv", "{{ 1 // 0 }}"),
    ("err_zero_mod", "{{ 1.5 % 0 }}"),
    ("err_append", "{% set x = xs.append(1) %}"),
    ("err_pop", "{{ d.pop('a') }}"),
    ("err_dunder", "{{ s.__class__() }}"),
    ("err_ns_underscore", "{% set ns = namespace() %}{% set ns._x = 1 %}"),
    ("err_not_ns", "{% set x = 1 %}{% set x.y = 2 %}"),
    ("err_filter_runtime", "{% if t %}{{ 1|nosuchfilter }}{% endif %}"),
    ("err_range", "{{ range(1000000)|list|length }}"),
    ("err_macro_args", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
    ("err_macro_kw_positional", "{% macro m(a) %}{% endmacro %}"
                                "{{ m(1, a=2) }}"),
    ("err_macro_order", "{% macro m(a) %}{% endmacro %}{{ m(1, 2, b=3) }}"),
    ("err_call_no_caller", "{% macro m() %}x{% endmacro %}{% call m() %}y"
                           "{% endcall %}"),
    ("err_macro_kwarg", "{% macro m(a) %}{% endmacro %}{{ m(b=2) }}"),
    ("err_items", "{{ xs|items|list }}"),
    ("err_tojson_undefined", "{{ undefined_var|tojson }}"),
    ("err_in_string", "{{ 1 in 'abc' }}"),
    ("err_unhashable", "{{ [1] in d }}"),
    ("err_str_join", "{{ ','.join(xs) }}"),
    ("err_split_empty", "{{ 'a'.split('') }}"),
    ("err_first_undefined", "{{ (empty|first).x }}"),
    ("err_condexpr", "{{ ('x' if n).y }}"),
    ("err_recursion", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
    # syntax errors (the line jinja2 reports is compared)
    ("syntax_unknown_tag", "a\n{% frobnicate %}"),
    ("syntax_missing_end", "{% if true %}\nx\n"),
    ("syntax_bad_char", "{{ 1 }}\n\n{{ a ! b }}"),
    ("syntax_unknown_filter", "line1\n{{ x|nosuchfilter }}"),
    ("syntax_unknown_test", "{{ x is nosuchtest }}"),
    ("syntax_endfor", "{% if x %}{% endfor %}"),
    ("syntax_break_outside", "{% break %}"),
    ("syntax_unclosed_string", "{{ 'abc }}"),
    ("syntax_unbalanced", "{{ (1 }}"),
    ("syntax_comment", "{# never closed"),
    ("syntax_bad_assign", "{% set 1 = 2 %}"),
    ("syntax_macro_default", "{% macro m(a=1, b) %}{% endmacro %}"),
    ("syntax_empty_expr", "{{ }}"),
    ("syntax_extends", "{% extends 'x' %}"),
]


def render_snippets():
    """Each snippet rendered with V, as jinja2 does it for transformers."""
    import jinja2
    from transformers.utils.chat_template_utils import \
        _compile_jinja_template

    out = []
    for name, src in SNIPPETS:
        r = {"name": name, "template": src}
        try:
            r["output"] = _compile_jinja_template(src).render(**V)
        except jinja2.exceptions.TemplateSyntaxError as e:
            r["error"] = "%s: %s" % (type(e).__name__, e.message)
            r["line"] = e.lineno
        except Exception as e:
            r["error"] = "%s: %s" % (type(e).__name__, e)
        out.append(r)
    return out


def load_clock():
    """Points transformers' strftime_now at CLOCK."""
    import transformers.utils.chat_template_utils as ctu

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return CLOCK

    ctu.datetime = Clock


def render(tok, name, template, case, agp):
    kw = dict(COMMON)
    kw.update(TEMPLATE_VARS.get(name, {}))
    kw.update(case.get("kwargs", {}))
    return tok.apply_chat_template(
        json.loads(json.dumps(case["messages"])),
        tools=case.get("tools"), documents=case.get("documents"),
        chat_template=template, add_generation_prompt=agp,
        continue_final_message=case.get("continue_final_message", False),
        tokenize=False, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("INFER_SHARED",
                                                       "../shared"))
    ap.add_argument("--out", default="t/data/chat")
    args = ap.parse_args()

    from transformers import AutoTokenizer
    import transformers
    import jinja2

    load_clock()
    tok = AutoTokenizer.from_pretrained(
        os.path.join(args.shared, "tokenizers", "llama3"))
    tdir = os.path.join(args.shared, "chat_templates")
    os.makedirs(args.out, exist_ok=True)
    written = []

    for fn in sorted(os.listdir(tdir)):
        if not fn.endswith(".jinja"):
            continue
        with open(os.path.join(tdir, fn), encoding="utf-8") as f:
            template = f.read()
        renders = []
        for case in CASES:
            agps = [False] if case.get("continue_final_message") \
                else [True, False]
            for agp in agps:
                r = {"case": case["name"], "add_generation_prompt": agp}
                try:
                    r["output"] = render(tok, fn, template, case, agp)
                except Exception as e:
                    r["error"] = "%s: %s" % (type(e).__name__, e)
                renders.append(r)
        nerr = sum(1 for r in renders if "error" in r)
        print("%-55s %3d renders, %3d errors" % (fn, len(renders), nerr))
        out = fn[:-len(".jinja")] + ".json"
        written.append(out)
        with open(os.path.join(args.out, out), "w") as f:
            json.dump({"template": fn, "renders": renders}, f,
                      ensure_ascii=False, indent=1)
            f.write("\n")

    corpus = {"source": "tools/ref/chat_templates.py",
              "transformers": transformers.__version__,
              "jinja2": jinja2.__version__,
              "clock": CLOCK.strftime("%Y-%m-%d %H:%M:%S"),
              "common": COMMON, "template_vars": TEMPLATE_VARS,
              "templates": written, "cases": CASES}
    with open(os.path.join(args.out, "corpus.json"), "w") as f:
        json.dump(corpus, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "snippets.json"), "w") as f:
        json.dump({"source": "tools/ref/chat_templates.py", "vars": V,
                   "clock": corpus["clock"], "snippets": render_snippets()},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())

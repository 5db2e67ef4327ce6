"""The real `openai` Python SDK's tool-calling flow against a running nginx
(t/017-openai-tools.t) that serves one random-weight model three times:
"hermes" with Qwen2.5's template (in its tokenizer_config.json), "llama3"
with Llama-3.1's and "mistral" with Mistral Nemo's (chat_template= files).
Each template's tool-call format is found from the template.

    openai_tools.py BASE_URL FIRST_ID

The model's tokenizer has four added tokens from FIRST_ID on, each the
whole text of a tool call in one format (the last a Hermes call cut
short); logit_bias +100 on one forces the model to write it.  A real
model writes the same text over many tokens; the parser sees only the
text.  Then three as a real Mistral model writes a call: content, the
special token [TOOL_CALLS] and the call's JSON, forced in that order by
biases 100, 90, 80 and a repetition penalty of 4 (a token written drops
to a quarter, under the next one's bias; the random model's own logits
are far smaller than the gaps).

Prints "ok - WHAT" / "not ok - WHAT" lines and "# ..." reasons.
"""
import json
import sys

import openai

BASE, FIRST = sys.argv[1], int(sys.argv[2])
HERMES, LLAMA3, MISTRAL, BROKEN = FIRST, FIRST + 1, FIRST + 2, FIRST + 3
TOOL_CALLS, CALL_JSON, CONTENT = FIRST + 4, FIRST + 5, FIRST + 6
IN_ORDER = {"logit_bias": {str(CONTENT): 100, str(TOOL_CALLS): 90,
                           str(CALL_JSON): 80},
            "extra_body": {"repetition_penalty": 4}, "max_tokens": 3}

client = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0,
                       timeout=120)
failed = 0

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
MISTRAL_CALL_TEXT = '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'


def check(cond, what, *why):
    global failed
    print(("ok - " if cond else "not ok - ") + what)
    if not cond:
        failed += 1
        for w in why:
            for line in str(w).splitlines() or [""]:
                print("# " + line)
    sys.stdout.flush()
    return cond


def forced(model, token, **kw):
    return client.chat.completions.create(
        model=model, messages=kw.pop("messages", ASK), tools=[WEATHER],
        logit_bias={str(token): 100}, max_tokens=1, **kw)


def flow(model, token, id_check):
    """A completion with tools, the tool's result sent back, the answer."""
    r = forced(model, token)
    c = r.choices[0]
    calls = c.message.tool_calls or []
    check(c.finish_reason == "tool_calls" and len(calls) == 1,
          "%s: finish_reason tool_calls, one call" % model, r)
    if not calls:
        return
    call = calls[0]
    check(call.type == "function" and call.function.name == "get_weather"
          and json.loads(call.function.arguments) == {"city": "Paris"},
          "%s: get_weather with {\"city\": \"Paris\"} as a JSON string"
          % model, call)
    check(id_check(call.id), "%s: the call's id %s" % (model, call.id))
    check(c.message.content is None, "%s: no content beside the call"
          % model, c.message)

    # the SDK's own objects go back as the history
    history = ASK + [c.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id,
                      "content": json.dumps({"temperature": 18})}]
    r2 = client.chat.completions.create(model=model, messages=history,
                                        tools=[WEATHER], max_tokens=3,
                                        logit_bias={str(HERMES): -100,
                                                    str(LLAMA3): -100,
                                                    str(MISTRAL): -100,
                                                    str(BROKEN): -100})
    c2 = r2.choices[0]
    check(c2.finish_reason in ("length", "stop")
          and isinstance(c2.message.content, str)
          and not c2.message.tool_calls,
          "%s: the tool's result sent back gets an answer" % model, r2)
    check(r2.usage.prompt_tokens > r.usage.prompt_tokens,
          "%s: the template rendered the call and its result (%d prompt "
          "tokens, %d before)" % (model, r2.usage.prompt_tokens,
                                  r.usage.prompt_tokens))


def stream(model, token):
    """Tool-call deltas as OpenAI streams them."""
    calls, finish, content = {}, None, ""
    for ch in forced(model, token, stream=True):
        for d in ch.choices:
            content += d.delta.content or ""
            for t in d.delta.tool_calls or []:
                c = calls.setdefault(t.index, {"id": None, "name": "",
                                               "arguments": ""})
                if t.id:
                    c["id"] = t.id
                if t.function and t.function.name:
                    c["name"] += t.function.name
                if t.function and t.function.arguments:
                    c["arguments"] += t.function.arguments
            if d.finish_reason:
                finish = d.finish_reason
    check(finish == "tool_calls" and list(calls) == [0]
          and calls[0]["id"] and calls[0]["name"] == "get_weather"
          and json.loads(calls[0]["arguments"]) == {"city": "Paris"}
          and content == "",
          "%s streamed: the call in deltas, finish_reason tool_calls"
          % model, calls, finish, content)


def call_id(i):
    return i.startswith("call_") and len(i) == 29


def mistral_id(i):
    # Mistral's templates raise on any other (tools/ref corpus, t/data/chat)
    return len(i) == 9 and i.isalnum()


flow("hermes", HERMES, call_id)
flow("llama3", LLAMA3, call_id)
flow("mistral", MISTRAL, mistral_id)
stream("hermes", HERMES)
stream("llama3", LLAMA3)
stream("mistral", MISTRAL)

# [TOOL_CALLS] as the special token it is in Mistral's tokenizers: the
# mistral parser sees it (special tokens are kept for it, as vLLM's
# keeps them), the content before it stays content
r = client.chat.completions.create(model="mistral", messages=ASK,
                                   tools=[WEATHER], **IN_ORDER)
c = r.choices[0]
calls = c.message.tool_calls or []
check(c.finish_reason == "tool_calls" and len(calls) == 1
      and calls[0].function.name == "get_weather"
      and json.loads(calls[0].function.arguments) == {"city": "Paris"}
      and mistral_id(calls[0].id) and c.message.content == "Let me check.",
      "mistral: content, then a call after the special [TOOL_CALLS]", r)
content, names = "", []
for ch in client.chat.completions.create(model="mistral", messages=ASK,
                                         tools=[WEATHER], stream=True,
                                         **IN_ORDER):
    for d in ch.choices:
        content += d.delta.content or ""
        names += [t.function.name for t in d.delta.tool_calls or []
                  if t.function and t.function.name]
check(content == "Let me check." and names == ["get_weather"],
      "... streamed: the content, then the call", content, names)
# elsewhere special tokens make no text unless skip_special_tokens is false
r = client.chat.completions.create(model="hermes", messages=ASK,
                                   **IN_ORDER)
check(r.choices[0].message.content == "Let me check." + MISTRAL_CALL_TEXT,
      "no tools: the special token is left out of the text", r)
r = client.chat.completions.create(
    model="hermes", messages=ASK, logit_bias=IN_ORDER["logit_bias"],
    max_tokens=3, extra_body={"repetition_penalty": 4,
                              "skip_special_tokens": False})
check(r.choices[0].message.content
      == "Let me check.[TOOL_CALLS]" + MISTRAL_CALL_TEXT,
      "skip_special_tokens false: it is in the text", r)

r = forced("hermes", HERMES, tool_choice={"type": "function",
                                          "function": {"name": "get_weather"}})
check(r.choices[0].finish_reason == "tool_calls",
      "tool_choice naming the function", r)
r = forced("hermes", HERMES, tool_choice="required")
check(r.choices[0].finish_reason == "tool_calls", "tool_choice required", r)

# tool_choice "none": what the model writes is content
r = forced("hermes", HERMES, tool_choice="none")
c = r.choices[0]
check(c.finish_reason == "length" and not c.message.tool_calls
      and c.message.content.startswith("<tool_call>"),
      "tool_choice none: the text is content", r)

# a call cut short does not parse: content, not an error
r = forced("hermes", BROKEN)
c = r.choices[0]
check(c.finish_reason == "length" and not c.message.tool_calls
      and c.message.content.startswith("<tool_call>")
      and c.message.content.endswith('"city": '),
      "an output that does not parse is content", r)
content, deltas = "", 0
for ch in forced("hermes", BROKEN, stream=True):
    for d in ch.choices:
        content += d.delta.content or ""
        deltas += len(d.delta.tool_calls or [])
check(content.startswith("<tool_call>") and deltas == 0,
      "... streamed as content too", content, deltas)

try:
    client.chat.completions.create(model="hermes", messages=ASK,
                                   tools=[WEATHER], tool_choice="required_x")
    check(False, "a bad tool_choice: 400")
except openai.BadRequestError as e:
    check(e.param == "tool_choice", "a bad tool_choice: 400 naming it", e)

sys.exit(1 if failed else 0)

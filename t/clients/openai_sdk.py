"""The real `openai` Python SDK (t/requirements.txt, unmodified) against a
running nginx that serves stories260K as model "tiny" at BASE_URL.

    openai_sdk.py BASE_URL MODEL_DIR REF_LOGITS

Prints one line per check, "ok - WHAT" or "not ok - WHAT" followed by
"# ..." lines that say why; t/015-openai-sdk.t turns them into tests.

References, none of them our code: the model's greedy text
(MODEL_DIR/expected_greedy_200.txt), and Hugging Face transformers' float32
logits for every position of a 21-token sequence (REF_LOGITS, see
t/data/ref/README), log-softmaxed here in float64.

Tolerance for logprobs: 1e-4 absolute.  Our float32 forward pass sums in
another order than PyTorch's, which moves stories260K's logits by about
1e-6 (t/unit/test_hf_logits.c); a logprob is a logit less the row's
log-sum-exp, so it moves by a few 1e-6.  A row off by one position, a
softmax over the wrong row or a token's logprob read from another id is
off by 0.1 or more.  The JSON carries each float32 exactly (17 digits).
"""
import json
import math
import sys

import openai

BASE, MODEL_DIR, REF = sys.argv[1], sys.argv[2], sys.argv[3]
TOL = 1e-4

client = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0,
                       timeout=120)
with open(MODEL_DIR + "/expected_greedy_200.txt", encoding="utf-8") as f:
    GREEDY = f.read()

failed = 0


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


def read_ref(path):
    """tokens and per-position log-softmax rows (float64) of REF."""
    with open(path) as f:
        words = [w for line in f if not line.startswith("#")
                 for w in line.split()]
    i = words.index("tokens")
    n = int(words[i + 1])
    tokens = [int(w) for w in words[i + 2:i + 2 + n]]
    i = words.index("vocab")
    vocab, stride, ids = int(words[i + 1]), int(words[i + 3]), int(words[i + 5])
    assert stride == 1 and ids == vocab, "a full-vocabulary reference"
    rows, i = [], i + 6
    for p in range(n):
        assert words[i] == "pos" and int(words[i + 1]) == p
        row = [float(w) for w in words[i + 2:i + 2 + vocab]]
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        rows.append([x - lse for x in row])
        i += 2 + vocab
    return tokens, rows


REF_TOKENS, REF_LP = read_ref(REF)
# The reference sequence's text (tools/ref/make_refs.sh); greedy from its
# first 8 tokens for 9 more ("... Lily. She"), then greedy says "loved".
REF_TEXT = ("Once upon a time, there was a little girl named Lily. She "
            "liked to play")


def worst(pairs):
    return max((abs(a - b) for a, b in pairs), default=0.0)


# ---- completions -------------------------------------------------------

def test_greedy():
    r = client.completions.create(model="tiny", prompt=[1], max_tokens=200,
                                  temperature=0)
    c = r.choices[0]
    check(c.text == GREEDY and c.finish_reason == "length"
          and r.usage.completion_tokens == 200 and r.usage.prompt_tokens == 1,
          "completions: greedy 200 tokens from <s> are the reference text",
          repr(c.text[:120]), r.usage)


def test_scoring():
    """echo + max_tokens 0 + logprobs: the prompt scored, against HF."""
    r = client.completions.create(model="tiny", prompt=REF_TOKENS,
                                  max_tokens=0, echo=True, logprobs=5,
                                  temperature=0)
    c = r.choices[0]
    lp = c.logprobs
    n = len(REF_TOKENS)
    check(r.usage.prompt_tokens == n and r.usage.completion_tokens == 0
          and c.finish_reason == "length",
          "scoring: %d prompt tokens, none generated" % n, r.usage)
    check(len(lp.tokens) == n and len(lp.token_logprobs) == n
          and len(lp.top_logprobs) == n and len(lp.text_offset) == n,
          "scoring: one entry per prompt token", lp)
    check(lp.tokens[0] == "<s>" and lp.token_logprobs[0] is None
          and lp.top_logprobs[0] is None,
          "scoring: the first token has no logprob (nothing predicts it)",
          lp.tokens[0], lp.token_logprobs[0])
    check(c.text == REF_TEXT, "scoring: echo is the prompt's text",
          repr(c.text))
    err = worst((lp.token_logprobs[i], REF_LP[i - 1][REF_TOKENS[i]])
                for i in range(1, n))
    check(err < TOL, "scoring: token_logprobs equal transformers' log-softmax "
          "within %g (worst %.2g)" % (TOL, err))

    bad = []
    for i in range(1, n):
        got = sorted(lp.top_logprobs[i].values(), reverse=True)
        want = sorted(REF_LP[i - 1], reverse=True)[:5]
        chosen = lp.top_logprobs[i].get(lp.tokens[i])
        if (len(got) not in (5, 6) or worst(zip(got[:5], want)) >= TOL
                or chosen is None or chosen != lp.token_logprobs[i]):
            bad.append((i, got, want, chosen))
    check(not bad, "scoring: top_logprobs are the 5 best of transformers' "
          "row, with the chosen token", *bad[:3])

    off = lp.text_offset
    bad = [i for i in range(2, n)
           if c.text[off[i]:off[i] + len(lp.tokens[i])] != lp.tokens[i]]
    check(off[0] == 0 and off[1] == 0 and not bad
          and off == sorted(off),
          "scoring: text_offset points at each token in the text",
          off, bad[:5])
    return lp


def test_generated_logprobs(scored):
    """The logprobs of generated tokens, against HF: the reference sequence
    is stories260K's greedy continuation of its first 8 tokens for 9."""
    k, m = 8, 9
    r = client.completions.create(model="tiny", prompt=REF_TOKENS[:k],
                                  max_tokens=m, logprobs=3, temperature=0)
    lp = r.choices[0].logprobs
    check(lp.tokens == scored.tokens[k:k + m],
          "generated: greedy continues as the reference sequence",
          lp.tokens, scored.tokens[k:k + m])
    err = worst((lp.token_logprobs[j], REF_LP[k - 1 + j][REF_TOKENS[k + j]])
                for j in range(len(lp.tokens)))
    check(err < TOL, "generated: token_logprobs equal transformers' within "
          "%g (worst %.2g)" % (TOL, err))
    check(all(max(t.values()) == v for t, v in zip(lp.top_logprobs,
                                                   lp.token_logprobs))
          and all(len(t) == 3 for t in lp.top_logprobs),
          "generated: greedy's token is the best of its 3 alternatives",
          lp.top_logprobs[:2])
    check(lp.text_offset[0] == 0
          and "".join(lp.tokens) == r.choices[0].text,
          "generated: tokens join to the text, offsets from 0",
          lp.text_offset, repr(r.choices[0].text))


def test_stream_echo(scored):
    kw = dict(model="tiny", prompt=REF_TOKENS[:5], max_tokens=6, echo=True,
              logprobs=2, temperature=0)
    whole = client.completions.create(**kw).choices[0]
    text, tokens, lps, offs = "", [], [], []
    for ch in client.completions.create(stream=True, **kw):
        c = ch.choices[0]
        text += c.text
        if c.logprobs is not None:
            tokens += c.logprobs.tokens
            lps += c.logprobs.token_logprobs
            offs += c.logprobs.text_offset
    check(text == whole.text and tokens == whole.logprobs.tokens
          and offs == whole.logprobs.text_offset,
          "stream with echo: the chunks join to the body's text, tokens and "
          "offsets", repr(text), tokens, offs)
    check(lps[0] is None
          and worst(zip(lps[1:], whole.logprobs.token_logprobs[1:])) < TOL,
          "stream with echo: the same logprobs", lps)
    check(tokens == scored.tokens[:11], "stream with echo: the reference's "
          "tokens", tokens)


def test_n():
    kw = dict(model="tiny", prompt="Once upon a time", max_tokens=24,
              temperature=1.0, seed=11, n=3, logprobs=0)
    r = client.completions.create(**kw)
    again = client.completions.create(**kw)
    texts = [c.text for c in r.choices]
    check([c.index for c in r.choices] == [0, 1, 2],
          "n 3: three choices, indexed", [c.index for c in r.choices])
    check(r.usage.completion_tokens
          == sum(len(c.logprobs.tokens) for c in r.choices)
          and r.usage.prompt_tokens == 5,
          "n 3: usage counts the prompt once and every choice's tokens",
          r.usage)
    check(texts == [c.text for c in again.choices] and len(set(texts)) > 1,
          "n 3 with a seed: reproducible, and the choices differ", texts)

    kw = dict(model="tiny", prompt=[1], max_tokens=12, temperature=0, n=2)
    got = {0: "", 1: ""}
    for ch in client.completions.create(stream=True, **kw):
        for c in ch.choices:
            got[c.index] += c.text
    want = client.completions.create(model="tiny", prompt=[1], max_tokens=12,
                                     temperature=0).choices[0].text
    check(got[0] == want and got[1] == want and GREEDY.startswith(want),
          "n 2 streamed at temperature 0: both choices are the greedy text",
          got)


def test_sampling_fields():
    r = client.completions.create(model="tiny", prompt=[1], max_tokens=3,
                                  temperature=0, logit_bias={"261": 100})
    check(r.choices[0].text == "a a a", "logit_bias +100 on \" a\" (id 261) "
          "makes it every token", repr(r.choices[0].text))

    r = client.completions.create(model="tiny", prompt=[1], max_tokens=8,
                                  temperature=0, logit_bias={"2": 100})
    c = r.choices[0]
    check(c.text == "" and c.finish_reason == "stop"
          and r.usage.completion_tokens == 1,
          "logit_bias +100 on </s>: it ends at once", repr(c.text), r.usage)
    r = client.completions.create(model="tiny", prompt=[1], max_tokens=8,
                                  temperature=0, logit_bias={"2": 100},
                                  extra_body={"min_tokens": 3})
    c = r.choices[0]
    check(c.text == "Once upon a" and c.finish_reason == "stop"
          and r.usage.completion_tokens == 4,
          "min_tokens 3 holds </s> back for three greedy tokens",
          repr(c.text), r.usage)

    base = GREEDY[:len(client.completions.create(
        model="tiny", prompt=[1], max_tokens=60, temperature=0)
        .choices[0].text)]
    for name, kw in (("frequency_penalty", dict(frequency_penalty=2.0)),
                     ("presence_penalty", dict(presence_penalty=2.0)),
                     ("repetition_penalty",
                      dict(extra_body={"repetition_penalty": 1.5}))):
        a = client.completions.create(model="tiny", prompt=[1],
                                      max_tokens=60, temperature=0, **kw)
        b = client.completions.create(model="tiny", prompt=[1],
                                      max_tokens=60, temperature=0, **kw)
        check(a.choices[0].text != base
              and a.choices[0].text == b.choices[0].text,
              "%s changes the greedy text, the same each time" % name,
              repr(a.choices[0].text[:80]))


# ---- chat --------------------------------------------------------------

def chat_tokens(content):
    return [(t.token, t.logprob, t.bytes,
             [(a.token, a.logprob, a.bytes) for a in t.top_logprobs])
            for t in content]


def test_chat_logprobs():
    kw = dict(model="tiny", max_tokens=12, temperature=0, logprobs=True,
              top_logprobs=3,
              messages=[{"role": "user", "content": "Once upon a time"}])
    r = client.chat.completions.create(**kw)
    c = r.choices[0]
    content = c.logprobs.content
    check(len(content) == r.usage.completion_tokens == 12
          and "".join(t.token for t in content) == c.message.content,
          "chat logprobs: one entry per token, joining to the content",
          len(content), r.usage, repr(c.message.content))
    check(all(t.bytes == list(t.token.encode()) and len(t.top_logprobs) == 3
              and t.top_logprobs[0].token == t.token
              and t.top_logprobs[0].logprob == t.logprob
              and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
              >= t.top_logprobs[2].logprob for t in content),
          "chat logprobs: bytes are the token's UTF-8, greedy's token the "
          "best of 3 alternatives", chat_tokens(content)[:2])

    text, streamed = "", []
    for ch in client.chat.completions.create(stream=True, **kw):
        for d in ch.choices:
            text += d.delta.content or ""
            if d.logprobs is not None:
                streamed += d.logprobs.content
    a, b = chat_tokens(content), chat_tokens(streamed)
    check(text == c.message.content and [t[0] for t in a] == [t[0] for t in b]
          and worst((x[1], y[1]) for x, y in zip(a, b)) < TOL,
          "chat logprobs streamed: the same tokens and logprobs", repr(text),
          b[:2])


def test_chat_n():
    kw = dict(model="tiny", max_tokens=10, temperature=0,
              messages=[{"role": "user", "content": "Hello"}])
    want = client.chat.completions.create(**kw).choices[0].message.content
    got, roles = {}, []
    for ch in client.chat.completions.create(stream=True, n=3, **kw):
        for d in ch.choices:
            if d.delta.role:
                roles.append(d.index)
            got[d.index] = got.get(d.index, "") + (d.delta.content or "")
    check(sorted(roles) == [0, 1, 2] and got == {0: want, 1: want, 2: want},
          "chat n 3 streamed: each choice opens with the role, each the "
          "greedy text", roles, got)


# ---- models and errors -------------------------------------------------

def test_models():
    m = client.models.retrieve("tiny")
    check(m.id == "tiny" and m.object == "model",
          "models.retrieve(\"tiny\")", m)
    check("tiny" in [m.id for m in client.models.list()], "models.list()")
    try:
        client.models.retrieve("missing")
        check(False, "models.retrieve of an unknown model: NotFoundError")
    except openai.NotFoundError as e:
        check(e.code == "model_not_found",
              "models.retrieve of an unknown model: NotFoundError", e)


def refused(what, param, call, code="unsupported_parameter"):
    try:
        call()
        check(False, "%s: 400 naming %s" % (what, param), "accepted")
    except openai.BadRequestError as e:
        check(e.param == param and e.code == code
              and param in e.message,
              "%s: 400 naming %s" % (what, param), e.param, e.code, e)


def test_unsupported():
    msgs = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    chat = client.chat.completions.create
    r = chat(model="tiny", messages=msgs, max_tokens=2, tools=[tool],
             tool_choice="auto")
    check(r.choices[0].finish_reason == "length", "tools are accepted", r)
    refused("tool_choice required without tools", "tool_choice",
            lambda: chat(model="tiny", messages=msgs, tool_choice="required"),
            code=None)
    refused("functions", "functions",
            lambda: chat(model="tiny", messages=msgs,
                         functions=[{"name": "f"}]))
    refused("function_call", "function_call",
            lambda: chat(model="tiny", messages=msgs, function_call="auto"))
    refused("response_format json_object", "response_format",
            lambda: chat(model="tiny", messages=msgs,
                         response_format={"type": "json_object"}))
    refused("audio", "audio",
            lambda: chat(model="tiny", messages=msgs,
                         modalities=["text"],
                         audio={"voice": "alloy", "format": "wav"}))
    refused("modalities audio", "modalities",
            lambda: chat(model="tiny", messages=msgs,
                         modalities=["text", "audio"]))
    refused("web_search_options", "web_search_options",
            lambda: chat(model="tiny", messages=msgs, web_search_options={}))
    cmpl = client.completions.create
    refused("suffix", "suffix",
            lambda: cmpl(model="tiny", prompt="x", suffix="end"))
    refused("best_of above n", "best_of",
            lambda: cmpl(model="tiny", prompt="x", best_of=2))
    refused("n above infer_max_n", "n",
            lambda: cmpl(model="tiny", prompt="x", n=9), code=None)
    refused("top_logprobs without logprobs", "top_logprobs",
            lambda: chat(model="tiny", messages=msgs, top_logprobs=2),
            code=None)
    r = chat(model="tiny", messages=msgs, max_tokens=2, tools=[],
             tool_choice="none", response_format={"type": "text"},
             modalities=["text"], parallel_tool_calls=False,
             extra_body={"a_field_no_one_knows": {"x": 1}})
    check(r.choices[0].finish_reason == "length",
          "fields that ask for nothing, and unknown ones, pass")


test_greedy()
SCORED = test_scoring()
test_generated_logprobs(SCORED)
test_stream_echo(SCORED)
test_n()
test_sampling_fields()
test_chat_logprobs()
test_chat_n()
test_models()
test_unsupported()
sys.exit(1 if failed else 0)

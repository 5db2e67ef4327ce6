"""KServe v2 checks with real clients, run by t/014-kserve-client.t.

    kserve_check.py HOST:PORT MODEL_DIR REF_LOGITS

tritonclient[http], unmodified, for what it has an API for: health,
metadata, infer with binary_data true and false both ways.  It has none
for Triton's generate extension, so /generate and /generate_stream go
through http.client as Triton's own documentation does with curl; so do
the malformed bodies that no client would build.  Expected values come from
outside the server: the model's expected_greedy_200.txt and
Hugging Face transformers' float32 logits (t/data/ref, tools/ref).

Prints one line per check, "ok - ..." or "not ok - ...", then "done N".
"""
import http.client
import json
import random
import struct
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

URL, MODEL_DIR, REF = sys.argv[1], sys.argv[2], sys.argv[3]
HOST, PORT = URL.split(":")
MODEL = "tiny"
N = 0

# Relative to the row's largest |logit|, as t/unit/test_engine.c's
# test_outputs bounds the engine itself against the same reference: our
# float32 sums run in another order than PyTorch's (about 1e-6 here); a
# wrong row, position or token is off by far more.
TOL = 1e-4


def check(cond, what, detail=""):
    global N
    N += 1
    print(("ok - " if cond else "not ok - ") + what
          + ("" if cond or not detail else " # " + str(detail)[:300]),
          flush=True)
    return cond


def read_ref(path):
    """tools/ref/hf_logits.py's file: tokens, then each position's row."""
    tokens, rows = None, []
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            if w[0] == "tokens":
                tokens = [int(x) for x in w[2:]]
            elif w[0] == "pos":
                rows.append([float(x) for x in w[2:]])
    return tokens, np.array(rows, dtype=np.float32)


def rel_error(got, want):
    """The worst row error relative to the row's largest |logit|."""
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    scale = np.abs(want).max(axis=-1, keepdims=True)
    return float((np.abs(got - want) / scale).max())


def text(x):
    """A BYTES element: bytes from binary data, str from JSON."""
    return x.decode() if isinstance(x, bytes) else x


def post(path, body, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT), timeout=60)
    c.request("POST", path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), data


client = httpclient.InferenceServerClient(url=URL)
tokens, ref = read_ref(REF)
with open(MODEL_DIR + "/expected_greedy_200.txt") as f:
    greedy = f.read()

# ---- health and metadata ------------------------------------------------
check(client.is_server_live(), "is_server_live")
check(client.is_server_ready(), "is_server_ready")
check(client.is_model_ready(MODEL), "is_model_ready tiny")
check(client.is_model_ready(MODEL, model_version="1"),
      "is_model_ready tiny version 1")
check(not client.is_model_ready("nope"), "is_model_ready nope is false")

meta = client.get_server_metadata()
check(meta["name"] == "ngx_http_infer_module"
      and "binary_tensor_data" in meta["extensions"],
      "server metadata with binary_tensor_data", meta)

meta = client.get_model_metadata(MODEL)
ins = {t["name"]: t for t in meta["inputs"]}
outs = {t["name"]: t for t in meta["outputs"]}
check(meta["name"] == MODEL and meta["versions"] == ["1"]
      and ins["input_ids"]["datatype"] == "INT64"
      and ins["text_input"]["datatype"] == "BYTES"
      and ins["max_tokens"]["datatype"] == "INT32"
      and ins["temperature"]["datatype"] == "FP32"
      and ins["stream"]["datatype"] == "BOOL"
      and outs["logits"] == {"name": "logits", "datatype": "FP32",
                             "shape": [-1, -1, 512]}
      and outs["text_output"]["datatype"] == "BYTES",
      "model metadata: inputs and outputs with datatype and shape", meta)

try:
    client.get_model_metadata("nope")
    check(False, "metadata of an unknown model fails")
except InferenceServerException as e:
    check(e.status() == "404" and "unknown model 'nope'" in e.message(),
          "metadata of an unknown model: 404 in KServe's shape", e)

# ---- logits against transformers ----------------------------------------
ids = np.array([tokens], dtype=np.int64)
results = {}
for dtype, np_type in (("INT32", np.int32), ("INT64", np.int64)):
    for bin_in in (True, False):
        for bin_out in (True, False):
            inp = httpclient.InferInput("input_ids", list(ids.shape), dtype)
            inp.set_data_from_numpy(ids.astype(np_type), binary_data=bin_in)
            out = httpclient.InferRequestedOutput("logits",
                                                  binary_data=bin_out)
            res = client.infer(MODEL, [inp], outputs=[out])
            got = res.as_numpy("logits")
            results[(dtype, bin_in, bin_out)] = got
            err = rel_error(got[0], ref)
            check(got.shape == (1, len(tokens), 512) and got.dtype
                  == np.float32 and err < TOL,
                  "logits of all %d positions, %s ids, binary_data %s in, "
                  "%s out: within %g of transformers (%.2g)"
                  % (len(tokens), dtype, bin_in, bin_out, TOL, err),
                  got.shape)
first = results[("INT32", True, True)]
check(all(np.array_equal(first, r) for r in results.values()),
      "JSON numbers and binary data give the same float32 bits")

res = client.infer(MODEL, [inp], parameters={"logits": "last"})
last = res.as_numpy("logits")
err = rel_error(last[0], ref[-1:])
check(last.shape == (1, 512) and err < TOL,
      "parameter logits: last: [1, 512] within %g of transformers (%.2g); "
      "no outputs named, tritonclient asks for binary" % (TOL, err),
      last.shape)

# a second row that agrees with the first up to position 10: attention is
# causal, so its rows 0..10 are the reference's, beside row 0
two = np.array([tokens, tokens[:11] + [5] * (len(tokens) - 11)],
               dtype=np.int32)
inp = httpclient.InferInput("input_ids", list(two.shape), "INT32")
inp.set_data_from_numpy(two)
got = client.infer(MODEL, [inp]).as_numpy("logits")
check(got.shape == (2, len(tokens), 512)
      and rel_error(got[0], ref) < TOL
      and rel_error(got[1][:11], ref[:11]) < TOL
      and rel_error(got[1][11:], ref[11:]) > 1e-2,
      "a batch of 2: row 0 is the reference, row 1 up to its change", got.shape)

# ---- text_input -> text_output ------------------------------------------


def text_request(text, bin_in, settings):
    inputs = []
    t = httpclient.InferInput("text_input", [len(text), 1], "BYTES")
    t.set_data_from_numpy(np.array([[s] for s in text], dtype=object),
                          binary_data=bin_in)
    inputs.append(t)
    for name, dtype, value in settings:
        x = httpclient.InferInput(name, [1, 1], dtype)
        x.set_data_from_numpy(np.array(value, dtype=dtype_np[dtype]
                                       ).reshape(1, 1), binary_data=bin_in)
        inputs.append(x)
    return inputs


dtype_np = {"INT32": np.int32, "FP32": np.float32, "UINT64": np.uint64,
            "BOOL": np.bool_, "BYTES": object}
greedy_settings = [("max_tokens", "INT32", 200), ("temperature", "FP32", 0)]
for bin_in in (True, False):
    for bin_out in (True, False):
        res = client.infer(
            MODEL, text_request([b""], bin_in, greedy_settings),
            outputs=[httpclient.InferRequestedOutput(
                "text_output", binary_data=bin_out)])
        got = res.as_numpy("text_output")
        check(got.shape == (1, 1) and text(got[0][0]) == greedy,
              "text_input \"\", greedy, 200 tokens, binary_data %s in, %s "
              "out: the reference text exactly" % (bin_in, bin_out),
              got[0][0][:80])

res = client.infer(MODEL, text_request([b""], True, []),
                   parameters={"max_tokens": 200, "temperature": 0})
check(text(res.as_numpy("text_output")[0][0]) == greedy,
      "max_tokens and temperature as request parameters")

after_once = greedy[len("Once upon a time"):].split(".")[0]
res = client.infer(MODEL, text_request(
    [b"Once upon a time", b""], True,
    greedy_settings + [("stop_words", "BYTES", b".")]))
got = res.as_numpy("text_output")
check(got.shape == (2, 1) and text(got[0][0]) == after_once
      and text(got[1][0]) == greedy.split(".")[0],
      "a batch of two texts with stop_words \".\"", got)

sampled = []
for seed in (7, 7, 8):
    res = client.infer(MODEL, text_request(
        [b"Once"], True, [("max_tokens", "INT32", 40),
                          ("temperature", "FP32", 1.0),
                          ("random_seed", "UINT64", seed)]))
    sampled.append(res.as_numpy("text_output")[0][0])
check(sampled[0] == sampled[1] and sampled[0] != sampled[2],
      "random_seed: the same seed samples the same text, another another",
      sampled)

# ---- generate extension (no tritonclient API) -----------------------------
st, ctype, body = post("/v2/models/tiny/generate", json.dumps(
    {"text_input": "", "max_tokens": 200,
     "parameters": {"temperature": 0}}))
g = json.loads(body) if st == 200 else {}
check(st == 200 and ctype == "application/json"
      and g.get("model_name") == MODEL and g.get("model_version") == "1"
      and g.get("text_output") == greedy,
      "generate: {model_name, model_version, text_output} with the "
      "reference text", body[:200])

st, ctype, body = post("/v2/models/tiny/generate_stream", json.dumps(
    {"text_input": "", "parameters": {"max_tokens": 200, "temperature": 0}}))
events = [json.loads(e[len("data: "):]) for e in
          body.decode().split("\n\n") if e.startswith("data: ")]
check(st == 200 and ctype.startswith("text/event-stream")
      and len(events) > 50
      and "".join(e["text_output"] for e in events) == greedy
      and events[-1].get("finish_reason") == "length"
      and all(e["model_name"] == MODEL for e in events),
      "generate_stream: %d SSE events whose text is the reference text"
      % len(events), body[:200])

# ---- errors through tritonclient -----------------------------------------


def infer_error(inputs, **kw):
    try:
        client.infer(MODEL if "model" not in kw else kw.pop("model"), inputs,
                     **kw)
    except InferenceServerException as e:
        return e.status(), e.message()
    return "200", ""


bad = httpclient.InferInput("input_ids", [1, 2], "FP32")
bad.set_data_from_numpy(np.array([[1, 2]], dtype=np.float32))
st, msg = infer_error([bad])
check(st == "400" and "expected INT32 or INT64" in msg,
      "FP32 input_ids: 400", msg)

bad = httpclient.InferInput("input_ids", [1, 2], "INT64")
bad.set_data_from_numpy(np.array([[1, 600]], dtype=np.int64))
st, msg = infer_error([bad])
check(st == "400" and "outside the vocabulary of 512" in msg,
      "an id outside the vocabulary: 400", msg)

# tritonclient checks the shape as the data is set, not after
bad = httpclient.InferInput("input_ids", [1, 2], "INT64")
bad.set_data_from_numpy(np.array([[1, 2]], dtype=np.int64))
bad.set_shape([1, 3])
st, msg = infer_error([bad])
check(st == "400" and "binary_data_size is 16, but its shape [1, 3]" in msg,
      "a shape that does not match the binary data: 400", msg)

st, msg = infer_error([bad], model="nope")
check(st == "404" and "unknown model" in msg, "infer on an unknown model: 404",
      msg)

# ---- what no client sends: every answer a JSON error, no worker lost -----
good_json = json.dumps({"inputs": [
    {"name": "text_input", "datatype": "BYTES", "shape": [1, 1],
     "parameters": {"binary_data_size": 20}},
    {"name": "max_tokens", "datatype": "INT32", "shape": [1],
     "parameters": {"binary_data_size": 4}},
    {"name": "temperature", "datatype": "FP32", "shape": [1],
     "data": [0]}]}).encode()
good_bin = struct.pack("<I", 16) + b"Once upon a time" + struct.pack("<i", 3)
st, _, body = post("/v2/models/tiny/infer", good_json + good_bin,
                   {"Inference-Header-Content-Length": str(len(good_json))})
check(st == 200 and b"there was" in body, "the seed body is good", body)

rng = random.Random(11)


def mutate(b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        k = rng.randrange(len(b))
        op = rng.randrange(4)
        if op == 0:
            b[k] = rng.randrange(256)
        elif op == 1:
            del b[k:k + rng.randint(1, 8)]
        elif op == 2:
            b[k:k] = rng.choice([b"9", b"-", b"99999999999", b"[", b"0",
                                 b"\x00\x00\x00\x10", b"\"", b","])
        else:
            b = b[:k]
    return bytes(b)


statuses = {}
bad_json = 0
for i in range(400):
    # the header, the binary part, or both; the header length right for
    # what was sent, or off by a little
    head = mutate(good_json) if i % 3 != 1 else good_json
    tail = mutate(good_bin) if i % 3 != 0 else good_bin
    hl = len(head) + (rng.randint(-3, 3) if i % 5 == 0 else 0)
    st, ctype, body = post("/v2/models/tiny/infer", head + tail,
                           {"Inference-Header-Content-Length": str(hl)})
    statuses[st] = statuses.get(st, 0) + 1
    if st != 200:
        try:
            bad_json += not isinstance(json.loads(body)["error"], str)
        except (ValueError, KeyError):
            bad_json += 1
check(set(statuses) <= {200, 400} and statuses.get(400, 0) > 100
      and statuses.get(200, 0) > 0 and bad_json == 0,
      "400 mutated binary bodies: each answer 200 or 400 with "
      "{\"error\": ...} %s" % sorted(statuses.items()), bad_json)
check(client.is_server_live() and client.is_model_ready(MODEL),
      "the server still answers")

print("done %d" % N)

#!/usr/bin/env python3
"""Checks the peer's model against the known-good greedy text, and prints
the expected completion for a benchmark prompt.

    check.py MODEL_DIR verify
        greedy 200 tokens from [<s>] in float32 and float64 must reproduce
        MODEL_DIR/expected_greedy_200.txt byte for byte; exit 1 otherwise.
    check.py MODEL_DIR expect PROMPT MAX_TOKENS
        prints, as one JSON string, the completion text for PROMPT after
        checking that float32 and float64 agree on it and that it is a
        piece of expected_greedy_200.txt (exit 1 otherwise).
"""
import json
import os
import sys

import torch
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import LlamaModel, Stats, generate  # noqa: E402


def greedy_text(model, tok, ids, n):
    new, _ = generate(model, ids, n, 0.0, Stats())
    head = tok.decode(ids)
    return tok.decode(ids + new)[len(head):], new


def main():
    model_dir, cmd = sys.argv[1], sys.argv[2]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    torch.set_num_threads(1)
    models = {"float32": LlamaModel(model_dir, torch.float32),
              "float64": LlamaModel(model_dir, torch.float64)}
    with open(os.path.join(model_dir, "expected_greedy_200.txt"), "rb") as f:
        known = f.read().decode("utf-8")

    if cmd == "verify":
        ok = True
        for name, m in models.items():
            text, new = greedy_text(m, tok, [m.bos], 200)
            same = text == known
            print("%s: %d tokens, %s" % (name, len(new),
                  "matches expected_greedy_200.txt" if same else
                  "MISMATCH: %r" % text[:120]))
            ok = ok and same
        sys.exit(0 if ok else 1)

    prompt, n = sys.argv[3], int(sys.argv[4])
    ids = tok.encode(prompt).ids
    texts = {name: greedy_text(m, tok, ids, n)[0]
             for name, m in models.items()}
    if texts["float32"] != texts["float64"]:
        sys.exit("float32 and float64 disagree: %r" % texts)
    if (prompt + texts["float32"]) not in known:
        sys.exit("not a piece of expected_greedy_200.txt: %r"
                 % (prompt + texts["float32"]))
    print(json.dumps(texts["float32"]))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Compares our logits and greedy ids with the Hugging Face peer's.

    compare.py OURS.bin HF.bin VOCAB OURS_GREEDY HF.json

OURS_GREEDY is infer-logits' "greedy: a,b,c" line.  Prints one JSON object:
rel_err = ||ours - hf|| / ||hf|| over all prompt positions (Frobenius),
max_row_err = the worst row's max |diff| / max |hf|, greedy_match = how many
leading greedy ids agree, and pass = rel_err <= 1e-2.
"""
import json
import sys

import numpy as np


def main():
    ours_f, hf_f, vocab, ours_greedy, hf_json = sys.argv[1:6]
    vocab = int(vocab)
    ours = np.fromfile(ours_f, dtype=np.float32).reshape(-1, vocab)
    hf = np.fromfile(hf_f, dtype=np.float32).reshape(-1, vocab)
    rel = float(np.linalg.norm(ours - hf) / np.linalg.norm(hf))
    row = float(max(np.abs(o - h).max() / np.abs(h).max()
                    for o, h in zip(ours, hf)))
    g_ours = [int(x) for x in ours_greedy.split(":", 1)[1].split(",") if x]
    g_hf = json.load(open(hf_json))["greedy"]
    match = 0
    for x, y in zip(g_ours, g_hf):
        if x != y:
            break
        match += 1
    print(json.dumps({"rows": int(hf.shape[0]), "rel_err": rel,
                      "max_row_err": row, "greedy_match": match,
                      "greedy_len": len(g_hf), "pass": rel <= 1e-2}))


if __name__ == "__main__":
    main()

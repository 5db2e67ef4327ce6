#!/usr/bin/env python3
"""Greedy continuations from Hugging Face transformers over a corpus.

For t/unit/test_hf_logits's agreement test of dtype=bf16: each prompt of
the corpus (one text a line, encoded by the model's tokenizer with its
bos) is continued greedily for --gen tokens by the model in --compute
(float32, or bfloat16 as transformers' bf16 inference runs it).

File format (the C test parses it):
    # comment lines
    model NAME
    source shared PATH
    gen G
    prompt N id0 id1 ...        (one per text, each followed by)
    greedy G id0 id1 ...
"""
import argparse
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("corpus", help="one prompt a line")
    ap.add_argument("out")
    ap.add_argument("--name", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--compute", choices=("float32", "bfloat16"),
                    default="bfloat16")
    a = ap.parse_args()

    tok = AutoTokenizer.from_pretrained(a.model_dir)
    model, info = AutoModelForCausalLM.from_pretrained(
        a.model_dir, dtype=torch.float32, attn_implementation="eager",
        output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        sys.exit("%s: loading problems: %s" % (a.model_dir, bad))
    model.eval()
    if a.compute == "bfloat16":
        model = model.to(torch.bfloat16)
    texts = [t.strip() for t in open(a.corpus) if t.strip()]
    with open(a.out, "w") as f:
        f.write("# transformers %s, torch %s, %s, %s, greedy, eager "
                "attention\n" % (transformers.__version__, torch.__version__,
                                 type(model).__name__, a.compute))
        f.write("model %s\nsource %s\ngen %d\n" % (a.name, a.source, a.gen))
        for text in texts:
            ids = tok(text)["input_ids"]
            with torch.no_grad():
                out = model.generate(torch.tensor([ids]), do_sample=False,
                                     max_new_tokens=a.gen, min_new_tokens=a.gen,
                                     pad_token_id=0)
            new = out[0, len(ids):].tolist()
            f.write("prompt %d %s\n" % (len(ids), " ".join(map(str, ids))))
            f.write("greedy %d %s\n" % (len(new), " ".join(map(str, new))))


if __name__ == "__main__":
    main()

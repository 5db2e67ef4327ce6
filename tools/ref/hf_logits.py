#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers, for t/unit/test_hf_logits.

Runs AutoModelForCausalLM (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM) in float32 on the CPU over one fixed token sequence and
writes, for every position, the logits of the vocabulary ids 0, S, 2S, ...
(stride S keeps the committed file small while still covering every part of
lm_head).  The output is text, one row per position, each value printed with
9 significant digits, which round-trips a float32 exactly.

File format (the C test parses it):
    # comment lines
    model NAME
    source gen ARGS | source shared PATH   (how the test gets the model)
    tokens N id0 id1 ...
    vocab V
    stride S
    ids K            (K = ceil(V / S): ids 0, S, ..., (K-1) * S)
    pos P v0 v1 ... v(K-1)      (one line per position 0..N-1)
"""
import argparse
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--name", required=True, help="label stored in the file")
    ap.add_argument("--tokens", required=True,
                    help="comma-separated token ids")
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--compute", choices=("float32", "bfloat16",
                                           "bf16-weights", "bf16-products",
                                           "int8-weights"),
                    default="float32",
                    help="bfloat16: the model cast to bfloat16 and run in "
                         "it (transformers' bf16 inference); bf16-weights: "
                         "the matrices rounded to bfloat16, computed in "
                         "float32 (what dtype=bf16 on the CPU backend "
                         "computes); bf16-products: bf16-weights with "
                         "each product's input rounded to bfloat16 too (the "
                         "bf16 products on AVX512_BF16 CPUs); "
                         "int8-weights: the matrices quantized "
                         "per row as dtype=int8 does, computed in float32")
    ap.add_argument("--source", required=True,
                    help='"gen <infer-gen-model args>" or "shared <path '
                         'under ../shared>"')
    a = ap.parse_args()

    tokens = [int(t) for t in a.tokens.split(",")]
    torch.manual_seed(0)
    model, info = AutoModelForCausalLM.from_pretrained(
        a.model_dir, dtype=torch.float32, attn_implementation="eager",
        output_loading_info=True)
    # A tensor transformers did not find would be randomly initialised and
    # the reference silently meaningless.
    bad = {k: v for k, v in info.items() if v}
    if bad:
        sys.exit("%s: loading problems: %s" % (a.model_dir, bad))
    model.eval()
    if a.compute == "bfloat16":
        model = model.to(torch.bfloat16)
    elif a.compute in ("bf16-weights", "bf16-products"):
        # the matrices (embedding, projections, lm_head), as dtype=bf16
        # holds them; norms stay float32
        with torch.no_grad():
            for w in model.parameters():
                if w.dim() >= 2:
                    w.copy_(w.to(torch.bfloat16).to(torch.float32))
    if a.compute == "bf16-products":
        # every nn.Linear's input rounded to bfloat16 (to nearest even),
        # its product and everything else in float32
        def round_input(mod, args):
            return (args[0].to(torch.bfloat16).to(torch.float32),) + args[1:]
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.register_forward_pre_hook(round_input)
    elif a.compute == "int8-weights":
        # every row of every matrix as src/engine/int8.c quantizes it:
        # scale = max|w| / 127, q = w * (127 / max|w|) rounded half away
        # from zero (roundf) and clamped to +-127, then q * scale, all in
        # float32; a zero row stays zero
        with torch.no_grad():
            for w in model.parameters():
                if w.dim() >= 2:
                    amax = w.abs().amax(dim=1, keepdim=True)
                    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
                    v = (w * (127.0 / safe)).to(torch.float64)
                    q = (torch.sign(v) * torch.floor(v.abs() + 0.5))
                    q = q.clamp(-127, 127).to(torch.float32)
                    w.copy_(torch.where(amax > 0, q * (safe / 127.0),
                                        torch.zeros_like(w)))
    with torch.no_grad():
        out = model(torch.tensor([tokens], dtype=torch.long), use_cache=False)
    logits = out.logits[0].to(torch.float32)
    vocab = logits.shape[1]
    if vocab != model.config.vocab_size:
        sys.exit("logits width %d != vocab_size" % vocab)
    ids = list(range(0, vocab, a.stride))

    with open(a.out, "w") as f:
        f.write("# transformers %s, torch %s, %s, %s, eager attention\n"
                % (transformers.__version__, torch.__version__,
                   type(model).__name__,
                   {"float32": "float32",
                    "bfloat16": "bfloat16 weights and compute",
                    "bf16-weights": "bfloat16 matrices, float32 compute",
                    "bf16-products": "bfloat16 matrices and product "
                                     "inputs, float32 compute",
                    "int8-weights": "int8 matrices (one scale a row), "
                                    "float32 compute"}
                   [a.compute]))
        f.write("model %s\n" % a.name)
        f.write("source %s\n" % a.source)
        f.write("tokens %d %s\n" % (len(tokens), " ".join(map(str, tokens))))
        f.write("vocab %d\nstride %d\nids %d\n" % (vocab, a.stride, len(ids)))
        for p in range(len(tokens)):
            row = logits[p, ::a.stride].tolist()
            f.write("pos %d %s\n" % (p, " ".join("%.9g" % v for v in row)))


if __name__ == "__main__":
    main()

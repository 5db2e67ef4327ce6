#!/usr/bin/env python3
"""PyTorch (Hugging Face transformers) peer for the CPU engine benchmark.

Loads the same model directory in float32 (or --dtype bfloat16, the peer of
the engine's dtype=bf16) and measures, with the same thread
count as the engine: prefill tokens/s (B prompts of P tokens in one forward)
and decode tokens/s (G greedy steps over the KV cache for the batch).  Prints
one JSON line.
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=32)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"),
                    default="float32")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(
        a.model_dir, dtype=getattr(torch, a.dtype))
    model.eval()
    vocab = model.config.vocab_size
    ids = torch.tensor([[(k * 7919 + i * 104729 + 13) % vocab
                         for k in range(a.prompt_len)]
                        for i in range(a.batch)])

    with torch.inference_mode():
        model(ids[:, :8])                        # warm-up
        t0 = time.perf_counter()
        # only the last position's logits, as generate() asks for them
        # (logits_to_keep): the engine computes no others either
        out = model(ids, use_cache=True, logits_to_keep=1)
        t_prefill = time.perf_counter() - t0

        past = out.past_key_values
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(a.gen_len - 1):
            out = model(tok, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
        t_decode = time.perf_counter() - t0

    print(json.dumps({
        "prefill_tps": a.batch * a.prompt_len / t_prefill,
        "decode_tps": a.batch * (a.gen_len - 1) / t_decode,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()

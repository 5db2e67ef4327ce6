#!/usr/bin/env python3
"""Hugging Face transformers peer for bench/gpu.sh.

Loads MODEL_DIR in fp16 on the GPU (fp32 on the CPU when there is no GPU,
for trying the script out), runs the prompt, and writes:
  --logits FILE   logits of every prompt position, raw float32 [P][vocab]
  --json FILE     {"greedy": [ids], "load_s", "decode_tps", "bandwidth_gbs"}
greedy: N argmax steps with the KV cache (no eos stop).  --decode-bench N
times N batch-1 decode steps after the prompt; --bandwidth times
device-to-device copies of 1 GiB (read + write bytes per second).
"""
import argparse
import json
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def bandwidth(dev):
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    b.copy_(a)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    reps = 20
    start.record()
    for _ in range(reps):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    sec = start.elapsed_time(end) / 1e3
    del a, b
    return 2 * n * reps / sec / 1e9


def greedy(model, ids, steps, dev):
    past, cur, out = None, ids, []
    for _ in range(steps):
        o = model(cur, past_key_values=past, use_cache=True)
        past = o.past_key_values
        nxt = int(o.logits[0, -1].float().argmax())
        out.append(nxt)
        cur = torch.tensor([[nxt]], device=dev)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt-ids", required=True)
    ap.add_argument("--greedy", type=int, default=32)
    ap.add_argument("--logits")
    ap.add_argument("--json")
    ap.add_argument("--decode-bench", type=int, default=0)
    ap.add_argument("--bandwidth", action="store_true")
    a = ap.parse_args()

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if dev == "cuda" else torch.float32
    t0 = time.time()
    # the keyword was renamed to dtype in transformers 4.56
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(a.model, **{key: dtype})
    model = model.to(device=dev, dtype=dtype).eval()
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else dev,
           "dtype": str(dtype), "load_s": round(time.time() - t0, 2),
           "torch": torch.__version__,
           "transformers": transformers.__version__}
    ids = torch.tensor([[int(x) for x in a.prompt_ids.split(",")]],
                       device=dev)
    with torch.no_grad():
        logits = model(ids).logits[0].float().cpu().numpy()
        if a.logits:
            logits.tofile(a.logits)
        res["greedy"] = greedy(model, ids, a.greedy, dev)
        if a.decode_bench > 0:
            greedy(model, ids, 4, dev)          # warm-up
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.time()
            greedy(model, ids, a.decode_bench, dev)
            if dev == "cuda":
                torch.cuda.synchronize()
            res["decode_tps"] = round(a.decode_bench / (time.time() - t0), 1)
    if a.bandwidth and dev == "cuda":
        del model
        torch.cuda.empty_cache()
        res["bandwidth_gbs"] = round(bandwidth(dev), 1)
    text = json.dumps(res)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

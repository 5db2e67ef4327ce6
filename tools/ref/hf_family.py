#!/usr/bin/env python3
"""Reference data for one model family, for t/unit/test_hf_logits.c.

Loads a model directory (made by build/infer-gen-model from a preset and a
seed) with Hugging Face transformers, float32, eager attention, on the CPU,
and writes:

  * logits for prompts of 1, 37 and LONG tokens (random ids from a seeded
    generator, written out): every position of the short ones, a sample of
    positions of the long one (the first few, every 61st, the last 8); at
    each, the logits of ids 0, S, 2S, ... (about 256 of them) and the 8
    largest (id and value);
  * greedy decoding of 64 tokens from two prompts through the KV cache, as
    generate() does it (one forward of the prompt, then one token a step),
    with the smallest top-1 / top-2 logit gap over the steps (prompts are
    drawn again until that gap is at least MIN_MARGIN);
  * how much each architecture feature moves the long prompt's logits
    (max |changed - ref| / max |ref| when transformers runs without it),
    so the test's tolerance can be checked against what a missing feature
    would cost.

Values are printed with 9 significant digits (exact for float32).

File format (the C test parses it; a line may be long):
    # comments
    model NAME
    source gen ARGS
    vocab V stride S ids K top T
    case NAME tokens N positions M
    ids t0 t1 ...                       (N prompt ids)
    pos P v0 .. v(K-1) | i0 l0 .. i(T-1) l(T-1)     (M lines)
    greedy NAME prompt N new G margin X
    ids t0 ...                          (N prompt ids)
    gen g0 ...                          (G generated ids)
"""
import argparse
import json
import sys

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

TOP = 8
MIN_MARGIN = 1e-3


def load(model_dir, config=None):
    kw = {"dtype": torch.float32, "attn_implementation": "eager",
          "output_loading_info": True}
    if config is not None:
        kw["config"] = config
    model, info = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
    # A tensor transformers did not find would be randomly initialised, one
    # it did not use would be a naming mistake in the generator.
    bad = {k: v for k, v in info.items() if v}
    if bad:
        sys.exit("%s: loading problems: %s" % (model_dir, bad))
    model.eval()
    return model


def logits(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].to(torch.float32)


def greedy(model, ids, new):
    """generate()'s greedy path, without its stopping rules: the prompt in
    one forward, then one token per forward through the cache."""
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long), use_cache=True)
        cache = out.past_key_values
        row = out.logits[0, -1]
        gen, margin = [], float("inf")
        for _ in range(new):
            top = torch.topk(row, 2).values
            margin = min(margin, float(top[0] - top[1]))
            t = int(torch.argmax(row))
            gen.append(t)
            out = model(torch.tensor([[t]], dtype=torch.long),
                        past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            row = out.logits[0, -1]
    return gen, margin


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


# Features to switch off, per model_type: a config change, or a module to
# replace (path, replacement).  Each is one thing the engine must do.
def mutations(cfg):
    mt = cfg.model_type
    out = []
    rp = getattr(cfg, "rope_parameters", None) or {}
    if rp.get("rope_type", "default") != "default":
        out.append(("rope_type %s -> default" % rp["rope_type"],
                    {"rope_scaling": None}, None))
    if getattr(cfg, "sliding_window", None) and mt != "qwen3":
        # gemma2 builds its sliding mask whatever the window: a window
        # longer than any prompt is "none"
        out.append(("no sliding window", {"sliding_window": 1 << 20},
                    None))
    if mt == "gemma2":
        out.append(("no attention soft-cap",
                    {"attn_logit_softcapping": None}, None))
        out.append(("no final soft-cap",
                    {"final_logit_softcapping": None}, None))
        out.append(("query_pre_attn_scalar = head_dim",
                    {"query_pre_attn_scalar": cfg.head_dim}, None))
        out.append(("no embedding scale", None, "embed_scale"))
        out.append(("no post norms", None, "post_norms"))
    if mt == "qwen3":
        out.append(("no q/k norms", None, "qk_norm"))
    if mt == "gpt2":
        out.append(("gelu (erf) for gelu_new",
                    {"activation_function": "gelu"}, None))
        out.append(("no position embedding", None, "wpe"))
    return out


def mutated(model_dir, change, patch):
    with open("%s/config.json" % model_dir) as f:
        d = json.load(f)
    d.update(change or {})
    c = AutoConfig.for_model(d.pop("model_type"), **d)
    m = load(model_dir, c)
    if patch == "embed_scale":
        m.model.embed_tokens.embed_scale.fill_(1.0)
    elif patch == "post_norms":
        for layer in m.model.layers:
            layer.post_attention_layernorm = torch.nn.Identity()
            layer.post_feedforward_layernorm = torch.nn.Identity()
    elif patch == "qk_norm":
        for layer in m.model.layers:
            layer.self_attn.q_norm = torch.nn.Identity()
            layer.self_attn.k_norm = torch.nn.Identity()
    elif patch == "wpe":
        m.transformer.wpe.weight.data.zero_()
    return m


def sample_positions(n):
    pos = set(range(min(n, 4))) | set(range(0, n, 61)) | set(
        range(max(0, n - 8), n))
    return sorted(pos)


def write_case(f, name, ids, lg, positions, stride):
    f.write("case %s tokens %d positions %d\n" % (name, len(ids),
                                                   len(positions)))
    f.write("ids %s\n" % " ".join(map(str, ids)))
    for p in positions:
        row = lg[p]
        top = torch.topk(row, TOP)
        f.write("pos %d %s | %s\n" % (
            p, " ".join("%.9g" % v for v in row[::stride].tolist()),
            " ".join("%d %.9g" % (int(i), float(v))
                     for i, v in zip(top.indices, top.values))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--name", required=True)
    ap.add_argument("--source", required=True,
                    help='"gen <infer-gen-model args>"')
    ap.add_argument("--seed", type=int, default=1, help="prompt ids")
    ap.add_argument("--long", type=int, default=1000)
    ap.add_argument("--greedy", type=int, default=37,
                    help="length of the first greedy prompt")
    a = ap.parse_args()

    torch.manual_seed(0)
    model = load(a.model_dir)
    cfg = model.config
    vocab = cfg.vocab_size
    stride = max(1, -(-vocab // 256))
    rng = np.random.default_rng(a.seed)

    def prompt(n):
        return [int(t) for t in rng.integers(0, vocab, n)]

    cases = [("p1", prompt(1)), ("p37", prompt(37)),
             ("p%d" % a.long, prompt(a.long))]

    results = []
    for name, ids in cases:
        lg = logits(model, ids)
        if lg.shape[1] != vocab:
            sys.exit("logits width %d != vocab_size" % lg.shape[1])
        pos = sample_positions(len(ids)) if len(ids) > 64 else list(
            range(len(ids)))
        results.append((name, ids, lg, pos))
    # Greedy prompts whose 64 steps never come within MIN_MARGIN of a tie:
    # a random-weight model has near ties now and then, and at one both
    # float32 implementations may legitimately pick either token.
    gens = []
    for name, n in (("a", a.greedy), ("b", 20)):
        for tries in range(1, 41):
            ids = prompt(n)
            gen, margin = greedy(model, ids, 64)
            if margin >= MIN_MARGIN:
                break
        gens.append((name, ids, gen, margin, tries))

    long_ids, long_lg = cases[2][1], results[2][2]
    sens = []
    for label, change, patch in mutations(cfg):
        m = mutated(a.model_dir, change, patch)
        sens.append((label, rel(logits(m, long_ids), long_lg)))

    with open(a.out, "w") as f:
        f.write("# transformers %s, torch %s, %s, float32, eager attention\n"
                % (transformers.__version__, torch.__version__,
                   type(model).__name__))
        f.write("# prompt ids: numpy default_rng(%d); greedy margins are the "
                "smallest top-1 - top-2 logit gap\n" % a.seed)
        for label, r in sens:
            f.write("# without %s: the %d-token prompt's logits move by "
                    "%.3g of their largest\n" % (label, a.long, r))
        f.write("model %s\nsource %s\n" % (a.name, a.source))
        f.write("vocab %d stride %d ids %d top %d\n"
                % (vocab, stride, len(range(0, vocab, stride)), TOP))
        for name, ids, lg, pos in results:
            write_case(f, name, ids, lg, pos, stride)
        for name, ids, gen, margin, tries in gens:
            f.write("# greedy %s: prompt draw %d (margin >= %g)\n"
                    % (name, tries, MIN_MARGIN))
            f.write("greedy %s prompt %d new %d margin %.9g\n"
                    % (name, len(ids), len(gen), margin))
            f.write("ids %s\n" % " ".join(map(str, ids)))
            f.write("gen %s\n" % " ".join(map(str, gen)))
    print("%s: greedy margins %s; sensitivity %s" % (
        a.name, ", ".join("%.3g" % g[3] for g in gens),
        ", ".join("%s %.3g" % s for s in sens)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""RoPE frequencies from Hugging Face transformers, for t/unit/test_rope.c.

For each case, a config.json fragment (as published models write it: old
style rope_scaling or transformers 5 rope_parameters), the model family's
own rotary embedding module is built and run over positions 0..L-1, which
is what recomputes dynamic and longrope frequencies; the file then records
its inv_freq buffer and attention scaling as float32 bit patterns, and
cos/sin at a few positions.

File format (one case per block):
    case NAME
    config {json}          (one line)
    seq L
    scaling HEX
    inv N HEX...
    cos POS HEX...         (first N values of cos = cos(pos * inv) * scaling)
"""
import copy
import json
import struct
import sys

import torch
import transformers
from transformers import AutoConfig
from transformers.models.llama import modeling_llama
from transformers.models.phi3 import modeling_phi3
from transformers.models.qwen3 import modeling_qwen3
from transformers.models.gemma2 import modeling_gemma2
from transformers.models.mistral import modeling_mistral

ROTARY = {
    "llama": modeling_llama.LlamaRotaryEmbedding,
    "phi3": modeling_phi3.Phi3RotaryEmbedding,
    "qwen3": modeling_qwen3.Qwen3RotaryEmbedding,
    "gemma2": modeling_gemma2.Gemma2RotaryEmbedding,
    "mistral": modeling_mistral.MistralRotaryEmbedding,
}


def hexf(v):
    return struct.pack("<f", v).hex()


def base(model_type, hidden, heads, max_pos, **kw):
    # vocab, layers and widths do not enter RoPE; the loader wants them
    d = {"model_type": model_type, "vocab_size": 1000, "hidden_size": hidden,
         "intermediate_size": 4 * hidden, "num_hidden_layers": 2,
         "num_attention_heads": heads, "max_position_embeddings": max_pos}
    d.update(kw)
    return d


def phi3_factors(n, lo, hi):
    # smooth, distinct values like the published lists (1.0 .. ~60)
    return [round(lo + (hi - lo) * (i / (n - 1)) ** 2, 6) for i in range(n)]


CASES = [
    ("default-llama2", base("llama", 4096, 32, 4096, rope_theta=10000.0), 1),
    ("default-theta5e5-hd64", base("llama", 2048, 32, 131072,
                                   rope_theta=500000.0), 1),
    ("default-qwen3-hd128", base("qwen3", 1024, 16, 40960, head_dim=128,
                                 num_key_value_heads=8,
                                 rope_theta=1000000.0), 1),
    ("default-hd48", base("llama", 384, 8, 2048, rope_theta=10000.0), 1),
    ("default-hd80", base("llama", 2560, 32, 2048, rope_theta=10000.0), 1),
    ("default-gemma2-hd256", base("gemma2", 2304, 8, 8192, head_dim=256,
                                  rope_theta=10000.0), 1),
    ("default-rope-type", base("llama", 4096, 32, 4096, rope_theta=10000.0,
                               rope_scaling={"rope_type": "default"}), 1),
    ("linear-1", base("llama", 4096, 32, 4096, rope_theta=10000.0,
                      rope_scaling={"type": "linear", "factor": 1.0}), 1),
    ("linear-4", base("llama", 4096, 32, 16384, rope_theta=10000.0,
                      rope_scaling={"type": "linear", "factor": 4.0}), 1),
    ("linear-3", base("llama", 2048, 16, 6144, rope_theta=10000.0,
                      rope_scaling={"rope_type": "linear", "factor": 3.0}), 1),
    ("llama3.1-8b", base("llama", 4096, 32, 131072, rope_theta=500000.0,
                         rope_scaling={"factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0,
                                       "original_max_position_embeddings":
                                       8192, "rope_type": "llama3"}), 1),
    ("llama3.2-1b", base("llama", 2048, 32, 131072, rope_theta=500000.0,
                         rope_scaling={"factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0,
                                       "original_max_position_embeddings":
                                       8192, "rope_type": "llama3"}), 1),
    ("llama3-params", base("llama", 3072, 24, 131072,
                           rope_parameters={"rope_type": "llama3",
                                            "rope_theta": 500000.0,
                                            "factor": 32.0,
                                            "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0,
                                            "original_max_position_embeddings":
                                            8192}), 1),
    ("dynamic-short", base("llama", 2048, 16, 512, rope_theta=10000.0,
                           rope_scaling={"type": "dynamic", "factor": 2.0}),
     400),
    ("dynamic-1000", base("llama", 2048, 16, 512, rope_theta=10000.0,
                          rope_scaling={"type": "dynamic", "factor": 2.0}),
     1000),
    ("dynamic-3000", base("llama", 4096, 32, 2048, rope_theta=10000.0,
                          rope_scaling={"type": "dynamic", "factor": 4.0}),
     3000),
    ("yarn-qwen", base("qwen3", 1024, 16, 131072, head_dim=128,
                       num_key_value_heads=8,
                       rope_theta=1000000.0,
                       rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                     "original_max_position_embeddings":
                                     32768}), 1),
    ("yarn-mscale", base("llama", 2048, 16, 16384, rope_theta=10000.0,
                         rope_scaling={"rope_type": "yarn", "factor": 8.0,
                                       "original_max_position_embeddings":
                                       2048, "mscale": 0.707,
                                       "mscale_all_dim": 1.0,
                                       "beta_fast": 24, "beta_slow": 2}), 1),
    ("yarn-notrunc", base("llama", 2048, 16, 16384, rope_theta=10000.0,
                          rope_scaling={"rope_type": "yarn", "factor": 8.0,
                                        "original_max_position_embeddings":
                                        2048, "truncate": False,
                                        "attention_factor": 1.25}), 1),
    ("longrope-short", base("phi3", 3072, 32, 131072, rope_theta=10000.0,
                            original_max_position_embeddings=4096,
                            rope_scaling={"type": "longrope",
                                          "short_factor":
                                          phi3_factors(48, 1.0, 2.5),
                                          "long_factor":
                                          phi3_factors(48, 1.0, 60.0)}), 100),
    ("longrope-long", base("phi3", 3072, 32, 131072, rope_theta=10000.0,
                           original_max_position_embeddings=4096,
                           rope_scaling={"type": "longrope",
                                         "short_factor":
                                         phi3_factors(48, 1.0, 2.5),
                                         "long_factor":
                                         phi3_factors(48, 1.0, 60.0)}), 4200),
    ("longrope-su", base("phi3", 256, 4, 8192, rope_theta=10000.0,
                         rope_scaling={"type": "su",
                                       "original_max_position_embeddings":
                                       512,
                                       "short_factor":
                                       phi3_factors(32, 1.0, 1.7),
                                       "long_factor":
                                       phi3_factors(32, 1.1, 30.0)}), 1000),
]

POSITIONS = [0, 1, 37, 999, 4095]


def main():
    out = open(sys.argv[1], "w")
    out.write("# transformers %s, torch %s: inv_freq, attention scaling and "
              "cos of each case\n" % (transformers.__version__,
                                       torch.__version__))
    for name, cfg, seq in CASES:
        kw = copy.deepcopy(cfg)
        mt = kw.pop("model_type")
        conf = AutoConfig.for_model(mt, **kw)
        rot = ROTARY[mt](conf)
        x = torch.zeros(1, 1, dtype=torch.float32)
        pos = torch.arange(seq).unsqueeze(0)
        rot(x, pos)                          # dynamic/longrope update
        inv = rot.inv_freq.to(torch.float32)
        scale = float(rot.attention_scaling)
        out.write("case %s\nconfig %s\nseq %d\nscaling %s\n"
                  % (name, json.dumps(cfg, separators=(",", ":")), seq,
                     hexf(torch.tensor(scale, dtype=torch.float32).item())))
        out.write("inv %d %s\n" % (len(inv), " ".join(hexf(v) for v in
                                                      inv.tolist())))
        # cos as the rotary forward computes it from these frequencies
        # (calling it again would recompute dynamic ones for these
        # positions)
        freqs = torch.tensor(POSITIONS)[:, None].float() * inv
        cos = freqs.cos() * rot.attention_scaling
        for k, pp in enumerate(POSITIONS):
            out.write("cos %d %s\n" % (pp, " ".join(hexf(v) for v in
                                                    cos[k].tolist())))


if __name__ == "__main__":
    main()

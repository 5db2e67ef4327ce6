#!/usr/bin/env python3
"""The seed's architecture, written plainly: FastAPI + uvicorn + PyTorch (CPU).

A hand-written Llama forward pass in float32 (RMSNorm, rotate_half RoPE,
grouped-query attention over a per-request KV cache, SwiGLU, tied
embeddings), greedy or temperature sampling, and the Hugging Face
`tokenizers` library for text <-> ids.  It answers the same non-streaming
OpenAI POST /v1/completions request as the nginx module, so the serving
benchmark (bench/serve.sh) can drive both with the same load.

GET /stats reports how much CPU time went into the model's forward pass, so
the benchmark can subtract it from the process's total and call the rest
serving overhead.  The forward is timed with time.thread_time(): FastAPI runs
each `def` endpoint in a thread of its pool and torch runs its ops in the
calling thread when torch.set_num_threads(1), so the calling thread's CPU
clock counts exactly this request's forward passes even when several requests
are in flight (time.process_time() would count the other threads too).
With --threads above 1 torch's worker threads escape that clock, so the
figure is a lower bound then.

    python bench/peer/server.py MODEL_DIR --port 8001 --threads 1
"""
import argparse
import json
import math
import os
import threading
import time
import uuid

import torch
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from safetensors.torch import load_file
from tokenizers import Tokenizer


class LlamaModel:
    """Llama as in Hugging Face's LlamaForCausalLM, batch size 1."""

    def __init__(self, model_dir, dtype=torch.float32):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.cfg = cfg
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads", self.n_heads)
        self.dim = cfg["hidden_size"]
        self.head_dim = cfg.get("head_dim", self.dim // self.n_heads)
        self.eps = cfg["rms_norm_eps"]
        self.max_pos = cfg["max_position_embeddings"]
        self.bos = cfg.get("bos_token_id", 1)
        self.eos = cfg.get("eos_token_id", 2)

        w = load_file(os.path.join(model_dir, "model.safetensors"))
        w = {k: v.to(dtype) for k, v in w.items()}
        self.dtype = dtype
        self.embed = w["model.embed_tokens.weight"]
        self.lm_head = w.get("lm_head.weight", self.embed)
        self.norm = w["model.norm.weight"]
        self.layers = []
        for i in range(self.n_layers):
            p = "model.layers.%d." % i
            self.layers.append({
                "attn_norm": w[p + "input_layernorm.weight"],
                "q": w[p + "self_attn.q_proj.weight"],
                "k": w[p + "self_attn.k_proj.weight"],
                "v": w[p + "self_attn.v_proj.weight"],
                "o": w[p + "self_attn.o_proj.weight"],
                "mlp_norm": w[p + "post_attention_layernorm.weight"],
                "gate": w[p + "mlp.gate_proj.weight"],
                "up": w[p + "mlp.up_proj.weight"],
                "down": w[p + "mlp.down_proj.weight"],
            })

        theta = cfg.get("rope_theta", 10000.0)
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2,
                                                 dtype=dtype)
                                    / self.head_dim))
        t = torch.arange(self.max_pos, dtype=dtype)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = emb.cos()
        self.sin = emb.sin()

    def new_cache(self):
        shape = (self.n_layers, self.n_kv, self.max_pos, self.head_dim)
        return (torch.zeros(shape, dtype=self.dtype),
                torch.zeros(shape, dtype=self.dtype))

    def rms_norm(self, x, weight):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * weight

    @staticmethod
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def rope(self, x, cos, sin):
        return x * cos + self.rotate_half(x) * sin

    def attention(self, x, layer, li, cache, start):
        T = x.shape[0]
        q = (x @ layer["q"].T).view(T, self.n_heads, self.head_dim)
        k = (x @ layer["k"].T).view(T, self.n_kv, self.head_dim)
        v = (x @ layer["v"].T).view(T, self.n_kv, self.head_dim)
        cos = self.cos[start:start + T].unsqueeze(1)
        sin = self.sin[start:start + T].unsqueeze(1)
        q = self.rope(q, cos, sin).transpose(0, 1)      # heads, T, hd
        k = self.rope(k, cos, sin).transpose(0, 1)
        v = v.transpose(0, 1)

        k_cache, v_cache = cache
        k_cache[li, :, start:start + T] = k
        v_cache[li, :, start:start + T] = v
        end = start + T
        keys = k_cache[li, :, :end]
        values = v_cache[li, :, :end]
        group = self.n_heads // self.n_kv
        keys = keys.repeat_interleave(group, dim=0)
        values = values.repeat_interleave(group, dim=0)

        scores = (q @ keys.transpose(1, 2)) / math.sqrt(self.head_dim)
        # Causal mask: query at position start+i sees keys 0..start+i.
        qpos = torch.arange(start, end).unsqueeze(1)
        kpos = torch.arange(end).unsqueeze(0)
        scores = scores.masked_fill(kpos > qpos, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = (probs @ values).transpose(0, 1).reshape(T, -1)
        return out @ layer["o"].T

    @staticmethod
    def swiglu(x, layer):
        gate = torch.nn.functional.silu(x @ layer["gate"].T)
        return (gate * (x @ layer["up"].T)) @ layer["down"].T

    def forward(self, tokens, cache, start):
        """Logits of the last token, after writing K/V for every token."""
        x = self.embed[torch.tensor(tokens)]
        for li, layer in enumerate(self.layers):
            x = x + self.attention(self.rms_norm(x, layer["attn_norm"]),
                                   layer, li, cache, start)
            x = x + self.swiglu(self.rms_norm(x, layer["mlp_norm"]), layer)
        x = self.rms_norm(x[-1], self.norm)
        return x @ self.lm_head.T


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.forward_calls = 0
        self.forward_cpu_s = 0.0

    def add(self, calls, cpu_s):
        with self.lock:
            self.requests += 1
            self.forward_calls += calls
            self.forward_cpu_s += cpu_s

    def snapshot(self):
        with self.lock:
            return {"requests": self.requests,
                    "forward_calls": self.forward_calls,
                    "forward_cpu_s": self.forward_cpu_s}


def generate(model, prompt_ids, max_tokens, temperature, stats):
    """Greedy (temperature 0) or sampled continuation, stopping at eos."""
    cache = model.new_cache()
    out = []
    tokens, start = prompt_ids, 0
    calls, cpu = 0, 0.0
    finish = "length"
    with torch.inference_mode():
        for _ in range(max_tokens):
            t0 = time.thread_time()
            logits = model.forward(tokens, cache, start)
            cpu += time.thread_time() - t0
            calls += 1
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1))
            else:
                nxt = int(torch.argmax(logits))
            if nxt == model.eos:
                finish = "stop"
                break
            out.append(nxt)
            start += len(tokens)
            tokens = [nxt]
    stats.add(calls, cpu)
    return out, finish


class CompletionRequest(BaseModel):
    model: str
    prompt: str
    max_tokens: int = 16
    temperature: float = 1.0
    stream: bool = False


def error(status, message):
    return JSONResponse(status_code=status, content={"error": {
        "message": message, "type": "invalid_request_error",
        "param": None, "code": None}})


def make_app(model, tokenizer, model_name):
    app = FastAPI()
    stats = Stats()

    @app.post("/v1/completions")
    def completions(req: CompletionRequest):
        if req.model != model_name:
            return error(404, "model '%s' not found" % req.model)
        if req.stream:
            return error(400, "stream is not supported by this server")
        if req.max_tokens < 1 or req.temperature < 0:
            return error(400, "max_tokens must be >= 1, temperature >= 0")
        ids = tokenizer.encode(req.prompt).ids      # adds <s>
        if len(ids) + req.max_tokens > model.max_pos:
            return error(400, "prompt + max_tokens exceed the context")
        new, finish = generate(model, ids, req.max_tokens, req.temperature,
                               stats)
        # Decode prompt + completion and cut the prompt off, so a leading
        # space of the first new token survives the decoder's Strip step.
        head = tokenizer.decode(ids)
        text = tokenizer.decode(ids + new)[len(head):]
        return {
            "id": "cmpl-" + uuid.uuid4().hex,
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "text": text, "logprobs": None,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": len(ids),
                      "completion_tokens": len(new),
                      "total_tokens": len(ids) + len(new)},
        }

    @app.get("/stats")
    def get_stats():
        return stats.snapshot()

    return app


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--model-name", default="tiny")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    model = LlamaModel(a.model_dir)
    tokenizer = Tokenizer.from_file(os.path.join(a.model_dir,
                                                 "tokenizer.json"))
    app = make_app(model, tokenizer, a.model_name)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()

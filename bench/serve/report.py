#!/usr/bin/env python3
"""Markdown tables and the chart's data from bench/serve.sh's results.

    report.py DIR     reads DIR/serve.tsv, DIR/serve-extra.tsv and
                      DIR/serve-env.txt; prints markdown; writes
                      DIR/latency.dat for bench/serve/latency.gp
"""
import csv
import json
import os
import sys


def load(d):
    with open(os.path.join(d, "serve.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        for k in ("tokens", "conc", "requests", "p50_us", "p99_us", "bad",
                  "errors", "completed"):
            r[k] = int(float(r[k] or 0))
        for k in ("rps", "cpu_s", "fwd_cpu_s"):
            r[k] = float(r[k] or 0)
        done = r["completed"] or 1
        r["cpu_us"] = r["cpu_s"] / done * 1e6
        # Share of one CPU the server got during the run: on a shared
        # machine other work takes the rest.
        r["busy"] = r["cpu_s"] / (r["requests"] / r["rps"]) if r["rps"] else 0
        r["fwd_us"] = r["fwd_cpu_s"] / done * 1e6
    extra = {}
    with open(os.path.join(d, "serve-extra.tsv")) as f:
        for line in f:
            kind, _, tokens, conc, js = line.rstrip("\n").split("\t", 4)
            extra[(kind, int(tokens), int(conc))] = json.loads(js)
    return rows, extra


def ms(us):
    return "%.2f" % (us / 1000.0)


def main():
    d = sys.argv[1]
    rows, extra = load(d)
    by = {(r["server"], r["proto"], r["tokens"], r["conc"]): r for r in rows}
    tokens = sorted({r["tokens"] for r in rows})
    concs = sorted({r["conc"] for r in rows})

    with open(os.path.join(d, "serve-env.txt")) as f:
        print("```\n" + f.read().rstrip() + "\n```\n")

    print("HTTP/1.1, wrk (`-t1 -cC`), every response's text checked "
          "(bad = wrong text or status, err = socket errors/timeouts):\n")
    print("| max_tokens | C | ours req/s | peer req/s | us/peer | "
          "ours p50 / p99 ms | peer p50 / p99 ms | ours CPU us/req | "
          "peer CPU us/req | peer/us CPU | CPU busy ours / peer | "
          "bad+err ours / peer |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in tokens:
        for c in concs:
            o, p = by.get(("ours", "h1", n, c)), by.get(("peer", "h1", n, c))
            if not o or not p:
                continue
            print("| %d | %d | %.0f | %.1f | %.1fx | %s / %s | %s / %s | "
                  "%.1f | %.0f | %.1fx | %.0f%% / %.0f%% | %d / %d |" % (
                      n, c, o["rps"], p["rps"], o["rps"] / p["rps"],
                      ms(o["p50_us"]), ms(o["p99_us"]),
                      ms(p["p50_us"]), ms(p["p99_us"]),
                      o["cpu_us"], p["cpu_us"], p["cpu_us"] / o["cpu_us"],
                      100 * o["busy"], 100 * p["busy"],
                      o["bad"] + o["errors"], p["bad"] + p["errors"]))

    print("\nHTTP/2 (h2c prior knowledge), h2load `-c1 -mC` against ours "
          "(one connection, C streams; h2load checks status codes; the "
          "bodies of 10*C more requests sent by `nghttp -m 10*C` over one "
          "connection are checked for the exact text):\n")
    print("| max_tokens | C | req/s | vs peer (HTTP/1.1) | p50 / p99 ms | "
          "CPU us/req | non-200 or failed | wrong bodies (nghttp) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in tokens:
        for c in concs:
            h, p = by.get(("ours", "h2", n, c)), by.get(("peer", "h1", n, c))
            chk = extra.get(("h2check", n, c))
            if h:
                print("| %d | %d | %.0f | %s | %s / %s | %.1f | %d | %s |" % (
                    n, c, h["rps"],
                    "%.1fx" % (h["rps"] / p["rps"]) if p else "-",
                    ms(h["p50_us"]), ms(h["p99_us"]), h["cpu_us"], h["bad"],
                    "%d of %d" % (chk["bad"], chk["requests"]) if chk
                    else "-"))

    ttft = sorted(k for k in extra if k[0] == "ttft")
    if ttft:
        print("\nStreaming (`\"stream\": true`) against ours, HTTP/1.1, "
              "asyncio client, C connections:\n")
        print("| max_tokens | C | requests | TTFT p50 / p99 ms | "
              "full stream p50 / p99 ms | bad |")
        print("|---:|---:|---:|---:|---:|---:|")
        for k in ttft:
            t = extra[k]
            print("| %d | %d | %d | %s / %s | %s / %s | %d |" % (
                k[1], k[2], t["requests"], ms(t["ttft_p50_us"]),
                ms(t["ttft_p99_us"]), ms(t["total_p50_us"]),
                ms(t["total_p99_us"]), t["bad"]))

    perf = sorted(k for k in extra if k[0] == "perf")
    if perf:
        print("\nServing overhead, max_tokens 1: CPU time per request "
              "outside the model's forward pass (us):\n")
        print("| C | ours CPU/req | ours forward share (perf) | "
              "ours forward | **ours overhead** | of which nginx loop / "
              "engine thread | peer CPU/req | peer forward | "
              "**peer overhead** | peer/us overhead |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in perf:
            c = k[2]
            o, p = by.get(("ours", "h1", 1, c)), by.get(("peer", "h1", 1, c))
            if not o or not p:
                continue
            e = extra[k]
            f = e["forward_fraction"]
            o_over = o["cpu_us"] * (1 - f)
            # The worker's event-loop thread never runs the forward pass;
            # the rest of the overhead is on the engine's own thread.
            loop = o["cpu_us"] * e.get("main", 0) / max(e["samples"], 1)
            p_over = p["cpu_us"] - p["fwd_us"]
            print("| %d | %.1f | %.1f%% (%d samples) | %.1f | **%.1f** | "
                  "%.1f / %.1f | %.0f | %.0f | **%.0f** | %.0fx |" % (
                      c, o["cpu_us"], 100 * f, e["samples"],
                      o["cpu_us"] * f, o_over, loop, o_over - loop,
                      p["cpu_us"], p["fwd_us"], p_over, p_over / o_over))

    with open(os.path.join(d, "latency.dat"), "w") as f:
        f.write("# conc, p50 ms: " + " ".join(
            "%s-%s-%d" % (s, pr, n) for n in tokens
            for s, pr in (("ours", "h1"), ("ours", "h2"), ("peer", "h1")))
            + "\n")
        for c in concs:
            vals = []
            for n in tokens:
                for s, pr in (("ours", "h1"), ("ours", "h2"), ("peer", "h1")):
                    r = by.get((s, pr, n, c))
                    vals.append(ms(r["p50_us"]) if r else "NaN")
            f.write("%d %s\n" % (c, " ".join(vals)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Share of a server's on-CPU samples spent in the model's forward pass.

Reads `perf script -F tid,ip,sym` output (samples with DWARF call chains)
on stdin.  A sample counts as forward when any frame of its stack is the
backend's forward function (cpu_forward / cpu_rank_forward, or the names
given as arguments); everything else is serving work: HTTP, JSON, the
tokenizer, the event bridge, scheduling, the kernel's share of all of it.

    perf_split.py [--main TID] [SYMBOL...] < perf-script.txt

Prints one JSON object: samples, forward, forward_fraction, threads
(samples per thread id) and, with --main (the nginx worker's pid, i.e. its
event-loop thread), main: that thread's samples.
"""
import json
import sys


def main():
    args = sys.argv[1:]
    main_tid = None
    if args[:1] == ["--main"]:
        main_tid, args = args[1], args[2:]
    symbols = set(args) or {"cpu_forward", "cpu_rank_forward"}
    samples = forward = 0
    threads = {}
    tid, in_forward = None, False

    def flush():
        nonlocal samples, forward
        if tid is None:
            return
        samples += 1
        forward += in_forward
        threads[tid] = threads.get(tid, 0) + 1

    for line in sys.stdin:
        if not line.strip():
            continue
        if not line.startswith("\t"):
            flush()
            tid, in_forward = line.split()[0], False
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[1] in symbols:
            in_forward = True
    flush()
    res = {
        "samples": samples,
        "forward": forward,
        "forward_fraction": forward / samples if samples else 0.0,
        "threads": threads,
    }
    if main_tid is not None:
        res["main"] = threads.get(main_tid, 0)
    print(json.dumps(res))


if __name__ == "__main__":
    main()

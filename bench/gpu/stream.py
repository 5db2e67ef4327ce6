#!/usr/bin/env python3
"""Streams one /v1/chat/completions from URL (no curl on the GPU machine).

    stream.py URL MODEL [WAIT_SECONDS [NGINX_PID]]

Waits for URL/healthz first (giving up early if NGINX_PID exits), then
prints the raw SSE lines as they arrive.
"""
import json
import os
import sys
import time
import urllib.request


def main():
    base, model = sys.argv[1], sys.argv[2]
    wait = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    pid = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    deadline = time.time() + wait
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            break
        except Exception as e:
            if time.time() > deadline or (pid and not os.path.exists(
                    "/proc/%d" % pid)):
                print("healthz not ready: %s" % e)
                sys.exit(1)
            time.sleep(0.5)
    body = json.dumps({"model": model, "stream": True, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "Hello"}]})
    req = urllib.request.Request(base + "/v1/chat/completions",
                                 data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    with urllib.request.urlopen(req, timeout=60) as r:
        for line in r:
            print(line.decode().rstrip("\n"), flush=True)
    print("# %.3f s" % (time.time() - t0))


if __name__ == "__main__":
    main()

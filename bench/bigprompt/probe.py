"""Times 200 small completions and the event gaps of one 400-token
stream, while bench/bigprompt.sh's big-prompt clients run."""
import http.client
import json
import statistics
import sys
import time

port, big = int(sys.argv[1]), sys.argv[2]
small = json.dumps({"model": "tiny", "prompt": [1], "max_tokens": 4,
                    "temperature": 0})

lat = []
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(200):
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", small)
    r = conn.getresponse()
    body = r.read()
    lat.append(time.perf_counter() - t0)
    assert r.status == 200 and b'"text":"Once upon a time"' in body, body

stream = json.dumps({"model": "tiny", "prompt": [1], "max_tokens": 400,
                     "temperature": 0, "stream": True})
conn.request("POST", "/v1/completions", stream)
r = conn.getresponse()
gaps, last = [], time.perf_counter()
while True:
    line = r.fp.readline()
    if not line:
        break
    if line.startswith(b"data: "):
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        if line.startswith(b"data: [DONE]"):
            break

lat.sort()
gaps = gaps[1:]
print(f"big-prompt clients on {big:4}: small requests p50 "
      f"{1000 * statistics.median(lat):.2f} ms, p99 "
      f"{1000 * lat[int(0.99 * len(lat))]:.2f} ms; stream gaps p50 "
      f"{1000 * statistics.median(gaps):.2f} ms, max "
      f"{1000 * max(gaps):.1f} ms")

#!/usr/bin/env python3
"""Streaming time-to-first-token client for POST /v1/completions.

C asyncio workers, each on its own keep-alive HTTP/1.1 connection, send the
request with "stream": true back to back for DURATION seconds.  For each
response it records the time from the first byte written to the first chunk
that holds an SSE `data:` line, and the time to the end of the stream; the
streamed texts are joined and compared with the expected completion.

    ttft.py HOST PORT BODY_JSON EXPECTED_TEXT_JSON CONCURRENCY DURATION

Prints one JSON object: requests, bad, ttft_p50_us, ttft_p99_us,
total_p50_us, total_p99_us.
"""
import asyncio
import json
import sys
import time


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return 0
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def streamed_text(body):
    """Joins choices[0].text of every SSE event; None when malformed."""
    text, done = [], False
    for event in body.decode("utf-8").split("\n\n"):
        event = event.strip()
        if not event:
            continue
        if not event.startswith("data: "):
            return None
        data = event[len("data: "):]
        if data == "[DONE]":
            done = True
            continue
        text.append(json.loads(data)["choices"][0]["text"])
    return "".join(text) if done else None


async def one(reader, writer, request):
    """Returns (ttft_s, total_s, status, body) for one streamed request."""
    t0 = time.perf_counter()
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = head.lower()
    ttft, body = None, bytearray()
    if b"transfer-encoding: chunked" not in headers:
        # An error answer with a Content-Length (never a stream).
        n = 0
        for line in headers.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        body += await reader.readexactly(n)
        return None, time.perf_counter() - t0, status, bytes(body)
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            break
        chunk = await reader.readexactly(size + 2)
        if ttft is None and b"data:" in chunk:
            ttft = time.perf_counter() - t0
        body += chunk[:-2]
    return ttft, time.perf_counter() - t0, status, bytes(body)


async def worker(host, port, request, expect, deadline, out):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            ttft, total, status, body = await one(reader, writer, request)
            ok = (status == 200 and ttft is not None
                  and streamed_text(body) == expect)
            out.append((ttft, total, ok))
    finally:
        writer.close()


async def main():
    host, port, body, expect_json, conc, duration = sys.argv[1:7]
    body = json.loads(body)
    body["stream"] = True
    payload = json.dumps(body).encode()
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: %s:%s\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n"
               b"\r\n" % (host.encode(), port.encode(), len(payload))
               + payload)
    expect = json.loads(expect_json)
    deadline = time.perf_counter() + float(duration)
    out = []
    await asyncio.gather(*(worker(host, int(port), request, expect,
                                  deadline, out)
                           for _ in range(int(conc))))
    ttfts = [r[0] * 1e6 for r in out if r[0] is not None]
    totals = [r[1] * 1e6 for r in out]
    print(json.dumps({
        "requests": len(out),
        "bad": sum(1 for r in out if not r[2]),
        "ttft_p50_us": round(percentile(ttfts, 50)),
        "ttft_p99_us": round(percentile(ttfts, 99)),
        "total_p50_us": round(percentile(totals, 50)),
        "total_p99_us": round(percentile(totals, 99)),
    }))


if __name__ == "__main__":
    asyncio.run(main())

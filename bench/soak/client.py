#!/usr/bin/python3
"""Soak client of bench/soak.sh: drives nginx + the module on loopback.

Phase 1: REQUESTS completions, HTTP/1.1 and HTTP/2 (h2c), streaming or
not, a share of them cut (HTTP/1.1: the connection closed, FIN or RST;
HTTP/2: RST_STREAM CANCEL), while `nginx -s reload` runs every RELOAD s.
Phase 2: QUIET requests of the same mix without reloads, for the workers'
RSS.  Every response that completes must be exact: greedy text of prompt
[1] or "Once upon a time" for its max_tokens (calibrated before phase 1 on
a quiet server and checked against expected_greedy_200.txt); every cut
stream must be a prefix of it.  At the end every worker's /stats must show
nothing running or waiting and every KV block free.

Debian's python3 and python3-h2 (h2 4.1): the client decides exactly when
a stream is cut (after its k-th event), which timeouts in curl or nghttp
cannot.  Prints a report; exits 1 when a check fails.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

# h2 4.1 closes its connection state on GOAWAY and then refuses the DATA
# of the streams the server still finishes (python-hyper/h2 issue 1199), as
# nginx does on a graceful reload: here a GOAWAY leaves the connection open
# (no new stream is opened after one).
h2.connection.H2ConnectionStateMachine._transitions[
    (h2.connection.ConnectionState.CLIENT_OPEN,
     h2.connection.ConnectionInputs.RECV_GOAWAY)] = \
    (None, h2.connection.ConnectionState.CLIENT_OPEN)

ONCE = "Once upon a time"
HOST = "127.0.0.1"


def body_of(prompt, n, stream):
    return json.dumps({"model": "tiny", "prompt": prompt, "max_tokens": n,
                       "temperature": 0, "stream": stream}).encode()


class Result:
    """What one request got: status, body, and whether it was cut."""

    def __init__(self):
        self.status = None
        self.body = b""
        self.complete = False   # the server ended the response
        self.cut = False        # we went away first
        self.error = None
        self.retry = False      # refused before any byte: send again


def sse_events(body):
    """The complete events of an SSE body (data lines), in order."""
    return [e[6:] for e in body.split(b"\n\n")[:-1] if e.startswith(b"data: ")]


def stream_text(events):
    """Text, finish_reason and whether [DONE] closed the stream."""
    text, finish, done = "", None, False
    for e in events:
        if e == b"[DONE]":
            done = True
            continue
        c = json.loads(e)["choices"][0]
        text += c.get("text") or ""
        finish = c.get("finish_reason") or finish
    return text, finish, done


# ---- HTTP/1.1 ------------------------------------------------------------

async def h1_request(port, item, timeout):
    res = Result()
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(HOST, port), timeout)
    except OSError as e:
        res.error, res.retry = "connect: %s" % e, True
        return res
    body = body_of(item["prompt"], item["n"], item["stream"])
    w.write(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    raw = b""
    cut_at = time.monotonic() + item["cut_delay"] if item["cut"] else None
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if cut_at is not None and not item["stream"]:
                left = min(left, cut_at - time.monotonic())
                if left <= 0:
                    res.cut = True
                    break
            if left <= 0:
                res.error = "timeout"
                break
            try:
                chunk = await asyncio.wait_for(r.read(65536), left)
            except asyncio.TimeoutError:
                continue
            if not chunk:
                break
            raw += chunk
            if cut_at is not None and item["stream"]:
                head, _, rest = raw.partition(b"\r\n\r\n")
                if len(sse_events(dechunk(rest)[0])) >= item["cut_after"]:
                    res.cut = True
                    break
    except OSError as e:
        res.error = "read: %s" % e
    if res.cut and item["rst"]:
        # SO_LINGER 0: close() sends RST instead of FIN
        w.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.close()
    if not raw:
        if not res.cut and res.error is None:
            res.error, res.retry = "closed before any byte", True
        return res
    head, sep, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    res.status = int(lines[0].split()[1])
    hdrs = dict(l.lower().split(b": ", 1) for l in lines[1:] if b": " in l)
    if hdrs.get(b"transfer-encoding") == b"chunked":
        res.body, res.complete = dechunk(rest)
    else:
        n = int(hdrs.get(b"content-length", b"-1"))
        res.body, res.complete = rest, sep != b"" and len(rest) == n
    return res


def dechunk(data):
    """The chunked body decoded so far, and whether its last chunk came."""
    out, pos = b"", 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return out, False
        n = int(data[pos:eol].split(b";")[0], 16)
        if n == 0:
            return out, True
        if len(data) < eol + 2 + n + 2:
            out += data[eol + 2:eol + 2 + n]
            return out, False
        out += data[eol + 2:eol + 2 + n]
        pos = eol + 2 + n + 2


# ---- HTTP/2 (h2c, prior knowledge) ---------------------------------------

async def h2_bundle(port, items, timeout):
    """Several streams at once on one connection; one Result each."""
    results = [Result() for _ in items]
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(HOST, port), timeout)
    except OSError as e:
        for res in results:
            res.error, res.retry = "connect: %s" % e, True
        return results
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    by_id, pending, t0 = {}, {}, time.monotonic()
    for item, res in zip(items, results):
        sid = conn.get_next_available_stream_id()
        body = body_of(item["prompt"], item["n"], item["stream"])
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                (":authority", "localhost"),
                                (":path", "/v1/completions"),
                                ("content-type", "application/json"),
                                ("content-length", str(len(body)))])
        conn.send_data(sid, body, end_stream=True)
        by_id[sid] = (item, res)
        pending[sid] = t0 + item["cut_delay"] if item["cut"] else None
    w.write(conn.data_to_send())

    def cut(sid, res):
        res.cut = True
        conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        del pending[sid]

    deadline = t0 + timeout
    try:
        while pending:
            now = time.monotonic()
            for sid, at in list(pending.items()):
                item, res = by_id[sid]
                if at is not None and not item["stream"] and now >= at:
                    cut(sid, res)
            w.write(conn.data_to_send())
            if not pending:
                break
            wake = [at for sid, at in pending.items()
                    if at is not None and not by_id[sid][0]["stream"]]
            left = min([deadline] + wake) - now
            if now >= deadline:
                for sid in pending:
                    by_id[sid][1].error = "timeout"
                break
            try:
                data = await asyncio.wait_for(r.read(65536), max(left, 0))
            except asyncio.TimeoutError:
                continue
            if not data:
                for sid in pending:
                    by_id[sid][1].error = "connection closed"
                break
            for ev in conn.receive_data(data):
                sid = getattr(ev, "stream_id", None)
                item, res = by_id.get(sid, (None, None))
                if isinstance(ev, h2.events.ResponseReceived):
                    res.status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(
                        ev.flow_controlled_length, sid)
                    if sid in pending:
                        res.body += ev.data
                        if (pending[sid] is not None and item["stream"]
                                and len(sse_events(res.body))
                                >= item["cut_after"]):
                            cut(sid, res)
                elif isinstance(ev, h2.events.StreamEnded):
                    if sid in pending:
                        res.complete = True
                        del pending[sid]
                elif isinstance(ev, h2.events.StreamReset):
                    if sid in pending:
                        refused = ev.error_code == \
                            h2.errors.ErrorCodes.REFUSED_STREAM
                        res.error = "RST_STREAM %s" % ev.error_code
                        res.retry = refused and res.status is None
                        del pending[sid]
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    # GOAWAY (a reload): streams past last_stream_id were
                    # never processed and go again; the others finish
                    for s in list(pending):
                        if s > (ev.last_stream_id or 0):
                            by_id[s][1].error = "GOAWAY"
                            by_id[s][1].retry = by_id[s][1].status is None
                            del pending[s]
            w.write(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError) as e:
        for sid in pending:
            by_id[sid][1].error = "h2: %r" % e
    w.close()
    return results


# ---- the run -------------------------------------------------------------

class Soak:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.expected = {}
        self.counts = {}
        self.failures = []
        self.reloads = 0
        self.reload_s = []      # how long each `nginx -s reload` took
        self.rss = []           # (time, pid, age_s, rss_kb, is_master)
        self.hz = os.sysconf("SC_CLK_TCK")
        self.boot = time.time() - float(open("/proc/uptime").read().split()[0])

    def count(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1

    def fail(self, what):
        self.count("failed")
        if len(self.failures) < 30:
            self.failures.append(what)

    def item(self):
        a, rng = self.a, self.rng
        cut = rng.random() < a.cut
        it = {"proto": "h2" if rng.random() < 0.5 else "h1",
              "stream": rng.random() < 0.5,
              "prompt": [1] if rng.random() < 0.5 else ONCE,
              "cut": cut, "rst": rng.random() < 0.5,
              "cut_after": rng.randint(1, 20),
              "cut_delay": rng.uniform(0, 0.03)}
        # cut ones long, so that most are cut while generating
        it["n"] = a.long_tokens if cut else rng.randint(1, a.max_tokens)
        return it

    def key(self, prompt):
        return "[1]" if prompt == [1] else "once"

    async def calibrate(self):
        """Expected text and finish_reason of each prompt and max_tokens,
        from a quiet server, checked against expected_greedy_200.txt."""
        ref = open(self.a.expected).read()
        ns = list(range(1, self.a.max_tokens + 5)) + [200,
                                                       self.a.long_tokens]
        for prompt in ([1], ONCE):
            for n in ns:
                res = await h1_request(self.a.port_h1, {
                    "prompt": prompt, "n": n, "stream": False,
                    "cut": False}, 60)
                if res.status != 200 or not res.complete:
                    sys.exit("soak: calibration request failed: %s %s"
                             % (res.status, res.error))
                c = json.loads(res.body)["choices"][0]
                self.expected[(self.key(prompt), n)] = (c["text"],
                                                        c["finish_reason"])
        texts = [self.expected[("[1]", n)][0]
                 for n in range(1, self.a.max_tokens + 5)]
        if self.expected[("[1]", 200)][0] != ref:
            sys.exit("soak: 200 greedy tokens are not %s" % self.a.expected)
        for n, t in enumerate(texts, 1):
            if not ref.startswith(t) or (n > 1 and len(t) <= len(texts[n - 2])):
                sys.exit("soak: greedy text of %d tokens is not the next "
                         "prefix of %s: %r" % (n, self.a.expected, t))
        for n in range(1, self.a.max_tokens + 1):
            once = ONCE + self.expected[("once", n)][0]
            if once != self.expected[("[1]", n + 4)][0]:
                sys.exit("soak: \"Once upon a time\" + %d tokens is not "
                         "[1] + %d tokens: %r" % (n, n + 4, once))
        long1 = self.expected[("[1]", self.a.long_tokens)][0]
        if not long1.startswith(ref):
            sys.exit("soak: %d greedy tokens do not extend %s" %
                     (self.a.long_tokens, self.a.expected))

    def check(self, item, res):
        text, finish = self.expected[(self.key(item["prompt"]), item["n"])]
        what = "%s %s prompt=%s n=%d" % (
            item["proto"], "stream" if item["stream"] else "whole",
            self.key(item["prompt"]), item["n"])
        if res.error and not (res.cut and res.error.startswith("RST")):
            return self.fail("%s: %s" % (what, res.error))
        if res.status is None:
            if not res.cut:
                return self.fail("%s: no response" % what)
            return self.count("cut before any byte came")
        if res.status != 200:
            return self.fail("%s: status %s %r" % (what, res.status,
                                                   res.body[:200]))
        if res.cut and not res.complete:
            if item["stream"]:
                got = stream_text(sse_events(res.body))[0]
                if not text.startswith(got):
                    return self.fail("%s: cut stream %r not a prefix" %
                                     (what, got))
            return self.count("cut mid-response")
        if not res.complete:
            return self.fail("%s: incomplete response" % what)
        if item["stream"]:
            if not res.body.endswith(b"\n\n"):
                return self.fail("%s: stream does not end with an event"
                                 % what)
            got, fin, done = stream_text(sse_events(res.body))
            if not done:
                return self.fail("%s: no [DONE]" % what)
        else:
            c = json.loads(res.body)["choices"][0]
            got, fin = c["text"], c["finish_reason"]
        if (got, fin) != (text, finish):
            return self.fail("%s: got %r (%s), want %r (%s)" %
                             (what, got, fin, text, finish))
        self.count("exact" if not item["cut"] else "exact, done before its cut")

    async def h1_worker(self, q):
        while True:
            item = await q.get()
            if item is None:
                return
            for _ in range(5):
                res = await h1_request(self.a.port_h1, item, self.a.timeout)
                if not res.retry:
                    break
                self.count("h1 retried (closed before any byte)")
            self.count("h1")
            self.check(item, res)

    async def h2_worker(self, q):
        last = False
        while not last:
            bundle = []
            for _ in range(self.rng.randint(1, self.a.h2_streams)):
                it = await q.get()
                if it is None:
                    last = True
                    break
                bundle.append(it)
            for _ in range(5):
                if not bundle:
                    break
                results = await h2_bundle(self.a.port_h2, bundle,
                                          self.a.timeout)
                again = []
                for item, res in zip(bundle, results):
                    if res.retry:
                        self.count("h2 retried (GOAWAY/refused)")
                        again.append(item)
                    else:
                        self.count("h2")
                        self.check(item, res)
                bundle = again
            for item in bundle:
                self.fail("h2: refused 5 times")

    async def phase(self, n, reload):
        q1, q2 = asyncio.Queue(), asyncio.Queue()
        for _ in range(n):
            it = self.item()
            (q2 if it["proto"] == "h2" else q1).put_nowait(it)
            self.count(("cut " if it["cut"] else "") + it["proto"]
                       + (" stream" if it["stream"] else " whole") + " sent")
        tasks = []
        for _ in range(self.a.h1_conc):
            q1.put_nowait(None)
            tasks.append(asyncio.create_task(self.h1_worker(q1)))
        for _ in range(self.a.h2_conc):
            q2.put_nowait(None)
            tasks.append(asyncio.create_task(self.h2_worker(q2)))
        stop = asyncio.Event()
        reloader = asyncio.create_task(self.reloader(stop)) if reload else None
        t0 = time.monotonic()
        done, _ = await asyncio.wait(tasks, timeout=self.a.phase_limit)
        if len(done) != len(tasks):
            self.fail("phase of %d requests did not end in %d s" %
                      (n, self.a.phase_limit))
            for t in tasks:
                t.cancel()
        for t in done:
            if t.exception():
                self.fail("client task died: %r" % t.exception())
        stop.set()
        if reloader:
            await reloader
        return time.monotonic() - t0

    async def reloader(self, stop):
        """`nginx -s reload` every RELOAD s on a fixed clock (at once when
        the previous one took longer)."""
        due = time.monotonic()
        while not stop.is_set():
            due += self.a.reload
            try:
                await asyncio.wait_for(stop.wait(),
                                       max(due - time.monotonic(), 0))
                return
            except asyncio.TimeoutError:
                pass
            t0 = time.monotonic()
            p = await asyncio.create_subprocess_exec(
                *self.a.nginx_cmd.split(), "-s", "reload",
                stderr=subprocess.PIPE)
            err = (await p.communicate())[1]
            if p.returncode != 0:
                self.fail("nginx -s reload exited %d: %s" %
                          (p.returncode, err.decode(errors="replace")))
            self.reloads += 1
            self.reload_s.append(time.monotonic() - t0)

    # ---- processes: workers, RSS, /stats ---------------------------------

    def master(self):
        return int(open(self.a.pid_file).read())

    def workers(self):
        """(pid, cmdline, age_s, rss_kb) of the master's children."""
        out, master = [], self.master()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = open("/proc/%s/stat" % d).read()
                f = stat[stat.rindex(")") + 2:].split()
                if int(f[1]) != master:
                    continue
                cmd = open("/proc/%s/cmdline" % d).read().replace("\0", " ")
                out.append((int(d), cmd.strip(), self.age(f), self.rss_kb(d)))
            except (OSError, ValueError):
                continue
        return out

    def age(self, f):
        return time.time() - (self.boot + int(f[19]) / self.hz)

    def rss_kb(self, pid):
        for line in open("/proc/%s/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    async def sampler(self, stop):
        while not stop.is_set():
            now = time.monotonic()
            try:
                self.rss.append((now, self.master(), None,
                                 self.rss_kb(self.master()), True))
                for pid, cmd, age, rss in self.workers():
                    if "worker process" in cmd and "shutting" not in cmd:
                        self.rss.append((now, pid, age, rss, False))
            except OSError:
                pass
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except asyncio.TimeoutError:
                pass

    async def stats_of_workers(self):
        """/stats of every live worker, reached over new connections."""
        want = {p for p, c, _, _ in self.workers() if "worker process" in c
                and "shutting" not in c}
        seen = {}
        for _ in range(400):
            res = await h1_get(self.a.port_h1, "/stats", 10)
            if res is not None:
                seen[res["pid"]] = res
            if want <= set(seen):
                break
        return want, seen

    async def idle_check(self):
        """Nothing running or waiting, every KV block free, per worker."""
        for attempt in range(20):
            want, seen = await self.stats_of_workers()
            bad = []
            for pid in sorted(want):
                st = seen.get(pid)
                if st is None:
                    bad.append("worker %d never reached" % pid)
                    continue
                for m in st["models"]:
                    if (m["running"], m["waiting"]) != (0, 0) \
                            or m["kv_blocks_free"] != m["kv_blocks"]:
                        bad.append("worker %d: %s" % (pid, json.dumps(m)))
            if not bad:
                return [seen[p] for p in sorted(want)]
            await asyncio.sleep(0.5)
        for b in bad:
            self.fail("not idle at the end: " + b)
        return [seen[p] for p in sorted(want) if p in seen]

    async def old_workers_gone(self, limit):
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if not [p for p, c, _, _ in self.workers() if "shutting" in c]:
                return time.monotonic() - t0
            await asyncio.sleep(0.2)
        left = [(p, c) for p, c, _, _ in self.workers() if "shutting" in c]
        self.fail("%d old workers still shutting down %d s after the last "
                  "reload: %s" % (len(left), limit, left))
        return None

    def log_check(self):
        counts = {}
        for line in open(self.a.error_log, errors="replace"):
            bad = [k for k in ("exited on signal", "[alert]", "[crit]",
                               "[emerg]") if k in line]
            if " exited with code " in line and " code 0" not in line:
                bad.append("exited with code != 0")
            for k in bad:
                counts[k] = counts.get(k, 0) + 1
            if bad:
                self.fail("error.log: " + line.strip())
            for k, name in ((" exited with code 0", "workers exited normally"),
                            ("infer: client gone, cancelling",
                             "generations cancelled (client gone)")):
                if k in line:
                    counts[name] = counts.get(name, 0) + 1
        return counts

    async def run(self):
        a = self.a
        await self.calibrate()
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sampler(stop))
        t1 = await self.phase(a.requests, reload=True)
        t_settle = await self.old_workers_gone(30)
        q0 = len(self.rss)
        t2 = await self.phase(a.quiet, reload=False)
        stop.set()
        await sampler
        final = await self.idle_check()
        self.report(t1, t2, t_settle, q0, final, self.log_check())
        return 1 if self.counts.get("failed") else 0

    def report(self, t1, t2, t_settle, q0, final, log):
        a = self.a
        print("soak: phase 1: %d requests in %.1f s with %d reloads "
              "(every %g s); phase 2: %d requests in %.1f s, no reload" %
              (a.requests, t1, self.reloads, a.reload, a.quiet, t2))
        if self.reload_s:
            print("soak: nginx -s reload took %.2f s on average, %.2f s at "
                  "most" % (sum(self.reload_s) / len(self.reload_s),
                            max(self.reload_s)))
        print("soak: old workers gone %s after the last reload" %
              ("%.1f s" % t_settle if t_settle is not None else "NOT"))
        for k in sorted(self.counts):
            print("soak:   %-40s %6d" % (k, self.counts[k]))
        print("soak: error.log: %s" % json.dumps(log, sort_keys=True))
        for st in final:
            print("soak: /stats of worker %d: %s" % (st["pid"],
                                                    json.dumps(st["models"])))
        # RSS: workers of phase 1 at the same age; phase 2's two workers
        # at its start and end; the master throughout
        aged = {}
        for t, pid, age, rss, m in self.rss[:q0]:
            if not m and age is not None and age >= a.rss_age:
                aged.setdefault(pid, rss)
        first = list(aged.values())
        if first:
            k = max(1, len(first) // 10)
            print("soak: phase 1 worker RSS at age %.1f s: first %d "
                  "workers median %d kB, last %d median %d kB (%d workers)"
                  % (a.rss_age, k, median(first[:k]), k,
                     median(first[-k:]), len(first)))
        m = [rss for _, _, _, rss, is_m in self.rss if is_m]
        if m:
            print("soak: master RSS: start %d kB, after 1/4 of the run %d "
                  "kB, end %d kB" % (m[0], m[len(m) // 4], m[-1]))
            if m[-1] - m[len(m) // 4] > a.rss_slack:
                self.fail("master RSS grew %d kB over the last 3/4 of the "
                          "run (reloads)" % (m[-1] - m[len(m) // 4]))
        q = [s for s in self.rss[q0:] if not s[4]]
        for pid in sorted({s[1] for s in q}):
            r = [s[3] for s in q if s[1] == pid]
            quarter = r[len(r) // 4]
            print("soak: phase 2 worker %d RSS: start %d kB, at 1/4 %d kB, "
                  "1/2 %d kB, 3/4 %d kB, end %d kB (%d samples)" %
                  (pid, r[0], quarter, r[len(r) // 2], r[len(r) * 3 // 4],
                   r[-1], len(r)))
            if r[-1] - quarter > a.rss_slack:
                self.fail("worker %d RSS grew %d kB over the last 3/4 of "
                          "phase 2" % (pid, r[-1] - quarter))
        for f in self.failures:
            print("soak: FAIL %s" % f)
        print("soak: %s" % ("FAILED" if self.counts.get("failed") else
                            "passed"))


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


async def h1_get(port, path, timeout):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port),
                                      timeout)
        w.write(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close"
                b"\r\n\r\n" % path.encode())
        raw = await asyncio.wait_for(r.read(), timeout)
        w.close()
        return json.loads(raw.partition(b"\r\n\r\n")[2])
    except (OSError, ValueError, asyncio.TimeoutError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port-h1", type=int, required=True)
    p.add_argument("--port-h2", type=int, required=True)
    p.add_argument("--nginx-cmd", required=True,
                   help="nginx -p PREFIX -c CONF (reload appends -s reload)")
    p.add_argument("--pid-file", required=True)
    p.add_argument("--error-log", required=True)
    p.add_argument("--expected", required=True)
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--quiet", type=int, default=5000)
    p.add_argument("--cut", type=float, default=0.3)
    p.add_argument("--reload", type=float, default=2.0)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--long-tokens", type=int, default=400)
    p.add_argument("--h1-conc", type=int, default=8)
    p.add_argument("--h2-conc", type=int, default=4)
    p.add_argument("--h2-streams", type=int, default=6)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--phase-limit", type=float, default=1500)
    p.add_argument("--rss-age", type=float, default=1.5)
    p.add_argument("--rss-slack", type=int, default=2048,
                   help="kB a phase-2 worker may grow after its first 1/4")
    p.add_argument("--seed", type=int, default=1)
    sys.exit(asyncio.run(Soak(p.parse_args()).run()))


if __name__ == "__main__":
    main()

"""The fleet under load while its instances fail, run by t/021-fleet.t.

    fleet_check.py FLEET_DIR PORT N PROTO NGINX

A fleet that tools/fleet.sh started (FLEET_DIR, the front on PORT, N = 3
instances on PORT + i, each also on FLEET_DIR/iI/infer.sock).  Clients
talk to the front as the certificates' "alice" does (HTTP/1.1 over TLS,
keep-alive); references are direct calls to an instance's unix socket.
Each step begins once every instance answers through the front again (the
circuits the step before opened have closed); then, while load runs, it
does something to one instance and counts what the clients saw:

  spread        requests reach every instance (their X-Infer-Instance,
                and each instance's own infer_requests_total)
  kill -9       non-streamed requests all answer 200 with the reference
                text (retried); the streams that were on the instance end
                promptly with an error event (the front's
                infer_proxy_stream_errors), the others complete
  SIGSTOP       everything still answers 200, within the front's
                timeouts; the front disables the instance (its circuit);
                after SIGCONT it serves again
  tiny queue    one instance reloaded with max_seqs=1 max_queue=1 sheds
                503s under overload; clients see none
  no engine     one instance reloaded with an engine that cannot start
                answers 503 (health too); clients see none
  rolling       nginx -s reload of every instance in turn: no failure
  same bytes    SSE through the front (HTTP/1.1, and HTTP/2 with curl) is
                the direct stream's bytes (but
                for its id and created), gRPC ModelInfer's response too
  mTLS          no certificate, another CA's, an instance's certificate at
                an instance, a model the client may not call: 403 in
                OpenAI's shape (gRPC PERMISSION_DENIED)

Prints one line per check, "ok - ..." or "not ok - ...", "# " lines with
the counts, "#! " lines with what a failed check saw, then "done N".
"""
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

DIR, PORT, N, PROTO, NGINX = (sys.argv[1], int(sys.argv[2]),
                              int(sys.argv[3]), sys.argv[4], sys.argv[5])
CERTS = DIR + "/certs"
# the front's timeouts (conf/fleet/front.conf) and circuit (tools/fleet.sh)
READ_TIMEOUT, CONNECT_TIMEOUT, FAIL_TIMEOUT = 10, 2, 10

checks = 0
STEP_BEGAN, STEP_LOG = time.monotonic(), 0


def check(cond, what, detail=""):
    global checks
    checks += 1
    print(("ok - " if cond else "not ok - ") + what, flush=True)
    if not cond and detail:
        for line in str(detail).splitlines()[:20]:
            print("#! " + line, flush=True)     # the suite's diag
    return cond


def note(text):
    print("# " + text, flush=True)


# ---- connections -------------------------------------------------------------

def tls(who=None, ca="ca"):
    ctx = ssl.create_default_context(cafile="%s/%s.crt" % (CERTS, ca))
    if who:
        ctx.load_cert_chain("%s/%s.crt" % (CERTS, who),
                            "%s/%s.key" % (CERTS, who))
    return ctx


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def front(who="alice", timeout=60):
    return http.client.HTTPSConnection("localhost", PORT, timeout=timeout,
                                       context=tls(who))


def unix(i, timeout=60):
    return UnixConnection("%s/i%d/infer.sock" % (DIR, i), timeout)


def instance_tls(i, who):
    ctx = tls(who, "fleet-ca")
    ctx.check_hostname = False      # its name is infer-instance
    return http.client.HTTPSConnection("127.0.0.1", PORT + i, timeout=30,
                                       context=ctx)


def call(conn, path, body=None, headers=None, method=None):
    """status, headers (lower-case names), body; the connection closed"""
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = json.dumps(body) if isinstance(body, dict) else body
        conn.request(method or ("GET" if body is None else "POST"), path,
                     body=data, headers=h)
        r = conn.getresponse()
        return (r.status, {k.lower(): v for k, v in r.getheaders()},
                r.read())
    finally:
        conn.close()


# ---- the instances -----------------------------------------------------------

def prefix(i):
    return "%s/i%d" % (DIR, i)


def master(i):
    with open(prefix(i) + "/logs/nginx.pid") as f:
        return int(f.read())


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(p))
    return out


def signal_instance(i, sig):
    """sig to the master and its workers"""
    m = master(i)
    for pid in [m] + children(m):
        os.kill(pid, sig)


def worker_pid(i):
    try:
        st, _, body = call(unix(i, 5), "/stats")
        return json.loads(body)["pid"] if st == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def healthy(i):
    try:
        return call(unix(i, 5), "/healthz")[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def wait(cond, seconds, every=0.1):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return cond()


def start_instance(i):
    try:
        os.unlink(prefix(i) + "/infer.sock")    # a killed master's
    except FileNotFoundError:
        pass
    subprocess.run([NGINX, "-p", prefix(i) + "/", "-c", "conf/nginx.conf",
                    "-e", "logs/error.log"], check=True)
    return wait(lambda: healthy(i), 30)


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def reload_instance(i, ready=True):
    """nginx -s reload; waits until the old worker has exited (until then
    it may still accept) and the new one answers (serving, if ready)"""
    old = worker_pid(i)
    os.kill(master(i), signal.SIGHUP)
    return wait(lambda: (old is None or not alive(old))
                and worker_pid(i) not in (None, old)
                and (healthy(i) or not ready), 30)


def set_model_args(i, args):
    path = prefix(i) + "/conf/infer_model.conf"
    with open(path) as f:
        text = f.read()
    model = re.search(r"infer_model default (\S+)", text).group(1)
    with open(path, "w") as f:
        f.write("infer_model default %s %s;\ninfer_model premium %s %s;\n"
                % (model, args, model, args))
    return text


def metric(i, family, **labels):
    """the sum of an instance's samples of family with those labels"""
    st, _, body = call(unix(i, 10), "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        m = re.match(r"%s\{([^}]*)\} (\S+)$" % family, line)
        if m and all('%s="%s"' % kv in m.group(1) for kv in labels.items()):
            total += float(m.group(2))
    return total


# ---- load --------------------------------------------------------------------

PROMPT = "Once upon a time"
PLAIN = {"model": "default", "prompt": PROMPT, "max_tokens": 8,
         "temperature": 0}
STREAM = {"model": "default", "prompt": PROMPT, "max_tokens": 400,
          "temperature": 0, "stream": True}


def sse_text(body):
    text = ""
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            ev = json.loads(line[6:])
            text += "".join(c.get("text", "") for c in ev.get("choices", []))
    return text


def last_event(body):
    """the last event's data as JSON, or None"""
    events = [line[6:] for line in body.split(b"\n")
              if line.startswith(b"data: {")]
    try:
        return json.loads(events[-1]) if events else None
    except ValueError:
        return None


class Load:
    """threads sending requests through the front until stopped"""

    def __init__(self, plain=6, streams=0, plain_body=PLAIN, plain_ref=None):
        self.results = []
        self.plain_ref = plain_ref or REF_PLAIN
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.streaming = {}         # thread -> (instance, since)
        self.plain_body = plain_body
        self.threads = [threading.Thread(target=self.run, args=(k, n))
                        for k, count in (("plain", plain),
                                         ("stream", streams))
                        for n in range(count)]
        for t in self.threads:
            t.start()

    def run(self, kind, n):
        conn, me = None, (kind, n)
        body = json.dumps(STREAM if kind == "stream" else self.plain_body)
        while not self.done.is_set():
            res = {"kind": kind, "t0": time.monotonic(), "status": None,
                   "inst": None, "err": None, "ok": False}
            try:
                if conn is None:
                    conn = front()
                conn.request("POST", "/v1/completions", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                res["status"] = r.status
                res["inst"] = r.getheader("X-Infer-Instance")
                if kind == "stream":
                    # when its headers came: its tokens are about to
                    self.streaming[me] = (res["inst"], time.monotonic())
                data = r.read()
                if kind == "stream":
                    res["ok"] = (r.status == 200
                                 and data.endswith(b"data: [DONE]\n\n")
                                 and sse_text(data) == REF_STREAM)
                    res["last"] = last_event(data)
                else:
                    res["ok"] = (r.status == 200 and json.loads(data)
                                 ["choices"][0]["text"] == self.plain_ref)
                if not res["ok"]:
                    res["err"] = data[:300]
                if r.will_close:
                    conn.close()
                    conn = None
            except Exception as e:      # what the client saw is counted
                res["err"] = repr(e)
                if conn is not None:
                    conn.close()
                conn = None
            self.streaming.pop(me, None)
            res["t1"] = time.monotonic()
            with self.lock:
                self.results.append(res)
        if conn is not None:
            conn.close()

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(120)
        return self.results


def summary(name, results):
    by = {}
    for r in results:
        key = r["inst"] or "-"
        by[key] = by.get(key, 0) + 1
    bad = [r for r in results if not r["ok"]]
    lat = sorted(r["t1"] - r["t0"] for r in results)
    note("%s: %d requests (%d failed), by instance %s, latency max %.2f s"
         % (name, len(results), len(bad), json.dumps(by, sort_keys=True),
            lat[-1] if lat else 0))
    return bad


def front_log_from(offset):
    """the front's error and warn lines written since offset"""
    with open(DIR + "/front/logs/error.log") as f:
        f.seek(offset)
        return [line.rstrip() for line in f
                if "[error]" in line or "[warn]" in line]


def failures(bad):
    if not bad:
        return ""
    lines = ["%s %s on %s after %.2f s: %s"
             % (r["kind"], r["status"], r["inst"], r["t0"] - STEP_BEGAN,
                r["err"]) for r in bad[:6]]
    return "\n".join(lines + ["the front's log in this step:"]
                     + front_log_from(STEP_LOG)[-12:])


def serving_all():
    """requests one at a time through the front until every instance has
    answered one: circuits that a step before opened are closed again
    (they stay open fail_timeout after the instance's last failure)"""
    seen = set()

    def one():
        try:
            st, hdr, _ = call(front(timeout=30), "/v1/completions", PLAIN)
            if st == 200:
                seen.add(hdr.get("x-infer-instance"))
        except (OSError, http.client.HTTPException):
            pass
        return len(seen) == N

    return wait(one, FAIL_TIMEOUT + 15)


# ---- the steps ---------------------------------------------------------------

def references():
    global REF_PLAIN, REF_STREAM
    st, _, body = call(unix(1), "/v1/completions", PLAIN)
    REF_PLAIN = json.loads(body)["choices"][0]["text"]
    st2, _, body2 = call(unix(1), "/v1/completions", STREAM)
    REF_STREAM = sse_text(body2)
    check(st == 200 and st2 == 200 and REF_PLAIN and REF_STREAM
          and REF_STREAM.startswith(REF_PLAIN),
          "references from instance i1's unix socket (greedy, 8 and 400 "
          "tokens)", (st, st2, REF_PLAIN, REF_STREAM))


def spread():
    before = [metric(i, "infer_requests_total", route="openai")
              for i in range(1, N + 1)]
    load = Load(plain=6)
    time.sleep(5)
    res = load.stop()
    bad = summary("spread", res)
    check(res and not bad, "spread: every request answered 200 with the "
          "reference text (%d)" % len(res), failures(bad))
    seen = {r["inst"] for r in res}
    check(seen == {"i%d" % i for i in range(1, N + 1)},
          "spread: responses came from every instance", seen)
    after = [metric(i, "infer_requests_total", route="openai")
             for i in range(1, N + 1)]
    grew = [a - b for a, b in zip(after, before)]
    note("spread: infer_requests_total grew by %s" % grew)
    check(all(g > 0 for g in grew) and sum(grew) >= len(res),
          "spread: each instance's own metrics counted its share", grew)


def kill9():
    m = master(2)
    pids = [m] + children(m)
    load = Load(plain=6, streams=3)
    # a stream that i2 has begun and not ended when it dies: 400 tokens
    # take 0.15 s on a fast CPU, faster than this client can see where
    # they are, so i2 is frozen while a stream from it is open and killed
    # only if that stream is still open a while later (the front has
    # passed on all it had); else i2 thaws and the next one is tried
    freezes = [0]

    def frozen_mid_stream():
        now = [(k, v) for k, v in list(load.streaming.items())
               if v[0] == "i2"]
        if not now:
            return False
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        freezes[0] += 1
        time.sleep(0.5)
        if any(load.streaming.get(k) == v for k, v in now):
            return True
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        return False

    on_i2 = wait(frozen_mid_stream, 30, 0.005)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()       # nothing starts on i2 after this
    time.sleep(5)
    res = load.stop()
    bad = summary("kill -9 i2", res)
    plain = [r for r in res if r["kind"] == "plain"]
    check(plain and all(r["ok"] for r in plain),
          "kill -9: every non-streamed request answered 200 with the "
          "reference text (%d)" % len(plain),
          failures([r for r in plain if not r["ok"]]))
    cut = [r for r in res if r["kind"] == "stream" and not r["ok"]]
    check(on_i2 and cut, "kill -9: a stream was on i2 when it died (%d "
          "cut)" % len(cut))
    # the front's infer_proxy_stream_errors: an error event and the
    # stream's clean end, not a connection closed mid-stream
    check(all(r["inst"] == "i2" and r["t0"] < killed
              and (r.get("last") or {}).get("error", {}).get("code")
              == "upstream_failed"
              and r["t1"] - killed < 15 for r in cut),
          "kill -9: the cut streams were all on i2 and ended with an "
          "OpenAI error event within 15 s, none hung",
          failures(cut) + "\n" + "\n".join(
              "began %.2f s, ended %.2f s after the kill, last event %s"
              % (r["t0"] - killed, r["t1"] - killed, r.get("last"))
              for r in cut))
    done = [r for r in res if r["kind"] == "stream" and r["ok"]]
    note("kill -9: i2 frozen %d times, %d streams complete, %d cut (%s)"
         % (freezes[0], len(done), len(cut), "; ".join(str(r["err"])[:80]
                                           for r in cut)))
    check(start_instance(2), "kill -9: i2 starts again")


def sigstop():
    load = Load(plain=6)
    time.sleep(2)
    stopped = time.monotonic()
    signal_instance(3, signal.SIGSTOP)
    time.sleep(READ_TIMEOUT + CONNECT_TIMEOUT + 3)
    signal_instance(3, signal.SIGCONT)
    resumed = time.monotonic()
    back = wait(lambda: any(r["inst"] == "i3" and r["t0"] > resumed
                            for r in list(load.results)),
                FAIL_TIMEOUT + 10)
    res = load.stop()
    bad = summary("SIGSTOP i3", res)
    check(res and not bad, "SIGSTOP: every request answered 200 with the "
          "reference text (%d)" % len(res), failures(bad))
    during = [r for r in res if stopped < r["t0"] and r["t1"] < resumed]
    worst = max((r["t1"] - r["t0"] for r in res), default=0)
    check(during and worst < READ_TIMEOUT + CONNECT_TIMEOUT + 8,
          "SIGSTOP: %d answered while i3 was stopped, the slowest in "
          "%.1f s (proxy_read_timeout %d s)" % (len(during), worst,
                                                READ_TIMEOUT))
    with open(DIR + "/front/logs/error.log") as f:
        log = f.read()
    check(re.search(r"upstream server temporarily disabled[^\n]*"
                    r"upstream: \"https://127\.0\.0\.1:%d" % (PORT + 3), log),
          "SIGSTOP: the front disabled i3 (its circuit opened)")
    check(back, "SIGCONT: i3 answers requests again")


def tiny_queue():
    old = set_model_args(1, "threads=1 max_seqs=1 max_queue=1")
    check(reload_instance(1), "tiny queue: i1 reloaded with max_seqs=1 "
          "max_queue=1")
    longer = dict(PLAIN, max_tokens=24)
    st, _, body = call(unix(2), "/v1/completions", longer)
    ref = json.loads(body)["choices"][0]["text"]
    shed = metric(1, "infer_request_errors_total", kind="unavailable")
    load = Load(plain=16, plain_body=longer, plain_ref=ref)
    time.sleep(6)
    res = load.stop()
    shed = metric(1, "infer_request_errors_total", kind="unavailable") - shed
    bad = [r for r in res if not r["ok"]]
    summary("tiny queue i1", res)
    note("tiny queue: i1 answered %d requests with 503" % shed)
    check(res and not bad, "tiny queue: clients saw no 503, every request "
          "200 with the reference text (%d)" % len(res), failures(bad))
    check(shed > 0, "tiny queue: i1 did shed (%d 503s, retried elsewhere)"
          % shed)
    with open(prefix(1) + "/conf/infer_model.conf", "w") as f:
        f.write(old)
    check(reload_instance(1), "tiny queue: i1 back to its configuration")


def no_engine():
    old = set_model_args(2, "threads=1 kv_cache=1024g")
    check(reload_instance(2, ready=False), "no engine: i2 reloaded with a "
          "KV cache no machine here can allocate")
    st, hdr, body = call(unix(2), "/healthz")
    check(st == 503 and hdr.get("retry-after") == "1"
          and b"unavailable" in body,
          "no engine: i2's readiness is 503 with Retry-After", (st, body))
    shed = metric(2, "infer_request_errors_total", kind="unavailable")
    load = Load(plain=6)
    time.sleep(4)
    res = load.stop()
    shed = metric(2, "infer_request_errors_total", kind="unavailable") - shed
    bad = summary("no engine i2", res)
    check(res and not bad and shed > 0,
          "no engine: i2 answered %d 503s, clients saw only 200s (%d)"
          % (shed, len(res)), failures(bad))
    with open(prefix(2) + "/conf/infer_model.conf", "w") as f:
        f.write(old)
    check(reload_instance(2), "no engine: i2 serves again after a reload")


def rolling():
    load = Load(plain=6, streams=2)
    began = time.monotonic()
    ok = True
    for i in range(1, N + 1):
        ok &= reload_instance(i)
        time.sleep(1)
    res = load.stop()
    bad = summary("rolling reload", res)
    seen = {r["inst"] for r in res if r["t0"] > began}
    check(len(seen) == N, "rolling: every instance served while "
          "they were reloaded", seen)
    check(ok, "rolling: each instance has a new worker, serving")
    check(res and not bad, "rolling reload under load: no failed request "
          "(%d, %d streams)" % (len(res), sum(r["kind"] == "stream"
                                              for r in res)), failures(bad))


def same_bytes():
    chat = {"model": "default", "messages": [{"role": "user",
            "content": PROMPT}], "max_tokens": 24, "temperature": 0,
            "stream": True}
    norm = (lambda b: re.sub(rb'"created":\d+', b'"created":0',
            re.sub(rb'"id":"chatcmpl-[0-9a-f]+"', b'"id":"-"', b)))
    st1, h1, direct = call(unix(1), "/v1/chat/completions", chat)
    st2, h2, proxied = call(front(), "/v1/chat/completions", chat)
    check(st1 == st2 == 200 and h2.get("content-type") == "text/event-stream"
          and direct.endswith(b"data: [DONE]\n\n")
          and norm(direct) == norm(proxied),
          "SSE through the front: the direct stream's bytes (%d; ids and "
          "created aside)" % len(direct), (proxied[:400], direct[:400]))
    # and over HTTP/2 (ALPN), as curl speaks it
    h2 = subprocess.run(
        ["curl", "-s", "--http2", "-N", "-o", "-", "-w", "\n%{http_version}",
         "--cacert", CERTS + "/ca.crt", "--cert", CERTS + "/alice.crt",
         "--key", CERTS + "/alice.key", "-H",
         "Content-Type: application/json", "-d", json.dumps(chat),
         "https://localhost:%d/v1/chat/completions" % PORT],
        capture_output=True, timeout=60).stdout
    h2_body, _, version = h2.rpartition(b"\n")
    check(version == b"2" and norm(h2_body) == norm(direct),
          "SSE through the front over HTTP/2: the same bytes",
          (version, h2_body[:400]))

    import grpc
    from grpc_tools import protoc

    out = tempfile.mkdtemp()
    check(protoc.main(["protoc", "-I" + os.path.dirname(PROTO),
                       "--python_out=" + out, "--grpc_python_out=" + out,
                       os.path.basename(PROTO)]) == 0,
          "grpcio-tools compiles grpc_service.proto")
    sys.path.insert(0, out)
    import grpc_service_pb2 as pb
    import grpc_service_pb2_grpc as pbg

    def creds(who, ca):
        def read(name):
            with open("%s/%s" % (CERTS, name), "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(
            read(ca + ".crt"), read(who + ".key") if who else None,
            read(who + ".crt") if who else None)

    via_front = pbg.GRPCInferenceServiceStub(grpc.secure_channel(
        "localhost:%d" % PORT, creds("alice", "ca")))
    direct = pbg.GRPCInferenceServiceStub(grpc.secure_channel(
        "127.0.0.1:%d" % (PORT + 1), creds("front-client", "fleet-ca"),
        options=[("grpc.ssl_target_name_override", "infer-instance")]))

    def request(model):
        r = pb.ModelInferRequest(model_name=model, id="fleet")
        t = r.inputs.add(name="input_ids", datatype="INT64", shape=[1, 5])
        t.contents.int64_contents.extend([1, 403, 407, 261, 378])
        return r

    a = via_front.ModelInfer(request("default"), timeout=30)
    # as the front calls it: the models alice may call in the header
    b = direct.ModelInfer(request("default"), timeout=30, metadata=[
        ("x-infer-allowed-models", "default premium")])
    raw = a.SerializeToString()
    check(raw == b.SerializeToString() and len(a.raw_output_contents[0])
          == 5 * 512 * 4,
          "gRPC ModelInfer through grpc_pass: the direct response's bytes "
          "(%d)" % len(raw))

    def code(stub, model):
        try:
            stub.ModelInfer(request(model), timeout=30)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    bob = pbg.GRPCInferenceServiceStub(grpc.secure_channel(
        "localhost:%d" % PORT, creds("bob", "ca")))
    anon = pbg.GRPCInferenceServiceStub(grpc.secure_channel(
        "localhost:%d" % PORT, creds(None, "ca")))
    check(code(bob, "premium") == grpc.StatusCode.PERMISSION_DENIED
          and code(bob, "default") == grpc.StatusCode.OK,
          "gRPC: bob may call default, premium is PERMISSION_DENIED")
    check(code(anon, "default") not in (grpc.StatusCode.OK, None),
          "gRPC: no client certificate, no answer (%s)"
          % code(anon, "default"))


def mtls():
    body = dict(PLAIN, model="premium")

    def as_(who, path="/v1/completions", b=body, **kw):
        conn = http.client.HTTPSConnection("localhost", PORT, timeout=30,
                                           context=tls(who))
        st, _, data = call(conn, path, b, **kw)
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data

    def refused(answer, code, param=None):
        st, b = answer
        return (st == 403 and isinstance(b, dict)
                and b["error"]["code"] == code
                and b["error"]["type"] == "invalid_request_error"
                and b["error"]["param"] == param
                and isinstance(b["error"]["message"], str))

    check(as_("alice")[0] == 200 and as_("bob", b=PLAIN)[0] == 200,
          "mTLS: alice may call premium, bob default")
    check(refused(as_("bob"), "model_not_allowed", "model"),
          "mTLS: bob's premium request: 403 model_not_allowed, OpenAI's "
          "shape", as_("bob"))
    check(refused(as_("bob", headers={"X-Infer-Allowed-Models": "*"}),
                  "model_not_allowed", "model"),
          "mTLS: bob naming his own models in the header changes nothing")
    check(refused(as_("carol", b=PLAIN), "model_not_allowed", "model"),
          "mTLS: carol, in no list, may call nothing")
    check(refused(as_(None), "certificate_required"),
          "mTLS: no client certificate: 403 certificate_required",
          as_(None))
    check(refused(as_("mallory"), "certificate_required"),
          "mTLS: alice's name from another CA: 403", as_("mallory"))
    st, _, data = call(instance_tls(1, "alice"), "/v1/completions", PLAIN)
    st2, _, data2 = call(instance_tls(1, "instance"), "/v1/completions",
                         PLAIN)
    st3, _, data3 = call(instance_tls(1, "front-client"), "/v1/models")
    check(st == 403 and b"peer_not_allowed" in data
          and st2 == 403 and b"peer_not_allowed" in data2 and st3 == 200,
          "mTLS: an instance answers only the front's certificate "
          "(a client's: %d, another instance's: %d, the front's: %d)"
          % (st, st2, st3), (data, data2))


def main():
    references()
    global STEP_BEGAN, STEP_LOG
    for step in (spread, kill9, sigstop, tiny_queue, no_engine, rolling,
                 same_bytes, mtls):
        t = time.monotonic()
        # each step begins with the whole fleet serving, so that what it
        # counts is its own doing, not a circuit the step before opened
        check(serving_all(), "%s: every instance serves through the front "
              "before it begins" % step.__name__)
        STEP_BEGAN = time.monotonic()
        STEP_LOG = os.path.getsize(DIR + "/front/logs/error.log")
        note("%s: the fleet settled in %.1f s" % (step.__name__,
                                                    STEP_BEGAN - t))
        step()
        note("%s took %.1f s" % (step.__name__,
                                 time.monotonic() - STEP_BEGAN))
    print("done %d" % checks)


main()

"""infer_metrics with two workers, read by prometheus_client's parser.

Usage: metrics_check.py HOST:PORT MASTER_PID

After a known set of requests (10 completions of 8 tokens, 2 errors, then
one stream the client cuts) every counter is what was sent, whichever worker
answers the scrape (both must answer some), the histograms count what they
must, and a reload (SIGHUP to the master) continues the counters.  Each
check prints "ok - ..." or "not ok - ..."; "done N" at the end.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

HOST, PORT = sys.argv[1].rsplit(':', 1)
PORT = int(PORT)
MASTER = int(sys.argv[2])
N = 0


def check(cond, name):
    global N
    N += 1
    print(('ok - ' if cond else 'not ok - ') + name, flush=True)
    return cond


def request(method, path, body=None, port=PORT):
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    c.request(method, path, body=body,
              headers={'Content-Type': 'application/json'} if body else {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


PROMTOOL = shutil.which('promtool')
LINTED = 0


def scrape():
    """(pid of the worker, content type, text, {family: family}); the text
    passes Debian's promtool check metrics when it is there."""
    global LINTED
    r, data = request('GET', '/metrics')
    text = data.decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    if PROMTOOL:
        lint = subprocess.run([PROMTOOL, 'check', 'metrics'], input=data,
                              capture_output=True)
        if lint.returncode != 0 or lint.stdout or lint.stderr:
            check(False, 'promtool check metrics: %s%s'
                  % (lint.stdout.decode(), lint.stderr.decode()))
        LINTED += 1
    return r.getheader('X-Pid'), r.getheader('Content-Type'), text, fams


def value(fams, family, sample, **labels):
    f = fams.get(family)
    if f is None:
        return None
    total = 0
    for s in f.samples:
        if s.name == sample and all(s.labels.get(k) == v
                                    for k, v in labels.items()):
            total += s.value
    return total


def scrape_all(want_pids=None, tries=200):
    """Scrapes until two workers (not in want_pids' complement) answered;
    returns {pid: (ctype, text, fams)} of the last scrape of each."""
    seen = {}
    for _ in range(tries):
        pid, ctype, text, fams = scrape()
        if want_pids is None or pid not in want_pids:
            seen[pid] = (ctype, text, fams)
        if len(seen) >= 2:
            break
    return seen


def counters(fams):
    """What must be equal whichever worker answers: every counter and
    histogram sample (gauges aside)."""
    out = {}
    for f in fams.values():
        if f.type in ('counter', 'histogram'):
            for s in f.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# ---- the workers are up, the zone is fresh ---------------------------------
seen = scrape_all()
check(len(seen) == 2, 'both workers answer scrapes (%d pids)' % len(seen))
old_pids = set(seen)
ctype, text, fams = next(iter(seen.values()))
check(ctype == 'text/plain; version=0.0.4', 'content type ' + repr(ctype))

families = {
    'infer_requests': 'counter', 'infer_request_errors': 'counter',
    'infer_prompt_tokens': 'counter', 'infer_generation_tokens': 'counter',
    'infer_preemptions': 'counter',
    'infer_prefix_cache_queries': 'counter',
    'infer_prefix_cache_hits': 'counter',
    'infer_num_requests_running': 'gauge',
    'infer_num_requests_waiting': 'gauge',
    'infer_kv_cache_blocks': 'gauge', 'infer_kv_cache_used_blocks': 'gauge',
    'infer_kv_cache_usage_ratio': 'gauge',
    'infer_time_to_first_token_seconds': 'histogram',
    'infer_inter_token_latency_seconds': 'histogram',
    'infer_e2e_request_latency_seconds': 'histogram',
    'infer_request_prompt_tokens': 'histogram',
    'infer_request_generation_tokens': 'histogram',
    'infer_request_queue_time_seconds': 'histogram',
    'infer_engine_step_duration_seconds': 'histogram',
    'infer_engine_step_tokens': 'histogram',
}
for name, kind in families.items():
    f = fams.get(name)
    check(f is not None and f.type == kind and f.documentation,
          '%s is a %s with HELP' % (name, kind))
types = [l for l in text.splitlines() if l.startswith('# TYPE ')]
helps = [l for l in text.splitlines() if l.startswith('# HELP ')]
check(len(types) == len(families) and len(helps) == len(families),
      'one HELP and one TYPE line per family (%d, %d)'
      % (len(helps), len(types)))
check(value(fams, 'infer_generation_tokens', 'infer_generation_tokens_total',
            model='tiny') == 0, 'a fresh zone counts nothing')

# ---- 10 completions of 8 tokens, 2 errors ----------------------------------
# Their prompts share their first 40 tokens or so: a worker that has served
# one finds its first two blocks in its prefix cache (16 tokens a block),
# and says so in usage.prompt_tokens_details.
prompt_tokens = completion_tokens = cached_tokens = 0
finishes = {}
for i in range(10):
    r, data = request('POST', '/v1/completions', json.dumps({
        'model': 'tiny', 'prompt': 'Once upon a time there was a little '
        'girl named Lily. ' * 3 + '%d' % i,
        'max_tokens': 8, 'temperature': 0}))
    body = json.loads(data)
    prompt_tokens += body['usage']['prompt_tokens']
    cached_tokens += body['usage'].get('prompt_tokens_details',
                                       {}).get('cached_tokens', 0)
    completion_tokens += body['usage']['completion_tokens']
    fr = body['choices'][0]['finish_reason']
    finishes[fr] = finishes.get(fr, 0) + 1
check(completion_tokens > 10, '10 completions made %d tokens'
      % completion_tokens)

r, _ = request('POST', '/v1/completions', '{"model": "tiny", "prompt": ')
check(r.status == 400, 'a body cut short is a 400')
r, _ = request('POST', '/v1/completions',
               json.dumps({'model': 'nosuch', 'prompt': 'x'}))
check(r.status == 404, 'an unknown model is a 404')

time.sleep(1.5)           # the gauges of both workers after their timers
seen = scrape_all()
check(len(seen) == 2, 'both workers answer again')
views = [counters(v[2]) for v in seen.values()]
check(views[0] == views[1], 'both workers report the same counters '
      '(%d samples)' % len(views[0]))
fams = next(iter(seen.values()))[2]


def expect(family, sample, want, what, **labels):
    got = value(fams, family, sample, **labels)
    check(got == want, '%s: %s (%s)' % (what, got, want))


n_req = 10
for fr in ('stop', 'length'):
    expect('infer_requests', 'infer_requests_total', finishes.get(fr, 0),
           'requests finished by ' + fr, model='tiny', route='openai',
           finish_reason=fr)
expect('infer_requests', 'infer_requests_total', n_req, 'requests in all',
       model='tiny')
expect('infer_request_errors', 'infer_request_errors_total', 1,
       'invalid_request errors', model='tiny', route='openai',
       kind='invalid_request')
expect('infer_request_errors', 'infer_request_errors_total', 1,
       'not_found errors', model='tiny', route='openai', kind='not_found')
expect('infer_request_errors', 'infer_request_errors_total', 2,
       'errors in all')
expect('infer_prompt_tokens', 'infer_prompt_tokens_total', prompt_tokens,
       'prompt tokens', model='tiny')
expect('infer_generation_tokens', 'infer_generation_tokens_total',
       completion_tokens, 'generated tokens', model='tiny')
expect('infer_preemptions', 'infer_preemptions_total', 0, 'preemptions',
       model='tiny')
# each request looked its prompt up once (no preemption): the queries are
# the prompt tokens, the hits what the usage said was cached; two workers
# and 10 requests: one worker served at least two, and hit
expect('infer_prefix_cache_queries', 'infer_prefix_cache_queries_total',
       prompt_tokens, 'prefix cache queries', model='tiny')
expect('infer_prefix_cache_hits', 'infer_prefix_cache_hits_total',
       cached_tokens, 'prefix cache hits', model='tiny')
check(cached_tokens >= 32 and cached_tokens % 16 == 0,
      'cached tokens in whole blocks, at least two (%d)' % cached_tokens)
for h in ('infer_time_to_first_token_seconds',
          'infer_e2e_request_latency_seconds',
          'infer_request_queue_time_seconds',
          'infer_request_prompt_tokens', 'infer_request_generation_tokens'):
    expect(h, h + '_count', n_req, h + ' counts every request', model='tiny')
    expect(h, h + '_bucket', n_req, h + ' +Inf bucket', model='tiny',
           le='+Inf')
expect('infer_inter_token_latency_seconds',
       'infer_inter_token_latency_seconds_count',
       completion_tokens - n_req, 'one inter-token gap per token but the '
       'first', model='tiny')
expect('infer_request_prompt_tokens', 'infer_request_prompt_tokens_sum',
       prompt_tokens, 'prompt length histogram sum', model='tiny')
expect('infer_request_generation_tokens',
       'infer_request_generation_tokens_sum', completion_tokens,
       'generation length histogram sum', model='tiny')
e2e = value(fams, 'infer_e2e_request_latency_seconds',
            'infer_e2e_request_latency_seconds_sum', model='tiny')
ttft = value(fams, 'infer_time_to_first_token_seconds',
             'infer_time_to_first_token_seconds_sum', model='tiny')
check(0 < ttft <= e2e < 60, 'latencies in seconds: ttft sum %s <= e2e sum %s'
      % (ttft, e2e))
queue = value(fams, 'infer_request_queue_time_seconds',
              'infer_request_queue_time_seconds_sum', model='tiny')
check(0 <= queue < ttft, 'queue time sum %s < ttft sum %s' % (queue, ttft))
# each request computes its prompt but what the prefix cache held, and
# every token it generated but the last; the requests ran one after the
# other, so no step mixed two
expect('infer_engine_step_tokens', 'infer_engine_step_tokens_sum',
       prompt_tokens - cached_tokens + completion_tokens - n_req,
       'the engine steps computed every prompt token not cached and every '
       "generated token but each request's last", model='tiny')
steps = value(fams, 'infer_engine_step_tokens',
              'infer_engine_step_tokens_count', model='tiny')
expect('infer_engine_step_duration_seconds',
       'infer_engine_step_duration_seconds_count', steps,
       'a duration for each of the %s steps' % steps, model='tiny')
expect('infer_engine_step_tokens', 'infer_engine_step_tokens_bucket',
       completion_tokens - n_req, "one token in each step but the prompts'",
       model='tiny', le='1')
step_s = value(fams, 'infer_engine_step_duration_seconds',
               'infer_engine_step_duration_seconds_sum', model='tiny')
check(steps == completion_tokens and 0 < step_s < e2e,
      '%s steps, one per generated token, took %s s of the %s s e2e'
      % (steps, step_s, e2e))
buckets = [s.value for s in fams['infer_request_generation_tokens'].samples
           if s.name.endswith('_bucket')]
check(buckets == sorted(buckets), 'buckets are cumulative')
check(value(fams, 'infer_request_generation_tokens',
            'infer_request_generation_tokens_bucket', model='tiny',
            le='5') == 0 and
      value(fams, 'infer_request_generation_tokens',
            'infer_request_generation_tokens_bucket', model='tiny',
            le='10') == finishes.get('length', 0),
      'requests of 8 tokens are in the le=10 bucket')

_, st = request('GET', '/stats')
blocks = json.loads(st)['models'][0]['kv_blocks']
expect('infer_kv_cache_blocks', 'infer_kv_cache_blocks', 2 * blocks,
       'KV blocks of both workers', model='tiny')
expect('infer_kv_cache_used_blocks', 'infer_kv_cache_used_blocks', 0,
       'no KV block used when idle', model='tiny')
expect('infer_num_requests_running', 'infer_num_requests_running', 0,
       'nothing running when idle', model='tiny')
expect('infer_num_requests_waiting', 'infer_num_requests_waiting', 0,
       'nothing waiting when idle', model='tiny')

# ---- a stream the client cuts ----------------------------------------------
# The server's socket buffer is small (sndbuf=4k) and so is the client's:
# a client that does not read stops the generation (infer_unsent_limit)
# long before its 500 tokens, and closing the connection cancels it.
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((HOST, PORT))
body = json.dumps({'model': 'tiny', 'prompt': [1], 'max_tokens': 500,
                   'temperature': 0, 'stream': True})
s.sendall(('POST /v1/completions HTTP/1.1\r\nHost: x\r\n'
           'Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s'
           % (len(body), body)).encode())
first = s.recv(1024)
time.sleep(1)
s.close()
check(b' 200 ' in first.split(b'\r\n')[0], 'the stream began')
time.sleep(1.5)
seen = scrape_all()
views = [counters(v[2]) for v in seen.values()]
check(len(views) == 2 and views[0] == views[1],
      'both workers report the same counters after the cut')
fams = next(iter(seen.values()))[2]
expect('infer_requests', 'infer_requests_total', 1,
       'the cut stream is cancelled', model='tiny', route='openai',
       finish_reason='cancelled')
expect('infer_requests', 'infer_requests_total', n_req + 1,
       'requests in all', model='tiny')
gen = value(fams, 'infer_generation_tokens', 'infer_generation_tokens_total',
            model='tiny')
check(completion_tokens < gen < completion_tokens + 500,
      'the cut stream made %d of its 500 tokens' % (gen - completion_tokens))
expect('infer_request_generation_tokens',
       'infer_request_generation_tokens_sum', gen,
       'generation length histogram sum', model='tiny')
expect('infer_e2e_request_latency_seconds',
       'infer_e2e_request_latency_seconds_count', n_req + 1,
       'e2e counts the cut stream', model='tiny')
before = views[0]

# ---- reload: the zone and its counters go on --------------------------------
os.kill(MASTER, signal.SIGHUP)
seen = {}
for _ in range(100):
    seen = scrape_all(want_pids=old_pids, tries=20)
    if len(seen) == 2:
        break
    time.sleep(0.2)
check(len(seen) == 2, 'two new workers after the reload')
views = [counters(v[2]) for v in seen.values()]
check(all(v == before for v in views),
      'the new workers report the counters from before the reload')
r, data = request('POST', '/v1/completions', json.dumps({
    'model': 'tiny', 'prompt': 'Once upon a time', 'max_tokens': 8,
    'temperature': 0}))
more = json.loads(data)['usage']['completion_tokens']
fams = scrape()[3]
expect('infer_requests', 'infer_requests_total', n_req + 2,
       'one more request after the reload', model='tiny')
expect('infer_generation_tokens', 'infer_generation_tokens_total',
       gen + more, 'its tokens are added', model='tiny')

if PROMTOOL:
    check(LINTED > 0, "promtool check metrics passed %d scrapes (%s)"
          % (LINTED, PROMTOOL))
else:
    print('# promtool not found (tools/deps.sh --test installs it): the '
          'scrapes were not linted', flush=True)

print('done %d' % N)

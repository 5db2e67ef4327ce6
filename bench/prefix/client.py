#!/usr/bin/env python3
"""Prefix cache benchmark client (bench/prefix.sh starts the server).

  client.py HOST:PORT ttft   - time to first token of a prompt whose
                               1024-token system part is cached vs not
  client.py HOST:PORT chat   - a multi-turn chat workload, each turn
                               resending the conversation, on the model
                               with the cache and on the one without

Models: "on" (prefix_cache=on) and "off" (prefix_cache=off), the same
directory.  Standard library only.  Prints markdown table rows.
"""
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time

host, port = sys.argv[1].split(':')
port = int(port)
VOCAB = int(os.environ.get("VOCAB", "32000"))  # the model's


def post(path, body, stream=False):
    c = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.monotonic()
    c.request('POST', path, json.dumps(body),
              {'Content-Type': 'application/json'})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit('%s: %d %s' % (path, r.status, r.read()[:300]))
    if not stream:
        data = json.loads(r.read())
        c.close()
        return data, time.monotonic() - t0
    first = None
    usage = None
    for line in r:
        line = line.strip()
        if not line.startswith(b'data: ') or line == b'data: [DONE]':
            continue
        ev = json.loads(line[6:])
        if first is None and ev.get('choices') and ev['choices'][0]['text']:
            first = time.monotonic() - t0
        if ev.get('usage'):
            usage = ev['usage']
    c.close()
    return usage, first


def ids(rng, n):
    return [rng.randrange(3, VOCAB) for _ in range(n)]


def ttft():
    rng = random.Random(1)
    system = ids(rng, 1024)

    def once(model, prompt):
        usage, first = post('/v1/completions', {
            'model': model, 'prompt': prompt, 'max_tokens': 4,
            'min_tokens': 4, 'temperature': 0, 'stream': True,
            'stream_options': {'include_usage': True}}, stream=True)
        return first, usage['prompt_tokens'], (usage.get(
            'prompt_tokens_details') or {}).get('cached_tokens', 0)

    # warm the "on" model's cache with the system prompt
    once('on', [1] + system + ids(rng, 32))
    rows = {'off': [], 'on, cold': [], 'on, cached': []}
    for _ in range(3):
        user = ids(rng, 32)
        rows['off'].append(once('off', [1] + system + user))
        # a system prompt the cache has never seen
        rows['on, cold'].append(once('on', [1] + ids(rng, 1024) + user))
        rows['on, cached'].append(once('on', [1] + system + user))
    med = {k: statistics.median(r[0] for r in v) for k, v in rows.items()}
    for k, v in rows.items():
        print('| %s | %d | %d | %s | %.3f | %.1fx |' % (
            k, v[0][1], v[0][2], ' '.join('%.3f' % r[0] for r in v),
            med[k], med[k] and med['off'] / med[k]))


def chat():
    """C conversations at once, T turns each: every turn sends the whole
    conversation so far (system, then user and assistant turns) and
    generates G tokens."""
    C, T, G = 2, 4, 16
    words = ('the cat sat on a mat while the dog ran after a ball in '
             'the garden and the sun was shining over the hills ').split()

    def text(rng, n):
        return ' '.join(rng.choice(words) for _ in range(n))

    results = {}
    for model in ('off', 'on'):
        stats = {'prompt': 0, 'cached': 0, 'gen': 0}
        lock = threading.Lock()

        def conversation(k):
            rng = random.Random(100 + k)
            conv = 'System: ' + text(rng, 200) + '\n'
            for _ in range(T):
                conv += 'User: ' + text(rng, 20) + '\nAssistant:'
                data, _ = post('/v1/completions', {
                    'model': model, 'prompt': conv, 'max_tokens': G,
                    'min_tokens': G, 'temperature': 0})
                conv += data['choices'][0]['text'] + '\n'
                u = data['usage']
                with lock:
                    stats['prompt'] += u['prompt_tokens']
                    stats['cached'] += (u.get('prompt_tokens_details')
                                        or {}).get('cached_tokens', 0)
                    stats['gen'] += u['completion_tokens']

        t0 = time.monotonic()
        th = [threading.Thread(target=conversation, args=(k,))
              for k in range(C)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        wall = time.monotonic() - t0
        results[model] = wall
        print('| %s | %d x %d | %d | %d | %d | %.1f | %.2f | %.1f |' % (
            model, C, T, stats['prompt'], stats['cached'], stats['gen'],
            wall, stats['gen'] / wall, C * T / wall * 60))
    print('speed-up (wall time off / on): %.2fx'
          % (results['off'] / results['on']))


{'ttft': ttft, 'chat': chat}[sys.argv[2]]()

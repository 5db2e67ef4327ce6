#!/usr/bin/env bash
# Serving benchmark: nginx + ngx_http_infer_module against the seed's
# architecture (FastAPI + uvicorn + PyTorch, bench/peer/server.py), both on
# the CPU with the same model and the same compute threads, on loopback.
#
#   bench/serve.sh [MODEL_DIR]          (default ../shared/models/stories260K)
#
# Environment (defaults in brackets):
#   THREADS [1]         compute threads of each server
#   DURATION [10]       seconds per measured run
#   CONCS ["1 16 64"]   concurrencies
#   TOKENS ["1 32"]     max_tokens values
#   PROMPT ["Once upon a time"]
#   SERVER_CPUS [0]     CPUs the servers are pinned to (taskset -c)
#   CLIENT_CPUS [1]     CPUs wrk, h2load, perf and the TTFT client run on
#   BUILD [build]       where `make` puts the module
#   PYTHON [.venv/bin/python]   torch, tokenizers, fastapi, uvicorn
#   OUT [bench/results] where serve.tsv, serve-raw.log, serve.md and
#                       latency.png are written
#
# What it does: checks the peer's model against expected_greedy_200.txt,
# derives the expected completion of PROMPT for each max_tokens (float32 and
# float64 must agree), checks that both servers return exactly that text,
# then drives both with wrk (HTTP/1.1; a Lua hook counts every response whose
# text differs), ours with h2load (HTTP/2 h2c prior knowledge, one connection
# multiplexing CONC streams) and ours with a streaming client for
# time-to-first-token.  CPU seconds come from /proc/PID/stat (utime+stime of
# every server process) read at idle before and after each run.  With
# max_tokens 1 the CPU time outside the forward pass is measured: for the
# peer from its own /stats (thread CPU time around the model call), for ours
# from perf samples with call chains (bench/serve/perf_split.py).
# Not part of `make test`; takes about 6 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

model=$(realpath "${1:-../shared/models/stories260K}")
threads=${THREADS:-1}
duration=${DURATION:-10}
concs=${CONCS:-1 16 64}
tokens_list=${TOKENS:-1 32}
prompt=${PROMPT:-Once upon a time}
server_cpus=${SERVER_CPUS:-0}
client_cpus=${CLIENT_CPUS:-1}
build=${BUILD:-build}
python=${PYTHON:-.venv/bin/python}
out=${OUT:-bench/results}
port_h1=${PORT_H1:-28480}
port_h2=${PORT_H2:-28481}
port_peer=${PORT_PEER:-28401}
warmup=2
ttft_seconds=5
perf_seconds=3
hz=$(getconf CLK_TCK)

mkdir -p "$out"
work=$(mktemp -d /tmp/serve.XXXXXX)
tsv=$out/serve.tsv
raw=$out/serve-raw.log
nginx_pid=
peer_pid=

log() { printf '%s %s\n' "$(date -u +%T)" "$*" >&2; }

stop_servers() {
    local rc=$? i
    if [ "$rc" -ne 0 ] && [ -d "$work/logs" ]; then
        tail -n 20 "$work/logs/"* >&2 || true
    fi
    if [ -n "$nginx_pid" ]; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        for i in $(seq 50); do
            kill -0 "$nginx_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$nginx_pid" 2>/dev/null || true
    fi
    if [ -n "$peer_pid" ]; then
        kill -TERM "$peer_pid" 2>/dev/null || true
        wait "$peer_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_servers EXIT

log "building the module (make BUILD=$build module)"
make -s BUILD="$build" module >/dev/null
# A private copy: a rebuild copies over the .so in place, which would
# change the code under a running nginx.
cp "$build/ngx_http_infer_module.so" "$work/ngx_http_infer_module.so"
module=$work/ngx_http_infer_module.so

# ---- expected outputs ---------------------------------------------------

log "peer model vs expected_greedy_200.txt"
"$python" bench/peer/check.py "$model" verify >&2

declare -A body expect
for n in $tokens_list; do
    expect[$n]=$("$python" bench/peer/check.py "$model" expect "$prompt" "$n")
    body[$n]=$("$python" -c 'import json,sys
print(json.dumps({"model": "tiny", "prompt": sys.argv[1],
                  "max_tokens": int(sys.argv[2]), "temperature": 0}))' \
               "$prompt" "$n")
    log "max_tokens $n: expected text ${expect[$n]}"
done

# ---- servers --------------------------------------------------------------

for p in "$port_h1" "$port_h2" "$port_peer"; do
    if ss -Hltn "sport = :$p" | grep -q .; then
        log "port $p is in use (set PORT_H1, PORT_H2, PORT_PEER)"
        exit 1
    fi
done
mkdir -p "$work/logs"
cat >"$work/nginx.conf" <<EOF
load_module $module;
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/body;
    keepalive_requests 100000000;
    infer_model tiny $model backend=cpu threads=$threads;
    server {
        listen 127.0.0.1:$port_h1;
        listen 127.0.0.1:$port_h2 http2;
        location /v1/ { infer_openai tiny; }
        location /healthz { infer_health; }
    }
}
EOF
taskset -c "$server_cpus" /usr/sbin/nginx -p "$work" -c "$work/nginx.conf" \
    2>>"$work/logs/stderr.log" &
nginx_pid=$!
taskset -c "$server_cpus" "$python" bench/peer/server.py "$model" \
    --model-name tiny --port "$port_peer" --threads "$threads" &
peer_pid=$!

for i in $(seq 150); do
    if curl -sf -m 2 "http://127.0.0.1:$port_h1/healthz" >/dev/null &&
       curl -sf -m 2 "http://127.0.0.1:$port_peer/stats" >/dev/null; then
        break
    fi
    if [ "$i" -eq 150 ] || ! kill -0 "$nginx_pid" 2>/dev/null ||
       ! kill -0 "$peer_pid" 2>/dev/null; then
        cat "$work/logs/"* >&2
        log "servers did not start"
        exit 1
    fi
    sleep 0.2
done
ours_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
worker_pid=$(pgrep -P "$nginx_pid" | head -1)
log "nginx $nginx_pid (worker $worker_pid), peer $peer_pid"

completion_text() {
    "$python" -c 'import json,sys
print(json.dumps(json.load(sys.stdin)["choices"][0]["text"]))'
}

for n in $tokens_list; do
    for url in "h1 http://127.0.0.1:$port_h1" "h2 http://127.0.0.1:$port_h2" \
               "peer http://127.0.0.1:$port_peer"; do
        set -- $url
        flag=
        [ "$1" != h2 ] || flag=--http2-prior-knowledge
        got=$(curl -sf -m 10 $flag "$2/v1/completions" \
                  -H 'Content-Type: application/json' -d "${body[$n]}" |
              completion_text) || true
        if [ "$got" != "${expect[$n]}" ]; then
            log "MISMATCH $1 max_tokens $n: got $got, want ${expect[$n]}"
            exit 1
        fi
    done
    log "max_tokens $n: ours (h1, h2) and the peer return the expected text"
done

# ---- measurement helpers ---------------------------------------------------

# utime + stime, in clock ticks, of the given processes (all threads).
cpu_ticks() {
    local p t=0
    for p in "$@"; do
        t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$t"
}

# Waits (at most 30 s) until the processes stop using CPU, so a run's CPU
# seconds include none of the previous run's leftovers.
wait_idle() {
    local i a b
    a=$(cpu_ticks "$@")
    for i in $(seq 100); do
        sleep 0.3
        b=$(cpu_ticks "$@")
        [ $((b - a)) -gt 1 ] || return 0
        a=$b
    done
    log "warning: servers still busy after 30 s"
}

peer_stat() {
    curl -sf -m 10 "http://127.0.0.1:$port_peer/stats" |
        "$python" -c 'import json,sys; s=json.load(sys.stdin)
print(s["requests"], "%.6f" % s["forward_cpu_s"])'
}

result_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

printf 'server\tproto\ttokens\tconc\trequests\trps\tp50_us\tp99_us\tbad\terrors\tcpu_s\tcompleted\tfwd_cpu_s\n' >"$tsv"
: >"$raw"

# run_wrk NAME PORT TOKENS CONC
run_wrk() {
    local name=$1 port=$2 n=$3 c=$4 pids t0 t1 s0 s1 res completed fwd
    pids=$ours_pids
    [ "$name" = ours ] || pids=$peer_pid
    export SERVE_BODY=${body[$n]} SERVE_EXPECT=${expect[$n]}
    taskset -c "$client_cpus" wrk -t1 -c"$c" -d"${warmup}s" --timeout 60s \
        -s bench/serve/completions.lua "http://127.0.0.1:$port" >/dev/null
    wait_idle $pids
    t0=$(cpu_ticks $pids)
    [ "$name" = ours ] || s0=$(peer_stat)
    res=$(taskset -c "$client_cpus" wrk -t1 -c"$c" -d"${duration}s" \
              --timeout 60s --latency -s bench/serve/completions.lua \
              "http://127.0.0.1:$port")
    wait_idle $pids
    t1=$(cpu_ticks $pids)
    printf '### wrk %s max_tokens=%s c=%s\n%s\n\n' "$name" "$n" "$c" \
        "$res" >>"$raw"
    res=$(grep '^RESULT' <<<"$res")
    # Completed requests: wrk's count for ours (a request wrk abandons at
    # the end is cancelled); the peer's own count, because it finishes the
    # requests wrk abandons and their CPU time is in t1 - t0.
    completed=$(result_field requests "$res")
    fwd=0
    if [ "$name" = peer ]; then
        s1=$(peer_stat)
        completed=$(( ${s1% *} - ${s0% *} ))
        fwd=$(awk -v a="${s0#* }" -v b="${s1#* }" 'BEGIN{printf "%.6f", b - a}')
    fi
    printf '%s\th1\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$name" "$n" "$c" "$(result_field requests "$res")" \
        "$(result_field rps "$res")" "$(result_field p50_us "$res")" \
        "$(result_field p99_us "$res")" "$(result_field bad "$res")" \
        "$(result_field errors "$res")" \
        "$(awk -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN{printf "%.2f", t / hz}')" \
        "$completed" "$fwd" >>"$tsv"
    log "wrk $name max_tokens=$n c=$c: $res"
}

# run_h2load TOKENS CONC: one connection, CONC concurrent streams.
run_h2load() {
    local n=$1 c=$2 t0 t1 res rps ok bad pct
    printf '%s' "${body[$n]}" >"$work/body.json"
    h2() {
        taskset -c "$client_cpus" h2load -c1 -m"$c" -D "$1" \
            -d "$work/body.json" -H 'Content-Type: application/json' "${@:2}" \
            "http://127.0.0.1:$port_h2/v1/completions"
    }
    h2 "$warmup" >/dev/null
    wait_idle $ours_pids
    t0=$(cpu_ticks $ours_pids)
    rm -f "$work/h2.log"
    res=$(h2 "$duration" --log-file="$work/h2.log")
    wait_idle $ours_pids
    t1=$(cpu_ticks $ours_pids)
    printf '### h2load ours max_tokens=%s c=%s\n%s\n\n' "$n" "$c" "$res" >>"$raw"
    rps=$(sed -n 's/^finished in [0-9.]*s, \([0-9.]*\) req\/s.*/\1/p' <<<"$res")
    ok=$(awk '$2 == 200' "$work/h2.log" | wc -l)
    bad=$(awk '$2 != 200' "$work/h2.log" | wc -l)
    bad=$((bad + $(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' <<<"$res")))
    pct=$(awk '$2 == 200 {print $3}' "$work/h2.log" | sort -n |
          awk '{v[NR] = $1} END {
              i50 = int(NR * 0.50 + 0.5); i99 = int(NR * 0.99 + 0.5);
              if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1;
              print v[i50], v[i99] }')
    printf 'ours\th2\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t0\t%s\t%s\t0\n' \
        "$n" "$c" "$ok" "$rps" "${pct% *}" "${pct#* }" "$bad" \
        "$(awk -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN{printf "%.2f", t / hz}')" \
        "$ok" >>"$tsv"
    log "h2load ours max_tokens=$n c=$c: $rps req/s, p50/p99 $pct us, bad $bad"
}

# check_h2_bodies TOKENS CONC: h2load checks status codes only, so CONC*10
# more requests go through nghttp -m, multiplexed on one h2c connection, and
# every body's text is compared with the expected one.  (curl 7.88 cannot
# reuse a prior-knowledge h2c connection to nginx 1.22: "Error in the HTTP2
# framing layer" on the second request, with or without our module.)
check_h2_bodies() {
    local n=$1 c=$2 total=$(($2 * 10)) good res
    printf '%s' "${body[$n]}" >"$work/body.json"
    taskset -c "$client_cpus" timeout 120 nghttp -m "$total" \
        -H 'content-type: application/json' -d "$work/body.json" \
        "http://127.0.0.1:$port_h2/v1/completions" \
        >"$work/h2-bodies.txt" 2>&1 || true
    good=$(grep -oF "\"text\":${expect[$n]}," "$work/h2-bodies.txt" | wc -l)
    res="{\"requests\": $total, \"bad\": $((total - good))}"
    printf 'h2check\th2\t%s\t%s\t%s\n' "$n" "$c" "$res" >>"$work/h2check.tsv"
    log "h2 bodies max_tokens=$n c=$c: $res"
}

# run_perf CONC: share of the nginx worker's CPU samples inside the forward
# pass, under the max_tokens 1 wrk load.
run_perf() {
    local c=$1 n=1 res load
    export SERVE_BODY=${body[$n]} SERVE_EXPECT=${expect[$n]}
    taskset -c "$client_cpus" wrk -t1 -c"$c" -d"$((perf_seconds + 2))s" \
        --timeout 60s -s bench/serve/completions.lua \
        "http://127.0.0.1:$port_h1" >/dev/null &
    load=$!
    sleep 1
    taskset -c "$client_cpus" timeout -s INT "$perf_seconds" \
        perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 \
        -p "$worker_pid" -o "$work/perf.data" >/dev/null 2>&1 || true
    wait "$load"
    res=$(taskset -c "$client_cpus" perf script -i "$work/perf.data" \
              -F tid,ip,sym 2>/dev/null |
          "$python" bench/serve/perf_split.py --main "$worker_pid")
    rm -f "$work/perf.data"
    printf 'perf\th1\t%s\t%s\t%s\n' "$n" "$c" "$res" >>"$work/perf.tsv"
    log "perf ours max_tokens=$n c=$c: $res"
}

# ---- runs -----------------------------------------------------------------

# Other work on the machine shows up in the latencies; it is recorded.
load_start=$(cut -d' ' -f1 /proc/loadavg)

: >"$work/h2check.tsv"
for n in $tokens_list; do
    for c in $concs; do
        run_wrk ours "$port_h1" "$n" "$c"
        run_wrk peer "$port_peer" "$n" "$c"
        run_h2load "$n" "$c"
        check_h2_bodies "$n" "$c"
    done
done

: >"$work/perf.tsv"
if command -v perf >/dev/null && [[ " $tokens_list " == *" 1 "* ]]; then
    for c in $concs; do
        run_perf "$c"
    done
else
    log "no perf or no max_tokens 1: skipping the forward-pass split"
fi

: >"$work/ttft.tsv"
n_ttft=$(awk '{print $NF}' <<<"$tokens_list")
for c in $concs; do
    res=$(taskset -c "$client_cpus" "$python" bench/serve/ttft.py 127.0.0.1 \
              "$port_h1" "${body[$n_ttft]}" "${expect[$n_ttft]}" "$c" \
              "$ttft_seconds")
    printf 'ttft\th1\t%s\t%s\t%s\n' "$n_ttft" "$c" "$res" >>"$work/ttft.tsv"
    log "ttft ours max_tokens=$n_ttft c=$c: $res"
done
cat "$work/perf.tsv" "$work/ttft.tsv" "$work/h2check.tsv" \
    >"$out/serve-extra.tsv"

# ---- report -----------------------------------------------------------------

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit" \
         "$(git rev-parse --short HEAD)"
    echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p')"
    echo "nginx: $(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //'), python:" \
         "$("$python" -c 'import sys, torch, fastapi, uvicorn
print(sys.version.split()[0], "torch", torch.__version__,
      "fastapi", fastapi.__version__, "uvicorn", uvicorn.__version__)')"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}'), h2load:" \
         "$(h2load --version | awk '{print $2}')"
    echo "settings: THREADS=$threads DURATION=$duration CONCS=\"$concs\"" \
         "TOKENS=\"$tokens_list\" PROMPT=\"$prompt\"" \
         "SERVER_CPUS=$server_cpus CLIENT_CPUS=$client_cpus"
    echo "load average (1 min) at start: $load_start, at end:" \
         "$(cut -d' ' -f1 /proc/loadavg)"
} >"$out/serve-env.txt"
"$python" bench/serve/report.py "$out" >"$out/serve.md"
gnuplot -e "datadir='$out'" bench/serve/latency.gp
log "wrote $out/serve.md, $out/latency.png, $tsv, $raw"
cat "$out/serve.md"

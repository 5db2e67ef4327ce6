#!/usr/bin/env bash
# The cost of infer_metrics on the hot path: requests/s of /v1/completions
# at max_tokens 1 with CONC HTTP/1.1 connections (h2load --h1), on one nginx
# with one worker, without infer_metrics in the configuration (no zone: the
# counting code returns at once) and with it (every event counted in the
# shared zone), alternated ROUNDS times so that the machine's drift shows.
# Besides requests/s (which other load on the machine moves), the worker's
# CPU time per request (user + system of all its threads, engine included,
# from /proc), which it moves much less.
#
#   bench/metrics.sh [MODEL_DIR]        (default ../shared/models/stories260K)
#
# Environment (defaults in brackets): REQUESTS [5000] per run after 500
# unmeasured, CONC [64], ROUNDS [2], THREADS [1], SERVER_CPUS [0],
# CLIENT_CPUS [1], BUILD [build], PORT [28520], OUT [bench/results].
# Writes OUT/metrics.tsv (round, metrics, requests/s, non-2xx, worker CPU
# us per request) and prints it; the last lines are the differences of the
# medians.
set -euo pipefail
cd "$(dirname "$0")/.."

model=$(realpath "${1:-../shared/models/stories260K}")
requests=${REQUESTS:-5000}
conc=${CONC:-64}
rounds=${ROUNDS:-2}
threads=${THREADS:-1}
server_cpus=${SERVER_CPUS:-0}
client_cpus=${CLIENT_CPUS:-1}
build=${BUILD:-build}
port=${PORT:-28520}
out=${OUT:-bench/results}

mkdir -p "$out"
work=$(mktemp -d /tmp/metricsbench.XXXXXX)
nginx_pid=
cleanup() {
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
    sleep 0.5
    rm -rf "$work"
}
trap cleanup EXIT

printf '{"model":"tiny","prompt":"Once upon a time","max_tokens":1,'\
'"temperature":0}' > "$work/body.json"

start() {       # $1: extra location lines
    mkdir -p "$work/logs"
    cat > "$work/nginx.conf" <<EOC
load_module $(realpath "$build/ngx_http_infer_module.so");
worker_processes 1;
daemon on;
error_log $work/logs/error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/body;
    infer_model tiny $model threads=$threads max_queue=1024;
    server {
        listen 127.0.0.1:$port backlog=1024;
        location /v1/ { infer_openai tiny; }
        $1
    }
}
EOC
    taskset -c "$server_cpus" /usr/sbin/nginx -p "$work/" -c "$work/nginx.conf"
    for _ in $(seq 100); do
        [ -s "$work/nginx.pid" ] && curl -s -o /dev/null \
            "http://127.0.0.1:$port/v1/models" && break
        sleep 0.1
    done
    nginx_pid=$(cat "$work/nginx.pid")
}

stop() {
    kill -QUIT "$nginx_pid"
    for _ in $(seq 100); do kill -0 "$nginx_pid" 2>/dev/null || break;
        sleep 0.1; done
    nginx_pid=
    rm -f "$work/nginx.pid"
}

load() {        # prints requests/s and the count of non-2xx
    local n=$1 o
    o=$(taskset -c "$client_cpus" h2load --h1 -n "$n" -c "$conc" \
        -d "$work/body.json" -H 'Content-Type: application/json' \
        "http://127.0.0.1:$port/v1/completions")
    awk '/^finished in/ { gsub(",", ""); rps = $4 }
         /^status codes:/ { gsub(",", ""); bad = $5 + $7 + $9 }
         END { print rps "\t" bad }' <<< "$o"
}

cpu_ticks() {   # user + system clock ticks of the worker, all its threads
    local w
    w=$(pgrep -P "$nginx_pid" | head -1)
    awk '{ print $14 + $15 }' "/proc/$w/stat"
}

printf 'round\tmetrics\treq_per_s\tnon_2xx\tcpu_us_per_req\n' \
    > "$out/metrics.tsv"
for r in $(seq "$rounds"); do
    for m in off on; do
        if [ "$m" = on ]; then
            start 'location = /metrics { infer_metrics; }'
        else
            start ''
        fi
        load 500 > /dev/null
        t0=$(cpu_ticks)
        res=$(load "$requests")
        t1=$(cpu_ticks)
        printf '%s\t%s\t%s\t%.1f\n' "$r" "$m" "$res" \
            "$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $requests" \
               | bc -l)" >> "$out/metrics.tsv"
        if [ "$m" = on ]; then
            curl -s "http://127.0.0.1:$port/metrics" \
                | grep -E '^infer_requests_total' >&2
        fi
        stop
    done
done

cat "$out/metrics.tsv"
awk -F'\t' 'NR > 1 { v[$2] = v[$2] " " $3; c[$2] = c[$2] " " $5 }
    function med(s,   a, n, i, j, t) {
        n = split(s, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END { off = med(v["off"]); on = med(v["on"])
          printf "median off %.1f on %.1f req/s: %+.2f%%\n", off, on,
                 (on - off) / off * 100
          off = med(c["off"]); on = med(c["on"])
          printf "median off %.1f on %.1f worker CPU us/request: %+.2f%%\n",
                 off, on, (on - off) / off * 100 }' "$out/metrics.tsv"

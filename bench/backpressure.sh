#!/usr/bin/env bash
# A client that does not read: one HTTP/2 connection whose stream windows
# are 1 byte (SETTINGS_INITIAL_WINDOW_SIZE), 128 streaming completions of
# 500 tokens each, nothing read until generation stops (paused, or all
# done; at most 60 s).  Reports the worker's RSS growth
# and the tokens generated, with infer_unsent_limit at its default (64k)
# and at 1024m (no backpressure, how the module behaved before it had one).
# The same 128 streams are first run once with a client that reads
# (h2load), so that the KV cache pages they need are already resident and
# the growth measured is the buffered output.
#   bench/backpressure.sh            (after make; loopback only, ~30 s)
set -euo pipefail
cd "$(dirname "$0")/.."

root=$PWD/build/bench-backpressure
port=${PORT:-18480}
model=${MODEL:-$(cd ../shared/models/stories260K && pwd)}

run() {
    local limit=$1
    rm -rf "$root" && mkdir -p "$root/logs" "$root/conf"
    cat > "$root/conf/nginx.conf" <<_EOC_
load_module ${MODULE:-$PWD/build/ngx_http_infer_module.so};
worker_processes 1;

error_log $root/logs/error.log warn;
pid $root/logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $root/body;
    infer_model tiny $model threads=1 max_seqs=128 max_queue=512;
    server {
        listen 127.0.0.1:$port http2;
        http2_max_concurrent_streams 256;
        infer_unsent_limit $limit;
        location /v1/ { infer_openai tiny; }
        location = /stats { infer_stats; }
    }
}
_EOC_
    /usr/sbin/nginx -p "$root/" -c "$root/conf/nginx.conf" -e "$root/logs/error.log"
    sleep 1
    printf '{"model":"tiny","prompt":[1],"max_tokens":500,"temperature":0,"stream":true}' \
        > "$root/body.json"
    h2load -n 128 -c 1 -m 128 -d "$root/body.json" \
        "http://127.0.0.1:$port/v1/completions" | grep -E '^requests:'
    perl bench/backpressure/client.pl "$port" "$limit" \
        "$(cat "$root/logs/nginx.pid")"
    /usr/sbin/nginx -p "$root/" -c "$root/conf/nginx.conf" -s quit
    sleep 1
}

echo "date: $(date -u +%FT%TZ) commit: $(git rev-parse --short HEAD)"
run 64k
run 1024m

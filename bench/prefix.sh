#!/usr/bin/env bash
# Prefix cache benchmark (issue 18) on the CPU: nginx with the module and
# two models from one directory, "on" (prefix_cache=on) and "off"
# (prefix_cache=off); bench/prefix/client.py measures the time to first
# token of a prompt whose 1024-token system part is cached vs not, and a
# multi-turn chat workload (each turn resends the conversation) on both.
#
#   bench/prefix.sh MODEL_DIR [ttft|chat|both]
#
# Environment: THREADS [2], DTYPE [bf16], PORT [5240], PYTHON [python3],
# VOCAB [32000] (the model's: the system prompts are random ids).
# Prints markdown rows for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(cd "${1:?usage: bench/prefix.sh MODEL_DIR [ttft|chat|both]}" && pwd)
what=${2:-both}
threads=${THREADS:-2}
dtype=${DTYPE:-bf16}
port=${PORT:-5240}
python=${PYTHON:-python3}
root=$(mktemp -d /tmp/infer-prefix-bench.XXXXXX)
mkdir -p "$root/logs"
cat > "$root/nginx.conf" <<_EOC_
load_module $PWD/build/ngx_http_infer_module.so;
worker_processes 1;
daemon on;
error_log $root/logs/error.log notice;
pid $root/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $root/body;
    infer_model on  $model threads=$threads dtype=$dtype kv_cache=512m;
    infer_model off $model threads=$threads dtype=$dtype kv_cache=512m prefix_cache=off;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { infer_openai on off; }
        location = /stats { infer_stats; }
    }
}
_EOC_
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
/usr/sbin/nginx -p "$root/" -c "$root/nginx.conf"
trap 'kill -QUIT $(cat "$root/nginx.pid"); sleep 1; rm -rf "$root"' EXIT
for _ in $(seq 600); do
    curl -sf "127.0.0.1:$port/stats" 2>/dev/null | grep -q '"name":"off"' && break
    sleep 0.5
done
grep -h 'loaded from' "$root/logs/error.log" | sed 's/.*infer_model/infer_model/'
if [ "$what" != chat ]; then
    echo '| model | prompt tokens | cached | TTFT of 3 runs (s) | median (s) | off / this |'
    echo '|---|---:|---:|---|---:|---:|'
    "$python" bench/prefix/client.py "127.0.0.1:$port" ttft
fi
if [ "$what" != ttft ]; then
    echo '| model | conversations x turns | prompt tokens | cached | generated | wall (s) | generated tok/s | turns/min |'
    echo '|---|---:|---:|---:|---:|---:|---:|---:|'
    "$python" bench/prefix/client.py "127.0.0.1:$port" chat
fi

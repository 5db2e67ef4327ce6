#!/usr/bin/env bash
# Soak: nginx with the module serving stories260K on two workers, driven by
# bench/soak/client.py on loopback: REQUESTS completions (HTTP/1.1 and h2c,
# streaming or not, CUT of them cut mid-response) with `nginx -s reload`
# every RELOAD s, then QUIET more without reloads.  Passes when every
# completed response is the exact greedy text, no worker crashed, every
# worker ends idle with all KV blocks free and the phase-2 workers' RSS is
# flat.  Not part of `make test` or CI.
#
#   bench/soak.sh [client options]     (bench/soak/client.py --help)
#
# Environment (defaults in brackets): BUILD [build], PORT [28640] (h2c on
# PORT+1), REQUESTS [10000], QUIET [5000], CUT [0.3], RELOAD [2],
# OUT [bench/out/soak]: nginx's prefix, its error.log and report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${BUILD:-build}
port=${PORT:-28640}
out=${OUT:-bench/out/soak}
model=$(realpath ../shared/models/stories260K)

/usr/bin/python3 -c 'import h2' 2>/dev/null || {
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y --no-install-recommends python3-h2
}
make -j"$(nproc)" BUILD="$build" module >/dev/null

rm -rf "$out"
mkdir -p "$out/conf" "$out/logs"
prefix=$(realpath "$out")
cat > "$out/conf/nginx.conf" <<_EOC_
load_module $(realpath "$build/ngx_http_infer_module.so");
worker_processes  2;
error_log         logs/error.log info;
pid               logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log  off;
    client_body_temp_path  body;
    infer_model tiny $model threads=1;
    server {
        listen 127.0.0.1:$port;
        listen 127.0.0.1:$((port + 1)) http2;
        location /v1/ { infer_openai tiny; }
        location = /stats { infer_stats; }
    }
}
_EOC_

nginx=(/usr/sbin/nginx -p "$prefix/" -c conf/nginx.conf)
stop_nginx() {
    local pid i
    pid=$(cat "$out/logs/nginx.pid" 2>/dev/null) || return 0
    kill -QUIT "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "soak: nginx $pid did not stop in 10 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
}
trap stop_nginx EXIT
"${nginx[@]}"
for i in $(seq 100); do
    curl -sf -o /dev/null "127.0.0.1:$port/stats" && break
    sleep 0.1
done

echo "soak: $(date -u '+%F %T') UTC, $(git rev-parse --short HEAD)" \
     "$(git diff --quiet HEAD -- src ngx_http_infer_module.c config \
        || echo '+ uncommitted src'), $(nproc) CPUs" | tee "$out/report.txt"
rc=0
timeout 3600 /usr/bin/python3 bench/soak/client.py \
    --port-h1 "$port" --port-h2 $((port + 1)) \
    --nginx-cmd "${nginx[*]}" --pid-file "$out/logs/nginx.pid" \
    --error-log "$out/logs/error.log" \
    --expected "$model/expected_greedy_200.txt" \
    --requests "${REQUESTS:-10000}" --quiet "${QUIET:-5000}" \
    --cut "${CUT:-0.3}" --reload "${RELOAD:-2}" "$@" \
    | tee -a "$out/report.txt" || rc=$?
echo "soak: logs in $out/logs, report in $out/report.txt"
exit "$rc"

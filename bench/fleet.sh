#!/usr/bin/env bash
# The front's cost: one instance of the fleet (tools/fleet.sh start 1)
# driven by bench/fleet/load.c at C connections with max_tokens 1, four
# ways, in one run, alternating ROUNDS times:
#   tcp     straight to the instance, plain HTTP/1.1 on a loopback port
#           (a listener added for the benchmark only)
#   unix    straight to it over its unix socket
#   mtls    straight to its TLS port with the front's certificate (and
#           the header the front adds)
#   front   through the front (client TLS, least_conn, keep-alive mTLS
#           pool) to that same instance
#
#   bench/fleet.sh                writes bench/results/fleet.tsv
#
# Environment (defaults in brackets): CONNS [64], DURATION [10] seconds per
# measured run after WARMUP [2], ROUNDS [2], FLEET_PORT [5170], BUILD
# [build], MODEL [../shared/models/stories260K], FLEET_MODEL_ARGS
# [threads=1].  Needs libssl-dev (Debian) for bench/fleet/load.c; not part
# of make test.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=${CONNS:-64}
duration=${DURATION:-10}
warmup=${WARMUP:-2}
rounds=${ROUNDS:-2}
port=${FLEET_PORT:-5170}
build=${BUILD:-build}
out=${OUT:-bench/results}
export FLEET_DIR=${FLEET_DIR:-/tmp/infer-fleet-bench} FLEET_PORT=$port
export MODULE=${MODULE:-$build/ngx_http_infer_module.so}
plain=$((port + 9))
dir=$FLEET_DIR
c=$dir/certs
body='{"model":"default","prompt":"Once upon a time","max_tokens":1,"temperature":0}'

mkdir -p "$out" "$build"
cc -O2 -Wall -Wextra -o "$build/fleet-load" bench/fleet/load.c \
    -lssl -lcrypto -lpthread
trap 'tools/fleet.sh stop >/dev/null' EXIT
tools/fleet.sh start 1 >/dev/null
echo "listen 127.0.0.1:$plain;" >> "$dir/i1/conf/server.conf"
kill -HUP "$(cat "$dir/i1/logs/nginx.pid")"
for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$plain/healthz" && break
    sleep 0.1
done

hz=$(getconf CLK_TCK)
cpu() {   # PREFIX: CPU ticks (user + system) of its master and workers
    local m t=0 p
    m=$(cat "$1/logs/nginx.pid")
    for p in $m $(pgrep -P "$m"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo $t
}

# NAME ARGS...: one measured run, a line of the table: the load's figures,
# then the CPU time per request of the instance and of the front (over the
# whole run, warm-up included, so per request of all it answered)
run() {
    local name=$1 line i0 f0 i1 f1
    shift
    i0=$(cpu "$dir/i1") f0=$(cpu "$dir/front")
    line=$("$build/fleet-load" "$@" -c "$conns" -d "$duration" \
           -w "$warmup" -P /v1/completions -b "$body")
    i1=$(cpu "$dir/i1") f1=$(cpu "$dir/front")
    printf '%s\t%s %s\n' "$name" "$line" "$(awk -v n="$(echo "$line" |
        cut -d' ' -f2)" -v d="$duration" -v w="$warmup" -v hz="$hz" \
        -v i="$((i1 - i0))" -v f="$((f1 - f0))" 'BEGIN {
            r = n * (d + w) / d
            printf "instance_cpu_us %.0f front_cpu_us %.0f",
                   i * 1e6 / hz / r, f * 1e6 / hz / r }')" \
        | tee -a "$out/fleet.tsv"
}

: > "$out/fleet.tsv"
for r in $(seq 1 "$rounds"); do
    run tcp -H 127.0.0.1 -p "$plain"
    run unix -U "$dir/i1/infer.sock"
    run mtls -H 127.0.0.1 -p "$((port + 1))" \
        -t "$c/fleet-ca.crt" "$c/front-client.crt" "$c/front-client.key" \
        -x 'X-Infer-Allowed-Models: default' 
    run front -H 127.0.0.1 -p "$port" \
        -t "$c/ca.crt" "$c/alice.crt" "$c/alice.key"
done

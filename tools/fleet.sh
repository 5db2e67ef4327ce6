#!/usr/bin/env bash
# A fleet on one machine: N instances (conf/fleet/instance.conf) and the
# front (conf/fleet/front.conf) on loopback ports, with certificates made
# for the run.
#
#   tools/fleet.sh start [N]     (default 3) starts them, waits until every
#                                instance is ready, prints how to call it
#   tools/fleet.sh stop          stops the front and every instance
#   tools/fleet.sh status        each instance's readiness (/healthz)
#
# Environment (defaults in brackets):
#   FLEET_DIR [/tmp/infer-fleet]  prefixes front/ and i1/ ... iN/, certs/
#   FLEET_PORT [8443]             the front's port; instance i listens on
#                                 FLEET_PORT + i (and FLEET_DIR/iI/infer.sock)
#   MODEL [../shared/models/stories260K]  served as "default" and "premium"
#   FLEET_MODEL_ARGS [threads=1]  infer_model parameters of every instance;
#   FLEET_MODEL_ARGS_I            instance I's instead (max_queue=1 ...)
#   NGINX_BIN [/usr/sbin/nginx], MODULE [build/ngx_http_infer_module.so]
#
# Certificates (EC P-256, in FLEET_DIR/certs, made once per FLEET_DIR):
# ca.crt signs the front's server certificate and the clients' (alice may
# call default and premium, bob default, carol nothing); fleet-ca.crt the
# instances' and the one the front shows them (CN=infer-front); rogue-ca
# a certificate with alice's subject that the front must refuse.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${FLEET_DIR:-/tmp/infer-fleet}
port=${FLEET_PORT:-8443}
nginx=${NGINX_BIN:-/usr/sbin/nginx}
module=$(realpath "${MODULE:-build/ngx_http_infer_module.so}")
model=${MODEL:-../shared/models/stories260K}
repo=$(pwd)

die() { echo "fleet: $*" >&2; exit 1; }

# NAME SUBJECT CA [SAN] [EKU]: NAME.key and NAME.crt signed by CA
cert() {
    local name=$1 subj=$2 ca=$3 san=${4:-} eku=${5:-clientAuth}
    local ext="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=$eku"
    [ -n "$san" ] && ext="$ext
subjectAltName=$san"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" \
        -CAcreateserial -days 7 -sha256 -extfile <(echo "$ext") \
        -out "$name.crt" 2>/dev/null
    rm -f "$name.csr"
}

certs() {
    local c=$dir/certs
    [ -f "$c/done" ] && return
    rm -rf "$c" && mkdir -p "$c"
    (
        cd "$c"
        umask 077
        for ca in ca fleet-ca rogue-ca; do
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -nodes -keyout $ca.key -subj "/O=infer-fleet/CN=$ca" \
                -days 7 -out $ca.crt 2>/dev/null
        done
        cert front "/O=infer-fleet/CN=localhost" ca \
            "DNS:localhost,IP:127.0.0.1" serverAuth
        cert front-client "/O=infer-fleet/CN=infer-front" fleet-ca
        cert instance "/O=infer-fleet/CN=infer-instance" fleet-ca \
            "DNS:infer-instance,IP:127.0.0.1" serverAuth,clientAuth
        for who in alice bob carol; do
            cert $who "/O=infer-clients/CN=$who" ca
        done
        cert mallory "/O=infer-clients/CN=alice" rogue-ca
        # the workers run as nobody under root; nginx reads these as root
        chmod 600 ./*.key
        touch done
    )
}

# PREFIX CONF: a prefix with conf/nginx.conf, the certificates, the module
prefix() {
    local p=$1
    mkdir -p "$p/conf" "$p/logs" "$p/modules"
    cp "$repo/conf/fleet/$2" "$p/conf/nginx.conf"
    ln -sfn "$dir/certs" "$p/conf/certs"
    ln -sf "$module" "$p/modules/ngx_http_infer_module.so"
}

# PREFIX: its master's pid, if it runs
pid_of() {
    local pid
    pid=$(cat "$1/logs/nginx.pid" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

ready() {   # INSTANCE_PREFIX: its /healthz is 200 over the unix socket
    curl -sf -o /dev/null --max-time 5 --unix-socket "$1/infer.sock" \
        http://localhost/healthz
}

start() {
    local n=${1:-3} i p args servers=
    [ -x "$nginx" ] || die "no nginx at $nginx"
    [ -f "$module" ] || die "no module at $module (make)"
    [ -f "$model/config.json" ] || die "no model at $model (MODEL=DIR)"
    model=$(realpath "$model")
    stop >/dev/null
    mkdir -p "$dir"
    certs

    for i in $(seq 1 "$n"); do
        p=$dir/i$i
        prefix "$p" instance.conf
        rm -f "$p/infer.sock"
        cat > "$p/conf/server.conf" <<_EOC_
listen 127.0.0.1:$((port + i)) ssl http2;
listen unix:$p/infer.sock;
add_header X-Infer-Instance i$i always;
_EOC_
        args=FLEET_MODEL_ARGS_$i
        args=${!args:-${FLEET_MODEL_ARGS:-threads=1}}
        printf 'infer_model default %s %s;\ninfer_model premium %s %s;\n' \
            "$model" "$args" "$model" "$args" > "$p/conf/infer_model.conf"
        "$nginx" -p "$p/" -c conf/nginx.conf -e logs/error.log \
            || die "instance i$i did not start: see $p/logs/error.log"
        servers="${servers}server 127.0.0.1:$((port + i)) max_fails=2 fail_timeout=10s;
"
    done

    p=$dir/front
    prefix "$p" front.conf
    echo "listen 127.0.0.1:$port ssl http2;" > "$p/conf/listen.conf"
    printf '%s' "$servers" > "$p/conf/servers.conf"
    cat > "$p/conf/clients.conf" <<'_EOC_'
"CN=alice,O=infer-clients"  "default premium";
"CN=bob,O=infer-clients"    "default";
_EOC_
    "$nginx" -p "$p/" -c conf/nginx.conf -e logs/error.log \
        || die "the front did not start: see $p/logs/error.log"

    for i in $(seq 1 "$n"); do
        for _ in $(seq 1 200); do
            ready "$dir/i$i" && break
            sleep 0.1
        done
        ready "$dir/i$i" || die "instance i$i is not ready: see" \
                                "$dir/i$i/logs/error.log"
    done
    cat <<_EOM_
fleet: $n instances (127.0.0.1:$((port + 1))..$((port + n)), unix sockets
fleet: $dir/i*/infer.sock) behind the front on https://127.0.0.1:$port; try
  curl --cacert $dir/certs/ca.crt --cert $dir/certs/alice.crt \\
    --key $dir/certs/alice.key https://localhost:$port/v1/completions \\
    -H 'Content-Type: application/json' \\
    -d '{"model":"default","prompt":"Once upon a time","max_tokens":16}'
fleet: stop it with: tools/fleet.sh stop
_EOM_
}

stop() {
    local p pid pids=
    for p in "$dir"/front "$dir"/i*; do
        [ -d "$p" ] || continue
        pid=$(pid_of "$p") || continue
        kill -QUIT "$pid" && pids="$pids $pid"
    done
    for pid in $pids; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid"
    done
    echo "fleet: stopped"
}

status() {
    local p
    for p in "$dir"/i*; do
        [ -d "$p" ] || continue
        printf '%s: ' "${p##*/}"
        curl -s --max-time 5 --unix-socket "$p/infer.sock" \
            http://localhost/healthz || echo "not answering"
    done
}

case ${1:-} in
start)  shift; start "$@" ;;
stop)   stop ;;
status) status ;;
*)      sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac

#!/usr/bin/env bash
# The serialization table: bytes on the wire and client-observed latency of
# the /predict encodings (JSON numbers, JSON + base64, MessagePack,
# protobuf) and of KServe's binary tensor extension (and KServe JSON) when
# the module serves KServe, for the last position's logits of a
# 32000-token vocabulary and for every position of a 128-token input.
# The model is TinyLlama-shaped with random weights (infer-gen-model
# --preset tiny-llama: vocabulary 32000, 2 layers of width 64), so the
# forward pass is small next to the tensors.  One nginx worker, one client
# (bench/serialize/client.py, the venv of t/requirements.txt), one run,
# every encoding in turn; loopback only, about two minutes.
#   bench/serialize.sh            (after make and make venv)
# Writes bench/results/serialize.{md,json,dat,png}.
set -euo pipefail
cd "$(dirname "$0")/.."

root=$PWD/build/bench-serialize
out=${OUT:-$PWD/bench/results}
port=${PORT:-18491}
python=${PYTHON:-$PWD/build/venv/bin/python3}

rm -rf "$root" && mkdir -p "$root/logs" "$root/conf" "$out"
build/infer-gen-model "$root/tiny-llama" --preset tiny-llama --seed 1 \
    > /dev/null
cat > "$root/conf/nginx.conf" <<_EOC_
load_module ${MODULE:-$PWD/build/ngx_http_infer_module.so};
worker_processes 1;
error_log $root/logs/error.log warn;
pid $root/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $root/body;
    infer_model tiny $root/tiny-llama threads=1;
    server {
        listen 127.0.0.1:$port;
        location = /predict { infer_predict tiny; }
        location /v2/ { infer_kserve tiny; }
    }
}
_EOC_
/usr/sbin/nginx -p "$root/" -c "$root/conf/nginx.conf" -e "$root/logs/error.log"
trap '/usr/sbin/nginx -p "$root/" -c "$root/conf/nginx.conf" -s quit' EXIT
for i in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/predict" && break
    sleep 0.1
done

# KServe's row once its front end answers (it was a 501 stub before)
kserve=
if [ "$(curl -s -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$port/v2/health/ready")" = 200 ]; then
    kserve=--kserve
fi

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- \
        src ngx_http_infer_module.c || echo ' (with local changes)')"
    echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[^:]*: //p' \
        /proc/cpuinfo | head -1)), $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "nginx: $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///'), one worker," \
         "threads=1; client: $($python --version), one connection"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" \
         "(a machine shared with other builds: the ratios are the result)"
    echo "command: bench/serialize.sh"
} | tee "$out/serialize-env.txt"

"$python" bench/serialize/client.py 127.0.0.1 "$port" \
    src/proto/grpc_service.proto "$out" $kserve | tee "$out/serialize.log"
"$python" - "$out" <<'_PY_'
import json, sys
out = sys.argv[1]
d = json.load(open(out + "/serialize.json"))
env = open(out + "/serialize-env.txt").read().strip().splitlines()
v, n = d["vocab"], d["tokens"]
lines = ["| encoding | last position (1 x %d): reply bytes | p50 / p90 ms "
         "| of which decoding | all positions (%d x %d): reply bytes "
         "| p50 / p90 ms | of which decoding | request bytes |"
         % (v, n, v), "|---|---|---|---|---|---|---|---|"]
for r in d["rows"]:
    l, a = r["last"], r["all"]
    lines.append("| %s | %s | %.2f / %.2f | %.2f | %s | %.1f / %.1f | %.1f "
                 "| %d |"
                 % (r["name"], format(l["reply"], ","), l["p50"] * 1e3,
                    l["p90"] * 1e3, l["decode_p50"] * 1e3,
                    format(a["reply"], ","), a["p50"] * 1e3, a["p90"] * 1e3,
                    a["decode_p50"] * 1e3, a["request"]))
raw = 4 * v
lines += ["", "float32 payload: %s bytes (last), %s bytes (all).  Latency: "
          "from sending the request to holding a numpy float32 array; "
          "\"decoding\" is the client's part of it, after the last byte "
          "came (p50 of each)." % (format(raw, ","), format(raw * n, ",")),
          "Every encoding gave the same float32 logits, bit for bit: %s."
          % ("yes" if all(r[c]["same"] for r in d["rows"]
                          for c in ("last", "all")) else "NO")]
open(out + "/serialize.md", "w").write(
    "\n".join(["%s  " % e for e in env] + [""] + lines) + "\n")
print("\n".join(lines))
_PY_
gnuplot -e "datadir='$out'" bench/serialize/chart.gp
echo "bench/serialize.sh: wrote $out/serialize.{md,json,dat,png}"

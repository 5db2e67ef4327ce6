#!/usr/bin/env bash
# Small requests over three protocols: gRPC unary ModelInfer, KServe v2 REST
# JSON (.../infer) and OpenAI JSON (/v1/completions), the same greedy
# completion of PROMPT, on one nginx with one worker, all three driven by
# h2load over one h2c connection multiplexing CONC streams (the way gRPC
# clients send), so only the protocol and its codec differ.
#
#   bench/grpc.sh [MODEL_DIR]           (default ../shared/models/stories260K)
#
# Environment (defaults in brackets): THREADS [1] compute threads,
# REQUESTS [3000] requests per run at max_tokens 1 (REQUESTS * 2 / max_tokens,
# at least 500, above; each run after 200 unmeasured), CONCS ["1 16 64"],
# TOKENS ["1 16"], PROMPT ["Once upon a time"], SERVER_CPUS [0],
# CLIENT_CPUS [1], BUILD [build], PORT [28490], OUT [bench/results].
#
# Before measuring, each protocol's answer is decoded and must be the same
# text (the stories260K greedy continuation); requests/s is h2load's, p50
# and p99 come from its per-request log (responses other than 200 are
# counted in the last column).
# Writes OUT/grpc.tsv and prints it as a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

model=$(realpath "${1:-../shared/models/stories260K}")
threads=${THREADS:-1}
requests=${REQUESTS:-3000}
concs=${CONCS:-1 16 64}
tokens_list=${TOKENS:-1 16}
prompt=${PROMPT:-Once upon a time}
server_cpus=${SERVER_CPUS:-0}
client_cpus=${CLIENT_CPUS:-1}
build=${BUILD:-build}
port=${PORT:-28490}
out=${OUT:-bench/results}
python=${PYTHON:-build/venv/bin/python3}

mkdir -p "$out"
work=$(mktemp -d /tmp/grpcbench.XXXXXX)
nginx_pid=
cleanup() {
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
    sleep 0.5
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

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
        listen 127.0.0.1:$port http2;
        http2_max_concurrent_streams 256;
        keepalive_requests 1000000;
        location /inference.GRPCInferenceService/ { infer_grpc tiny; }
        location /v2 { infer_kserve tiny; }
        location /v1/ { infer_openai tiny; }
    }
}
EOC
taskset -c "$server_cpus" /usr/sbin/nginx -p "$work/" -c "$work/nginx.conf"
sleep 1
nginx_pid=$(cat "$work/nginx.pid")

# The three bodies of each max_tokens, and their answers checked.
PROMPT=$prompt TOKENS=$tokens_list WORK=$work PORT=$port "$python" - <<'EOP'
import json, os, subprocess, sys, tempfile
from grpc_tools import protoc
work, port, prompt = os.environ["WORK"], os.environ["PORT"], os.environ["PROMPT"]
protoc.main(["protoc", "-Isrc/proto", "--python_out=" + work, "grpc_service.proto"])
sys.path.insert(0, work)
import grpc_service_pb2 as pb
import urllib.request

def h2(path, body_file, ctype):
    # one request through nghttp, as h2load will send it
    r = subprocess.run(["nghttp", "-H", "content-type: " + ctype, "-d", body_file,
                        "http://127.0.0.1:%s%s" % (port, path)], capture_output=True)
    return r.stdout

for t in os.environ["TOKENS"].split():
    t = int(t)
    r = pb.ModelInferRequest(model_name="tiny")
    x = r.inputs.add(name="text_input", datatype="BYTES", shape=[1, 1])
    x.contents.bytes_contents.append(prompt.encode())
    r.parameters["max_tokens"].int64_param = t
    r.parameters["temperature"].double_param = 0
    m = r.SerializeToString()
    open("%s/grpc-%d" % (work, t), "wb").write(b"\0" + len(m).to_bytes(4, "big") + m)
    open("%s/kserve-%d" % (work, t), "w").write(json.dumps({
        "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1, 1],
                    "data": [prompt]}],
        "parameters": {"max_tokens": t, "temperature": 0}}))
    open("%s/openai-%d" % (work, t), "w").write(json.dumps({
        "model": "tiny", "prompt": prompt, "max_tokens": t, "temperature": 0}))

    g = h2("/inference.GRPCInferenceService/ModelInfer", "%s/grpc-%d" % (work, t),
           "application/grpc")
    rsp = pb.ModelInferResponse.FromString(g[5:])
    gt = rsp.raw_output_contents[0][4:].decode()
    kt = json.loads(h2("/v2/models/tiny/infer", "%s/kserve-%d" % (work, t),
                       "application/json"))["outputs"][0]["data"][0]
    ot = json.loads(h2("/v1/completions", "%s/openai-%d" % (work, t),
                       "application/json"))["choices"][0]["text"]
    if not (gt == kt == ot and gt):
        sys.exit("max_tokens %d: the answers differ: %r %r %r" % (t, gt, kt, ot))
    print("max_tokens %d: %r from all three" % (t, gt), file=sys.stderr)
EOP

tsv=$out/grpc.tsv
printf 'protocol\tmax_tokens\tconcurrency\treq_s\tp50_ms\tp99_ms\tnon_200\n' > "$tsv"
for t in $tokens_list; do
    for c in $concs; do
        for p in grpc kserve openai; do
            case $p in
            grpc)   path=/inference.GRPCInferenceService/ModelInfer
                    ctype=application/grpc ;;
            kserve) path=/v2/models/tiny/infer; ctype=application/json ;;
            openai) path=/v1/completions; ctype=application/json ;;
            esac
            log=$work/log-$p-$t-$c
            n=$((requests * 2 / t))
            [ "$t" -le 1 ] && n=$requests
            [ "$n" -lt 500 ] && n=500
            for run in warm measure; do
                taskset -c "$client_cpus" h2load -c 1 -m "$c" -t 1 \
                    -n "$([ $run = warm ] && echo 200 || echo $n)" \
                    -d "$work/$p-$t" -H "content-type: $ctype" \
                    -H "te: trailers" --log-file="$log" \
                    "http://127.0.0.1:$port$path" > "$work/h2load.out"
            done
            # h2load's log: start (us), status, duration (us)
            bad=$(awk '$2 != 200' "$log" | wc -l)
            n=$(awk '$2 == 200' "$log" | wc -l)
            awk '$2 == 200' "$log" | sort -n -k3,3 | awk -v n="$n" -v p=$p -v t=$t -v c=$c \
                -v rps="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' \
                          "$work/h2load.out")" -v bad="$bad" '
                NR == int(n * 0.50 + 0.5) { p50 = $3 / 1000 }
                NR == int(n * 0.99 + 0.5) { p99 = $3 / 1000 }
                END { printf "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%d\n",
                             p, t, c, rps, p50, p99, bad }' >> "$tsv"
            tail -1 "$tsv" >&2
        done
    done
done

echo "| protocol | max_tokens | concurrency | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|"
tail -n +2 "$tsv" | while IFS=$'\t' read -r p t c rps p50 p99 bad; do
    echo "| $p | $t | $c | $rps | $p50 | $p99 |"
done

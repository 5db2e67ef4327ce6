#!/usr/bin/env bash
# Clients that send megabyte prompts must not slow the others down: 4
# clients post 1 MB prompts back to back while one client times 200 small
# completions (max_tokens 4) and one stream's event gaps are measured.
# Two models: stories260K (512 positions: the prompt is refused by its
# size before it is tokenized) and the same weights with a 256k-token
# context (the prompt is tokenized, in nginx's thread pool, then refused
# by its count).  Loopback only, ~1 minute.
#   bench/bigprompt.sh          (after make)
set -euo pipefail
cd "$(dirname "$0")/.."

root=$PWD/build/bench-bigprompt
port=${PORT:-18490}
model=$(cd ../shared/models/stories260K && pwd)

rm -rf "$root" && mkdir -p "$root/logs" "$root/conf" "$root/big"
ln -s "$model"/*.safetensors "$model"/tokenizer*.json \
      "$model"/generation_config.json "$root/big/"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]));
c["max_position_embeddings"]=262144; json.dump(c,open(sys.argv[2],"w"))' \
    "$model/config.json" "$root/big/config.json"
cat > "$root/conf/nginx.conf" <<_EOC_
load_module ${MODULE:-$PWD/build/ngx_http_infer_module.so};
worker_processes 1;
error_log $root/logs/error.log warn;
pid $root/logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $root/body;
    client_max_body_size 4m;
    infer_model tiny $model threads=1;
    infer_model big $root/big threads=1 kv_cache=400m;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { infer_openai tiny big; }
    }
}
_EOC_
python3 -c 'import json; print(json.dumps({"model":"MODEL",
    "prompt":"Once upon a time, there was a little girl. " * 24000}))' \
    > "$root/big.json"

/usr/sbin/nginx -p "$root/" -c "$root/conf/nginx.conf" -e "$root/logs/error.log"
trap '/usr/sbin/nginx -p "$root/" -c "$root/conf/nginx.conf" -s quit' EXIT
sleep 1

echo "date: $(date -u +%FT%TZ) commit: $(git rev-parse --short HEAD)"
for m in none tiny big; do
    pids=()
    if [ $m != none ]; then
        sed "s/MODEL/$m/" "$root/big.json" > "$root/big-$m.json"
        for c in 1 2 3 4; do
            ( while :; do
                curl -s -o /dev/null "http://127.0.0.1:$port/v1/completions" \
                     -d @"$root/big-$m.json"
              done ) &
            pids+=($!)
        done
        sleep 1
    fi
    python3 bench/bigprompt/probe.py "$port" "$m"
    [ ${#pids[@]} -eq 0 ] || { kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; }
done

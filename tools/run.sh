#!/usr/bin/env bash
# Installs what is missing (Debian), builds, and starts nginx with
# conf/nginx.conf on localhost:8080 in the foreground (Ctrl-C stops it).
#   MODEL=DIR tools/run.sh   serve a Hugging Face model directory
#   tools/run.sh             generate a small random-weight model and serve it
set -euo pipefail
if [ $# -ne 0 ]; then
    echo "usage: [MODEL=DIR] tools/run.sh   (no arguments; Ctrl-C stops it)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
RUN=$BUILD/run
tools/deps.sh

make -j"$(nproc)" BUILD="$BUILD"
mkdir -p "$RUN/conf" "$RUN/logs" "$RUN/modules"

if [ -z "${MODEL:-}" ]; then
    MODEL=$RUN/model
    echo "run: no MODEL=DIR given: serving a small random-weight model"
    echo "run: ($BUILD/infer-gen-model --preset tiny-llama) from $MODEL;"
    echo "run: its text is gibberish, use MODEL=DIR for a real model"
    rm -rf "$MODEL"
    "$BUILD/infer-gen-model" "$MODEL" --preset tiny-llama --seed 1 >/dev/null
fi
MODEL=$(cd "$MODEL" && pwd)

cp conf/nginx.conf "$RUN/conf/nginx.conf"
ln -sf "$(pwd)/$BUILD/ngx_http_infer_module.so" "$RUN/modules/"
echo "infer_model default $MODEL backend=cpu threads=$(nproc);" \
    > "$RUN/conf/infer_model.conf"

cat <<_EOM_
run: nginx on http://localhost:8080 (h2c on 8081), logs in $RUN/logs; try
  curl -N localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"default","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":64,"stream":true}'
_EOM_

exec /usr/sbin/nginx -p "$(pwd)/$RUN/" -c conf/nginx.conf -e logs/error.log \
    -g 'daemon off;'

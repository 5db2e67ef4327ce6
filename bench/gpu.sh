#!/usr/bin/env bash
# The CUDA backend on one GPU, in one call (fits 10 minutes on an H100):
#   1. build with CUDA (headers/libraries from .debs/ when the machine
#      lacks them: carry the folder tools/fetch-debs.sh fills),
#   2. GPU unit tests (kernels vs CPU references, stories260K, NCCL,
#      tensor parallelism), stories260K again with every all-reduce going
#      through a one-rank NCCL communicator (INFER_CUDA_NCCL=1), NCCL fp16
#      all-reduce latency for 4-64 KB,
#   3. TinyLlama-1.1B and Llama-2-7B shaped random fp16 models
#      (build/infer-gen-model): logits and greedy ids vs Hugging Face
#      transformers in fp16 on the same GPU (bench/gpu/hf_peer.py), batch-1
#      decode, 512-token prefill, 64 concurrent sequences, device memcpy
#      bandwidth and decode as a fraction of the weight-streaming roofline;
#      with 2 or more GPUs also 7B batch-1 decode at tp=2 (devices 0,1),
#   4. nginx with backend=cuda streaming one /v1/chat/completions.
# Results go to $OUT (default bench/out): gpu-results.md (a markdown table
# for bench/RESULTS.md), gpu.log and the raw outputs.
#
#   bench/gpu.sh
# Environment: OUT, BUDGET_S (default 570: stages that would start later are
# skipped and say so), LLAMA7B_LAYERS (default 32; fewer makes the 7B model
# faster to generate and load, and the table says how many),
# TINYLLAMA_LAYERS (default 22), PYTHON (default python3); for a dry run
# of the script's plumbing without a GPU: BACKEND=cpu (ours, nginx).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-$root/bench/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BUDGET_S=${BUDGET_S:-570}
LLAMA7B_LAYERS=${LLAMA7B_LAYERS:-32}
TINYLLAMA_LAYERS=${TINYLLAMA_LAYERS:-22}
BACKEND=${BACKEND:-cuda}
port=$(( 20000 + $$ % 10000 ))
B=build-gpu
work=$root/$B/gpu-run
mkdir -p "$work"
t_start=$(date +%s)
md=$OUT/gpu-results.md
log=$OUT/gpu.log
: >"$log"

elapsed() { echo $(( $(date +%s) - t_start )); }
say() { echo "[$(elapsed)s] $*" | tee -a "$log"; }
left() { echo $(( BUDGET_S - $(elapsed) )); }
# run NAME SECONDS CMD...: output to $OUT/NAME.txt, time limit, status logged
run() {
    local name=$1 limit=$2 rc
    shift 2
    if [ "$(left)" -lt 10 ]; then
        say "SKIP $name: time budget spent"
        return 124
    fi
    [ "$limit" -gt "$(left)" ] && limit=$(left)
    say "run $name (limit ${limit}s): $*"
    timeout -k 5 "$limit" "$@" >"$OUT/$name.txt" 2>&1
    rc=$?
    say "done $name: rc=$rc"
    return $rc
}

gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null \
           | head -1)
gpu_name=${gpu_name:-no GPU found by nvidia-smi}
say "GPU: $gpu_name; $(nvidia-smi --query-gpu=memory.total,driver_version \
    --format=csv,noheader 2>&1 | head -1)"
say "nvcc: $(nvcc --version 2>&1 | tail -1)"
say "os: $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(ldd --version \
    | head -1 | awk '{print $NF}')"

# ---- 1. dependencies and build --------------------------------------------
# Packages in .debs/ are unpacked into a prefix that compilers search after
# the system (CPATH, LIBRARY_PATH); at run time only the libraries the
# system lacks are put on LD_LIBRARY_PATH.
prefix=$work/debs
if ls .debs/*.deb >/dev/null 2>&1; then
    rm -rf "$prefix"
    mkdir -p "$prefix/rtlib"
    for d in .debs/*.deb; do
        dpkg -x "$d" "$prefix"
    done
    arch=x86_64-linux-gnu
    inc=$prefix/usr/include
    lib=$prefix/usr/lib/$arch
    export CPATH=$inc:$inc/$arch:$inc/$arch/openblas-pthread${CPATH:+:$CPATH}
    export LIBRARY_PATH=$lib:$lib/openblas-pthread:$prefix/lib/$arch${LIBRARY_PATH:+:$LIBRARY_PATH}
    for so in "$lib"/*.so.* "$lib"/openblas-pthread/*.so.* \
              "$prefix"/lib/$arch/*.so.*; do
        [ -e "$so" ] || continue
        base=$(basename "$so")
        ldconfig -p | grep -q "^[[:space:]]$base " \
            || ln -sf "$so" "$prefix/rtlib/$base"
    done
    export LD_LIBRARY_PATH=$prefix/rtlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    say "unpacked $(ls .debs/*.deb | wc -l) .debs; runtime libraries added:" \
        "$(ls "$prefix/rtlib" | tr '\n' ' ')"
else
    say "no .debs/: using the system's packages"
fi

# only what this script runs: another test that does not build here must
# not stop the GPU run
gpu_tests="test_kernels_ref test_cuda_kernels test_cuda_model test_cuda_comm
           test_cuda_tp"
if ! run build 300 make -j"$(nproc)" CUDA=1 BUILD=$B engine $B/infer-cli \
        $B/infer-gen-model $B/infer-logits \
        $(for t in $gpu_tests; do echo "$B/t/$t"; done); then
    tail -30 "$OUT/build.txt" | tee -a "$log"
    printf '## CUDA backend, %s\n\nBuild failed: see build.txt\n' \
        "$gpu_name" >"$md"
    exit 1
fi

# ---- 2. unit tests -------------------------------------------------------------
units=""
for t in $gpu_tests; do
    run "unit-$t" 120 "$B/t/$t"
    rc=$?
    pass=$(grep -c '^ok' "$OUT/unit-$t.txt")
    fail=$(grep -c '^not ok' "$OUT/unit-$t.txt")
    skip=$(grep -m1 -o 'SKIP.*' "$OUT/unit-$t.txt")
    units="$units
- $t: $pass ok, $fail not ok${skip:+, $skip} (exit $rc)"
    grep -E '^not ok|^#' "$OUT/unit-$t.txt" | head -20 | tee -a "$log"
done
say "unit tests:$(echo "$units" | tr '\n' ' ')"

# the tp=1 model test once more, its two all-reduces a layer through NCCL
run nccl1-stories 120 env INFER_CUDA_NCCL=1 "$B/t/test_cuda_model"
nccl1_line="$(grep -c '^ok' "$OUT/nccl1-stories.txt") ok,\
 $(grep -c '^not ok' "$OUT/nccl1-stories.txt") not ok (nccl1-stories.txt)"
grep -E '^not ok' "$OUT/nccl1-stories.txt" | tee -a "$log"
run comm-latency 60 env INFER_COMM_BENCH=1 "$B/t/test_cuda_comm"
comm_line=$(sed -n 's/^# all-reduce fp16 \([0-9]*\) bytes over \([0-9]*\) rank(s): \(.*\)/\1 B: \3/p' \
            "$OUT/comm-latency.txt" | paste -sd ';' - | sed 's/;/; /g')
ranks_line=$(sed -n 's/^# all-reduce fp16 [0-9]* bytes over \([0-9]*\) rank.*/\1/p' \
             "$OUT/comm-latency.txt" | head -1)
say "NCCL all-reduce over ${ranks_line:-?} rank(s): ${comm_line:-n/a}"
n_gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')

# ---- 3. models -------------------------------------------------------------------
py=${PYTHON:-python3}
prompt=1,450,4996,338,263,1230,310,263,11148,29892,1058,750,263,3405,1024,29889
greedy_n=32
bw=""
rows=""

# weight bytes (fp16) streamed per decode token: all but the embedding
weight_bytes() {
    "$py" - "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
h, i, v, l = (c["hidden_size"], c["intermediate_size"], c["vocab_size"],
              c["num_hidden_layers"])
nh = c["num_attention_heads"]
nkv = c.get("num_key_value_heads", nh)
hd = c.get("head_dim") or h // nh
layer = h * nh * hd * 2 + 2 * h * nkv * hd + 3 * h * i + 2 * h
print(2 * (l * layer + h + v * h))
PY
}

bench_model() {
    local name=$1 preset=$2 layers=$3 kv_mb=$4 dir=$work/$1
    local cmp ours_pf ours_dc b64 wb roof frac hf_dc pf_ms rel match bwflag
    local vocab

    bwflag=""
    [ -z "$bw" ] && bwflag=--bandwidth
    rm -rf "$dir"
    run "gen-$name" 150 "$B/infer-gen-model" "$dir" --preset "$preset" \
        --dtype f16 --layers "$layers" || return
    run "hf-$name" 150 "$py" bench/gpu/hf_peer.py "$dir" --prompt-ids "$prompt" \
        --greedy $greedy_n --logits "$work/hf-$name.bin" \
        --json "$OUT/hf-$name.json" --decode-bench 64 $bwflag
    if [ -z "$bw" ] && [ -f "$OUT/hf-$name.json" ]; then
        bw=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("bandwidth_gbs",""))' \
             "$OUT/hf-$name.json")
        say "device memcpy bandwidth: $bw GB/s"
    fi
    run "logits-$name" 120 "$B/infer-logits" "$dir" --backend "$BACKEND" \
        --prompt-ids "$prompt" --greedy $greedy_n \
        --logits "$work/ours-$name.bin" --kv-cache 2048
    cmp="{}"
    vocab=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1] + "/config.json"))["vocab_size"])' "$dir")
    if [ -f "$work/ours-$name.bin" ] && [ -f "$work/hf-$name.bin" ]; then
        cmp=$("$py" bench/gpu/compare.py "$work/ours-$name.bin" \
              "$work/hf-$name.bin" "$vocab" \
              "$(grep '^greedy:' "$OUT/logits-$name.txt")" \
              "$OUT/hf-$name.json" 2>>"$log" || echo "{}")
    fi
    echo "$cmp" >"$OUT/compare-$name.json"
    say "$name vs HF: $cmp"
    run "bench1-$name" 150 "$B/infer-cli" "$dir" --backend "$BACKEND" --bench \
        --batch 1 --prompt-len 512 --gen-len 128 --kv-cache "$kv_mb" \
        --max-batch-tokens 512 --max-seqs 4
    run "bench64-$name" 150 "$B/infer-cli" "$dir" --backend "$BACKEND" --bench \
        --batch 64 --prompt-len 128 --gen-len 128 --kv-cache "$kv_mb" \
        --max-batch-tokens 2048 --max-seqs 64

    pf_ms=$(sed -n 's/^prefill: batch 1 x 512 tokens in \([0-9.]*\) s.*/\1/p' \
            "$OUT/bench1-$name.txt" | awk '{printf "%.1f", $1 * 1000}')
    ours_pf=$(sed -n 's/^prefill:.*: \([0-9.]*\) tokens\/s.*/\1/p' \
              "$OUT/bench1-$name.txt")
    ours_dc=$(sed -n 's/^decode:.*: \([0-9.]*\) tokens\/s.*/\1/p' \
              "$OUT/bench1-$name.txt")
    b64=$(sed -n 's/^decode:.*: \([0-9.]*\) tokens\/s.*/\1/p' \
          "$OUT/bench64-$name.txt")
    if [ "$name" = llama2-7b ] && [ "${n_gpus:-0}" -ge 2 ]; then
        run "bench1-tp2-$name" 150 "$B/infer-cli" "$dir" --backend "$BACKEND" \
            --bench --tp 2 --devices 0,1 --batch 1 --prompt-len 512 \
            --gen-len 128 --kv-cache "$kv_mb" --max-batch-tokens 512 \
            --max-seqs 4
        tp2_dc=$(sed -n 's/^decode:.*: \([0-9.]*\) tokens\/s.*/\1/p' \
                 "$OUT/bench1-tp2-$name.txt")
        tp_line="$name b1 decode: tp=1 ${ours_dc:-n/a}, tp=2 ${tp2_dc:-n/a} tok/s\
 ($(awk -v a="$tp2_dc" -v b="$ours_dc" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "n/a" }'))"
    fi
    wb=$(weight_bytes "$dir")
    roof=$(awk -v bw="$bw" -v wb="$wb" 'BEGIN { if (bw > 0) printf "%.1f", bw * 1e9 / wb }')
    frac=$(awk -v o="$ours_dc" -v r="$roof" 'BEGIN { if (r > 0 && o > 0) printf "%.0f%%", 100 * o / r }')
    hf_dc=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("decode_tps",""))' \
            "$OUT/hf-$name.json" 2>/dev/null)
    rel=$("$py" -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.2e" % d["rel_err"] if "rel_err" in d else "n/a")' "$cmp")
    match=$("$py" -c 'import json,sys; d=json.loads(sys.argv[1]); print("%d/%d" % (d["greedy_match"], d["greedy_len"]) if "greedy_match" in d else "n/a")' "$cmp")
    rows="$rows| $name | $layers | $(awk -v b="$wb" 'BEGIN{printf "%.2f", b / 2^30}') | $rel | $match | ${ours_dc:-n/a} | ${hf_dc:-n/a} | ${roof:-n/a} | ${frac:-n/a} | ${pf_ms:-n/a} | ${ours_pf:-n/a} | ${b64:-n/a} |
"
    write_results
    # the models are large: keep the disk for the next one
    [ "$name" = tinyllama-1.1b ] || rm -rf "$dir"
}

nginx_line="not run"
tp_line="not run: needs 2 GPUs"
write_results() {
    {
        echo "## CUDA backend, $gpu_name ($(date -u +%Y-%m-%d))"
        echo
        echo "Random-weight fp16 models with the real shapes" \
             "(tools/infer-gen-model), bench/gpu.sh in one run."
        echo "Device memcpy bandwidth (read + write): ${bw:-n/a} GB/s;" \
             "roofline decode tok/s = bandwidth / fp16 weight bytes" \
             "(all but the embedding)."
        echo
        echo "| model | layers | weights GiB | logits rel err vs HF fp16" \
             "| greedy ids = HF | b1 decode tok/s | HF b1 decode tok/s" \
             "| roofline tok/s | of roofline | 512-token prefill ms" \
             "| prefill tok/s | 64 seqs generated tok/s |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
        printf "%s" "$rows"
        echo
        echo "Prompt: 16 ids; greedy: $greedy_n steps; rel err = ||ours - hf||" \
             "/ ||hf|| over every prompt position (pass <= 1e-2)."
        echo "Unit tests (\$OUT/unit-*.txt):$units"
        echo
        echo "test_cuda_model with INFER_CUDA_NCCL=1 (one-rank NCCL): $nccl1_line"
        echo "NCCL fp16 all-reduce latency over ${ranks_line:-?} rank(s):" \
             "${comm_line:-n/a}"
        echo "Tensor parallelism: $tp_line"
        echo
        echo "nginx (backend=$BACKEND, /v1/chat/completions, stream): $nginx_line"
        echo "Total run time: $(elapsed) s."
    } >"$md"
}

# ---- 4. nginx ------------------------------------------------------------
nginx_check() {
    local nginx_bin ngx_src ng ngx_pid chunks
    nginx_bin=$(command -v nginx || true)
    [ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
    [ -z "$nginx_bin" ] && [ -x "$prefix/usr/sbin/nginx" ] && nginx_bin=$prefix/usr/sbin/nginx
    ngx_src=""
    [ -d /usr/share/nginx/src ] || ngx_src=$prefix/usr/share/nginx/src
    if [ -z "$nginx_bin" ] || { [ -n "$ngx_src" ] && [ ! -d "$ngx_src" ]; }; then
        nginx_line="skipped: no nginx binary or nginx-dev sources (carry .debs/)"
    elif [ ! -d "$work/tinyllama-1.1b" ]; then
        nginx_line="skipped: no model"
    elif [ "$(left)" -lt 40 ]; then
        nginx_line="skipped: time budget spent"
    elif run module 120 make CUDA=1 BUILD=$B ${ngx_src:+NGINX_SRC=$ngx_src} module
    then
        ng=$work/nginx
        rm -rf "$ng"
        mkdir -p "$ng/conf" "$ng/logs" "$ng/tmp"
        cat >"$ng/conf/nginx.conf" <<CONF
load_module $root/$B/ngx_http_infer_module.so;
$([ "$(id -u)" = 0 ] && echo "user root;")
daemon off;
master_process on;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
env LD_LIBRARY_PATH;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    infer_model tiny $work/tinyllama-1.1b backend=$BACKEND kv_cache=1024m
                max_seqs=8;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { infer_openai tiny; }
        location /healthz { infer_health; }
    }
}
CONF
        "$nginx_bin" -p "$ng" -c conf/nginx.conf >"$OUT/nginx-stdout.txt" 2>&1 &
        ngx_pid=$!
        run nginx-stream 90 "$py" bench/gpu/stream.py \
            "http://127.0.0.1:$port" tiny 60 "$ngx_pid"
        chunks=$(grep -c '^data: {' "$OUT/nginx-stream.txt")
        if grep -q '^data: \[DONE\]' "$OUT/nginx-stream.txt" && [ "$chunks" -gt 1 ]
        then
            nginx_line="ok, $chunks SSE chunks then [DONE] (nginx-stream.txt)"
        else
            nginx_line="FAILED (nginx-stream.txt, nginx-error.log)"
        fi
        kill -QUIT "$ngx_pid" 2>/dev/null
        wait "$ngx_pid" 2>/dev/null
        cp "$ng/logs/error.log" "$OUT/nginx-error.log" 2>/dev/null
    else
        nginx_line="module build failed (module.txt)"
    fi
    say "nginx: $nginx_line"
}

bench_model tinyllama-1.1b tinyllama-1.1b "$TINYLLAMA_LAYERS" 4096
nginx_check
# The 7B model needs about 240 s at full depth; with less time left
# it runs with 8 layers (the table says so).
if [ "$(left)" -lt 240 ] && [ "$LLAMA7B_LAYERS" -gt 8 ]; then
    say "only $(left) s left: llama2-7b with 8 layers instead of $LLAMA7B_LAYERS"
    LLAMA7B_LAYERS=8
fi
bench_model llama2-7b llama2-7b "$LLAMA7B_LAYERS" 20480
write_results
say "results in $md"
cat "$md"

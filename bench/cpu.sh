#!/usr/bin/env bash
# CPU engine vs PyTorch (transformers) on the same weights and threads.
#   bench/cpu.sh MODEL_DIR [THREADS] [BATCH] [PROMPT_LEN] [GEN_LEN] [ROUNDS]
# Needs build/infer-cli (make) and a Python with torch + transformers
# (PYTHON=.venv/bin/python by default; tools/ref/requirements.txt).
# The two sides alternate ROUNDS times (default 3) and each keeps its best,
# so a burst of load on this shared 2-core machine hits both alike.
# Prints one markdown table row with both sides and the ratios.
# DTYPE=bf16: the engine with --dtype bf16 against PyTorch in bfloat16
# (default f32 against float32).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/cpu.sh MODEL_DIR [THREADS] [BATCH] [PROMPT_LEN] [GEN_LEN] [ROUNDS]}
threads=${2:-$(nproc)}
batch=${3:-1}
plen=${4:-128}
glen=${5:-32}
rounds=${6:-3}
python=${PYTHON:-.venv/bin/python}
dtype=${DTYPE:-f32}
case $dtype in
    f32) peer_dtype=float32 ;;
    bf16) peer_dtype=bfloat16 ;;
    *) echo "DTYPE=f32 or bf16" >&2; exit 2 ;;
esac

best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }

opf=0 odc=0 ppf=0 pdc=0
for _ in $(seq "$rounds"); do
    ours=$(build/infer-cli "$model" --bench --dtype "$dtype" \
           --threads "$threads" \
           --batch "$batch" --prompt-len "$plen" --gen-len "$glen" \
           --kv-cache 2048)
    opf=$(best "$opf" "$(sed -n 's/^prefill:.*: \([0-9.]*\) tokens\/s.*/\1/p' <<<"$ours")")
    odc=$(best "$odc" "$(sed -n 's/^decode:.*: \([0-9.]*\) tokens\/s.*/\1/p' <<<"$ours")")
    peer=$("$python" bench/cpu_peer.py "$model" --threads "$threads" \
           --batch "$batch" --prompt-len "$plen" --gen-len "$glen" \
           --dtype "$peer_dtype" 2>/dev/null | tail -1)
    ppf=$(best "$ppf" "$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["prefill_tps"])' "$peer")")
    pdc=$(best "$pdc" "$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["decode_tps"])' "$peer")")
done
awk -v m="$(basename "$model")" -v t="$threads" -v b="$batch" -v p="$plen" \
    -v g="$glen" -v opf="$opf" -v odc="$odc" -v ppf="$ppf" -v pdc="$pdc" \
    'BEGIN {
    printf "| %s | %d | %d | %d | %d | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx |\n",
           m, t, b, p, g, opf, ppf, opf / ppf, odc, pdc, odc / pdc }'

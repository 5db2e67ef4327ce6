#!/usr/bin/env bash
# CPU engine vs PyTorch (transformers) on the same weights and threads.
#   bench/cpu.sh MODEL_DIR [THREADS] [BATCH] [PROMPT_LEN] [GEN_LEN]
# Needs build/infer-cli (make) and a Python with torch + transformers
# (PYTHON=.venv/bin/python by default; tools/ref/requirements.txt).
# Prints one markdown table row with both sides and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/cpu.sh MODEL_DIR [THREADS] [BATCH] [PROMPT_LEN] [GEN_LEN]}
threads=${2:-$(nproc)}
batch=${3:-1}
plen=${4:-128}
glen=${5:-32}
python=${PYTHON:-.venv/bin/python}

ours=$(build/infer-cli "$model" --bench --threads "$threads" --batch "$batch" \
       --prompt-len "$plen" --gen-len "$glen" --kv-cache 2048)
ours_pf=$(sed -n 's/^prefill:.*: \([0-9.]*\) tokens\/s.*/\1/p' <<<"$ours")
ours_dc=$(sed -n 's/^decode:.*: \([0-9.]*\) tokens\/s.*/\1/p' <<<"$ours")
peer=$("$python" bench/cpu_peer.py "$model" --threads "$threads" \
       --batch "$batch" --prompt-len "$plen" --gen-len "$glen" | tail -1)
peer_pf=$("$python" -c 'import json,sys; print("%.1f" % json.loads(sys.argv[1])["prefill_tps"])' "$peer")
peer_dc=$("$python" -c 'import json,sys; print("%.1f" % json.loads(sys.argv[1])["decode_tps"])' "$peer")
awk -v m="$(basename "$model")" -v t="$threads" -v b="$batch" -v p="$plen" \
    -v g="$glen" -v opf="$ours_pf" -v odc="$ours_dc" -v ppf="$peer_pf" \
    -v pdc="$peer_dc" 'BEGIN {
    printf "| %s | %d | %d | %d | %d | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx |\n",
           m, t, b, p, g, opf, ppf, opf / ppf, odc, pdc, odc / pdc }'

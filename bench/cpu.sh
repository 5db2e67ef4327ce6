#!/usr/bin/env bash
# CPU engine vs a peer on the same weights and threads: PyTorch
# (transformers, the default) or llama.cpp (PEER=llama.cpp).
#   bench/cpu.sh MODEL_DIR [THREADS] [BATCH] [PROMPT_LEN] [GEN_LEN] [ROUNDS]
# Needs build/infer-cli (make).  The two sides alternate ROUNDS times
# (default 3) and each keeps its best, so a burst of load on this shared
# 2-core machine hits both alike.  Prints one markdown table row with both
# sides and the ratios.
#
# PyTorch: a Python with torch + transformers (PYTHON=.venv/bin/python by
# default; tools/ref/requirements.txt).  DTYPE=bf16: the engine with
# --dtype bf16 against PyTorch in bfloat16 (default f32 against float32).
#
# llama.cpp: PEER=llama.cpp LLAMA_CPP=DIR (its build directory, with
# bin/llama-bench and bin/llama-batched-bench) GGUF=FILE (the same weights
# converted by its convert_hf_to_gguf.py: f32, f16/bf16 or q8_0 against
# our DTYPE=f32, bf16 or int8); bench/llama_cpp.sh builds and converts.
# Batch 1 runs llama-bench (prefill -p PROMPT_LEN; decode -n GEN_LEN after
# -d PROMPT_LEN tokens of context, as ours decodes after its prompt);
# batch > 1 runs llama-batched-bench (BATCH prompts of PROMPT_LEN, then
# GEN_LEN tokens each).  Each round also measures the memory-read
# bandwidth (bench/membw) and the row ends with it and each side's batch-1
# decode as a fraction of its roofline: tokens/s x bytes read per token
# (the weights but the embedding table, of which a token reads one row)
# / bandwidth.
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
peer=${PEER:-torch}
case $dtype in
    f32) peer_dtype=float32 ;;
    bf16) peer_dtype=bfloat16 ;;
    int8) peer_dtype=q8_0 ;;
    *) echo "DTYPE=f32, bf16 or int8" >&2; exit 2 ;;
esac

best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }

if [ "$peer" = llama.cpp ]; then
    : "${LLAMA_CPP:?PEER=llama.cpp needs LLAMA_CPP=its build directory}"
    : "${GGUF:?PEER=llama.cpp needs GGUF=the converted model file}"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cc -O2 -march=native -pthread bench/membw/membw.c -o "$tmp/membw"
elif [ "$dtype" = int8 ]; then
    echo "DTYPE=int8 has no PyTorch peer: PEER=llama.cpp (q8_0)" >&2
    exit 2
fi

# one llama.cpp round: "prefill_tps decode_tps"
llama_round() {
    if [ "$batch" -eq 1 ]; then
        "$LLAMA_CPP/bin/llama-bench" -m "$GGUF" -t "$threads" -r 1 \
            -p "$plen" -n 0 -o json 2>/dev/null > "$tmp/pp.json"
        "$LLAMA_CPP/bin/llama-bench" -m "$GGUF" -t "$threads" -r 1 \
            -p 0 -n "$glen" -d "$plen" -o json 2>/dev/null > "$tmp/tg.json"
        python3 -c 'import json,sys
pp = json.load(open(sys.argv[1]))[0]["avg_ts"]
tg = json.load(open(sys.argv[2]))[0]["avg_ts"]
print(pp, tg)' "$tmp/pp.json" "$tmp/tg.json"
    else
        "$LLAMA_CPP/bin/llama-batched-bench" -m "$GGUF" -t "$threads" \
            -tb "$threads" -c $(( batch * (plen + glen) + 256 )) -b 2048 \
            -ub 512 -npp "$plen" -ntg "$glen" -npl "$batch" \
            --output-format jsonl 2>/dev/null > "$tmp/bb.jsonl"
        python3 -c 'import json,sys
r = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]
print(r["speed_pp"], r["speed_tg"])' "$tmp/bb.jsonl"
    fi
}

opf=0 odc=0 ppf=0 pdc=0 bw=0 wbytes=
for _ in $(seq "$rounds"); do
    ours=$(build/infer-cli "$model" --bench --dtype "$dtype" \
           --threads "$threads" \
           --batch "$batch" --prompt-len "$plen" --gen-len "$glen" \
           --kv-cache 2048 2>&1)
    opf=$(best "$opf" "$(sed -n 's/^prefill:.*: \([0-9.]*\) tokens\/s.*/\1/p' <<<"$ours")")
    odc=$(best "$odc" "$(sed -n 's/^decode:.*: \([0-9.]*\) tokens\/s.*/\1/p' <<<"$ours")")
    wbytes=$(sed -n 's/^infer-cli: .*, weights \([0-9.]* [KMG]iB\),.*/\1/p' <<<"$ours")
    if [ "$peer" = llama.cpp ]; then
        read -r p d <<<"$(llama_round)"
        bw=$(best "$bw" "$("$tmp/membw" "$threads" 1024 5 | awk '{ print $1 }')")
    else
        pj=$("$python" bench/cpu_peer.py "$model" --threads "$threads" \
             --batch "$batch" --prompt-len "$plen" --gen-len "$glen" \
             --dtype "$peer_dtype" 2>/dev/null | tail -1)
        p=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["prefill_tps"])' "$pj")
        d=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["decode_tps"])' "$pj")
    fi
    ppf=$(best "$ppf" "$p")
    pdc=$(best "$pdc" "$d")
done
row=$(awk -v m="$(basename "$model")" -v t="$threads" -v b="$batch" \
    -v p="$plen" -v g="$glen" -v opf="$opf" -v odc="$odc" -v ppf="$ppf" \
    -v pdc="$pdc" 'BEGIN {
    printf "| %s | %d | %d | %d | %d | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx |",
           m, t, b, p, g, opf, ppf, opf / ppf, odc, pdc, odc / pdc }')
if [ "$peer" != llama.cpp ]; then
    echo "$row"
    exit 0
fi
# bandwidth and batch-1 decode against each side's roofline
python3 - "$model" "$dtype" "$wbytes" "$GGUF" "$bw" "$odc" "$pdc" "$batch" \
    "$row" <<'EOF'
import json, os, sys
model, dtype, wbytes, gguf, bw, odc, pdc, batch, row = sys.argv[1:]
cfg = json.load(open(os.path.join(model, "config.json")))
embed = cfg["vocab_size"] * cfg["hidden_size"]
num, unit = wbytes.split()
ours = float(num) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]
# bytes a weight takes: ours (int8 adds a float32 scale per row), the peer's
# GGUF by the file's name (q8_0: 34 bytes per block of 32)
ours_bpw = {"f32": 4, "bf16": 2, "int8": 1 + 4 / cfg["hidden_size"]}[dtype]
name = os.path.basename(gguf).lower()
peer_bpw = 34 / 32 if "q8_0" in name else 4 if "f32" in name else 2
tied = cfg.get("tie_word_embeddings", False)
ours_tok = ours - (0 if tied else embed * ours_bpw)
peer_tok = os.path.getsize(gguf) - (0 if tied else embed * peer_bpw)
bw = float(bw) * 1e9
if batch == "1":
    f = lambda tps, b: "%.0f%%" % (100 * float(tps) * b / bw)
    print(row + " %.1f | %.2f / %.2f GB | %s | %s |" % (
        bw / 1e9, ours_tok / 1e9, peer_tok / 1e9, f(odc, ours_tok),
        f(pdc, peer_tok)))
else:
    print(row + " %.1f | %.2f / %.2f GB | - | - |" % (
        bw / 1e9, ours_tok / 1e9, peer_tok / 1e9))
EOF

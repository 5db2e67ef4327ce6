#!/bin/sh
# Regenerates every file in t/data/ref from Hugging Face transformers.
# Run from the repository root after `make tools` and with the venv of
# tools/ref/requirements.txt in .venv.  The models are made by
# build/infer-gen-model with fixed seeds; t/unit/test_hf_logits.c makes the
# same ones again (the generator is deterministic) and compares.
set -eu
GEN=${GEN:-build/infer-gen-model}
PY=${PY:-.venv/bin/python}
SHARED=${INFER_SHARED:-../shared}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# "The quick brown fox jumps over the lazy dog, and then it naps." encoded
# by tokenizers with ../shared/tokenizers/{llama2,gpt2}, plus the highest id
# (and for gpt2 a few more) so the last rows of embed and lm_head are used.
LLAMA2_IDS=1,415,2936,9060,285,1142,461,10575,754,272,17898,3914,28725,304,868,378,307,1882,28723,31999
GPT2_IDS=464,2068,7586,21831,18045,625,262,16931,3290,11,290,788,340,299,1686,13,50256,0,12345,50255
# "Once upon a time, there was a little girl named Lily. She liked to play"
STORIES_IDS=1,403,407,261,378,432,383,286,261,376,298,315,421,395,317,426,338,397,355,267,337
# the same and 24 more ids ((k * 37 + 11) % 509 + 3): 45 tokens, more than
# the 32 rows the narrow products take, so a prefill of them runs the wide
# ones (src/engine/gemm_wide.c) with bf16 and int8 weights
STORIES_LONG_IDS=1,403,407,261,378,432,383,286,261,376,298,315,421,395,317,426,338,397,355,267,337,14,51,88,125,162,199,236,273,310,347,384,421,458,495,23,60,97,134,171,208,245,282,319,356

ref() {     # name preset dtype seed ids stride [compute]
    "$GEN" "$TMP/$1" --preset "$2" --dtype "$3" --seed "$4"
    "$PY" tools/ref/hf_logits.py "$TMP/$1" "t/data/ref/$1.logits" \
        --name "$1" --tokens "$5" --stride "$6" \
        --source "gen --preset $2 --dtype $3 --seed $4" \
        --compute "${7:-float32}"
}

ref tiny-llama-f32    tiny-llama   f32  1 "$LLAMA2_IDS" 61
ref tiny-llama-bf16   tiny-llama   bf16 2 "$LLAMA2_IDS" 61
# as dtype=bf16 computes on AVX512_BF16 CPUs: every product's x rounded
ref tiny-llama-bf16x  tiny-llama   bf16 2 "$LLAMA2_IDS" 61 bf16-products
ref tiny-mistral-f32  tiny-mistral f32  3 "$LLAMA2_IDS" 61
ref tiny-qwen2-f32    tiny-qwen2   f32  4 "$GPT2_IDS"   97
ref tiny-qwen2-f16    tiny-qwen2   f16  5 "$GPT2_IDS"   97
"$PY" tools/ref/hf_logits.py "$SHARED/models/stories260K" \
    t/data/ref/stories260K.logits --name stories260K \
    --tokens "$STORIES_IDS" --stride 1 --source "shared models/stories260K"

# dtype=bf16: stories260K with its matrices rounded to bf16 and computed in
# float32 (what the CPU backend computes), transformers' own bf16 inference,
# and greedy continuations of t/data/ref/stories.corpus in both dtypes.
"$PY" tools/ref/hf_logits.py "$SHARED/models/stories260K" \
    t/data/ref/stories260K-bf16w.logits --name stories260K-bf16w \
    --tokens "$STORIES_IDS" --stride 1 --source "shared models/stories260K" \
    --compute bf16-weights
"$PY" tools/ref/hf_logits.py "$SHARED/models/stories260K" \
    t/data/ref/stories260K-bf16x.logits --name stories260K-bf16x \
    --tokens "$STORIES_IDS" --stride 1 --source "shared models/stories260K" \
    --compute bf16-products
# the same arithmetic as dtype=bf16 and dtype=int8 over the long sequence
"$PY" tools/ref/hf_logits.py "$SHARED/models/stories260K" \
    t/data/ref/stories260K-bf16w-long.logits --name stories260K-bf16w-long \
    --tokens "$STORIES_LONG_IDS" --stride 7 \
    --source "shared models/stories260K" --compute bf16-weights
# and as the prefill products on AVX512_BF16 CPUs compute (x rounded too)
"$PY" tools/ref/hf_logits.py "$SHARED/models/stories260K" \
    t/data/ref/stories260K-bf16x-long.logits --name stories260K-bf16x-long \
    --tokens "$STORIES_LONG_IDS" --stride 7 \
    --source "shared models/stories260K" --compute bf16-products
"$PY" tools/ref/hf_logits.py "$SHARED/models/stories260K" \
    t/data/ref/stories260K-int8w-long.logits --name stories260K-int8w-long \
    --tokens "$STORIES_LONG_IDS" --stride 7 \
    --source "shared models/stories260K" --compute int8-weights
"$PY" tools/ref/hf_logits.py "$SHARED/models/stories260K" \
    t/data/ref/stories260K-bf16.logits --name stories260K-bf16 \
    --tokens "$STORIES_IDS" --stride 1 --source "shared models/stories260K" \
    --compute bfloat16
for dt in bf16:bfloat16 f32:float32; do
    "$PY" tools/ref/hf_greedy.py "$SHARED/models/stories260K" \
        t/data/ref/stories.corpus "t/data/ref/stories260K-${dt%%:*}.greedy" \
        --name stories260K --source "shared models/stories260K" --gen 32 \
        --compute "${dt#*:}"
done

# The families (t/data/ref/*.ref, tools/ref/hf_family.py): a tiny model of
# each with every flag of the published config, prompts of 1, 37 and
# LONG tokens (past every sliding window), two greedy prompts of 64
# tokens; GREEDY is the first's length (long enough for longrope and
# dynamic NTK to switch frequencies, or a window to slide, mid-way).
family() {  # preset seed long greedy
    "$GEN" "$TMP/$1" --preset "$1" --dtype f32 --seed "$2"
    "$PY" tools/ref/hf_family.py "$TMP/$1" "t/data/ref/$1.ref" --name "$1" \
        --source "gen --preset $1 --dtype f32 --seed $2" --seed "$2" \
        --long "$3" --greedy "$4"
}

family tiny-llama3        21 1000 37
family tiny-qwen3         22 1000 37
family tiny-gemma2        23 1000 100
family tiny-mistral-v0.1  24 1000 120
family tiny-phi3          25 1000 220
family tiny-gpt2          26 1000 37
family tiny-llama-linear  27 1000 37
family tiny-llama-dynamic 28 1000 480
family tiny-qwen3-yarn    29 1000 37
"$PY" tools/ref/rope_freqs.py t/data/ref/rope.freqs

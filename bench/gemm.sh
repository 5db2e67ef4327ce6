#!/usr/bin/env bash
# The CPU backend's matrix products on each Debian-packaged candidate:
# OpenBLAS with the kernel set the engine chooses (blas.c), OpenBLAS forced
# to its generic Prescott set (what 0.3.21 picks on recent Xeons), BLIS
# (libblis-pthread-dev, its own CPU detection) and oneDNN (libdnnl-dev,
# dnnl_sgemm, JIT for the ISA it finds).  Shapes of TinyLlama-1.1B at n = 1
# (decode) and n = 128 (prefill).  The four alternate ROUNDS times; each
# keeps its best per shape.
#   bench/gemm.sh [THREADS] [ROUNDS]
# Needs: apt-get install libopenblas-dev libblis-pthread-dev libdnnl-dev
# Prints one markdown table: best ms per product, and each one's time over
# OpenBLAS's with the engine's kernel set (above 1: OpenBLAS is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-4}
out=${TMPDIR:-/tmp}/infer-gemm.$$
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
blis=/usr/lib/x86_64-linux-gnu/blis-pthread
cc -O2 -DUSE_OPENBLAS bench/gemm/gemm.c -o "$out/openblas" -lopenblas
cc -O2 -DUSE_BLIS -I/usr/include/x86_64-linux-gnu/blis-pthread \
   bench/gemm/gemm.c -o "$out/blis" -L$blis -Wl,-rpath,$blis -lblis
cc -O2 -DUSE_DNNL bench/gemm/gemm.c -o "$out/dnnl" -ldnnl

# the engine's choice, as blas.c makes it
core=$(grep -q avx512bw /proc/cpuinfo && echo SkylakeX ||
       { grep -q avx2 /proc/cpuinfo &&
         { grep -q AuthenticAMD /proc/cpuinfo && echo Zen || echo Haswell; } ||
         echo ""; })
for r in $(seq "$rounds"); do
    OPENBLAS_CORETYPE=$core "$out/openblas" "$threads" 5 > "$out/ob.$r"
    OPENBLAS_CORETYPE=Prescott "$out/openblas" "$threads" 5 > "$out/pr.$r"
    "$out/blis" "$threads" 5 > "$out/bl.$r"
    OMP_NUM_THREADS=$threads "$out/dnnl" "$threads" 5 > "$out/dn.$r"
done
echo "| product (out x in) | n | OpenBLAS $core ms | OpenBLAS Prescott ms | BLIS ($(sed -n 's/^# \([^,]*\),.*/\1/p' "$out/bl.1")) ms | oneDNN ms | Prescott / $core | BLIS / $core | oneDNN / $core |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
awk '
FNR == 1 { split(FILENAME, p, "/"); lib = substr(p[length(p)], 1, 2); next }
{ k = $1 " (" $3 " x " $4 ")|" $2
  if (!(k in seen)) { seen[k] = 1; order[++n] = k }
  v = $5 + 0; if (!((k, lib) in ms) || v < ms[k, lib]) ms[k, lib] = v }
END { for (i = 1; i <= n; i++) { k = order[i]; split(k, kk, "|")
  printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.2fx |\n",
    kk[1], kk[2], ms[k, "ob"], ms[k, "pr"], ms[k, "bl"], ms[k, "dn"],
    ms[k, "pr"] / ms[k, "ob"], ms[k, "bl"] / ms[k, "ob"],
    ms[k, "dn"] / ms[k, "ob"] } }' "$out"/ob.* "$out"/pr.* "$out"/bl.* "$out"/dn.*

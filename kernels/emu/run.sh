#!/usr/bin/env bash
# Builds the CUDA kernels, the CUDA backend and the GPU tests against a CPU
# emulation of CUDA (this folder) and runs the tests: a check of indexing,
# synchronisation and host logic on machines without a GPU.  Slow (one
# thread per CUDA thread): minutes.  Not a substitute for the GPU run.
#   kernels/emu/run.sh [TEST...]     (default: every t/unit/test_cuda_*)
# EMU_DEVICES=N sets the device count (default 2: tp=2 runs).
# SAN= (empty) drops AddressSanitizer/UBSan, which are on by default.
set -euo pipefail
cd "$(dirname "$0")/../.."
emu=kernels/emu
out=build-emu
san=${SAN-"-fsanitize=address,undefined"}
tests=${*:-test_cuda_kernels test_cuda_model test_cuda_comm test_cuda_tp \
            test_cuda_families}
mkdir -p $out/gen
inc="-I$emu/inc -Ikernels -Isrc/engine -Isrc/proto -DINFER_HAVE_CUDA"
# -mf16c: halves convert in hardware, not libgcc (x86-64 since 2012)
cxx="g++ -std=c++20 -O1 -g -mf16c -pthread $san -include emu_device.h $inc"
cc="gcc -std=gnu11 -O1 -g -pthread -fopenmp-simd $san -D_GNU_SOURCE $inc -It/unit"
objs=()
for f in kernels/*.cu; do
    b=$(basename "$f" .cu)
    python3 $emu/launch.py "$f" $out/gen/$b.cpp
    $cxx -c $out/gen/$b.cpp -o $out/cu_$b.o
    objs+=($out/cu_$b.o)
done
$cxx -c $emu/emu_runtime.cpp -o $out/emu_runtime.o
$cxx -c $emu/emu_nccl.cpp -o $out/emu_nccl.o
# the engine library as the Makefile builds it, with the protobuf C the
# codecs include (protoc-c, as there)
mkdir -p $out/pb
for p in src/proto/*.proto; do
    protoc-c --proto_path=src/proto --c_out=$out/pb "$p"
done
for f in src/engine/*.c src/proto/*.c kernels/*.c src/engine/cuda/*.c \
         $out/pb/*.c
do
    b=$(basename "$f" .c)
    $cc -I$out/pb -c "$f" -o $out/c_$b.o
    objs+=($out/c_$b.o)
done
# the families' test makes its models with the generator
$cc -c tools/infer-gen-model.c -o $out/infer-gen-model.o
g++ -pthread $san $out/infer-gen-model.o "${objs[@]}" $out/emu_runtime.o \
    $out/emu_nccl.o -o $out/infer-gen-model -ljansson -lpcre2-8 -lutf8proc \
    -lopenblas -lprotobuf-c -lmsgpackc -lm
export INFER_GEN_MODEL=$out/infer-gen-model
rc=0
for t in $tests; do
    $cc -c t/unit/$t.c -o $out/$t.o
    g++ -pthread -fopenmp-simd $san $out/$t.o "${objs[@]}" $out/emu_runtime.o \
        $out/emu_nccl.o -o $out/$t -ljansson -lpcre2-8 -lutf8proc \
        -lopenblas -lprotobuf-c -lmsgpackc -lm
    echo "# $t (CUDA emulated on the CPU)"
    $out/$t || rc=1
done
exit $rc

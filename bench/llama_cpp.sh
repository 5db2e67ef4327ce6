#!/usr/bin/env bash
# llama.cpp, the CPU speed peer of bench/cpu.sh (PEER=llama.cpp): the copy
# inside PyPI's llama-cpp-python sdist, built with -march=native, and a
# model directory converted by its convert_hf_to_gguf.py.
#   bench/llama_cpp.sh WORKDIR MODEL_DIR [OUTTYPES]
# Leaves WORKDIR/build/bin/llama-bench, llama-batched-bench and
# WORKDIR/NAME-TYPE.gguf for each of OUTTYPES (default "f32 bf16 f16
# q8_0"), never anything in the repository.
# Needs cmake and g++ (apt-get install cmake g++), pip, and a Python with
# torch + transformers (PYTHON, default /work/venv-ref/bin/python); the
# converter's other dependency (sentencepiece) goes into WORKDIR/venv.
set -euo pipefail
work=${1:?usage: bench/llama_cpp.sh WORKDIR MODEL_DIR [OUTTYPES]}
model=${2:?usage: bench/llama_cpp.sh WORKDIR MODEL_DIR [OUTTYPES]}
types=${3:-f32 bf16 f16 q8_0}
python=${PYTHON:-/work/venv-ref/bin/python}
mkdir -p "$work"
cd "$work"

if [ ! -x build/bin/llama-bench ]; then
    "$python" -m pip download --no-binary :all: --no-deps \
        llama-cpp-python -d .
    tar xzf llama_cpp_python-*.tar.gz
    src=$(ls -d llama_cpp_python-*/vendor/llama.cpp | tail -1)
    cmake -S "$src" -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DCMAKE_C_FLAGS=-march=native -DCMAKE_CXX_FLAGS=-march=native \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
    cmake --build build -j"$(nproc)" --target llama-bench llama-batched-bench
fi
src=$(ls -d llama_cpp_python-*/vendor/llama.cpp | tail -1)

if [ ! -x venv/bin/python ]; then
    "$python" -m venv venv
    venv/bin/pip install -q sentencepiece
fi
site=$("$python" -c 'import site; print(site.getsitepackages()[0])')
name=$(basename "$model")
for t in $types; do
    [ -f "$name-$t.gguf" ] && continue
    PYTHONPATH="$src/gguf-py:$site" venv/bin/python \
        "$src/convert_hf_to_gguf.py" "$model" --outtype "$t" \
        --outfile "$name-$t.gguf"
done
ls -l "$work"/*.gguf

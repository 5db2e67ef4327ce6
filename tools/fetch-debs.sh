#!/usr/bin/env bash
# Downloads the Debian packages bench/gpu.sh needs on a machine without them
# (the GPU machine has no internet): runtime + dev packages of jansson,
# PCRE2, OpenBLAS, and nginx (its source tree from nginx-dev to build nginx
# and the module, plus the headers nginx's configure checks for).
#   tools/fetch-debs.sh [DIR]     (default .debs, git-ignored)
# Then carry DIR to the GPU machine; bench/gpu.sh dpkg -x'es what it finds.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.debs}
mkdir -p "$dir"
pkgs=(
    libjansson4 libjansson-dev
    libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libpcre2-dev
    libopenblas0 libopenblas0-pthread libopenblas-dev libopenblas-pthread-dev
    libgfortran5 libquadmath0
    nginx nginx-core nginx-common nginx-dev
    libssl3 libssl-dev zlib1g zlib1g-dev libcrypt1 libcrypt-dev
)
cd "$dir"
apt-get download "${pkgs[@]}"
ls -la
du -sh .

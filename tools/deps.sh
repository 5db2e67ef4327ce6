#!/usr/bin/env bash
# Installs the Debian packages the build (and, with --test, the test suites)
# need, skipping those already present.  Used by tools/run.sh, `make deps`
# and .ci/run, so the list lives here only.
set -euo pipefail

packages="build-essential ca-certificates curl nginx-core nginx-dev
          libjansson-dev libpcre2-dev libopenblas-dev libutf8proc-dev
          libprotobuf-c-dev protobuf-c-compiler libmsgpack-dev"
# clang and the libFuzzer and sanitizer runtimes (libclang-rt-14-dev, only
# a recommendation of clang's, so --no-install-recommends skips it) are for
# `make fuzz`; python3-venv for the suites' Python clients (make venv).
if [ "${1:-}" = --test ]; then
    packages="$packages openssl nghttp2-client libtest-base-perl
              libtext-diff-perl liblist-moreutils-perl libtest-longstring-perl
              libwww-perl liburi-perl libipc-run-perl clang
              libclang-rt-14-dev python3-venv"
fi

missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends $missing
fi

# t/018 lints the metrics with promtool, which Debian ships only inside
# its prometheus package: the whole server (96 MB installed, a service and
# its user).  Only promtool is taken from it, into /usr/local/bin.
if [ "${1:-}" = --test ] && ! command -v promtool >/dev/null; then
    echo "deps: promtool from Debian's prometheus package"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && { apt-get download prometheus 2>/dev/null \
                    || { $sudo apt-get update && apt-get download prometheus; }; })
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb \
        | tar -x -C "$tmp" ./usr/bin/promtool
    $sudo install -m 755 "$tmp/usr/bin/promtool" /usr/local/bin/promtool
    rm -rf "$tmp"
fi

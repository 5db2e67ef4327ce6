#!/usr/bin/env bash
# Runs the nginx suites t/*.t against a module built with ASan+UBSan (make
# asan-nginx builds it and calls this from the repository root):
#   tools/asan-nginx.sh BUILD_DIR
# Environment (the Makefile sets it): NGINX_BIN, MODULE, MODEL_DIR,
# GEN_MODEL, SHARED_DIR, TEST_NGINX_I, CC (whose sanitizer runtimes the
# module was built with); ASAN_NGINX_SUITES (default t/*.t) picks suites.
#
# The Debian nginx is not instrumented: BUILD/nginx-asan starts it with
# libasan preloaded, and the workers, forked without exec, inherit it.  A
# worker's stderr is nginx's error log, which the harness wipes with every
# test block, so ASan writes to files in BUILD/sanitizer/ instead; after
# each suite those files are read:
#   - any AddressSanitizer error fails the run, and so does a UBSan check
#     (they trap: see below);
#   - a leak fails it when its allocation stack has a frame outside nginx,
#     libc and OpenSSL (the module, the engine, jansson, ...).  A frame of
#     no module is not ours (the module is preloaded, so its frames have
#     its name): it is the unwinder's guess past OpenSSL's frames, which
#     have no frame pointers (the TLS state of t/021-fleet.t's front and
#     instances).  nginx itself does not free its cycle's connections and
#     pools before exit; those leaks are counted, not failed.
# Each suite runs from a copy of t/ in BUILD/suites: the suites keep their
# servroots under the working directory, and a plain `make test` must not
# find them changed.
set -uo pipefail

build=${1:?usage: tools/asan-nginx.sh BUILD_DIR}
build=$(cd "$build" && pwd)
nginx=${NGINX_BIN:-/usr/sbin/nginx}
cc=${CC:-cc}
reports=$build/sanitizer
suites=$build/suites

runtime=$($cc -print-file-name=libasan.so)
[ -e "$runtime" ] || { echo "asan-nginx: no $runtime" >&2; exit 1; }

# The module is preloaded too: nginx dlclose()s it before exit, when
# LeakSanitizer looks, and the stacks of its leaks would have no names.
# ASan reads its options as it starts, before nginx empties the
# environment of its processes; UBSan's runtime would read them at its
# first report, too late, and write to stderr, that is the error log the
# harness wipes.  So the module's UBSan checks trap
# (-fsanitize-undefined-trap-on-error) and ASan reports the SIGILL
# (handle_sigill) with the stack of the check that failed.
# detect_leaks: LeakSanitizer runs as each nginx process exits; exitcode=0
# keeps the exit status of a worker that leaked (nginx's own leaks, which
# every exit has) from looking like a crash to the master and the suites,
# abort_on_error makes a real error a signal the master logs as one.
# allocator_may_return_null: an allocation too large to make returns NULL,
# as malloc does, instead of aborting; the suites check that the engine
# refuses such a configuration gracefully.  The workers run as nobody under
# root: the report directory is world-writable.
options=detect_leaks=1:exitcode=0:abort_on_error=1:handle_sigill=1
options=$options:allocator_may_return_null=1
cat >"$build/nginx-asan" <<EOF
#!/bin/sh
# $nginx with the sanitizer runtime of the module (tools/asan-nginx.sh)
LD_PRELOAD="$runtime $MODULE"
ASAN_OPTIONS=$options:log_path=$reports/asan
export LD_PRELOAD ASAN_OPTIONS
exec $nginx "\$@"
EOF
chmod +x "$build/nginx-asan"

rm -rf "$reports" "$suites"
mkdir -p -m 1777 "$reports"
mkdir -p "$suites/t"
cp -r t/*.t t/lib "$suites/t/"
# 007 generates its model into t/servroot-models, which only an earlier
# suite makes; here a suite may run alone (ASAN_NGINX_SUITES).
mkdir -p "$suites/t/servroot-models"

# Prints the leaks of one LeakSanitizer report that are ours (see above);
# the number of nginx's own goes to the file named by $2.
our_leaks() {
    awk -v nginx="$nginx" -v own="$2" '
        function flush() {
            if (block != "") {
                if (ours) { printf "%s\n", block } else { n_own++ }
            }
            block = ""; ours = 0
        }
        /^(Direct|Indirect) leak of/ { flush(); block = $0; next }
        block != "" && /^ *#[0-9]+ / {
            block = block "\n" $0
            if ($1 == "#0" || /libsanitizer/) { next }
            if (index($0, "(" nginx "+") || /\/libc\.so|sysdeps\/|csu\// \
                || /\/libssl\.so|\/libcrypto\.so/ \
                || /\(<unknown module>\)/) { next }
            ours = 1
            next
        }
        /^$/ { if (block != "") { flush() } }
        END { flush(); print n_own + 0 > own }
    ' "$1"
}

failed=0
own_total=0
start=$SECONDS
# nginx processes a suite left behind (one it gave up on): they hold its
# ports.  They are ours by the servroot path in their command line.
stop_leftovers() {
    local pids
    pids=$(pgrep -f -- "-p $suites/") || return 0
    kill -QUIT $pids 2>/dev/null
    sleep 2
    pids=$(pgrep -f -- "-p $suites/") || return 0
    kill -KILL $pids 2>/dev/null
}

for t in ${ASAN_NGINX_SUITES:-t/*.t}; do
    name=$(basename "$t" .t)
    (cd "$suites" && TEST_NGINX_BINARY="$build/nginx-asan" \
        TEST_NGINX_LOAD_MODULES="$MODULE" TEST_NGINX_MODEL_DIR="$MODEL_DIR" \
        TEST_NGINX_GEN_MODEL="$GEN_MODEL" INFER_SHARED="$SHARED_DIR" \
        timeout "${ASAN_NGINX_SUITE_TIMEOUT:-300}" prove $TEST_NGINX_I "$t") \
        || failed=1
    stop_leftovers

    ls "$reports"/*.* >/dev/null 2>&1 || continue
    dir=$reports/$name
    mkdir -p "$dir"
    mv "$reports"/*.* "$dir/"
    shown=0
    for f in "$dir"/*; do
        if grep -q 'ERROR: AddressSanitizer' "$f"; then
            failed=1
            # a master respawning a worker that dies writes many alike
            shown=$((shown + 1))
            [ $shown -le 3 ] || continue
            echo "asan-nginx: $t: sanitizer error ($f):"
            grep -E -m 20 'ERROR|SUMMARY|#[0-9]+ ' "$f"
        elif grep -q 'ERROR: LeakSanitizer' "$f"; then
            mine=$(our_leaks "$f" "$f.own")
            own_total=$((own_total + $(cat "$f.own")))
            rm -f "$f.own"
            if [ -n "$mine" ]; then
                failed=1
                shown=$((shown + 1))
                [ $shown -le 3 ] || continue
                echo "asan-nginx: $t: leaks from our code ($f):"
                echo "$mine" | head -n 60
            fi
        fi
    done
    [ $shown -le 3 ] || echo "asan-nginx: $t: $((shown - 3)) more reports" \
                             "in $dir"
done
echo "asan-nginx: $((SECONDS - start)) s; $own_total leaks of nginx's own" \
     "(allocations it keeps until exit) ignored; reports in $reports"
[ $failed = 0 ] && echo "asan-nginx: ok" || echo "asan-nginx: FAILED"
exit $failed

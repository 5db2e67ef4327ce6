#!/usr/bin/env bash
# Runs the libFuzzer harnesses built in BUILD/fuzz (make fuzz builds them
# and calls this from the repository root):
#   1. every file of $INFER_SHARED/repro (default ../shared/repro) once
#      through every harness: whatever the bytes, no harness may crash;
#   2. each harness fuzz_NAME for FUZZ_TIME seconds (default 20), FUZZ_JOBS
#      at once (default: the CPU count), on a scratch copy of its seeds
#      fuzz/corpus/NAME, so the committed corpus never grows in CI.
# fuzz/fuzz_NAME.dict is passed as -dict, fuzz/fuzz_NAME.options (libFuzzer
# flags) after the defaults, so it can override them.  Any crash,
# leak, sanitizer report, property failure, timeout (FUZZ_TIMEOUT seconds
# for one input, default 10) or memory blow-up (FUZZ_RSS_MB, default 2048)
# fails the run; the input that did it is kept as BUILD/fuzz-run/NAME/
# crash-* (or leak-, timeout-, oom-) to replay with BUILD/fuzz/NAME FILE.
set -uo pipefail

build=${1:?usage: fuzz/run.sh BUILD_DIR}
time_=${FUZZ_TIME:-20}
jobs_=${FUZZ_JOBS:-$(nproc)}
timeout_=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
repro=${INFER_SHARED:-../shared}/repro
out=$(realpath -m "$build/fuzz-run")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

harnesses=()
for bin in "$build"/fuzz/fuzz_*; do
    case $bin in *.d) continue ;; esac
    [ -x "$bin" ] && harnesses+=("$(basename "$bin")")
done
if [ ${#harnesses[@]} = 0 ]; then
    echo "fuzz: no harnesses in $build/fuzz" >&2
    exit 1
fi

rm -rf "$out"
mkdir -p "$out"

# The flags every run of NAME gets.
flags() {
    local name=$1
    echo "-timeout=$timeout_ -rss_limit_mb=$rss"
    [ -f "fuzz/$name.dict" ] && echo "-dict=fuzz/$name.dict"
    [ -f "fuzz/$name.options" ] && cat "fuzz/$name.options"
}

# Each harness runs in its own TMPDIR, removed afterwards (the harnesses
# write the files they hand the loaders there).
run() {
    local name=$1 dir=$2
    shift 2
    mkdir -p "$dir/tmp"
    TMPDIR=$dir/tmp "$build/fuzz/$name" $(flags "$name") \
        -artifact_prefix="$dir/" "$@"
    local rc=$?
    rm -rf "$dir/tmp"
    return $rc
}

# The lines of a log that say what broke and where.
report() {
    local what='ERROR|SUMMARY|property failed|runtime error|Test unit written'
    grep -E -m 14 "$what|#[0-9]+ 0x" "$1" | cut -c1-160 | sed 's/^/    /'
}

failed=0
start=$SECONDS

# One run per harness over all the files: libFuzzer stops at the first
# that fails, whose name is the last "Running:" line.
repro_files=()
for f in "$repro"/*; do
    [ -f "$f" ] && repro_files+=("$f")
done
if [ ${#repro_files[@]} -gt 0 ]; then
    for name in "${harnesses[@]}"; do
        dir=$out/$name/repro
        mkdir -p "$dir"
        if ! run "$name" "$dir" "${repro_files[@]}" >"$dir/log" 2>&1; then
            echo "fuzz: FAIL $name on" \
                 "$(sed -n 's/^Running: //p' "$dir/log" | tail -1)" \
                 "(log $dir/log):"
            report "$dir/log"
            failed=1
        fi
    done
    echo "fuzz: $repro through ${#harnesses[@]} harnesses:" \
         "$([ $failed = 0 ] && echo ok || echo FAILED)"
else
    echo "fuzz: no $repro, regression inputs skipped"
fi

fuzz_one() {
    local name=$1 dir=$out/$1
    mkdir -p "$dir/corpus"
    if [ -d "fuzz/corpus/${name#fuzz_}" ]; then
        cp -r "fuzz/corpus/${name#fuzz_}/." "$dir/corpus/"
    fi
    run "$name" "$dir" -max_total_time="$time_" -print_final_stats=1 \
        "$dir/corpus" >"$dir/log" 2>&1
    echo $? >"$dir/rc"
}

for name in "${harnesses[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_" ]; do
        wait -n
    done
    fuzz_one "$name" &
done
wait

for name in "${harnesses[@]}"; do
    dir=$out/$name
    rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
    cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1)
    if [ "$rc" = 0 ]; then
        echo "fuzz: ok   $name: ${execs:-?} runs, $cov"
    else
        echo "fuzz: FAIL $name (exit $rc, log $dir/log):"
        report "$dir/log"
        failed=1
    fi
done
echo "fuzz: $((SECONDS - start)) s"
exit $failed

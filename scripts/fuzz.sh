#!/usr/bin/env bash
# Builds the libFuzzer drivers (tests/fuzz/) into ./build-fuzz with clang and runs each one, one after another, for
# SECONDS (default 10). Exits non-zero when a driver crashes, leaks, trips a sanitizer or an invariant, or times out on
# one input; the input that did it is saved under build-fuzz/fuzz-crashes/<driver>/ and named in the output.
#
#   scripts/fuzz.sh [SECONDS] [DRIVER...]     e.g. scripts/fuzz.sh 10   or   scripts/fuzz.sh 600 fuzz_policy
#
# Each driver starts from its committed seeds (tests/fuzz/corpus/<driver>/, read only) plus a scratch corpus
# (build-fuzz/fuzz-corpus/<driver>/, where new inputs go and which later runs reuse), with tests/fuzz/<driver>.dict.
# The last line per driver gives executions, exec/s, libFuzzer's cov/ft and the corpus size.
#
# Environment: SK_FUZZ_DIR (default ./build-fuzz), SK_FUZZ_RUNS (stop each driver after this many executions; SECONDS
# stays the cap), SK_FUZZ_NICE (default 15), SK_FUZZ_RSS_MB (default 2048), SK_FUZZ_TIMEOUT (seconds per input,
# default 10), SK_JOBS (build parallelism, default 2), SK_FUZZ_FRESH=1 to start from the seeds only.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECS=${1:-10}
shift || true
DIR=${SK_FUZZ_DIR:-$ROOT/build-fuzz}
NICE=${SK_FUZZ_NICE:-15}
JOBS=${SK_JOBS:-2}

command -v clang >/dev/null 2>&1 || {
    echo "fuzz.sh: clang is missing (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2
    exit 1
}
mkdir -p "$DIR"
if ! CC=clang cmake -S "$ROOT" -B "$DIR" -DSK_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$DIR/configure.log" 2>&1; then
    cat "$DIR/configure.log" >&2
    echo "fuzz.sh: configure failed" >&2
    exit 1
fi
nice -n "$NICE" cmake --build "$DIR" -j"$JOBS" --target fuzz >"$DIR/build.log" 2>&1 || {
    tail -40 "$DIR/build.log" >&2
    echo "fuzz.sh: build failed" >&2
    exit 1
}

drivers=("$@")
if [ "${#drivers[@]}" -eq 0 ]; then
    for f in "$DIR"/fuzz/fuzz_*; do
        [ -x "$f" ] && drivers+=("$(basename "$f")")
    done
fi
[ "${#drivers[@]}" -gt 0 ] || {
    echo "fuzz.sh: no drivers built" >&2
    exit 1
}

failed=0
summary=()
for d in "${drivers[@]}"; do
    bin=$DIR/fuzz/$d
    seeds=$ROOT/tests/fuzz/corpus/$d
    scratch=$DIR/fuzz-corpus/$d
    crashes=$DIR/fuzz-crashes/$d
    log=$DIR/fuzz-logs/$d.log
    [ "${SK_FUZZ_FRESH:-0}" = 1 ] && rm -rf "$scratch"
    mkdir -p "$scratch" "$crashes" "$(dirname "$log")"
    args=(-max_total_time="$SECS" -rss_limit_mb="${SK_FUZZ_RSS_MB:-2048}" -timeout="${SK_FUZZ_TIMEOUT:-10}"
        -print_final_stats=1 -artifact_prefix="$crashes/")
    [ -n "${SK_FUZZ_RUNS:-}" ] && args+=(-runs="$SK_FUZZ_RUNS")
    [ -f "$ROOT/tests/fuzz/$d.dict" ] && args+=(-dict="$ROOT/tests/fuzz/$d.dict")
    [ -d "$seeds" ] || seeds=
    t0=$(date +%s)
    # the scratch dir first: libFuzzer writes new inputs into the first corpus dir, and the seeds stay as committed
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        nice -n "$NICE" "$bin" "${args[@]}" "$scratch" $seeds >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [0-9]+\/[0-9a-zA-Z]+).*/\1/')
    line="$d: ${execs:-?} execs in ${secs}s (${speed:-?} exec/s), ${last:-no stats}"
    if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant failed' "$log"; then
        failed=1
        line="$line: FAILED (rc $rc), log $log"
        grep -E 'ERROR:|runtime error:|invariant failed|SUMMARY|Test unit written to' "$log" | head -10
        ls "$crashes" 2>/dev/null | sed "s|^|  saved: $crashes/|"
    fi
    echo "$line"
    summary+=("$line")
done
echo
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "fuzz.sh: FAILED"
    exit 1
fi
echo "fuzz.sh: ${#drivers[@]} drivers, no crash, leak or sanitizer report"

#!/usr/bin/env bash
# Runs every check SecKill has, and exits non-zero if any fails:
#   1. scripts/setup.sh: packages and the RelWithDebInfo build in ./build
#   2. an ASan+UBSan build of the unit tests (plus seckilld and the access plugin, for the fault runs) in
#      ./build-asan, and `ctest -L unit` there
#   3. the whole CTest suite in ./build (unit, integration, style)
#   4. scripts/check-format.sh (clang-format --dry-run --Werror over our C files)
#   5. scripts/fuzz.sh: the libFuzzer drivers of tests/fuzz built in ./build-fuzz (clang) and run SK_FUZZ_SECONDS
#      (default 10) each; fails on any crash, leak, sanitizer report or broken invariant
# The last line is a one-line summary. Used by .ci/run (fresh clone, root, CI=true, no stdin).
#
# Environment: SK_JOBS (default 2), SK_BUILD_DIR / SK_ASAN_BUILD_DIR (./build, ./build-asan),
# SK_SKIP_ASAN=1 to skip step 2, SK_SKIP_FUZZ=1 to skip step 5, SK_CTEST_ARGS for extra ctest arguments in step 3 (e.g. "-L unit").
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${SK_JOBS:-2}
export SK_BUILD_DIR=${SK_BUILD_DIR:-$ROOT/build} # setup.sh builds there, ctest runs there
ASAN_DIR=${SK_ASAN_BUILD_DIR:-$ROOT/build-asan}

t_start=$(date +%s)
summary=()
failed=0

step() { # name command...
    local name=$1 t0 rc
    shift
    echo
    echo "=================== $name ==================="
    t0=$(date +%s)
    "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        summary+=("$name ok ($(($(date +%s) - t0))s)")
    else
        summary+=("$name FAILED ($(($(date +%s) - t0))s)")
        failed=1
    fi
    return "$rc"
}

run_ctest() {
    # -j lets unit tests share the two cores; integration tests are RUN_SERIAL in CMakeLists.txt.
    # shellcheck disable=SC2086
    ctest --test-dir "$SK_BUILD_DIR" --output-on-failure --no-tests=error -j"$JOBS" ${SK_CTEST_ARGS:-}
}

asan_unit_tests() {
    local targets=() f
    for f in tests/unit/test_*.c tests/plugins/*.c; do
        [ -e "$f" ] && targets+=("$(basename "${f%.c}")")
    done
    if [ "${#targets[@]}" -eq 0 ]; then
        echo "no unit tests"
        return 0
    fi
    mkdir -p "$ASAN_DIR"
    cmake -S "$ROOT" -B "$ASAN_DIR" -DSK_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >"$ASAN_DIR/configure.log" 2>&1 || {
        cat "$ASAN_DIR/configure.log"
        return 1
    }
    # seckilld and the plugins too (their libraries are built for the unit tests anyway): the fault runs start one
    # access node under ASan (harness Node(asan=True))
    cmake --build "$ASAN_DIR" -j"$JOBS" --target "${targets[@]}" seckilld access logic admin || return 1
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        ctest --test-dir "$ASAN_DIR" -L unit --output-on-failure --no-tests=error -j"$JOBS"
}

built=0
if step setup bash scripts/setup.sh; then
    built=1
fi
if [ "$built" = 1 ]; then
    # ASan first, so that the integration tests find the sanitized seckilld it builds
    if [ "${SK_SKIP_ASAN:-0}" != 1 ]; then
        step asan asan_unit_tests
        export SK_ASAN_BUILD_DIR=$ASAN_DIR
    fi
    step ctest run_ctest
else
    summary+=("ctest skipped (build failed)")
    summary+=("asan skipped (build failed)")
fi
step format bash scripts/check-format.sh
if [ "${SK_SKIP_FUZZ:-0}" != 1 ]; then
    # a short, bounded run (about 2 minutes with the build); scripts/fuzz.sh SECONDS runs them longer
    step fuzz bash scripts/fuzz.sh "${SK_FUZZ_SECONDS:-10}"
fi

elapsed=$(($(date +%s) - t_start))
echo
verdict=PASS
[ "$failed" = 1 ] && verdict=FAIL
( IFS=';'; echo "test.sh: $verdict in ${elapsed}s: ${summary[*]}" ) | sed 's/;/, /g'
exit "$failed"

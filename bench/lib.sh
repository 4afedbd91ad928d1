# Shell helpers shared by bench/run-all.sh and bench/run-cluster.sh (sourced; each script defines its own die()).

wait_for() { # what timeout_s pid command...
    local what=$1 t=$2 pid=$3 i
    shift 3
    for ((i = 0; i < t * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    die "$what did not come up (logs in $TMP; rerun with --keep)"
}
# SIGTERM, up to 5 s to go, then SIGKILL, and reap: stop_pids pid...
stop_pids() { # pid...
    local p
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# µs of CPU per request: ticks_before ticks_after requests
cpu_us() { python3 -c 'import sys; a, b, n, hz = map(float, sys.argv[1:]); print("%.1f" % ((b - a) / hz * 1e6 / n if n else 0))' "$@" "$CLK_TCK"; }
# a field of the JSON summary on the last line of stdin: json_get 'd["throughput"]'
json_get() { python3 -c 'import json, sys; d = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(eval(sys.argv[1]))' "$1"; }

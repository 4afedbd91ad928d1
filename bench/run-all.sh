#!/usr/bin/env bash
# The README "Benchmarks": SecKill against a bare libh2o server (bench/h2o_hello, 1 thread), A/B in the same run.
#
#   bench/run-all.sh [--quick] [--duration S] [--rounds N] [--only info,soldout,full] [--conns "64 256"] [--queue-redis]
#                    [--keep]
#
# It starts its own redis-server, etcd and three seckilld processes (access with 1 HTTP thread, logic, admin) on free
# loopback ports in a temporary directory, and stops all of them at exit. Then, each path against h2o_hello first
# and seckilld second (wrk -t1 -c64, or seckill-bench with the same 64 connections):
#   info     GET /sec/info                          wrk
#   soldout  /sec/kill of a sold-out activity       wrk with pre-signed requests (bench/wrk-paths.lua), answered 1007
#                                                   from memory by the access node
#   full     /sec/kill, large stock, distinct users seckill-bench closed loop (it also checks the sale's invariants),
#            then Redis itself: redis-benchmark SET with the same connections against the run's Redis, one durable
#            write per request. A full-path request needs two durable writes in a row, so half that rate is its ceiling.
# and reports req/s and server CPU µs per request (utime+stime from /proc/<pid>/stat, before and after each run).
#
# The load comes from one client IP, so the run uses the shipped policies with a limits.lua that admits everything
# (the default allows 50 requests per IP per second). Redis runs with AOF appendfsync always, the shipped setting.
#
# Options: --duration S seconds per measurement (default 10; --quick = 3), --rounds N repeats every A/B pair N times
# (A B A B ...; default 1), --only LIST measures a subset, --conns LIST the connection counts of the full path and its
# Redis baseline (default "64 256"; /sec/info and sold-out use SK_BENCH_CONNS), --queue-redis also starts a second
# redis-server without AOF and sets redis.queue_addr on every node (README "A separate queue Redis"; its CPU counts as
# Redis CPU), --keep keeps the temporary directory.
# Per full-path connection count it prints the issue-14 ratios: server CPU per request (access + logic + Redis) over the
# bare handler's, Redis CPU per request over what redis-benchmark SET costs the same Redis (AOF, appendfsync as the
# run's) per request, and throughput and p99 against their targets.
# Environment: SK_BUILD_DIR (default ./build), SK_BENCH_CONNS (64), SK_BENCH_USERS (distinct users of the full path,
# default 1000000), SK_BENCH_FSYNC (always|everysec, default always).
# Run time: about (3 + 2 x connection counts) x duration + 20 s (about 2 min at the default). The last line is a JSON summary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${SK_BUILD_DIR:-$ROOT/build}
CONNS=${SK_BENCH_CONNS:-64}
USERS=${SK_BENCH_USERS:-1000000}
FSYNC=${SK_BENCH_FSYNC:-always}
DURATION=10
ROUNDS=1
ONLY=info,soldout,full
KEEP=0
QUEUE_REDIS=0
FULL_CONNS="64 256"

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) DURATION=3 ;;
    --duration)
        DURATION=${2:?--duration needs a value}
        shift
        ;;
    --rounds)
        ROUNDS=${2:?--rounds needs a value}
        shift
        ;;
    --only)
        ONLY=${2:?--only needs a list}
        shift
        ;;
    --conns)
        FULL_CONNS=${2:?--conns needs a list}
        shift
        ;;
    --keep) KEEP=1 ;;
    --queue-redis) QUEUE_REDIS=1 ;;
    -h | --help)
        sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run-all: unknown argument $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || { echo "run-all: --duration takes whole seconds >= 1" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || { echo "run-all: --rounds takes an integer >= 1" >&2; exit 2; }
FULL_CONNS=${FULL_CONNS//,/ }
for c in $FULL_CONNS; do
    [[ "$c" =~ ^[0-9]+$ && "$c" -ge 1 && "$c" -le 4096 ]] || { echo "run-all: --conns takes counts 1..4096" >&2; exit 2; }
done

say() { echo "run-all: $*" >&2; }
die() {
    echo "run-all: error: $*" >&2
    exit 1
}
want() { [[ ",$ONLY," == *",$1,"* ]]; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

SECKILLD=$BUILD/seckilld
BENCH=$BUILD/seckill-bench
HELLO=$BUILD/h2o_hello
for f in "$SECKILLD" "$BENCH" "$HELLO" "$BUILD/plugins/access.so" "$BUILD/plugins/logic.so" "$BUILD/plugins/admin.so"; do
    [ -e "$f" ] || die "$f is missing: build first (scripts/setup.sh, or cmake --build $BUILD)"
done
for c in wrk redis-server redis-cli redis-benchmark etcd python3 curl; do
    command -v "$c" >/dev/null || die "$c is not installed (scripts/setup.sh installs it)"
done

TMP=$(mktemp -d /tmp/sk-bench-XXXXXX)
PIDS=()
cleanup() {
    stop_pids "${PIDS[@]}"
    if [ "$KEEP" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing listens on, outside the ephemeral range, not handed out before in this run.
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        [[ "$USED_PORTS" == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
    done
    die "no free port"
}

# --- Redis, etcd ---
REDIS_PORT=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes --appendfsync "$FSYNC" --save "" \
    --daemonize no --logfile "$TMP/redis.log" </dev/null >/dev/null 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
QUEUE_CONF=
QREDIS_PIDS=()
if [ "$QUEUE_REDIS" = 1 ]; then
    QREDIS_PORT=$(free_port)
    mkdir -p "$TMP/qredis"
    # the queue only: a crash loses queued, undecided requests (their clients get 1008), so no AOF and no snapshot
    redis-server --port "$QREDIS_PORT" --bind 127.0.0.1 --dir "$TMP/qredis" --appendonly no --save "" --daemonize no \
        --logfile "$TMP/qredis.log" </dev/null >/dev/null 2>&1 &
    QREDIS_PID=$!
    PIDS+=("$QREDIS_PID")
    QREDIS_PIDS=(--server-pid "$QREDIS_PID")
    QUEUE_CONF="redis.queue_addr = 127.0.0.1:$QREDIS_PORT"
    wait_for "queue redis" 15 "$QREDIS_PID" sh -c "redis-cli -p $QREDIS_PORT PING | grep -q PONG"
fi
ETCD_PORT=$(free_port)
ETCD_PEER=$(free_port)
etcd --name bench --data-dir "$TMP/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER" \
    --experimental-watch-progress-notify-interval=2s --logger zap --log-outputs stderr --log-level warn \
    </dev/null >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
wait_for redis 15 "$REDIS_PID" sh -c "redis-cli -p $REDIS_PORT PING | grep -q PONG"
wait_for etcd 20 "$ETCD_PID" sh -c "curl -fsS --max-time 1 http://127.0.0.1:$ETCD_PORT/health | grep -q true"

# --- the policies: the shipped ones, with a limits.lua that admits the single client IP ---
mkdir -p "$TMP/policies"
cp "$ROOT"/policies/*.lua "$TMP/policies/"
printf -- '-- bench/run-all.sh: the whole load comes from one IP\nfunction admit(r)\n    return true\nend\n' \
    >"$TMP/policies/limits.lua"

# --- seckilld: access (1 HTTP thread, like h2o_hello -t 1), logic, admin ---
start_node() { # name plugins threads -> sets NODE_PID, NODE_STATUS
    local name=$1 plugins=$2 threads=$3 access admin status
    access=$(free_port) admin=$(free_port) status=$(free_port)
    cat >"$TMP/$name.conf" <<EOF
plugins = $plugins
node_id = bench-$name-$$
threads = $threads
access.listen = 127.0.0.1:$access
admin.listen = 127.0.0.1:$admin
status.listen = 127.0.0.1:$status
redis.addr = 127.0.0.1:$REDIS_PORT
etcd.endpoints = http://127.0.0.1:$ETCD_PORT
admin.db = $TMP/admin.db
policies.dir = $TMP/policies
log.file = $TMP/$name.log
log.level = warn
$QUEUE_CONF
EOF
    "$SECKILLD" -c "$TMP/$name.conf" </dev/null >"$TMP/$name.out" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_for "seckilld $name" 30 "$NODE_PID" curl -fsS --max-time 1 "http://127.0.0.1:$status/healthz"
    NODE_ACCESS=127.0.0.1:$access NODE_ADMIN=127.0.0.1:$admin
}
start_node admin admin 1
ADMIN=$NODE_ADMIN
start_node logic logic 1
LOGIC_PID=$NODE_PID
start_node access access 1
ACCESS=$NODE_ACCESS
ACCESS_PID=$NODE_PID

HELLO_PORT=$(free_port)
"$HELLO" -a 127.0.0.1 -p "$HELLO_PORT" -t 1 </dev/null >"$TMP/h2o_hello.out" 2>&1 &
HELLO_PID=$!
PIDS+=("$HELLO_PID")
wait_for h2o_hello 5 "$HELLO_PID" curl -fsS --max-time 1 "http://127.0.0.1:$HELLO_PORT/"
[ "$QUEUE_REDIS" = 1 ] && say "queue redis $QREDIS_PORT (no AOF, pid $QREDIS_PID)"
say "redis $REDIS_PORT (appendfsync $FSYNC), etcd $ETCD_PORT, access $ACCESS (pid $ACCESS_PID), logic pid $LOGIC_PID," \
    "admin $ADMIN, h2o_hello $HELLO_PORT (pid $HELLO_PID); ${DURATION}s per run, $ROUNDS round(s)"

BENCH_COMMON=(--access "$ACCESS" --admin "$ADMIN" --redis "127.0.0.1:$REDIS_PORT")
# An AOF rewrite (auto, at 64 MB) forks a child that competes for the two cores: no measurement starts during one.
wait_aof_idle() {
    local i info
    for ((i = 0; i < 600; i++)); do
        info=$(redis-cli -p "$REDIS_PORT" INFO persistence | tr -d '\r')
        [[ "$info" == *"aof_rewrite_in_progress:0"* && "$info" == *"aof_rewrite_scheduled:0"* ]] && return 0
        sleep 0.1
    done
    say "an AOF rewrite is still running after 60 s; measuring anyway"
}

# A sold-out activity: /sec/info shows it, and the sold-out path answers from memory.
say "creating a sold-out activity (1 in stock, 1 buyer)"
out=$("$BENCH" "${BENCH_COMMON[@]}" -c 1 -n 1 -d 5 --total 1 --users 1 -q) || die "seckill-bench could not sell out: $out"
PRODUCT=$(echo "$out" | json_get 'd["activities"][0]["product_id"]')
say "product $PRODUCT is sold out"

RESULTS=$TMP/results.jsonl
: >"$RESULTS"
record() { # path server rps cpu_us extra_json [conns]
    printf '{"path":"%s","server":"%s","rps":%s,"cpu_us":%s,"extra":%s,"conns":%s}\n' "$1" "$2" "$3" "$4" "${5:-null}" \
        "${6:-$CONNS}" >>"$RESULTS"
}

wrk_run() { # label url pid [wrk args...] -> prints wrk output, records
    local label=$1 url=$2 pid=$3 t0 t1 out rps n
    shift 3
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" "$@") # wrk permutes options; what follows -- goes to the script
    t1=$(cpu_ticks "$pid")
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    echo "$out" >"$TMP/wrk-$label-$(date +%s%N).txt"
    WRK_OUT=$out WRK_RPS=$rps WRK_CPU=$(cpu_us "$t0" "$t1" "$n")
}

for ((round = 1; round <= ROUNDS; round++)); do
    if want info; then
        say "[$round] /sec/info: wrk -t1 -c$CONNS -d${DURATION}s, h2o_hello then seckilld"
        wrk_run info-hello "http://127.0.0.1:$HELLO_PORT/sec/info?product_id=$PRODUCT" "$HELLO_PID"
        record info h2o_hello "$WRK_RPS" "$WRK_CPU"
        wrk_run info-seckilld "http://$ACCESS/sec/info?product_id=$PRODUCT" "$ACCESS_PID"
        non2xx=$(echo "$WRK_OUT" | awk '/Non-2xx/ { print $NF }')
        record info seckilld "$WRK_RPS" "$WRK_CPU" "{\"non_2xx\":${non2xx:-0}}"
        INFO_RPS=${WRK_RPS%.*}
    fi
    if want soldout; then
        # One line per request: every request needs a fresh nance, or the access node answers 1003 (replay). The
        # sold-out path does more than /sec/info, so 1.5x the /sec/info rate is plenty; h2o_hello may wrap the file.
        lines=$((DURATION * ${INFO_RPS:-100000} * 3 / 2))
        [ "$lines" -ge 100000 ] || lines=100000
        say "[$round] sold-out /sec/kill: writing $lines pre-signed requests"
        "$BENCH" "${BENCH_COMMON[@]}" --product-ids "$PRODUCT" --wrk-file "$TMP/paths" --wrk-count "$lines" -q >/dev/null ||
            die "seckill-bench --wrk-file failed"
        say "[$round] sold-out /sec/kill: wrk -t1 -c$CONNS -d${DURATION}s -s bench/wrk-paths.lua, h2o_hello then seckilld"
        wrk_run soldout-hello "http://127.0.0.1:$HELLO_PORT" "$HELLO_PID" -s "$ROOT/bench/wrk-paths.lua" -- "$TMP/paths"
        record soldout h2o_hello "$WRK_RPS" "$WRK_CPU"
        wrk_run soldout-seckilld "http://$ACCESS" "$ACCESS_PID" -s "$ROOT/bench/wrk-paths.lua" -- "$TMP/paths"
        record soldout seckilld "$WRK_RPS" "$WRK_CPU" "$(echo "$WRK_OUT" | grep '^{"wrk"' | tail -1)"
    fi
    if want full; then
        for c in $FULL_CONNS; do
            say "[$round] full /sec/kill: seckill-bench -c$c -d$DURATION closed loop, $USERS distinct users, baseline first"
            wait_aof_idle
            set +e
            out=$("$BENCH" "${BENCH_COMMON[@]}" -c "$c" -d "$DURATION" --total 100000000 --users "$USERS" \
                --baseline "$HELLO" --server-pid "$ACCESS_PID" --server-pid "$LOGIC_PID" --server-pid "$REDIS_PID" "${QREDIS_PIDS[@]}")
            rc=$?
            set -e
            echo "$out" >"$TMP/full-$round-$c.txt"
            echo "$out" | grep -v '^{' >&2
            [ "$rc" -eq 0 ] || say "seckill-bench reported a failed check (exit $rc): see above"
            summary=$(echo "$out" | tail -1)
            rps=$(echo "$summary" | json_get 'round(d["throughput"], 1)')
            cpu=$(echo "$summary" | json_get 'round(d["server_cpu_us_per_req"] or 0, 1)')
            split=$(echo "$summary" | json_get \
                '"{\"access_us\":%.1f,\"logic_us\":%.1f,\"redis_us\":%.1f,\"queue_redis_us\":%.1f,\"checks_pass\":%s,\"p99_us\":%s}" % tuple((lambda u: u[:2] + [sum(u[2:]), sum(u[3:])])([c / max(d["answered"], 1) * 1e6 for c in d["server_cpu_s"]]) + [str(d["pass"]).lower(), d["latency_us"]["p99"]])')
            brps=$(echo "$summary" | json_get 'round(d["baseline"]["throughput"], 1)')
            bcpu=$(echo "$summary" | json_get 'round(d["baseline"]["server_cpu_us_per_req"] or 0, 1)')
            record full h2o_hello "$brps" "$bcpu" null "$c"
            record full seckilld "$rps" "$cpu" "$split" "$c"
            # Redis itself: the same connections, each waiting for one durable write (AOF fsync per pass). A full-path
            # request needs two such writes in a row (queued, then decided), so half of this rate is its ceiling here.
            say "[$round] Redis round trip: redis-benchmark -c$c SET, one durable write per request"
            wait_aof_idle
            t0=$(cpu_ticks "$REDIS_PID")
            rb=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$c" -n $((DURATION * 40000)) --csv \
                SET sk:bench:roundtrip 1 2>/dev/null | tr '\r' '\n' | awk -F'","' '/^"SET/ { print $2 }')
            t1=$(cpu_ticks "$REDIS_PID")
            if [[ "$rb" =~ ^[0-9.]+$ ]]; then
                record redis redis_set "$rb" "$(cpu_us "$t0" "$t1" "$((DURATION * 40000))")" null "$c"
            else
                say "redis-benchmark gave no rate; this round has no Redis baseline"
                record redis redis_set 0 0 null "$c" # keeps the rounds aligned
            fi
            record redis h2o_hello "$brps" "$bcpu" null "$c"
        done
    fi
done

python3 - "$RESULTS" "$DURATION" "$ROUNDS" "$CONNS" "$FSYNC" "$QUEUE_REDIS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dur, rounds, conns, fsync, qredis = sys.argv[2:7]
names = {"info": "/sec/info", "soldout": "sold-out /sec/kill", "full": "full /sec/kill", "redis": "Redis SET (baseline)"}
FLOOR = {"info": 0.85, "soldout": 0.70}  # issue 14: no regression below these
print()
print("SecKill vs bare libh2o (h2o_hello -t 1), %ss per run, %s round(s); ratios within one round; Redis AOF appendfsync %s%s" % (dur, rounds, fsync, "; queue on a second Redis without AOF (redis.queue_addr)" if qredis == "1" else ""))
print("%-26s %12s %12s %7s %14s %14s  %s" % ("path", "seckilld/s", "h2o/s", "ratio", "CPU µs/req sk", "CPU µs/req h2o", "notes"))
summary = []
counts = []
for r in rows:
    if r["conns"] not in counts:
        counts.append(r["conns"])


def verdict(ok):
    return "met" if ok else "MISSED"


for path in ("info", "soldout", "full", "redis"):
    for c in counts:
        sk = [r for r in rows if r["path"] == path and r["conns"] == c and r["server"] in ("seckilld", "redis_set")]
        hb = [r for r in rows if r["path"] == path and r["conns"] == c and r["server"] == "h2o_hello"]
        rset = [r for r in rows if r["path"] == "redis" and r["conns"] == c and r["server"] == "redis_set"]
        for i, (s, h) in enumerate(zip(sk, hb)):
            ratio = s["rps"] / h["rps"] if h["rps"] else 0
            note = ""
            x = s.get("extra") or {}
            if path == "full":
                note = "access %.1f + logic %.1f + redis %.1f µs%s; checks %s" % (x.get("access_us", 0), x.get("logic_us", 0), x.get("redis_us", 0), " (of which queue Redis %.1f)" % x.get("queue_redis_us", 0) if qredis == "1" else "", "pass" if x.get("checks_pass") else "FAIL")
                if i < len(rset) and rset[i]["rps"]:
                    # two durable writes in a row per request, or one when the queue is on the Redis without AOF
                    per = 1 if qredis == "1" else 2
                    x["of_redis_ceiling"] = round(s["rps"] / (rset[i]["rps"] / per), 4)
                    note += "; %.2f of the Redis ceiling (SET rate%s)" % (x["of_redis_ceiling"], "" if per == 1 else " / 2")
                # the issue-14 ratios, each against its target
                x["server_cpu_ratio"] = round(s["cpu_us"] / h["cpu_us"], 2) if h["cpu_us"] else None
                set_us = rset[i]["cpu_us"] if i < len(rset) else 0
                x["redis_set_us"] = set_us
                x["redis_cpu_ratio"] = round(x.get("redis_us", 0) / set_us, 2) if set_us else None
                tput = 0.33 if c >= 256 else 0.20
                p99_ms = (x.get("p99_us") or 0) / 1000.0
                checks = []
                if x["server_cpu_ratio"] is not None:
                    checks.append("server CPU %.1fx bare (<= 5x at 256: %s)" % (x["server_cpu_ratio"], verdict(x["server_cpu_ratio"] <= 5) if c >= 256 else "n/a"))
                if x["redis_cpu_ratio"] is not None:
                    checks.append("Redis %.1fx SET's %.1f µs (<= 2x: %s)" % (x["redis_cpu_ratio"], set_us, verdict(x["redis_cpu_ratio"] <= 2)))
                okt = ratio >= tput and (c < 256 or p99_ms < 20)
                checks.append("throughput %.3f, p99 %.1f ms (>= %.2f%s: %s)" % (ratio, p99_ms, tput, ", p99 < 20 ms" if c >= 256 else "", verdict(okt)))
                x["targets_met"] = okt and (x["redis_cpu_ratio"] or 99) <= 2 and (c < 256 or (x["server_cpu_ratio"] or 99) <= 5)
                note += "\n%-26s   %s" % ("", "; ".join(checks))
            elif path == "redis":
                note = "redis-benchmark SET, one durable write per request; CPU column is Redis'"
                x = {}
            elif path == "soldout" and "wrk" in x:
                st = x["wrk"]["status"]
                note = "answers %s%s" % (", ".join("%s=%s" % kv for kv in sorted(st.items())), "; file wrapped (replays)" if x["wrk"]["wrapped"] else "")
            elif path == "info" and x.get("non_2xx"):
                note = "%d non-2xx answers" % x["non_2xx"]
            if path in FLOOR:
                note += ("; " if note else "") + ">= %.2f: %s" % (FLOOR[path], verdict(ratio >= FLOOR[path]))
            label = names[path] + (" c%d" % c) + ("" if len(sk) == 1 else " #%d" % (i + 1))
            print("%-26s %12.0f %12.0f %7.3f %14.1f %14.1f  %s" % (label, s["rps"], h["rps"], ratio, s["cpu_us"], h["cpu_us"], note))
            summary.append({"path": path, "round": i + 1, "connections": c, "seckilld_rps": s["rps"], "h2o_rps": h["rps"], "ratio": round(ratio, 4), "seckilld_cpu_us": s["cpu_us"], "h2o_cpu_us": h["cpu_us"], "extra": x})
print(json.dumps({"tool": "bench/run-all.sh", "queue_redis": qredis == "1", "duration": int(dur), "rounds": int(rounds), "connections": int(conns), "full_connections": counts, "results": summary}))
EOF

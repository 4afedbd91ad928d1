#!/usr/bin/env bash
# The README "Benchmarks", Redis Cluster part: the full /sec/kill path on one Redis against a Redis Cluster of 3 masters,
# same machine, same run, same load: seckill-bench closed loop over K activities (default 6, one product each), with
# h2o_hello measured first by every seckill-bench run as the baseline.
#
#   bench/run-cluster.sh [--duration S] [--conns N] [--activities K] [--rounds N] [--keep]
#   bench/run-cluster.sh --shards "1 3" [--duration S] [--conns N] [--rounds N] [--keep]
#
# For each backend ("single", then "cluster"), it starts the Redis side (AOF appendfsync always, the shipped setting),
# a fresh admin (own SQLite), one logic node and one access node (1 HTTP thread, like h2o_hello -t 1) against one etcd
# (a prefix per backend), runs the load, and reports:
#   - throughput and its ratio to h2o_hello, p50/p99, and whether seckill-bench's invariant checks passed;
#   - per Redis server: CPU µs per request (utime+stime of that redis-server over the run / requests answered) and the
#     commands it served (the sum of INFO commandstats calls, before and after);
#   - which master holds which activity's tag {a<ID>}.
# Every process runs on this machine's 2 cores, so the cluster figure is bounded by the cores, not by Redis: see the
# README for what the per-master split predicts on three machines.
#
# --shards LIST (stock buckets, issue 13): the cluster backend only (3 masters) and ONE activity, once per K in LIST
# (1..64 each), with seckill-bench --shards K, against a fresh Redis Cluster and fresh admin/logic/access nodes per K,
# the same connections and duration for every K. Per K it reports decisions/s (seckill-bench's throughput) and its
# ratio to h2o_hello, p99, the checks, per master the Redis CPU µs per request and its share of the Redis CPU (with
# K = 3 each master carries about a third), which master holds each bucket's tag, the share of requests that needed a
# move (delta of the logic node's moves_started over the run, from /status, else /metrics, / requests answered) and
# units_moved, and the predicted capacity with each master on a core of its own (three machines):
# 1e6 / max over masters of (Redis CPU µs per request on that master) decisions/s -- the rate at which the busiest
# master saturates its core, access and logic not counted. SK_BENCH_TOTAL (default 100000000) is each activity's
# stock: the default never runs a bucket low, so no move is needed; a total near what the run sells makes moves.
#
# Environment: SK_BUILD_DIR (default ./build), SK_BENCH_FSYNC (always|everysec, default always),
# SK_BENCH_USERS (distinct users, default 1000000), SK_BENCH_TOTAL (stock per activity, default 100000000). The last
# line is a JSON summary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${SK_BUILD_DIR:-$ROOT/build}
FSYNC=${SK_BENCH_FSYNC:-always}
USERS=${SK_BENCH_USERS:-1000000}
TOTAL=${SK_BENCH_TOTAL:-100000000}
SHARDS=""
DURATION=10
CONNS=256
ACTS=6
ROUNDS=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION=${2:?--duration needs a value}; shift ;;
    --conns) CONNS=${2:?--conns needs a value}; shift ;;
    --activities) ACTS=${2:?--activities needs a value}; shift ;;
    --rounds) ROUNDS=${2:?--rounds needs a value}; shift ;;
    --shards) SHARDS=${2:?--shards needs a list, e.g. \"1 3\"}; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-cluster: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for v in "$DURATION" "$CONNS" "$ACTS" "$ROUNDS" "$TOTAL"; do
    [[ "$v" =~ ^[0-9]+$ && "$v" -ge 1 ]] || { echo "run-cluster: numbers must be integers >= 1" >&2; exit 2; }
done
if [ -n "$SHARDS" ]; then
    read -r -a SHARD_LIST <<<"${SHARDS//,/ }"
    [ "${#SHARD_LIST[@]}" -ge 1 ] || { echo "run-cluster: --shards needs at least one K" >&2; exit 2; }
    for v in "${SHARD_LIST[@]}"; do
        [[ "$v" =~ ^[0-9]+$ && "$v" -ge 1 && "$v" -le 64 ]] || { echo "run-cluster: --shards: each K is 1..64, not $v" >&2; exit 2; }
    done
    ACTS=1 # one activity: its K buckets are the only spread over the masters
fi

say() { echo "run-cluster: $*" >&2; }
die() { echo "run-cluster: error: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SECKILLD=$BUILD/seckilld BENCH=$BUILD/seckill-bench HELLO=$BUILD/h2o_hello
for f in "$SECKILLD" "$BENCH" "$HELLO" "$BUILD/plugins/access.so" "$BUILD/plugins/logic.so" "$BUILD/plugins/admin.so"; do
    [ -e "$f" ] || die "$f is missing: build first (scripts/setup.sh)"
done
for c in redis-server redis-cli etcd python3 curl; do command -v "$c" >/dev/null || die "$c is not installed"; done

TMP=$(mktemp -d /tmp/sk-bench-cluster-XXXXXX)
PIDS=()
cleanup() {
    stop_pids "${PIDS[@]}"
    if [ "$KEEP" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing listens on, whose +10000 (a cluster node's bus port) is free and below the ephemeral range,
# where a client socket may hold it without listening.
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 1 400); do
        p=$((20000 + RANDOM % 2700)) # its bus port (+10000) stays below the ephemeral range (32768-)
        [[ "$USED_PORTS" == *" $p "* || "$USED_PORTS" == *" $((p + 10000)) "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
            USED_PORTS+="$p $((p + 10000)) "
            echo "$p"
            return 0
        fi
    done
    die "no free port"
}
cmd_calls() { redis-cli -p "$1" INFO commandstats | tr -d '\r' | awk -F'[=,:]' '/^cmdstat_/ { n += $3 } END { print n + 0 }'; }

start_redis() { # dir port [extra args...] -> REDIS_PID
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly yes --appendfsync "$FSYNC" --save "" \
        --daemonize no --logfile "$dir/redis.log" "$@" </dev/null >/dev/null 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_for "redis $port" 15 "$REDIS_PID" sh -c "redis-cli -p $port PING | grep -q PONG"
}

ETCD_PORT=$(free_port) ETCD_PEER=$(free_port)
etcd --name bench --data-dir "$TMP/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER" \
    --experimental-watch-progress-notify-interval=2s --logger zap --log-outputs stderr --log-level warn \
    </dev/null >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
wait_for etcd 20 "$ETCD_PID" sh -c "curl -fsS --max-time 1 http://127.0.0.1:$ETCD_PORT/health | grep -q true"

mkdir -p "$TMP/policies"
cp "$ROOT"/policies/*.lua "$TMP/policies/"
printf -- '-- bench/run-cluster.sh: the whole load comes from one IP\nfunction admit(r)\n    return true\nend\n' \
    >"$TMP/policies/limits.lua"

start_node() { # backend name plugins redis_addr cluster -> NODE_PID NODE_ACCESS NODE_ADMIN NODE_STATUS
    local backend=$1 name=$2 plugins=$3 raddr=$4 cluster=$5 access admin status
    access=$(free_port) admin=$(free_port) status=$(free_port)
    cat >"$TMP/$backend-$name.conf" <<EOF
plugins = $plugins
node_id = bench-$backend-$name-$$
threads = 1
access.listen = 127.0.0.1:$access
admin.listen = 127.0.0.1:$admin
status.listen = 127.0.0.1:$status
redis.addr = $raddr
redis.cluster = $cluster
etcd.endpoints = http://127.0.0.1:$ETCD_PORT
etcd.prefix = /seckill-$backend
admin.db = $TMP/$backend-admin.db
policies.dir = $TMP/policies
log.file = $TMP/$backend-$name.log
log.level = warn
EOF
    "$SECKILLD" -c "$TMP/$backend-$name.conf" </dev/null >"$TMP/$backend-$name.out" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_for "seckilld $backend $name" 30 "$NODE_PID" curl -fsS --max-time 1 "http://127.0.0.1:$status/healthz"
    NODE_ACCESS=127.0.0.1:$access NODE_ADMIN=127.0.0.1:$admin NODE_STATUS=127.0.0.1:$status
}

# The rebalancer's counters of logic nodes, summed: a JSON object of moves_started, moves_done, moves_redriven,
# units_moved, move_errors and decisions (all codes), from each node's GET /status (the logic plugin's object), or
# from GET /metrics (seckill_logic_*_total) when /status lacks them. logic_counters status_addr...
logic_counters() {
    python3 - "$@" <<'PY'
import json, sys, urllib.request
names = ["moves_started", "moves_done", "moves_redriven", "units_moved", "move_errors"]
tot = dict.fromkeys(names + ["decisions"], 0)
tot["source"] = []
for addr in sys.argv[1:]:
    got = None
    try:
        st = json.load(urllib.request.urlopen("http://%s/status" % addr, timeout=3))
        for p in st.get("plugins", []):
            if p.get("name") == "logic" and all(n in p for n in names):
                got = {n: p[n] for n in names}
                got["decisions"] = sum((p.get("decisions") or {}).values())
                tot["source"].append("status")
    except Exception:
        pass
    if got is None:
        try:
            got = dict.fromkeys(names + ["decisions"], 0)
            for line in urllib.request.urlopen("http://%s/metrics" % addr, timeout=3).read().decode().splitlines():
                if line.startswith("#") or " " not in line:
                    continue
                k, v = line.rsplit(" ", 1)
                if k.startswith("seckill_logic_decisions_total{"):
                    got["decisions"] += float(v)
                for n in names:
                    if k == "seckill_logic_%s_total" % n:
                        got[n] = float(v)
            tot["source"].append("metrics")
        except Exception:
            tot["source"].append("none")
    for n in names + ["decisions"]:
        tot[n] += int(got[n])
print(json.dumps(tot))
PY
}

RESULTS=$TMP/results.jsonl
: >"$RESULTS"

run_backend() { # backend [shards K: one activity with seckill-bench --shards K]
    local backend=$1 shards=${2:-0} ports=() rpids=() p i seeds cluster=false nodes=() label
    label=$backend
    [ "$shards" -gt 0 ] && label=$backend-k$shards
    if [ "$backend" = single ]; then
        p=$(free_port)
        start_redis "$TMP/$label/$p" "$p"
        ports=("$p") rpids=("$REDIS_PID")
        seeds=127.0.0.1:$p
    else
        for i in 1 2 3; do
            p=$(free_port)
            start_redis "$TMP/$label/$p" "$p" --cluster-enabled yes --cluster-config-file "$TMP/$label/$p/nodes.conf" \
                --cluster-node-timeout 2000
            ports+=("$p") rpids+=("$REDIS_PID")
        done
        redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-yes >"$TMP/$label/create.log" 2>&1 ||
            die "redis-cli --cluster create failed: $(tail -3 "$TMP/$label/create.log")"
        for p in "${ports[@]}"; do
            wait_for "cluster_state:ok on $p" 20 "${rpids[0]}" sh -c "redis-cli -p $p CLUSTER INFO | grep -q cluster_state:ok"
        done
        seeds=$(printf '127.0.0.1:%s,' "${ports[@]}")
        seeds=${seeds%,}
        cluster=true
    fi
    start_node "$label" admin admin "$seeds" "$cluster"
    local admin=$NODE_ADMIN
    nodes+=("$NODE_PID")
    start_node "$label" logic logic "$seeds" "$cluster"
    local logic_pid=$NODE_PID logic_status=$NODE_STATUS
    nodes+=("$NODE_PID")
    start_node "$label" access access "$seeds" "$cluster"
    local access=$NODE_ACCESS access_pid=$NODE_PID
    nodes+=("$NODE_PID")
    local round t0s=() c0s=() t1s=() c1s=() out rc summary l0='{}' l1='{}' shard_args=()
    [ "$shards" -gt 0 ] && shard_args=(--shards "$shards")
    for ((round = 1; round <= ROUNDS; round++)); do
        say "[$label $round] full /sec/kill over $ACTS activities${shard_args[*]:+ (${shard_args[*]})}: seckill-bench -c$CONNS" \
            "-d$DURATION, h2o_hello first"
        t0s=() c0s=()
        l0=$(logic_counters "$logic_status")
        for i in "${!ports[@]}"; do t0s+=("$(cpu_ticks "${rpids[$i]}")") c0s+=("$(cmd_calls "${ports[$i]}")"); done
        # the baseline runs first inside seckill-bench; the Redis figures are deltas over the whole call, divided by the
        # requests seckilld answered (the baseline touches no Redis)
        local redis_args=(--redis "127.0.0.1:${ports[0]}")
        [ "$backend" = cluster ] && redis_args+=(--redis-cluster)
        set +e
        out=$("$BENCH" --access "$access" --admin "$admin" "${redis_args[@]}" -c "$CONNS" -d "$DURATION" -p "$ACTS" \
            --total "$TOTAL" --users "$USERS" --baseline "$HELLO" --server-pid "$access_pid" --server-pid "$logic_pid" \
            "${rpids[@]/#/--server-pid=}" ${shard_args[@]+"${shard_args[@]}"})
        rc=$?
        set -e
        echo "$out" >"$TMP/$backend-$round.txt"
        echo "$out" | grep -v '^{' >&2
        [ "$rc" -eq 0 ] || say "seckill-bench reported a failed check (exit $rc): see above"
        t1s=() c1s=()
        for i in "${!ports[@]}"; do t1s+=("$(cpu_ticks "${rpids[$i]}")") c1s+=("$(cmd_calls "${ports[$i]}")"); done
        l1=$(logic_counters "$logic_status")
        summary=$(echo "$out" | tail -1)
        local masters="" slotmap="{}"
        for i in "${!ports[@]}"; do
            masters+=$(printf '{"port":%s,"ticks":%s,"commands":%s},' "${ports[$i]}" "$((t1s[i] - t0s[i]))" \
                "$((c1s[i] - c0s[i] - 1))") # the INFO of the first sample counts itself
        done
        if [ "$backend" = cluster ]; then
            slotmap=$(echo "$summary" | python3 -c '
import json, os, subprocess, sys
sys.path.insert(0, os.path.join(sys.argv[2], "tests", "integration"))
from sk_wire import bucket_tag  # common/sk_shard.c in Python
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
slots = json.loads(subprocess.run(["redis-cli", "-p", sys.argv[1], "--json", "CLUSTER", "SLOTS"], capture_output=True, text=True).stdout or "[]")
out = {}
for a in d.get("activities", []):
    aid, k = a["activity_id"], int(a.get("shards", 1))
    for b in range(k):
        tag = bucket_tag(aid, b, k)
        slot = int(subprocess.run(["redis-cli", "-p", sys.argv[1], "CLUSTER", "KEYSLOT", "{%s}" % tag], capture_output=True, text=True).stdout)
        for r in slots:
            if r[0] <= slot <= r[1]:
                out[str(aid) if k == 1 else "%d/%d" % (aid, b)] = r[2][1]
print(json.dumps(out))' "${ports[0]}" "$ROOT" 2>/dev/null || echo '{}')
        fi
        printf '{"backend":"%s","shards":%d,"round":%d,"rc":%d,"masters":[%s],"activity_master":%s,"logic_before":%s,' \
            "$backend" "$shards" "$round" "$rc" "${masters%,}" "$slotmap" "$l0" >>"$RESULTS"
        printf '"logic_after":%s,"bench":%s}\n' "$l1" "$summary" >>"$RESULTS"
    done
    stop_pids "${nodes[@]}"
    stop_pids "${rpids[@]}"
}

if [ -n "$SHARDS" ]; then
    for k in "${SHARD_LIST[@]}"; do run_backend cluster "$k"; done
else
    run_backend single
    run_backend cluster
fi

python3 - "$RESULTS" "$CLK_TCK" "$CONNS" "$DURATION" "$ACTS" "$TOTAL" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
hz, conns, dur, acts, total = float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
if rows and rows[0].get("shards", 0) > 0:
    # --shards: one activity, the cluster backend, one run per K
    print()
    print("Stock buckets: full /sec/kill on a 3-master Redis Cluster, one activity (total %d) with shards = K, %s connections, %ss per run"
          % (total, conns, dur))
    print("predicted = decisions/s with each master on a core of its own (three machines) = 1e6 / max over masters of"
          " (Redis CPU µs per request on that master); access and logic are not counted")
    summary = []
    for r in rows:
        b = r["bench"]
        n = max(b.get("answered", 0), 1)
        rps = b.get("throughput", 0)
        h2o = (b.get("baseline") or {}).get("throughput", 0)
        p99 = (b.get("latency_us") or {}).get("p99", 0) / 1000.0
        ticks = sum(m["ticks"] for m in r["masters"]) or 1
        per = [{"port": m["port"], "cpu_us_per_req": round(m["ticks"] / hz * 1e6 / n, 2), "cpu_share": round(m["ticks"] / ticks, 3),
                "commands": m["commands"]} for m in r["masters"]]
        lb, la = r.get("logic_before") or {}, r.get("logic_after") or {}
        delta = {k: la.get(k, 0) - lb.get(k, 0) for k in ("moves_started", "moves_done", "moves_redriven", "units_moved", "move_errors", "decisions")}
        share = delta["moves_started"] / n
        worst = max(p["cpu_us_per_req"] for p in per) if per else 0
        pred = 1e6 / worst if worst > 0 else 0
        print()
        print("K=%d (round %d): %.0f decisions/s, %.3f of h2o_hello's %.0f req/s, p99 %.1f ms, checks %s"
              % (r["shards"], r["round"], rps, rps / h2o if h2o else 0, h2o, p99, "pass" if b.get("pass") else "FAIL"))
        if not b.get("pass"):
            for f in (b.get("checks") or {}).get("failures", []):
                print("    failed: %s" % f)
        print("    Redis CPU per master: %s" % "; ".join("%d: %.1f µs/req, %.0f%% of the Redis CPU" % (p["port"], p["cpu_us_per_req"],
              100 * p["cpu_share"]) for p in per))
        if r["activity_master"]:
            print("    bucket -> master port: %s" % ", ".join("%s->%s" % kv for kv in sorted(r["activity_master"].items())))
        print("    moves: %d started over %d requests answered = %.3g of the requests needed a move; %d units moved,"
              " %d done, %d re-driven, %d errors (logic %s)" % (delta["moves_started"], n, share, delta["units_moved"],
              delta["moves_done"], delta["moves_redriven"], delta["move_errors"], "/".join(la.get("source", [])) or "?"))
        print("    predicted with each master on its own core: 1e6 / %.1f µs (the busiest master) = %.0f decisions/s" % (worst, pred))
        summary.append({"shards": r["shards"], "round": r["round"], "decisions_per_s": rps, "h2o_rps": h2o,
                        "ratio": round(rps / h2o, 4) if h2o else 0, "p99_ms": p99, "pass": bool(b.get("pass")), "answered": n,
                        "redis": per, "moves_started": delta["moves_started"], "move_share": round(share, 6),
                        "units_moved": delta["units_moved"], "moves_done": delta["moves_done"], "moves_redriven": delta["moves_redriven"],
                        "move_errors": delta["move_errors"], "logic_decisions": delta["decisions"],
                        "predicted_decisions_per_s_own_cores": round(pred), "bucket_master": r["activity_master"]})
    print(json.dumps({"tool": "bench/run-cluster.sh", "mode": "shards", "connections": int(conns), "activities": 1, "duration": int(dur),
                      "total": total, "results": summary}))
    sys.exit(0)
print()
print("Full /sec/kill, %s connections, %s activities, %ss per run: one Redis against a 3-master Redis Cluster" % (conns, acts, dur))
print("%-8s %5s %10s %9s %7s %8s %8s  %s" % ("backend", "round", "req/s", "h2o req/s", "ratio", "p99 ms", "checks", "per Redis: CPU µs/req, commands"))
summary = []
for r in rows:
    b = r["bench"]
    n = max(b.get("answered", 0), 1)
    rps = b.get("throughput", 0)
    h2o = (b.get("baseline") or {}).get("throughput", 0)
    per = []
    for m in r["masters"]:
        per.append({"port": m["port"], "cpu_us_per_req": round(m["ticks"] / hz * 1e6 / n, 1), "commands": m["commands"]})
    p99 = (b.get("latency_us") or {}).get("p99", 0) / 1000.0
    # --server-pid order: access, logic, then each Redis; seconds of CPU over the seckilld run
    cpu = [c or 0 for c in b.get("server_cpu_s", [])]
    secs = b.get("seconds", 0) or 1
    busy = sum(cpu) / secs
    print("%-8s %5d %10.0f %9.0f %7.3f %8.1f %8s  %s" % (r["backend"], r["round"], rps, h2o, rps / h2o if h2o else 0, p99,
          "pass" if b.get("pass") else "FAIL", "; ".join("%d: %.1f µs, %d cmds" % (p["port"], p["cpu_us_per_req"], p["commands"]) for p in per)))
    if len(cpu) >= 2:
        print("%-8s server CPU: access %.1f + logic %.1f + Redis %.1f µs/req; the servers kept %.2f cores busy"
              "" % ("", cpu[0] / n * 1e6, cpu[1] / n * 1e6, sum(cpu[2:]) / n * 1e6, busy))
    if r["activity_master"]:
        print("%-8s activity -> master port: %s" % ("", ", ".join("%s->%s" % kv for kv in sorted(r["activity_master"].items()))))
    summary.append({"backend": r["backend"], "round": r["round"], "rps": rps, "h2o_rps": h2o, "ratio": round(rps / h2o, 4) if h2o else 0,
                    "p99_ms": p99, "pass": bool(b.get("pass")), "server_cores_busy": round(busy, 2),
                    "access_us": round(cpu[0] / n * 1e6, 1) if cpu else 0, "logic_us": round(cpu[1] / n * 1e6, 1) if len(cpu) > 1 else 0, "redis": per, "activity_master": r["activity_master"]})
print(json.dumps({"tool": "bench/run-cluster.sh", "connections": int(conns), "activities": int(acts), "duration": int(dur), "results": summary}))
EOF

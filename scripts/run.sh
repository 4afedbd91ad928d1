#!/usr/bin/env bash
# Runs a whole SecKill on this machine: Redis, etcd and one seckilld with all three plugins.
#
#   scripts/run.sh [--set key=value]...      (extra arguments go to seckilld)
#
# It runs scripts/setup.sh, starts its own redis-server (AOF, appendfsync always, data in
# var/redis) and etcd (data in var/etcd), starts build/seckilld -c conf/seckill.conf, seeds the
# demo product 梨子 and activity 梨子大甩卖 through the admin API (once), prints the URLs and a
# signed sample request, and waits. Ctrl-C or SIGTERM stops everything it started.
#
# Environment: SK_CONF (default conf/seckill.conf), SK_REDIS_PORT (6379), SK_ETCD_PORT (2379),
# SK_ETCD_PEER_PORT (2380), SK_SKIP_SETUP=1 to skip setup.sh, SK_NO_SEED=1 to skip the demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CONF=${SK_CONF:-conf/seckill.conf}
REDIS_PORT=${SK_REDIS_PORT:-6379}
ETCD_PORT=${SK_ETCD_PORT:-2379}
ETCD_PEER_PORT=${SK_ETCD_PEER_PORT:-2380}
VAR=$ROOT/var
RUN=$VAR/run
SECKILLD=$ROOT/build/seckilld
SECKILLD_ARGS=("$@")

say() { echo "run: $*"; }
die() {
    echo "run: error: $*" >&2
    exit 1
}

if [ "${SK_SKIP_SETUP:-0}" != 1 ]; then
    bash scripts/setup.sh || die "scripts/setup.sh failed"
fi
[ -x "$SECKILLD" ] || die "$SECKILLD is missing (did the build fail?)"
[ -f "$CONF" ] || die "config $CONF not found"

mkdir -p "$VAR/redis" "$VAR/etcd" "$VAR/log" "$RUN"

# --- the effective value of a config key: the last --set, else the file, else the default ---
conf_get() {
    local key=$1 def=$2 val="" i a
    if [ -f "$CONF" ]; then
        val=$(awk -v k="$key" '
            /^[ \t]*#/ { next }
            index($0, "=") {
                name = substr($0, 1, index($0, "=") - 1); gsub(/[ \t]/, "", name)
                if (name == k) {
                    v = substr($0, index($0, "=") + 1); gsub(/^[ \t]+|[ \t\r]+$/, "", v)
                    if (length(v) >= 2 && v ~ /^".*"$/) v = substr(v, 2, length(v) - 2)
                    out = v
                }
            }
            END { print out }' "$CONF")
    fi
    for ((i = 0; i < ${#SECKILLD_ARGS[@]}; i++)); do
        a=${SECKILLD_ARGS[$i]}
        if [ "$a" = "--set" ] && [ $((i + 1)) -lt ${#SECKILLD_ARGS[@]} ]; then
            a=${SECKILLD_ARGS[$((i + 1))]}
            [ "${a%%=*}" = "$key" ] && val=${a#*=}
        elif [[ "$a" == --set=* ]]; then
            a=${a#--set=}
            [ "${a%%=*}" = "$key" ] && val=${a#*=}
        fi
    done
    echo "${val:-$def}"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
who_listens() { ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/^/    /' || true; }

# A zombie (exited, not yet reaped) counts as dead.
pid_alive() {
    local st
    [ -n "${1:-}" ] && st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${st:0:1}" != Z ]
}

# --- a previous run.sh: still running → refuse; killed hard → stop the children it left ---
if [ -f "$RUN/run.pid" ]; then
    old=$(cat "$RUN/run.pid")
    if pid_alive "$old" && grep -q "run.sh" "/proc/$old/cmdline" 2>/dev/null; then
        die "run.sh is already running (pid $old); stop it first (Ctrl-C in its terminal, or kill $old)"
    fi
    for name in seckilld etcd redis; do
        f=$RUN/$name.pid
        [ -f "$f" ] || continue
        p=$(cat "$f")
        # Only a process we recorded ourselves, still running the same program, is stopped.
        if pid_alive "$p" && grep -qa "$name" "/proc/$p/cmdline" 2>/dev/null; then
            say "stopping $name (pid $p) left over by a previous run.sh"
            kill -TERM "$p" 2>/dev/null || true
            for _ in $(seq 1 100); do pid_alive "$p" || break; sleep 0.1; done
            pid_alive "$p" && kill -KILL "$p" 2>/dev/null || true
        fi
        rm -f "$f"
    done
fi
echo $$ >"$RUN/run.pid"

REDIS_PID="" ETCD_PID="" SECKILLD_PID=""
stopping=0

stop_pid() { # name pid timeout_s
    local name=$1 pid=$2 t=$3 i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < t * 10; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        say "$name did not stop within ${t}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    [ "$stopping" = 1 ] && return
    stopping=1
    trap '' INT TERM
    if [ -z "$REDIS_PID$ETCD_PID$SECKILLD_PID" ]; then
        rm -f "$RUN/run.pid"
        return
    fi
    say "stopping..."
    # seckilld first, so it can finish in-flight requests while Redis and etcd are still up.
    [ -n "$SECKILLD_PID" ] && stop_pid seckilld "$SECKILLD_PID" 15
    [ -n "$ETCD_PID" ] && stop_pid etcd "$ETCD_PID" 10
    [ -n "$REDIS_PID" ] && stop_pid redis "$REDIS_PID" 10
    rm -f "$RUN/seckilld.pid" "$RUN/etcd.pid" "$RUN/redis.pid" "$RUN/run.pid"
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- ports ---
ACCESS_LISTEN=$(conf_get access.listen 127.0.0.1:8082)
ADMIN_LISTEN=$(conf_get admin.listen 127.0.0.1:8081)
STATUS_LISTEN=$(conf_get status.listen 127.0.0.1:8083)
for p in "$REDIS_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "${ACCESS_LISTEN##*:}" "${ADMIN_LISTEN##*:}" "${STATUS_LISTEN##*:}"; do
    if port_busy "$p"; then
        echo "run: error: port $p is already in use:" >&2
        who_listens "$p" >&2
        echo "run: stop that process (a system redis-server/etcd service is not ours: 'service redis-server stop')," >&2
        echo "run: or pick other ports: SK_REDIS_PORT / SK_ETCD_PORT / SK_ETCD_PEER_PORT, --set access.listen=..." >&2
        exit 1
    fi
done

# Children get their own session, so a Ctrl-C reaches only this script, which then stops them in order.
# --- Redis ---
say "starting redis-server on 127.0.0.1:$REDIS_PORT (data in var/redis, AOF appendfsync always)"
setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes --dir "$VAR/redis" \
    --appendonly yes --appendfsync always --save "" --daemonize no --logfile "$VAR/log/redis.log" \
    </dev/null >>"$VAR/log/redis.out" 2>&1 &
REDIS_PID=$!
echo "$REDIS_PID" >"$RUN/redis.pid"

# --- etcd ---
say "starting etcd on 127.0.0.1:$ETCD_PORT (data in var/etcd)"
setsid etcd --name seckill --data-dir "$VAR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "seckill=http://127.0.0.1:$ETCD_PEER_PORT" \
    --experimental-watch-progress-notify-interval=2s --logger zap --log-outputs stderr --log-level warn \
    </dev/null >>"$VAR/log/etcd.log" 2>&1 &
ETCD_PID=$!
echo "$ETCD_PID" >"$RUN/etcd.pid"

wait_for() { # what timeout_s pid command...
    local what=$1 t=$2 pid=$3 i
    shift 3
    for ((i = 0; i < t * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        pid_alive "$pid" || return 1
        sleep 0.1
    done
    return 1
}
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ]; }
etcd_up() { curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

wait_for redis 15 "$REDIS_PID" redis_up || {
    tail -20 "$VAR/log/redis.log" "$VAR/log/redis.out" >&2 || true
    die "redis-server did not come up"
}
wait_for etcd 20 "$ETCD_PID" etcd_up || {
    tail -20 "$VAR/log/etcd.log" >&2 || true
    die "etcd did not come up"
}
say "redis and etcd are up"

# --- seckilld ---
say "starting $SECKILLD -c $CONF"
setsid "$SECKILLD" -c "$CONF" --set "redis.addr=127.0.0.1:$REDIS_PORT" \
    --set "etcd.endpoints=http://127.0.0.1:$ETCD_PORT" "${SECKILLD_ARGS[@]}" \
    </dev/null >>"$VAR/log/seckilld.out" 2>&1 &
SECKILLD_PID=$!
echo "$SECKILLD_PID" >"$RUN/seckilld.pid"

healthz_ok() { curl -fsS --max-time 1 "http://$STATUS_LISTEN/healthz" >/dev/null; }
wait_for seckilld 30 "$SECKILLD_PID" healthz_ok || {
    tail -30 "$VAR/log/seckilld.out" >&2 || true
    die "seckilld did not answer 200 on http://$STATUS_LISTEN/healthz (log: var/log/seckilld.out)"
}
say "seckilld is up (pid $SECKILLD_PID)"

# --- demo data, once ---
ADMIN_URL="http://$ADMIN_LISTEN"
ADMIN_TOKEN=$(conf_get admin.token "")
admin_curl() { # METHOD PATH [curl args...]
    local m=$1 p=$2
    shift 2
    local auth=()
    [ -n "$ADMIN_TOKEN" ] && auth=(-H "Authorization: Bearer $ADMIN_TOKEN")
    curl -sS --max-time 10 -X "$m" "${auth[@]}" "$@" "$ADMIN_URL$p"
}
# json_pick EXPR: evaluates a Python expression over d = the parsed JSON on stdin; prints "" on any error.
json_pick() { python3 -c 'import json,sys
try:
    d = json.load(sys.stdin); v = eval(sys.argv[1])
    print("" if v is None else v)
except Exception:
    print("")' "$1"; }

PRODUCT_NAME="梨子"
ACTIVITY_NAME="梨子大甩卖"
if [ "${SK_NO_SEED:-0}" != 1 ]; then
    out=$(admin_curl GET /product/list) || out=""
    pid=$(echo "$out" | json_pick \
        'next((p["product_id"] for p in d["data"] if p.get("product_name") == "'"$PRODUCT_NAME"'"), None)')
    if [ -z "$pid" ]; then
        out=$(admin_curl POST /product/create --data-urlencode "product_name=$PRODUCT_NAME" \
            --data-urlencode "product_total=100" --data-urlencode "status=1")
        pid=$(echo "$out" | json_pick 'd["data"]["product_id"]')
        [ -n "$pid" ] || die "could not create the demo product: $out"
        say "created product $PRODUCT_NAME (product_id $pid)"
    else
        say "product $PRODUCT_NAME exists (product_id $pid)"
    fi
    now=$(date +%s)
    out=$(admin_curl GET /activity/list) || out=""
    aid=$(echo "$out" | json_pick \
        'next((a["activity_id"] for a in d["data"] if a.get("activity_name") == "'"$ACTIVITY_NAME"'" and int(a.get("product_id", 0)) == '"$pid"' and int(a.get("end_time", 0)) > '"$now"'), None)')
    if [ -z "$aid" ]; then
        out=$(admin_curl POST /activity/create --data-urlencode "activity_name=$ACTIVITY_NAME" \
            --data-urlencode "product_id=$pid" --data-urlencode "start_time=$now" \
            --data-urlencode "end_time=$((now + 86400))" --data-urlencode "total=100" --data-urlencode "status=1" \
            --data-urlencode "speed=0" --data-urlencode "buy_limit=1" --data-urlencode "buy_rate=1")
        aid=$(echo "$out" | json_pick 'd["data"]["activity_id"]')
        [ -n "$aid" ] || die "could not create the demo activity: $out"
        say "created activity $ACTIVITY_NAME (activity_id $aid, 100 in stock, ends in 24 h)"
    else
        say "activity $ACTIVITY_NAME exists (activity_id $aid)"
    fi
else
    pid=1
fi

# --- how to use it ---
SECRET=$(conf_get auth.secret "seckill-dev-secret-change-me")
ACCESS_URL="http://$ACCESS_LISTEN"
uid=$((RANDOM % 9000 + 1000))
SIGN=$ROOT/build/seckill-sign
query=""
if [ -x "$SIGN" ]; then
    query=$("$SIGN" -s "$SECRET" sign "$uid" "$pid" 2>/dev/null) || query=""
fi
if [ -z "$query" ]; then
    # The same SPEC §4 signature in Python, for when the C tool is not built.
    query=$(python3 -c 'import hashlib, hmac, secrets, sys, time
secret, uid, pid = sys.argv[1:]
t, nance = int(time.time()), secrets.token_hex(8)
key = hmac.new(secret.encode(), ("user:" + uid).encode(), hashlib.sha256).hexdigest()
code = hmac.new(key.encode(), ("kill:%s:%s:%d:%s" % (uid, pid, t, nance)).encode(), hashlib.sha256).hexdigest()
print("product_id=%s&user_id=%s&time=%d&nance=%s&auth_code=%s" % (pid, uid, t, nance, code))' "$SECRET" "$uid" "$pid")
fi
# Never echo a real secret; the shipped development one is public anyway.
if [ "$SECRET" = "seckill-dev-secret-change-me" ]; then
    secret_arg="-s $SECRET"
else
    secret_arg='-s "$AUTH_SECRET"'
fi

cat <<EOF

SecKill is running.
  access  $ACCESS_URL      (/sec/info, /sec/list, /sec/kill, /sec/result)
  admin   $ADMIN_URL      (/product/list, /activity/list, ...)
  console $ADMIN_URL/      (open it in a browser: the dashboard and the management pages)
  status  http://$STATUS_LISTEN      (/healthz, /status, /metrics)
  logs    var/log/   data: var/redis, var/etcd, $(conf_get admin.db var/seckill.db)

Try (a signature is valid for auth.window seconds, and each nance only once):
  curl -s '$ACCESS_URL/sec/info?product_id=$pid'
  curl -s '$ACCESS_URL/sec/kill?$query'
EOF
if [ -x "$SIGN" ]; then
    echo "  curl -s \"$ACCESS_URL/sec/kill?\$(build/seckill-sign $secret_arg sign 4242 $pid)\""
fi
echo
echo "Press Ctrl-C to stop."

# --- wait; if any child dies, stop the rest (a trapped Ctrl-C interrupts the wait) ---
wait -n "$REDIS_PID" "$ETCD_PID" "$SECKILLD_PID" && rc=0 || rc=$?
for n in REDIS_PID ETCD_PID SECKILLD_PID; do
    pid_alive "${!n}" || say "${n%_PID} (pid ${!n}) exited unexpectedly (status $rc); see var/log/"
done
exit 1

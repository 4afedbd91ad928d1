#!/usr/bin/env bash
# Installs what SecKill needs (Debian 12) and builds it into ./build (RelWithDebInfo).
#
# Idempotent: packages already installed are not touched (no apt-get update unless something is
# missing), and the build is incremental. Needs root (or sudo) only when a package is missing.
#
#   scripts/setup.sh              install missing packages, configure and build ./build
#   scripts/setup.sh --no-build   install only
#
# Environment: SK_BUILD_DIR (default ./build), SK_BUILD_TYPE (default RelWithDebInfo),
# SK_JOBS (default 2; the reference machine has 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BUILD_DIR=${SK_BUILD_DIR:-$ROOT/build}
BUILD_TYPE=${SK_BUILD_TYPE:-RelWithDebInfo}
JOBS=${SK_JOBS:-2}
do_build=1
for arg in "$@"; do
    case "$arg" in
    --no-build) do_build=0 ;;
    -h | --help)
        sed -n '2,12p' "$0"
        exit 0
        ;;
    *)
        echo "setup.sh: unknown argument $arg" >&2
        exit 2
        ;;
    esac
done

log() { echo "setup: $*"; }

PACKAGES=(
    build-essential cmake pkg-config clang-format
    clang libclang-rt-14-dev # scripts/fuzz.sh: libFuzzer and the sanitizer runtimes for clang 14
    libh2o-evloop-dev libev-dev liblua5.4-dev lua5.4 libhiredis-dev libcurl4-openssl-dev
    libcjson-dev libsqlite3-dev libssl-dev
    etcd-server etcd-client redis-server redis-tools wrk python3 curl ca-certificates
    chromium libjs-chart.js dpkg-dev
)
# The browser test drives Debian's Chromium with npm's playwright-core; any Node.js >= 18 serves, so Debian's is
# installed only when there is none.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -ne 0 ]; then
    log "installing ${missing[*]}"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            echo "setup.sh: missing packages (${missing[*]}) and not root; run as root or install them" >&2
            exit 1
        fi
    fi
    # Keep the Debian packages from starting their own redis-server/etcd services: we always run
    # our own instances on our own ports and data dirs. policy-rc.d is honoured by invoke-rc.d and
    # deb-systemd-invoke; we only add one when none exists, and remove only the one we added.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# added by seckill scripts/setup.sh for the duration of apt-get install\nexit 101\n' |
            "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    cleanup_policy() { if [ "$added_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
    trap cleanup_policy EXIT
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null
    cleanup_policy
    trap - EXIT
    added_policy=0
else
    log "all ${#PACKAGES[@]} packages present"
fi

# A system service started by the package (on a machine with a service manager) is not ours; say
# so, because run.sh wants 6379/2379 for its own instances.
for svc in redis-server etcd; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        log "note: the system service $svc is running; SecKill never uses it (stop it if run.sh needs its port)"
    fi
done

# playwright-core (pinned by tests/browser/package-lock.json) into tests/browser/node_modules, gitignored. It never
# downloads a browser: the test points it at /usr/bin/chromium.
pw_version() { # the playwright-core version a package(-lock).json file names, or nothing
    node -e 'const j = require(process.argv[1]); console.log(j.version || j.packages["node_modules/playwright-core"].version)' \
        "$1" 2>/dev/null || true
}
if [ -f tests/browser/package-lock.json ]; then
    wanted=$(pw_version "$ROOT/tests/browser/package-lock.json")
    have=$(pw_version "$ROOT/tests/browser/node_modules/playwright-core/package.json")
    if [ "$wanted" != "$have" ]; then
        log "installing playwright-core $wanted into tests/browser/node_modules"
        (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
fi

if [ "$do_build" = 0 ]; then
    exit 0
fi

log "configuring $BUILD_DIR ($BUILD_TYPE)"
mkdir -p "$BUILD_DIR"
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >"$BUILD_DIR/configure.log" 2>&1 || {
    cat "$BUILD_DIR/configure.log" >&2
    echo "setup.sh: cmake configure failed" >&2
    exit 1
}
log "building with -j$JOBS"
cmake --build "$BUILD_DIR" -j"$JOBS"
log "done: $BUILD_DIR/seckilld"

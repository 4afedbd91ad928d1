"""Integration-test harness for SecKill (Python 3 stdlib only).

Starts real redis-server, etcd and seckilld processes on free loopback ports, each in a temporary
directory, and kills every one of them when the test process exits (normally, on failure, on
SIGTERM/SIGINT, and -- through PR_SET_PDEATHSIG -- even when the test process itself is SIGKILLed
by a CTest timeout).

Quick use:

    import harness
    from harness import Redis, Etcd, Node, http, signed_params, DEV_SECRET

    class KillTest(harness.TestCase):          # self.tmp / cls.tmp: a fresh dir per class
        @classmethod
        def setUpClass(cls):
            super().setUpClass()
            cls.redis = Redis(cls.tmp).start()
            cls.etcd = Etcd(cls.tmp).start()
            cls.node = Node(cls.tmp, cls.redis, cls.etcd).start()

        def test_healthz(self):
            st, hdr, body = http("GET", self.node.status + "/healthz")
            self.assertEqual(st, 200)

    if __name__ == "__main__":
        harness.main()

Paths: binaries come from $SK_BUILD_DIR (default <repo>/build), sources from $SK_SOURCE_DIR
(default: the repo this file lives in). Node(asan=True) runs $SK_ASAN_BUILD_DIR/seckilld (default
<SK_BUILD_DIR>-asan/seckilld) when it exists, and the normal binary otherwise.

The process plumbing (registration, clean-up, ports, wait_until) lives in sk_proc.py and the client side
(RESP, HTTP, signatures, Redis key layout) in sk_wire.py; this module re-exports what tests use.

Environment knobs: SK_KEEP_TMP=1 keeps every temporary directory (they are kept anyway when a
class had a failure); SK_TEST_TIMEOUT overrides the per-test timeout of harness.TestCase (seconds).
"""

import base64
import contextlib
import http.client as httpclient
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import unittest

from sk_proc import (  # noqa: F401  (re-exported: tests import these from harness)
    ProcessExited, _ephemeral_range, _hard_kill, _procs, _procs_lock, _Server, _spawn, _spawned, _tail,
    free_port, kill_all, make_tmp, netns_enter, port_is_listening, tmpdir, wait_until)
from sk_wire import (  # noqa: F401  (re-exported: tests import these from harness)
    RESULT_BUCKET_MS, RESULT_KEEP_S, TOKEN_FIELDS, RedisError, _resp_encode, _RespReader, http, result_key,
    result_keep_until, sign, signed_params, stored_results, token_fields, token_info, user_key, user_wins, KEY_FORMATS,
    LOGIC_ALIVE_KEY, queue_key, BLACKLIST_USER_KEY, BLACKLIST_IP_KEY, BLACKLIST_NOTICE, blacklist_key, node_key,
    nonce_key, activity_key, activity_tag_prefix, reply_channel, key_glob, script_names, script_source,
    script_sha)

__all__ = [
    "SOURCE_DIR", "BUILD_DIR", "DEV_SECRET", "DEV_TOKEN_SECRET", "tmpdir", "make_tmp", "free_port", "port_is_listening",
    "Redis", "RedisError", "Etcd", "Node", "ProcessExited", "run_seckilld", "write_conf", "http", "user_key", "sign",
    "signed_params", "wait_until", "TestCase", "main", "kill_all", "result_key", "result_keep_until",
    "stored_results", "token_fields", "token_info", "user_wins", "KEY_FORMATS", "LOGIC_ALIVE_KEY", "queue_key",
    "BLACKLIST_USER_KEY", "BLACKLIST_IP_KEY", "BLACKLIST_NOTICE", "blacklist_key", "node_key", "nonce_key",
    "activity_key", "activity_tag_prefix", "reply_channel", "key_glob", "script_names", "script_source", "script_sha",
]

SOURCE_DIR = os.path.abspath(
    os.environ.get("SK_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD_DIR = os.path.abspath(os.environ.get("SK_BUILD_DIR") or os.path.join(SOURCE_DIR, "build"))
DEV_SECRET = "seckill-dev-secret-change-me"
DEV_TOKEN_SECRET = "seckill-dev-token-secret-change-me"

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------


class Redis(_Server):
    """A private redis-server on a free loopback port, AOF on, data under tmp/redis-<port>."""

    name = "redis"
    host = "127.0.0.1"  # the address it binds and is reached at
    netns = None  # the network namespace it runs in (sk_proc.netns_enter), None: this one

    def __init__(self, tmp, password=None, appendfsync="always", port=None, extra_args=()):
        self.tmp = tmp
        self.password = password
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self._set_dirs()

    def _set_dirs(self):
        self.dir = os.path.join(self.tmp, "redis-%d" % self.port)
        self.logfile = os.path.join(self.dir, "redis.log")
        self.outfile = os.path.join(self.dir, "redis.out")

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def _argv(self):
        argv = [
            "redis-server", "--port", str(self.port), "--bind", self.host, "--dir", self.dir, "--daemonize", "no",
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--logfile", self.logfile,
            "--protected-mode", "yes"
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv + self.extra_args

    def start(self, timeout=15):
        """Start and wait until PING answers. Returns self. A lost port race on the first start picks
        a new port; a start after stop()/kill() reuses the port and the data (like restart())."""
        if self.alive():
            return self
        first = self.proc is None
        for attempt in range(3):
            os.makedirs(self.dir, exist_ok=True)
            self.proc = _spawn(self._argv(), self.outfile, netns=self.netns)
            try:
                wait_until(lambda: self._ping_or_die(), timeout=timeout, interval=0.02, msg="redis PING")
                return self
            except ProcessExited:
                # Only a first start may move to another port; a start after stop() keeps its port and data.
                if attempt == 2 or not first or "Address already in use" not in _tail(self.logfile):
                    raise
                self.port = free_port()
                self._set_dirs()
        return self

    def restart(self, timeout=15):
        """Stop (SIGTERM) if running, then start again on the same port with the same data dir."""
        self.stop()
        self.proc = _spawn(self._argv(), self.outfile, netns=self.netns)
        wait_until(lambda: self._ping_or_die(), timeout=timeout, interval=0.02, msg="redis PING after restart")
        return self

    def _ping_or_die(self):
        if self.proc.poll() is not None:
            raise ProcessExited("redis-server exited with %s:\n%s\n%s" %
                               (self.proc.returncode, _tail(self.logfile), _tail(self.outfile)))
        try:
            return self.call("PING", timeout=1) == "PONG"
        except (OSError, RedisError):
            return False

    def call(self, *args, timeout=5):
        """One command over a fresh connection; returns the parsed reply, raises RedisError on an error reply."""
        with netns_enter(self.netns), socket.create_connection((self.host, self.port), timeout=timeout) as s:
            payload = b""
            if self.password:
                payload += _resp_encode(["AUTH", self.password])
            payload += _resp_encode(args)
            s.sendall(payload)
            r = _RespReader(s)
            with r.f:
                if self.password:
                    v = r.read()
                    if isinstance(v, RedisError):
                        raise v
                v = r.read()
            if isinstance(v, RedisError):
                raise v
            return v

    def cli(self, *args, input=None, timeout=30):
        """Run redis-cli against this server; returns stdout without the trailing newline."""
        argv = (["ip", "netns", "exec", self.netns] if self.netns else []) + ["redis-cli", "-h", self.host, "-p",
                                                                             str(self.port)]
        if self.password:
            argv += ["-a", self.password, "--no-auth-warning"]
        argv += [str(a) for a in args]
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("redis-cli %s failed (%d): %s" % (" ".join(map(str, args)), r.returncode, r.stderr))
        return r.stdout.rstrip("\n")

    def flushall(self):
        return self.call("FLUSHALL")

    def log_text(self):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


# ---------------------------------------------------------------------------------------------
# etcd
# ---------------------------------------------------------------------------------------------


class Etcd(_Server):
    """A private single-member etcd on free loopback ports, data under tmp/etcd-<port>."""

    name = "etcd"
    host = "127.0.0.1"
    netns = None

    def __init__(self, tmp, port=None, peer_port=None, progress_interval="1s", extra_args=()):
        self.tmp = tmp
        self.port = port or free_port()
        self.peer_port = peer_port or free_port()
        self.progress_interval = progress_interval
        self.extra_args = list(extra_args)
        self._set_dirs()

    def _set_dirs(self):
        self.dir = os.path.join(self.tmp, "etcd-%d" % self.port)
        self.outfile = os.path.join(self.tmp, "etcd-%d.log" % self.port)

    @property
    def endpoint(self):
        return "http://%s:%d" % (self.host, self.port)

    def _argv(self):
        peer = "http://%s:%d" % (self.host, self.peer_port)
        return [
            "etcd", "--name", "sk", "--data-dir", self.dir, "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint, "--listen-peer-urls", peer, "--initial-advertise-peer-urls",
            peer, "--initial-cluster", "sk=" + peer, "--initial-cluster-state", "new",
            "--experimental-watch-progress-notify-interval=" + self.progress_interval, "--logger", "zap",
            "--log-outputs", "stderr", "--log-level", "warn"
        ] + self.extra_args

    def _healthy_or_die(self):
        if self.proc.poll() is not None:
            raise ProcessExited("etcd exited with %s:\n%s" % (self.proc.returncode, _tail(self.outfile)))
        conn = httpclient.HTTPConnection(self.host, self.port, timeout=1)
        try:
            with netns_enter(self.netns):
                conn.connect()
            conn.request("GET", "/health")
            return json.loads(conn.getresponse().read()).get("health") == "true"
        except (OSError, ValueError, httpclient.HTTPException):
            return False
        finally:
            conn.close()

    def start(self, timeout=20):
        """Start and wait until /health says true. Returns self. A lost port race on the first start
        picks new ports; a start after stop()/kill() reuses the ports and the data."""
        if self.alive():
            return self
        first = self.proc is None
        for attempt in range(3):
            self.proc = _spawn(self._argv(), self.outfile, netns=self.netns)
            try:
                wait_until(self._healthy_or_die, timeout=timeout, interval=0.05, msg="etcd /health")
                return self
            except ProcessExited:
                if attempt == 2 or not first or "address already in use" not in _tail(self.outfile).lower():
                    raise
                shutil.rmtree(self.dir, ignore_errors=True)
                self.port, self.peer_port = free_port(), free_port()
                self._set_dirs()
        return self

    def restart(self, timeout=20):
        """Stop (SIGTERM) if running, then start again with the same ports and data dir."""
        self.stop()
        self.proc = _spawn(self._argv(), self.outfile, netns=self.netns)
        wait_until(self._healthy_or_die, timeout=timeout, interval=0.05, msg="etcd /health after restart")
        return self

    def ctl(self, *args, input=None, timeout=30, check=True):
        """Run `ETCDCTL_API=3 etcdctl --endpoints=... args`; returns stdout without the trailing newline."""
        env = dict(os.environ, ETCDCTL_API="3")
        argv = (["ip", "netns", "exec", self.netns] if self.netns else []) + ["etcdctl", "--endpoints=" + self.endpoint, "--dial-timeout=3s", "--command-timeout=10s"]
        argv += [str(a) for a in args]
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise RuntimeError("etcdctl %s failed (%d): %s" % (" ".join(map(str, args)), r.returncode, r.stderr))
        return r.stdout.rstrip("\n")

    cli = ctl

    # Fast key access through the JSON gateway (no subprocess).
    def _gw(self, path, obj, timeout=5):
        conn = httpclient.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            with netns_enter(self.netns):
                conn.connect()
            conn.request("POST", "/v3/" + path, body=json.dumps(obj), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = json.loads(resp.read() or b"{}")
            if resp.status != 200:
                raise RuntimeError("etcd %s: %s %s" % (path, resp.status, data))
            return data
        finally:
            conn.close()

    @staticmethod
    def _b64(s):
        return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()

    def put(self, key, value):
        """Put a key; returns the new revision (int)."""
        return int(self._gw("kv/put", {"key": self._b64(key), "value": self._b64(value)})["header"]["revision"])

    def get(self, key):
        """The value of key as str, or None."""
        kvs = self._gw("kv/range", {"key": self._b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")).decode("utf-8", "replace") if kvs else None

    def get_prefix(self, prefix):
        """{key: value} of every key under prefix."""
        end = bytearray(prefix.encode())
        end[-1] += 1
        kvs = self._gw("kv/range", {"key": self._b64(prefix), "range_end": self._b64(bytes(end))}).get("kvs") or []
        return {
            base64.b64decode(kv["key"]).decode("utf-8", "replace"):
            base64.b64decode(kv.get("value", "")).decode("utf-8", "replace")
            for kv in kvs
        }

    def delete(self, key):
        """Delete a key; returns how many keys were deleted."""
        return int(self._gw("kv/deleterange", {"key": self._b64(key)}).get("deleted", "0"))

    def log_text(self):
        try:
            with open(self.outfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


# ---------------------------------------------------------------------------------------------
# seckilld
# ---------------------------------------------------------------------------------------------


def _binary(asan=False):
    if asan:
        d = os.environ.get("SK_ASAN_BUILD_DIR") or (BUILD_DIR.rstrip("/") + "-asan")
        b = os.path.join(d, "seckilld")
        if os.access(b, os.X_OK):
            return b
    return os.path.join(BUILD_DIR, "seckilld")


def _child_env(env=None, asan=False):
    e = dict(os.environ)
    if asan:
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if env:
        e.update(env)
    return e


def run_seckilld(args, timeout=30, env=None, input=None, asan=False, cwd=None):
    """Run seckilld with args (e.g. ["-c", path, "--check"]) to completion: returns (rc, stdout, stderr)."""
    argv = [_binary(asan)] + [str(a) for a in args]
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=_child_env(env, asan),
                       cwd=cwd)
    return r.returncode, r.stdout, r.stderr


_node_seq = itertools.count(1)


def write_conf(path, conf):
    """Write a seckilld config file (`key = value` lines); None values are left out."""
    with open(path, "w") as f:
        f.write("# written by tests/integration/harness.py\n")
        for k, v in conf.items():
            if v is None:
                continue
            f.write("%s = %s\n" % (k, v))


class Node(_Server):
    """One seckilld process with its own config file, free ports, SQLite file and log file in tmp."""

    name = "seckilld"
    netns = None  # the network namespace it runs in; its status listener is reached from inside it

    def __init__(self, tmp, redis, etcd, plugins="access,logic,admin", conf=None, name=None, asan=False, env=None,
                 netns=None):
        seq = next(_node_seq)
        self.tmp = tmp
        self.redis = redis
        self.etcd = etcd
        self.name = name or "node%d" % seq
        self.asan = asan
        self.env = env
        self.netns = netns
        self.binary = _binary(asan)
        self.conf_path = os.path.join(tmp, self.name + ".conf")
        self.outfile = os.path.join(tmp, self.name + ".out")
        self.proc = None
        redis_addr = redis.addr if redis is not None else "127.0.0.1:%d" % free_port()
        etcd_ep = etcd.endpoint if etcd is not None else "http://127.0.0.1:%d" % free_port()
        self.conf = {
            "plugins": plugins,
            "node_id": "%s-%d-%d" % (self.name, os.getpid(), seq),
            "threads": 2,
            "access.listen": "127.0.0.1:%d" % free_port(),
            "admin.listen": "127.0.0.1:%d" % free_port(),
            "status.listen": "127.0.0.1:%d" % free_port(),
            "redis.addr": redis_addr,
            "redis.password": redis.password if redis is not None and redis.password else None,
            "etcd.endpoints": etcd_ep,
            "admin.db": os.path.join(tmp, self.name + ".db"),
            "policies.dir": os.path.join(SOURCE_DIR, "policies"),
            "plugin_dir": os.path.join(os.path.dirname(self.binary), "plugins"),
            "log.file": os.path.join(tmp, self.name + ".log"),
            "log.level": "info",
        }
        if conf:
            self.conf.update(conf)

    # URLs -------------------------------------------------------------------------------------
    @staticmethod
    def _url(listen):
        return "http://" + str(listen)

    @property
    def access(self):
        return self._url(self.conf["access.listen"])

    @property
    def admin(self):
        return self._url(self.conf["admin.listen"])

    @property
    def status(self):
        return self._url(self.conf["status.listen"])

    @property
    def node_id(self):
        return self.conf["node_id"]

    @property
    def logfile(self):
        return self.conf.get("log.file") or self.outfile

    # Lifecycle --------------------------------------------------------------------------------
    def write_conf(self):
        write_conf(self.conf_path, self.conf)
        return self.conf_path

    def start(self, wait=True, timeout=20, args=()):
        """Write the config and start seckilld. With wait, wait until GET /healthz on the status
        listener answers at all (200 or 503), and raise with the log tail on failure or early exit."""
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError("no seckilld binary at %s (build first, or set SK_BUILD_DIR)" % self.binary)
        self.write_conf()
        self.proc = _spawn([self.binary, "-c", self.conf_path] + [str(a) for a in args], self.outfile,
                           env=_child_env(self.env, self.asan), netns=self.netns)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20):
        def answered():
            if self.proc.poll() is not None:
                raise ProcessExited("seckilld %s exited early with %s\n%s" % (self.name, self.proc.returncode,
                                                                             self.tail()))
            try:
                with netns_enter(self.netns):
                    st, _, _ = http("GET", self.status + "/healthz", timeout=1)
                return st in (200, 503)
            except (OSError, httpclient.HTTPException):
                return False

        try:
            wait_until(answered, timeout=timeout, interval=0.05, msg="seckilld %s /healthz" % self.name)
        except AssertionError as e:
            raise RuntimeError("%s\n%s" % (e, self.tail())) from None
        return self

    def restart(self, wait=True, timeout=20):
        """Stop (SIGTERM) then start again with the same config (and so the same ports and node_id)."""
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def stop(self, timeout=10):
        """SIGTERM and wait up to timeout; returns the exit code. A process that does not exit is
        SIGKILLed and AssertionError is raised."""
        if self.proc is None:
            return None
        if not self._terminate(timeout):
            raise AssertionError("seckilld %s did not exit within %ss of SIGTERM\n%s" %
                                 (self.name, timeout, self.tail()))
        return self.proc.returncode

    # Logs -------------------------------------------------------------------------------------
    def log_text(self):
        """The log file followed by the process' stdout/stderr (where ASan/UBSan reports land)."""
        parts = []
        for path in dict.fromkeys([self.conf.get("log.file"), self.outfile]):
            if path:
                with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
                    parts.append(f.read())
        return "\n".join(parts)

    def tail(self, n=40):
        out = []
        if self.conf.get("log.file"):
            out.append("--- %s (log.file) ---\n%s" % (self.name, _tail(self.conf["log.file"], n)))
        out.append("--- %s (stdout/stderr) ---\n%s" % (self.name, _tail(self.outfile, n)))
        return "\n".join(out)

    def sanitizer_report(self):
        """The text of an ASan/UBSan/LSan report in the output, or None."""
        text = _tail(self.outfile, 400)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            i = text.find(marker)
            if i >= 0:
                return text[max(0, i - 200):]
        return None


# ---------------------------------------------------------------------------------------------
# unittest glue
# ---------------------------------------------------------------------------------------------


class _TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _TestTimeout("test exceeded its timeout (harness.TestCase.test_timeout)")


class TestCase(unittest.TestCase):
    """A TestCase whose class gets a fresh temporary directory `tmp`, whose processes (started
    during the class) are killed in tearDownClass, and whose tests each fail after `test_timeout`
    seconds instead of hanging. The directory is kept when a test failed (path printed)."""

    test_timeout = float(os.environ.get("SK_TEST_TIMEOUT", "120"))
    tmp = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = make_tmp("sk-%s-" % cls.__name__)
        with _procs_lock:
            cls._spawn_mark = _spawned[0]
        cls._failed = False

    @classmethod
    def tearDownClass(cls):
        mark = cls.__dict__.get("_spawn_mark")
        with _procs_lock:
            mine = [p for p in _procs if mark is not None and p.sk_seq > mark]
        for p in mine:
            with contextlib.suppress(Exception):
                if p.poll() is None:
                    p.send_signal(signal.SIGCONT)
                    p.terminate()
                    p.wait(timeout=5)
            _hard_kill(p)
        if cls.tmp:
            if cls.__dict__.get("_failed") or os.environ.get("SK_KEEP_TMP"):
                sys.stderr.write("harness: kept %s\n" % cls.tmp)
            else:
                shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        if self.test_timeout and threading.current_thread() is threading.main_thread():
            self._old_alarm = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.test_timeout)

    def tearDown(self):
        if self.test_timeout and threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_alarm)
        super().tearDown()

    def run(self, result=None):
        result = result if result is not None else self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            type(self)._failed = True
        return out


def main():
    """Run the tests of __main__ with verbosity 2; exit 1 on any failure, after killing every child."""
    prog = unittest.main(module="__main__", verbosity=2, exit=False, buffer=False)
    ok = prog.result.wasSuccessful()
    kill_all()
    if not ok:
        sys.stderr.write("harness: FAILED (%d failures, %d errors)\n" % (len(prog.result.failures),
                                                                        len(prog.result.errors)))
    sys.exit(0 if ok else 1)

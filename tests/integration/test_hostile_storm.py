"""Issue 17, a hostile-client storm on the public access port while a legitimate client drives a sale.

The legitimate client is open-loop: a signed /sec/kill (a new user each time) and a /sec/info every LEGIT_INTERVAL,
each sent at its scheduled time from a thread pool, its latency counted from that time (so a stalled server cannot
hide its stall by delaying the next send). It runs BASE_SECONDS without the storm, then STORM_SECONDS with it.

The storm runs in a child process (this file with --attack), niced, so that on this one shared machine its Python CPU
does not stand in for the server's: in production the attackers are on other machines. It does, bounded in time and
count, all on loopback:
  - idle: IDLE_CONNS connections (10,000) that send nothing; the ones the server closes are opened again;
  - slowloris: a request head one byte every 100 ms, never finished;
  - header floods: 2,000 headers in one request, and one 64 KB header;
  - pipelined garbage: valid requests followed by random bytes in one write, and 200 pipelined requests never read;
  - 1 MB query strings;
  - invalid UTF-8 and NUL bytes in the path, the query and header values;
  - disconnects mid-request (half a head, half a body, then a reset) and mid-wait (a signed /sec/kill, then a reset
    before the answer).

Asserted: the legitimate p99 during the storm is within 2x its p99 without it (plus P99_FLOOR_MS of scheduler noise:
the two cores are shared with other work, and a p99 of a few ms moves by that much on its own); not one legitimate
request is lost or refused; after the storm the daemon's fds and RSS (/proc/PID/fd, /proc/PID/status) come back near
where they were before it (fds within 16, RSS within RSS_SLACK_KB, within 18 s of the end of the storm).
"""

import concurrent.futures
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import DEV_SECRET, Etcd, Node, Redis, http, signed_params, wait_until  # noqa: E402
from test_proof_multinode import PERMISSIVE_LIMITS, proc_fds, proc_rss_kb  # noqa: E402

IDLE_CONNS = 10000
NOFILE = 65536  # the test raises RLIMIT_NOFILE to this (root) or to the hard limit; the node inherits it
IDLE_MS = 3000  # http.idle_timeout_ms: idle and slowloris connections are dropped after it
BASE_SECONDS = 6
STORM_SECONDS = 12
LEGIT_INTERVAL = 0.025  # 40 kills/s plus 40 infos/s: enough samples for a p99 that is not 4 requests
P99_FLOOR_MS = 5.0
ATTACK_NICE = 10
# Measured: RSS 17.7 MB before, 38 MB at the peak, 24.4 MB from the first malloc_trim after the storm (host/main.c, every
# 10 s) on, flat for the next minute. What stays is h2o's recycled buffers, allocator fragmentation and the access
# tables the storm's signed requests filled (replay window, limiter), all bounded. 2026-12-03 (second session): 19.0 MB
# before (the peer -> fd caches of host/conn_probe.c, 512 KB per HTTP thread, are now faulted in at start), 29.1-29.4
# MB after, in three runs: 10.1-10.5 MB of the same bounded kinds, so the slack is 12 MB.
RSS_SLACK_KB = 12288


class Legit:
    """The open-loop legitimate client."""

    def __init__(self, node, pid, uid0):
        self.node, self.pid, self.uid = node, pid, uid0
        self.samples = []  # (phase, path, ok, latency_s, detail)
        self.mu = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
        self.scheduled = 0

    def one(self, phase, due, path, params):
        try:
            st, _, body = http("GET", self.node.access + path, params=params, timeout=10)
            code = body.get("code") if isinstance(body, dict) else None
            ok, detail = code == 0, code  # plenty of stock and a new user each time: every kill wins
        except Exception as e:  # noqa: BLE001 - a refused or reset connection is a lost request
            ok, detail = False, repr(e)
        with self.mu:
            self.samples.append((phase, path, ok, time.monotonic() - due, detail))

    def drive(self, phase, seconds):
        nxt = time.monotonic()
        end = nxt + seconds
        while nxt < end:
            time.sleep(max(0.0, nxt - time.monotonic()))
            self.uid += 1
            self.pool.submit(self.one, phase, nxt, "/sec/kill", signed_params(DEV_SECRET, "kill", self.uid, self.pid))
            self.pool.submit(self.one, phase, nxt, "/sec/info", {"product_id": self.pid})
            self.scheduled += 2
            nxt += LEGIT_INTERVAL

    def finish(self):
        self.pool.shutdown(wait=True)

    def stats(self, phase):
        s = [x for x in self.samples if x[0] == phase]
        lat = sorted(x[3] for x in s)
        p = (lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else 0)
        return {"n": len(s), "ok": sum(1 for x in s if x[2]), "p50_ms": p(0.5), "p99_ms": p(0.99),
                "max_ms": round(1000 * lat[-1], 2) if lat else 0, "bad": [x[4] for x in s if not x[2]][:5]}


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):  # not root: as far as the hard limit goes
        want = min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class HostileStormTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nofile = raise_nofile()
        pol = os.path.join(cls.tmp, "policies")
        shutil.copytree(os.path.join(harness.SOURCE_DIR, "policies"), pol)
        with open(os.path.join(pol, "limits.lua"), "w") as f:
            f.write(PERMISSIVE_LIMITS)
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, conf={"policies.dir": pol, "http.idle_timeout_ms": IDLE_MS}).start(timeout=40)
        wait_until(lambda: http("GET", cls.node.status + "/healthz")[0] == 200, timeout=20, msg="node healthy")

    def admin_ok(self, method, path, body=None):
        st, _, out = http(method, self.node.admin + path, body=body, timeout=10)
        self.assertEqual(out.get("code"), 0, out)
        return out["data"]

    def test_hostile_storm(self):
        self.assertGreaterEqual(self.nofile, IDLE_CONNS + 1000, "RLIMIT_NOFILE %d is too low for the storm" % self.nofile)
        pid = self.admin_ok("POST", "/product/create", {"product_name": "storm", "product_total": 1000000,
                                                        "status": 1})["product_id"]
        now = int(time.time())
        self.admin_ok("POST", "/activity/create", {"activity_name": "storm", "product_id": pid, "start_time": now - 5,
                                                   "end_time": now + 3600, "total": 1000000, "status": 1, "speed": 0,
                                                   "buy_limit": 1, "buy_rate": 1})
        wait_until(lambda: http("GET", self.node.access + "/sec/info", params={"product_id": pid})[2]["data"]["status"]
                   == "active", timeout=10, msg="activity active")
        legit = Legit(self.node, pid, 7000000)
        legit.drive("warmup", 1.5)
        time.sleep(0.5)
        fd0, rss0 = proc_fds(self.node.pid), proc_rss_kb(self.node.pid)
        legit.drive("before", BASE_SECONDS)

        port = int(self.node.conf["access.listen"].rsplit(":", 1)[1])
        attack = subprocess.Popen(["nice", "-n", str(ATTACK_NICE), sys.executable, os.path.abspath(__file__), "--attack",
                                   "127.0.0.1", str(port), str(STORM_SECONDS), str(pid), DEV_SECRET],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = {"fds": 0, "rss_kb": 0}
        stop_peek = threading.Event()

        def peek():
            while not stop_peek.is_set():
                try:
                    peak["fds"] = max(peak["fds"], proc_fds(self.node.pid))
                    peak["rss_kb"] = max(peak["rss_kb"], proc_rss_kb(self.node.pid))
                except OSError:
                    pass
                stop_peek.wait(2)  # listing 10,000 fds in /proc is not free: rarely, to leave the measurement alone

        peeker = threading.Thread(target=peek, daemon=True)
        peeker.start()
        try:
            time.sleep(2)  # the idle connections are being opened
            legit.drive("storm", STORM_SECONDS - 3)
            out, err = attack.communicate(timeout=STORM_SECONDS + 120)
        finally:
            if attack.poll() is None:
                attack.kill()
                attack.wait()
            stop_peek.set()
            peeker.join(2)
        legit.drive("after", 2)
        legit.finish()
        self.assertEqual(attack.returncode, 0, err[-3000:])
        storm = json.loads(out.strip().splitlines()[-1])
        before, during, after = legit.stats("before"), legit.stats("storm"), legit.stats("after")

        # the daemon lets go of what the storm made it hold
        def settled():
            return proc_fds(self.node.pid) <= fd0 + 16 and proc_rss_kb(self.node.pid) <= rss0 + RSS_SLACK_KB
        trend = []
        t_end = time.monotonic() + IDLE_MS / 1000 + 15
        while time.monotonic() < t_end and not settled():
            trend.append(proc_rss_kb(self.node.pid))
            time.sleep(1)
        if trend:
            sys.stderr.write("proof: RSS after the storm, once a second: %s\n" % trend)
        fd1, rss1 = proc_fds(self.node.pid), proc_rss_kb(self.node.pid)
        summary = ("storm %s | peak %s | fds %d -> %d, rss %d -> %d kB | legit before %s | during %s | after %s"
                   % (storm, peak, fd0, fd1, rss0, rss1, before, during, after))
        sys.stderr.write("proof: %s\n" % summary)

        # the storm really happened
        self.assertGreaterEqual(storm["idle_open"], IDLE_CONNS, summary)
        self.assertGreaterEqual(peak["fds"], fd0 + IDLE_CONNS // 2, summary)
        for k in ("slowloris", "header_many", "header_big", "header_huge", "pipelined", "pipelined_unread", "big_query", "bad_bytes",
                  "cut_request", "cut_wait"):
            self.assertGreater(sum(storm[k].values()), 3, "%s: %s" % (k, summary))
        for k in ("header_many", "header_huge", "big_query", "bad_bytes"):
            self.assertNotIn("200", storm[k], "%s: %s" % (k, summary))
        # idle and slowloris connections are dropped at http.idle_timeout_ms
        self.assertGreater(storm["idle_closed_by_server"], IDLE_CONNS // 2, summary)
        # not one legitimate request lost, refused or failed
        self.assertEqual(legit.scheduled, len(legit.samples), summary)
        for ph in (before, during, after):
            self.assertEqual(ph["ok"], ph["n"], summary)
        # and served nearly as fast as without the storm
        self.assertLessEqual(during["p99_ms"], 2 * before["p99_ms"] + P99_FLOOR_MS, summary)
        # the node is fine, and back to its size
        self.assertTrue(self.node.alive(), self.node.tail())
        self.assertEqual(http("GET", self.node.status + "/healthz")[0], 200)
        self.assertLessEqual(fd1, fd0 + 16, summary)
        self.assertLessEqual(rss1, rss0 + RSS_SLACK_KB, summary)

    def test_out_of_fds(self):
        """At RLIMIT_NOFILE the daemon neither spins on accept() nor stops: it pauses accepting, and serves again as
        soon as connections go away."""
        import socket
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the node inherits it
        try:
            node = Node(self.tmp, self.redis, self.etcd, name="fds").start(timeout=40)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        socks = []
        try:
            port = int(node.conf["access.listen"].rsplit(":", 1)[1])
            for _ in range(400):  # more than the node has fds for: the rest wait in the backlog
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            wait_until(lambda: proc_fds(node.pid) >= 250, timeout=10, msg="node out of fds")
            c0 = proc_cpu_ticks(node.pid)
            time.sleep(3)
            spent = proc_cpu_ticks(node.pid) - c0
            for s in socks:
                s.close()
            socks = []
            t0 = time.monotonic()
            st, _, _ = http("GET", node.access + "/sec/info", params={"product_id": 1}, timeout=5)
            took = time.monotonic() - t0
            sys.stderr.write("proof: out of fds: %d CPU ticks in 3 s, then an answer (%d) in %.3f s\n" % (spent, st, took))
            self.assertLess(spent, 30, "the node spins at its fd limit")  # 10% of a core, in 1/100 s ticks
            self.assertLess(took, 1.0)
        finally:
            for s in socks:
                s.close()
            node.stop()


def proc_cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def attack(host, port, secs, pid, secret):
    """The storm (a child process): prints one JSON line of counters."""
    import hashlib
    import hmac
    import random
    import secrets
    import selectors
    import socket
    import struct

    end = time.monotonic() + secs
    mu = threading.Lock()
    stats = {"idle_open": 0, "idle_closed_by_server": 0, "idle_errors": 0}
    for k in ("slowloris", "header_many", "header_big", "header_huge", "pipelined", "pipelined_unread", "big_query", "bad_bytes",
              "cut_request", "cut_wait"):
        stats[k] = {}

    def bump(kind, key):
        with mu:
            stats[kind][key] = stats[kind].get(key, 0) + 1

    def status_of(s):
        s.settimeout(5)
        data = b""
        try:
            while b"\r\n" not in data and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            return "err:" + type(e).__name__
        if not data:
            return "closed"
        parts = data.split(b" ", 2)
        return parts[1].decode(errors="replace") if len(parts) > 1 and data.startswith(b"HTTP/") else "garbage"

    def rounds(per_sec):
        """Yields until the end of the storm, at most per_sec times a second: the storm is bounded in rate as in time
        and count. Flooding the two shared cores with CPU would measure this machine, not the server's isolation."""
        nxt = time.monotonic()
        while time.monotonic() < end:
            yield
            nxt += 1.0 / per_sec
            time.sleep(max(0.0, nxt - time.monotonic()))

    def reset(s):  # close with RST: a client that vanishes, not one that says goodbye
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        s.close()

    def one_shot(kind, payload, read=True, cut=False):
        try:
            s = socket.create_connection((host, port), timeout=5)
        except OSError:
            bump(kind, "connect_error")
            return
        try:
            try:
                s.sendall(payload)
            except OSError:
                pass
            if cut:
                bump(kind, "cut")
                reset(s)
                return
            bump(kind, status_of(s) if read else "sent")
        finally:
            s.close()

    def idle():
        sel = selectors.DefaultSelector()
        socks = set()

        def open_one():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            sel.register(s, selectors.EVENT_READ)
            socks.add(s)
            with mu:
                stats["idle_open"] += 1

        # 500 every 50 ms: the whole 10,000 within a second. Opened in the same millisecond they would also expire
        # in one, and h2o 2.2 closes every expired connection in one loop pass (about 5 us each: 50 ms of stall)
        for i in range(IDLE_CONNS):
            if i % 500 == 499:
                time.sleep(0.05)
            try:
                open_one()
            except OSError:
                with mu:
                    stats["idle_errors"] += 1
        reopen_budget = 2 * IDLE_CONNS  # bounded in count as in time
        while time.monotonic() < end:
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    gone = s.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    with mu:
                        stats["idle_closed_by_server"] += 1
                    sel.unregister(s)
                    socks.discard(s)
                    s.close()
                    if reopen_budget > 0 and time.monotonic() < end - 0.5:
                        reopen_budget -= 1
                        try:
                            open_one()
                        except OSError:
                            with mu:
                                stats["idle_errors"] += 1
        for s in socks:
            s.close()

    def slowloris():
        head = b"GET /sec/info?product_id=1 HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000
        conns = []
        for _ in range(200):
            try:
                s = socket.create_connection((host, port), timeout=5)
                s.setblocking(False)
                conns.append([s, 0])
            except OSError:
                bump("slowloris", "connect_error")
        while time.monotonic() < end:
            for c in conns:
                if c[0] is None:
                    continue
                try:
                    c[0].send(head[c[1] % len(head):c[1] % len(head) + 1])
                    c[1] += 1
                    bump("slowloris", "byte")
                except BlockingIOError:
                    pass
                except OSError:
                    bump("slowloris", "closed_by_server")
                    c[0].close()
                    c[0] = None
            time.sleep(0.1)
        for c in conns:
            if c[0] is not None:
                c[0].close()

    def headers():
        many = b"GET /sec/info?product_id=1 HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(2000)) + b"\r\n"
        # 64 KB fits h2o's request-head limit (about 400 KB) and is answered; 512 KB does not and is refused
        big = b"GET /sec/info?product_id=1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 65536 + b"\r\n\r\n"
        huge = b"GET /sec/info?product_id=1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * (512 << 10) + b"\r\n\r\n"
        for _ in rounds(10):
            one_shot("header_many", many)
            one_shot("header_big", big)
            one_shot("header_huge", huge)

    def pipelined():
        rnd = random.Random(11)
        ok = b"GET /sec/info?product_id=%d HTTP/1.1\r\nHost: x\r\n\r\n" % pid
        for _ in rounds(10):
            junk = bytes(rnd.getrandbits(8) for _ in range(rnd.choice([16, 512, 4096])))
            one_shot("pipelined", ok * 3 + junk)
            one_shot("pipelined_unread", ok * 200, read=False)

    def big_query():
        q = b"GET /sec/kill?product_id=1&user_id=1&src=" + b"x" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in rounds(10):
            one_shot("big_query", q)

    def bad_bytes():
        reqs = [b"GET /sec/info?product_id=\xff\xfe\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /sec/\x00info?product_id=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /sec/info?product_id=1%00 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /sec/kill?product_id=1&user_id=1&nance=%ff%fe%00 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /sec/info?product_id=1 HTTP/1.1\r\nHost: x\r\nReferer: http://\xed\xa0\x80/\x00\r\n"
                b"X-Forwarded-For: \xc0\xaf, \x00\r\n\r\n",
                b"\x00\x00\x00\x00GET / HTTP/1.1\r\n\r\n"]
        for _ in rounds(5):
            for r in reqs:
                one_shot("bad_bytes", r)

    def sign(uid, t, nance):
        uk = hmac.new(secret.encode(), b"user:%d" % uid, hashlib.sha256).hexdigest()
        return hmac.new(uk.encode(), ("kill:%d:%d:%d:%s" % (uid, pid, t, nance)).encode(), hashlib.sha256).hexdigest()

    def cut():
        uid = 50000000
        body = b"product_id=1&user_id=1&src=" + b"z" * 30000
        for _ in rounds(20):
            one_shot("cut_request", b"GET /sec/info?product_id=1 HTTP/1.1\r\nHost: x\r\nX-A: ", cut=True)
            one_shot("cut_request", (b"POST /sec/kill HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                                     b"\r\nContent-Length: %d\r\n\r\n" % len(body)) + body[:len(body) // 2], cut=True)
            uid += 1
            t, nance = int(time.time()), secrets.token_hex(8)
            q = "product_id=%d&user_id=%d&time=%d&nance=%s&auth_code=%s" % (pid, uid, t, nance, sign(uid, t, nance))
            one_shot("cut_wait", b"GET /sec/kill?%s HTTP/1.1\r\nHost: x\r\n\r\n" % q.encode(), cut=True)

    ths = [threading.Thread(target=f) for f in (idle, slowloris, headers, pipelined, big_query, bad_bytes, cut)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    print(json.dumps(stats))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        attack(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        harness.main()

"""Open-loop load for the cluster tests (Python 3 stdlib only).

- run_benches(): several tools/seckill-bench processes at once (optionally inside network namespaces), a fault
  injected in this thread once fault_when() holds, their JSON summaries returned;
- OpenLoop: a Python open-loop /sec/kill client at a fixed modest rate over several access nodes and products that
  keeps every answer (code, token, latency measured from the scheduled send time), for the checks the bench cannot
  make on a Redis Cluster (it reads one Redis): per-activity wins, tokens told to clients, per-second wins.
"""

import http.client as httpclient
import json
import queue
import socket
import subprocess
import threading
import time
import urllib.parse

from sk_proc import netns_enter, wait_until
from sk_wire import signed_params


def bench_summary(out):
    """The last JSON line of a seckill-bench output, or None."""
    for line in reversed((out or "").strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def run_benches(argvs, duration, fault=None, fault_when=None, fault_timeout=30):
    """Runs every argv at once. fault_when() is polled until true, then fault() runs in this thread while the loads
    go on. Returns ([summary or None, with "_rc" and "_out"], the exception fault raised or None)."""
    procs = [subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for argv in argvs]
    outs = [""] * len(procs)

    def collect(i):
        try:
            outs[i] = procs[i].communicate(timeout=duration + 90)[0]
        except subprocess.TimeoutExpired:
            procs[i].kill()
            outs[i] = procs[i].communicate()[0] + "\n(killed: no exit within the run time + 90 s)"

    ths = [threading.Thread(target=collect, args=(i, ), daemon=True) for i in range(len(procs))]
    for t in ths:
        t.start()
    err = None
    try:
        if fault is not None:
            if fault_when is not None:
                wait_until(fault_when, timeout=fault_timeout, interval=0.05, msg="the sale to be under way")
            fault()
    except Exception as e:  # noqa: BLE001 - reported by the caller after the loads are reaped
        err = e
    for t in ths:
        t.join(duration + 120)
    sums = []
    for p, out in zip(procs, outs):
        s = bench_summary(out) or {}
        s["_rc"], s["_out"] = p.returncode, out
        sums.append(s)
    return sums, err


class Answer:
    __slots__ = ("sched", "lat", "code", "http", "pid", "uid", "token", "data", "access", "err", "msg")

    def __init__(self, sched, pid, uid, access):
        self.sched, self.pid, self.uid, self.access = sched, pid, uid, access
        self.lat = self.code = self.http = self.token = self.data = self.err = self.msg = None


class OpenLoop:
    """Sends signed /sec/kill requests at `rate` per second for `duration` seconds, round-robin over `targets`
    (access base URLs) and `products`, users drawn in order from users[pid] (a list per product, cycled). Each
    request is sent at its scheduled time by one of `workers` threads over a keep-alive connection (a worker whose
    queue is late still measures latency from the schedule: open loop). `timeout` is the client's give-up time."""

    def __init__(self, targets, products, users, secret, rate=100, duration=5, workers=48, timeout=6.0, netns=None):
        self.targets = list(targets)
        self.products = list(products)
        self.users = users
        self.secret = secret
        self.rate, self.duration = rate, duration
        self.workers, self.timeout, self.netns = workers, timeout, netns
        self.answers = []
        self._q = queue.Queue()
        self._lock = threading.Lock()
        self.started = threading.Event()
        self.t0 = None

    def _worker(self):
        conns = {}
        with netns_enter(self.netns):  # the thread's sockets are made in that namespace
            while True:
                a = self._q.get()
                if a is None:
                    break
                delay = a.sched - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._send(a, conns)
                with self._lock:
                    self.answers.append(a)
        for c in conns.values():
            c.close()

    def _send(self, a, conns):
        params = signed_params(self.secret, "kill", a.uid, a.pid)
        u = urllib.parse.urlsplit(a.access)
        for attempt in range(2):
            c = conns.get(a.access)
            if c is None:
                c = conns[a.access] = httpclient.HTTPConnection(u.hostname, u.port, timeout=self.timeout)
            try:
                c.request("GET", "/sec/kill?" + urllib.parse.urlencode(params))
                resp = c.getresponse()
                raw = resp.read()
                a.lat = time.monotonic() - a.sched
                a.http = resp.status
                try:
                    body = json.loads(raw)
                    a.code = body.get("code")
                    a.msg = body.get("message")
                    a.data = body.get("data")
                    if a.code == 0 and isinstance(a.data, dict):
                        a.token = a.data.get("token")
                except ValueError:
                    a.err = "not JSON: %r" % raw[:200]
                if resp.getheader("connection", "").lower() == "close":
                    c.close()
                    conns.pop(a.access, None)
                return
            except (OSError, httpclient.HTTPException) as e:
                c.close()
                conns.pop(a.access, None)
                sent = not isinstance(e, (ConnectionRefusedError, httpclient.RemoteDisconnected, BrokenPipeError,
                                          ConnectionResetError))
                if isinstance(e, socket.timeout) or sent or attempt == 1:
                    a.lat = time.monotonic() - a.sched
                    a.err = repr(e)
                    return
                # a keep-alive connection the server had closed: send again on a fresh one (nothing was processed)

    def run(self, during=None):
        """Runs the load; during(), if given, runs in this thread meanwhile. Returns self.answers."""
        ths = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.workers)]
        for t in ths:
            t.start()
        n = int(self.rate * self.duration)
        self.t0 = time.monotonic() + 0.2
        cursor = {p: 0 for p in self.products}
        for i in range(n):
            pid = self.products[i % len(self.products)]
            us = self.users[pid]
            uid = us[cursor[pid] % len(us)]
            cursor[pid] += 1
            # each product's requests alternate over the access nodes (i // P, not i: P products, T targets)
            target = self.targets[(i // len(self.products)) % len(self.targets)]
            self._q.put(Answer(self.t0 + i / self.rate, pid, uid, target))
        for _ in ths:
            self._q.put(None)
        self.started.set()
        err = None
        if during is not None:
            try:
                during()
            except Exception as e:  # noqa: BLE001
                err = e
        for t in ths:
            t.join(self.duration + self.timeout + 60)
        if err is not None:
            raise err
        return self.answers

    # ---- summaries ---------------------------------------------------------------------------------------------
    def codes(self, pid=None):
        out = {}
        for a in self.answers:
            if pid is None or a.pid == pid:
                k = str(a.code) if a.code is not None else "none"
                out[k] = out.get(k, 0) + 1
        return out

    def wins(self, pid=None):
        return [a for a in self.answers if a.code == 0 and (pid is None or a.pid == pid)]

    def max_latency(self):
        return max((a.lat for a in self.answers if a.lat is not None), default=0.0)

    def unanswered(self):
        return [a for a in self.answers if a.code is None]

"""A client that goes away while its /sec/kill waits (SPEC §8.7, issue 17): its slot is freed within 1 s, not at its
deadline, its request is still decided, and a win stays readable through /sec/result. Clients that stay, including
one with a pipelined request behind its wait, are never taken for gone."""

import os
import socket
import struct
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Etcd, Node, Redis, wait_until  # noqa: E402
from sk_wire import signed_params  # noqa: E402
from test_access_codes import (DEV_SECRET, access_status, code_of, fresh_ip, kill, put_activity, put_product,  # noqa
                               wait_logic, wait_status)

# a deadline far beyond the 1 s the test allows, so that only the probe can free a slot in time
CONF = {"access.trusted_proxies": "127.0.0.1", "redis.timeout_ms": 500, "access.request_timeout_ms": 6000}


def open_kill(node, uid, pid, pipelined=b""):
    """A raw connection with one signed /sec/kill sent (and `pipelined` bytes behind it); the answer is not read."""
    host, port = node.conf["access.listen"].split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    q = urllib.parse.urlencode(signed_params(DEV_SECRET, "kill", uid, pid))
    s.sendall(b"GET /sec/kill?" + q.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: " + fresh_ip().encode() +
              b"\r\n\r\n" + pipelined)
    return s


def read_answers(s, n, timeout=10):
    """The first n HTTP/1.1 answers on s, as (status line, body)."""
    s.settimeout(timeout)
    buf, out = b"", []
    while len(out) < n:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        length = None
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
        if length is not None and len(rest) >= length:
            out.append((head.split(b"\r\n")[0], rest[:length]))
            buf = rest[length:]
            continue
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return out


class AccessGoneTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="access", conf=CONF).start()
        cls.logic = Node(cls.tmp, cls.redis, cls.etcd, plugins="logic", conf=CONF).start()
        wait_logic(cls.redis, cls.logic, access=cls.node)
        put_product(cls.etcd, 1)
        put_activity(cls.etcd, 1, 1, total=1000, buy_limit=1)
        wait_status(cls.node, 1, "active")

    def sold(self):
        return int(self.redis.call("GET", harness.activity_key(1, "sold")) or 0)

    def test_gone_is_noticed_and_decided(self):
        wait_until(lambda: code_of(kill(self.node, 900000 + int(time.time() * 1000) % 99999, 1, ip=fresh_ip())) == 0,
                   timeout=10, msg="a win")
        sold0, gone0 = self.sold(), access_status(self.node).get("gone", 0)
        self.logic.pause()
        try:
            leaving = [open_kill(self.node, 1000 + i, 1) for i in range(20)]
            staying = [open_kill(self.node, 2000, 1),
                       open_kill(self.node, 2001, 1, pipelined=b"GET /sec/list HTTP/1.1\r\nHost: x\r\n\r\n")]
            wait_until(lambda: access_status(self.node).get("inflight") == 22, timeout=5, msg="22 requests waiting")
            time.sleep(0.3)  # queued and probed at least once while still open
            t0 = time.monotonic()
            for i, s in enumerate(leaving):
                if i % 2 == 0:  # a reset: a client that vanishes
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            wait_until(lambda: access_status(self.node).get("gone", 0) - gone0 == 20, timeout=5, interval=0.02,
                       msg="the 20 that left are noticed")
            took = time.monotonic() - t0
            st = access_status(self.node)
            self.assertEqual(st.get("inflight"), 2, st)
            print("20 clients that left noticed in %.3f s" % took, flush=True)
            self.assertLess(took, 1.0, "noticed %.3f s after the clients left" % took)
            # the two that stay have waited several probe rounds by now and must still be waiting
            time.sleep(0.6)
            self.assertEqual(access_status(self.node).get("gone", 0) - gone0, 20)
        finally:
            self.logic.resume()
        answers = [read_answers(staying[0], 1), read_answers(staying[1], 2)]
        for got in answers:
            self.assertGreaterEqual(len(got), 1, answers)
            self.assertTrue(got[0][0].startswith(b"HTTP/1.1 200"), got)
            self.assertIn(b'"code":0', got[0][1])
        # the pipelined request behind the second wait is then served on the same connection
        self.assertEqual(len(answers[1]), 2, answers)
        self.assertTrue(answers[1][1][0].startswith(b"HTTP/1.1 200"), answers)
        for s in staying:
            s.close()
        # the gone requests were still queued: logic decides them before their deadline, and each win is readable
        wait_until(lambda: self.sold() == sold0 + 22, timeout=10, msg="all 22 decided")
        for i in range(20):
            resp = kill(self.node, 1000 + i, 1, ip=fresh_ip(), scope="result", path="/sec/result")
            self.assertEqual(code_of(resp), 0, resp)
            wins = resp[2]["data"]["wins"]
            self.assertEqual(len(wins), 1, resp)
            self.assertEqual(wins[0]["activity_id"], 1)
        wait_until(lambda: access_status(self.node).get("inflight") == 0, timeout=5, msg="nothing left waiting")
        self.assertIsNone(self.node.sanitizer_report())


if __name__ == "__main__":
    harness.main()

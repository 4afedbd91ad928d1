"""seckill-bench against a real node (redis + etcd + seckilld with access, logic and admin).

- an open-loop sell-out at a modest rate: exit 0, wins == total, no 1008, every request answered, the
  checks ran (sold, winners, Redis tokens);
- the checker is not a rubber stamp: a node stalled mid-run (SIGSTOP) makes the bench exit 1 and name
  the failed invariant;
- --self-test (histogram and HTTP parser) and --wrk-file need no load.
"""

import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import BUILD_DIR, Etcd, Node, Redis  # noqa: E402

BENCH = os.path.join(BUILD_DIR, "seckill-bench")


def hostport(url):
    return url.split("://", 1)[1]


class BenchSmoke(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd).start()
        harness.wait_until(lambda: harness.http("GET", cls.node.status + "/healthz")[0] == 200, timeout=20,
                           msg="node healthy")

    def bench(self, *args, timeout=90):
        argv = [
            BENCH, "--access", hostport(self.node.access), "--admin", hostport(self.node.admin), "--redis",
            self.redis.addr, "--secret", harness.DEV_SECRET
        ] + [str(a) for a in args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        lines = r.stdout.strip().splitlines()
        summary = None
        if lines:
            try:
                summary = json.loads(lines[-1])
            except ValueError:
                pass
        return r, summary

    def test_0_self_test(self):
        r = subprocess.run([BENCH, "--self-test"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("checks passed", r.stdout)

    def test_1_wrk_file(self):
        path = os.path.join(self.tmp, "paths")
        r, s = self.bench("--total", 5, "--wrk-file", path, "--wrk-count", 200, "--users", 50)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 200)
        self.assertEqual(len(set(lines)), 200)  # every line its own nance
        # a line is a valid signed request: the node sells it. (This test runs before the load tests: after them the
        # shipped limits.lua, which --relax-limits put back, has used up this client IP's 500 requests a minute.)
        st, _, body = harness.http("GET", self.node.access + lines[0])
        self.assertEqual(st, 200, body)
        self.assertEqual(body["code"], 0, body)

    def test_2_open_loop_sellout(self):
        r, s = self.bench("-R", 300, "-d", 3, "-c", 32, "--total", 50, "--buy-limit", 1, "--buy-rate", 1, "--users",
                          5000, "--relax-limits")
        out = r.stdout + r.stderr + "\n" + self.node.tail()
        self.assertEqual(r.returncode, 0, out)
        self.assertIsNotNone(s, out)
        self.assertEqual(s["tool"], "seckill-bench")
        self.assertEqual(s["mode"], "open")
        self.assertEqual(s["wins"], 50, out)
        self.assertNotIn("1008", s["codes"], out)
        self.assertEqual(s["answered"], s["sent"], out)
        self.assertGreaterEqual(s["sent"], 850, out)  # ~900 scheduled in 3 s at 300/s
        self.assertEqual(s["codes"].get("0"), 50)
        self.assertEqual(s["codes"].get("1007", 0) + 50, s["answered"], out)
        self.assertEqual(len(s["activities"]), 1)
        self.assertEqual(s["activities"][0]["sold"], 50)
        self.assertTrue(s["checks"]["run"])
        self.assertEqual(s["checks"]["failed"], 0, out)
        self.assertGreaterEqual(s["checks"]["passed"], 8, out)
        self.assertTrue(s["pass"])
        for k in ("p50", "p90", "p99", "p999"):
            self.assertGreater(s["latency_us"][k], 0)
        self.assertIn("RESULT: PASS", r.stdout)
        # the bench put the previous limits policy back: the shipped file serves again (its etcd override is deleted)
        st, _, body = harness.http("GET", self.node.admin + "/policy/limits.lua")
        self.assertEqual(st, 200, body)
        self.assertNotIn("seckill-bench --relax-limits", body["data"]["source"])
        self.assertEqual(body["data"].get("origin"), "file", body)

    def test_3_stalled_node_fails(self):
        # SIGSTOP the node for 2.5 s of a 4 s run: requests go unanswered past --timeout-ms, which must fail.
        def stall():
            time.sleep(2.5)  # settle (1.5 s with --relax-limits) plus 1 s of load
            self.node.pause()
            time.sleep(2.5)
            self.node.resume()

        th = threading.Thread(target=stall)
        th.start()
        try:
            r, s = self.bench("-R", 100, "-d", 4, "-c", 16, "--total", 1000, "--users", 5000, "--timeout-ms", 1000,
                              "--relax-limits")
        finally:
            th.join()
            self.node.resume()
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIsNotNone(s, out)
        self.assertFalse(s["pass"])
        self.assertGreater(s["timeouts"], 0, out)
        self.assertTrue(any(f.startswith("every request answered") for f in s["checks"]["failures"]), out)
        self.assertIn("RESULT: FAIL", r.stdout)


if __name__ == "__main__":
    harness.main()

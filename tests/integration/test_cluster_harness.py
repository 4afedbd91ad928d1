"""The cluster test infrastructure itself (sk_cluster.py), on real servers and today's code:
- keyslot() (CRC16 with hash tags, in Python) agrees with CLUSTER KEYSLOT, tags and edge cases included;
- migrate_slot(), stepwise, while a writer INCRs keys of that slot through MOVED/ASK: no write lost, the slot ends on
  the target on every master's map, the source holds none of its keys;
- kill_master() + wait_failover() on 3 masters x 1 replica: the replica is promoted, and what WAIT 1 confirmed before
  the kill is on it;
- EtcdCluster: kill_leader(), a new leader within a few seconds, puts go on through the survivors;
- clean-up: a test process SIGKILLed with a Redis Cluster and network namespaces up leaves no server behind
  (PR_SET_PDEATHSIG), and its namespaces are deleted by the next Netns.start() (Netns part skipped where namespaces are
  not permitted).
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import RedisError, wait_until  # noqa: E402
from sk_cluster import EtcdCluster, Netns, RedisCluster, keyslot, netns_supported  # noqa: E402

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, %r)
from harness import make_tmp
from sk_cluster import RedisCluster, Netns, netns_supported
rc = RedisCluster(make_tmp("sk-child-"), masters=3).start()
names = []
if netns_supported()[0]:
    net = Netns(["a", "b"]).start()
    names = [net.ns("a"), net.ns("b"), net.ns("br")]
print(json.dumps({"pids": [n.pid for n in rc.nodes], "netns": names}), flush=True)
time.sleep(120)
"""


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class ClusterHarness(harness.TestCase):
    test_timeout = 120

    def test_1_keyslot_matches_redis(self):
        rc = RedisCluster(self.tmp, masters=3).start()
        node = rc.masters()[0]
        rnd = random.Random(12)
        keys = ["{a%d}" % i for i in range(1, 60)] + ["sk:{a%d}:q" % i for i in range(1, 30)]
        keys += ["foo", "123456789", "x{}y", "{}{a}", "a{b}c{d}", "{{x}}", "}{", "{", "", "\u00e9t\u00e9{\u00e9}"]
        keys += ["".join(rnd.choice("ab{}c:") for _ in range(rnd.randrange(1, 12))) for _ in range(150)]
        for k in keys:
            self.assertEqual(keyslot(k), node.call("CLUSTER", "KEYSLOT", k), "keyslot(%r)" % k)
        rc.kill()

    def test_2_migrate_slot_under_writes(self):
        rc = RedisCluster(self.tmp, masters=3).start()
        slot = keyslot("{a7}")
        keys = ["sk:{a7}:k%d" % i for i in range(12)]
        done = {k: 0 for k in keys}
        stop = threading.Event()
        errors = []

        def writer():
            i = 0
            while not stop.is_set():
                k = keys[i % len(keys)]
                try:
                    rc.call_key(k, "INCR", k)
                    done[k] += 1
                except (RedisError, OSError) as e:
                    if "TRYAGAIN" not in str(e):
                        errors.append(repr(e))
                i += 1

        th = threading.Thread(target=writer)
        th.start()
        time.sleep(0.3)
        src = rc.master_for_slot(slot)
        dst = [m for m in rc.masters() if m is not src][0]
        steps = []
        try:
            moved = rc.migrate_slot(slot, src, dst, batch=2, pause=0.15, step_hook=steps.append)
            time.sleep(0.3)
        finally:
            stop.set()
            th.join(10)
        self.assertEqual(errors[:3], [])
        self.assertGreaterEqual(moved, len(keys))
        self.assertGreater(len(steps), 3, "the move took several steps")
        rc.wait_ok()
        for m in rc.masters():
            self.assertEqual(rc.master_for_slot(slot, via=m), dst, "slot map of %s" % m.addr)
        self.assertEqual(src.call("CLUSTER", "COUNTKEYSINSLOT", slot), 0)
        for k in keys:
            self.assertEqual(int(dst.call("GET", k) or 0), done[k], "writes to %s lost" % k)
        rc.kill()

    def test_3_failover(self):
        rc = RedisCluster(self.tmp, masters=3, replicas=1, node_timeout_ms=1000).start()
        self.assertEqual(len(rc.masters()), 3)
        m = rc.master_for_key("{a1}")
        rep = rc.replica_of(m)
        self.assertIsNotNone(rep)
        for i in range(50):
            m.call("SET", "{a1}:k%d" % i, i)
        self.assertGreaterEqual(m.call("WAIT", 1, 2000), 1)
        killed, r2 = rc.kill_master(m)
        self.assertIs(r2, rep)
        took = rc.wait_failover(rep, timeout=30)
        self.assertEqual(rep.role(), "master")
        self.assertEqual(rc.master_for_key("{a1}"), rep)
        self.assertEqual([int(rep.call("GET", "{a1}:k%d" % i)) for i in range(50)], list(range(50)))
        sys.stderr.write("failover took %.1f s\n" % took)
        rc.kill()

    def test_4_etcd_leader_kill(self):
        ec = EtcdCluster(self.tmp, members=3).start()
        self.assertEqual(len(ec.endpoints.split(",")), 3)
        ec.put("/sk-test/a", "1")
        lead = ec.kill_leader()
        t0 = time.monotonic()
        new = ec.wait_leader(exclude=lead, timeout=15)
        took = time.monotonic() - t0
        self.assertIsNot(new, lead)
        self.assertLess(took, 10)
        ec.put("/sk-test/b", "2")
        self.assertEqual(ec.get_prefix("/sk-test/"), {"/sk-test/a": "1", "/sk-test/b": "2"})
        sys.stderr.write("etcd election took %.2f s\n" % took)
        ec.kill()

    def test_5_cleanup_after_sigkill(self):
        p = subprocess.Popen([sys.executable, "-c", CHILD % os.path.dirname(os.path.abspath(__file__))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            line = p.stdout.readline()
            self.assertTrue(line, p.stderr.read() if p.poll() is not None else "no output")
            info = json.loads(line)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
            p.stdout.close()
            p.stderr.close()
        wait_until(lambda: not any(pid_alive(x) for x in info["pids"]), timeout=10,
                   msg="the SIGKILLed test's redis-servers to die")
        if not info["netns"]:
            self.skipTest("network namespaces not permitted: " + netns_supported()[1])
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        self.assertTrue(all(n in listed for n in info["netns"]), "the dead test's namespaces: %s" % listed)
        Netns.reap_stale()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        self.assertFalse(any(n in listed for n in info["netns"]), "left behind: %s" % listed)


if __name__ == "__main__":
    unittest.TestCase.maxDiff = None
    harness.main()

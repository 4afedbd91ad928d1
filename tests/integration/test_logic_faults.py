"""Logic layer under faults: a logic process killed with SIGKILL mid-sale, Redis killed and restarted mid-sale (AOF
always), policies hot-reloaded mid-sale; plus a throughput figure against redis-benchmark on the same Redis.
Driven through the queue like test_logic_queue.py."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Etcd, Redis, wait_until  # noqa: E402
from test_logic_queue import (Resp, Sale, check_store, key, logic_node, logic_status, put_activity,  # noqa: E402
                              wait_alive)


def stock_script_source():
    """The stock script, redis/logic_stock.lua (embedded byte for byte into the logic plugin)."""
    return harness.script_source("logic_stock")


class LogicFaultTest(harness.TestCase):

    def setUp(self):
        super().setUp()
        d = os.path.join(self.tmp, self._testMethodName)
        os.makedirs(d, exist_ok=True)
        self.redis = Redis(d).start()
        self.etcd = Etcd(d).start()
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            n.kill()
        self.redis.kill()
        self.etcd.kill()
        super().tearDown()

    def start_nodes(self, n):
        for _ in range(n):
            node = logic_node(self.redis.tmp, self.redis, self.etcd)
            self.nodes.append(node)
            node.start()
        wait_alive(self.redis, self.nodes)

    def sale(self, aid, pid, **kw):
        s = Sale(self.redis, aid, pid, **kw)
        self.addCleanup(s.close)
        return s

    def test_kill9_logic_node_mid_sale(self):
        """The survivor takes over the dead node's pending entries: every request answered, none twice, no 1008,
        wins == total."""
        put_activity(self.etcd, 1, 101, total=3000, buy_limit=1, buy_rate=1)
        self.start_nodes(2)
        s = self.sale(1, 101)
        victim = self.nodes[1]
        ids = s.feed(list(range(1, 8001)), rate=2500, events={1.0: victim.kill})
        self.assertFalse(victim.alive())
        res = s.wait(ids, timeout=30)
        codes = [r[0] for r in res.values()]
        self.assertEqual(codes.count(1008), 0)
        self.assertEqual(codes.count(0), 3000)
        self.assertEqual(set(codes) - {0, 1007}, set())
        sold, per_user, _ = check_store(self, self.redis, 1, res, total=3000, buy_limit=1)
        self.assertEqual(sold, 3000)
        self.assertIn("reclaimed", self.nodes[0].log_text())

    def test_sigterm_logic_node_mid_sale(self):
        """SIGTERM one of two logic nodes mid-sale: it finishes what it took and leaves the heartbeat set; the other
        answers the rest. Every request answered, no 1008, wins == total."""
        put_activity(self.etcd, 6, 106, total=3000, buy_limit=1, buy_rate=1)
        self.start_nodes(2)
        s = self.sale(6, 106)
        victim = self.nodes[1]
        rc = {}
        stopper = threading.Thread(target=lambda: rc.setdefault("rc", victim.stop()))
        ids = s.feed(list(range(1, 7001)), rate=2500, events={1.0: stopper.start})
        stopper.join(15)
        self.assertEqual(rc.get("rc"), 0)
        self.assertNotIn(victim.node_id, self.redis.call("ZRANGE", harness.LOGIC_ALIVE_KEY, 0, -1))
        res = s.wait(ids, timeout=30)
        codes = [r[0] for r in res.values()]
        self.assertEqual(codes.count(1008), 0)
        self.assertEqual(codes.count(0), 3000)
        sold, _, _ = check_store(self, self.redis, 6, res, total=3000, buy_limit=1)
        self.assertEqual(sold, 3000)

    def test_redis_restart_mid_sale(self):
        """Redis SIGKILLed and restarted from its AOF (appendfsync always) mid-sale: no win lost, none sold twice."""
        put_activity(self.etcd, 2, 102, total=4000, buy_limit=1, buy_rate=1)
        self.start_nodes(2)
        s = self.sale(2, 102)

        def bounce():
            self.redis.kill()
            self.redis.start()

        ids = s.feed(list(range(1, 7001)), rate=1500, events={1.5: bounce})
        self.assertGreater(len(ids), 5000)
        # answers published while Redis was down are lost; the stored results are the truth
        time.sleep(4)
        by_id = s.stored(ids)
        stored = [by_id[rid] for rid in ids]
        got = s.results()
        for rid, v in zip(ids, stored):
            if rid in got and v is not None:
                code, tok, exp = v.split(" ")
                self.assertEqual(got[rid], (int(code), tok, int(exp)), "answer and stored result differ")
            if rid in got and got[rid][0] == 0:
                self.assertIsNotNone(v, "a win answered to a client is missing after the restart")
        won = sum(1 for v in stored if v is not None and v.startswith("0 "))
        sold, per_user, tokens = check_store(self, self.redis, 2, got, total=4000, buy_limit=1)
        self.assertEqual(sold, won)
        self.assertEqual(sold, 4000, "undersold after the restart (%d not queued)" % s.not_queued)
        # after the restart the sale still completes through the same nodes
        for n in self.nodes:
            self.assertTrue(n.alive())

    def test_stream_deleted_under_running_nodes(self):
        """The stream and its group vanish (DEL of the activity's queue, as after a FLUSHALL): the nodes create them again and go
        on answering."""
        put_activity(self.etcd, 7, 107, total=1000, buy_limit=1, buy_rate=1)
        self.start_nodes(2)
        s = self.sale(7, 107)
        first = s.queue(list(range(1, 51)))
        self.assertEqual({r[0] for r in s.wait(first, timeout=10).values()}, {0})
        self.redis.call("DEL", harness.queue_key(7))
        wait_until(lambda: self.redis.call("EXISTS", harness.queue_key(7)) == 1, timeout=10, msg="the stream is back")
        time.sleep(0.5)
        again = s.queue(list(range(51, 101)))
        self.assertEqual({r[0] for r in s.wait(again, timeout=10).values()}, {0})
        self.assertEqual(int(self.redis.call("GET", key(7, "sold"))), 100)

    def test_redis_paused_mid_sale(self):
        """Redis SIGSTOPped for 2 s mid-sale: every answer matches the stored result, a request left unanswered
        past its deadline never won, and the sale goes on after the pause."""
        put_activity(self.etcd, 5, 105, total=100000, buy_limit=1, buy_rate=1)
        self.start_nodes(2)
        s = self.sale(5, 105)
        marks = {}

        def pause():
            self.redis.pause()
            marks["paused"] = time.monotonic()
            threading.Timer(2.0, resume).start()

        def resume():
            self.redis.resume()
            marks["resumed"] = time.monotonic()

        ids = s.feed(list(range(1, 6001)), rate=800, events={1.5: pause})
        wait_until(lambda: "resumed" in marks, timeout=10)
        time.sleep(5)  # reclaims after the pause, and results published late
        all_ids = list(s.queued) + list(s.uncertain)
        stored = s.stored(all_ids)
        got = s.results()
        recs = s.replies.snapshot()
        wins = 0
        for rid in all_ids:
            v = stored[rid]
            if v is not None and v.startswith("0 "):
                wins += 1
            if rid in got:
                if v is not None:
                    code, tok, exp = v.split(" ")
                    self.assertEqual(got[rid], (int(code), tok, int(exp)), "answer and stored result differ")
                elif got[rid][0] != 1008:
                    self.fail("answer %s for %s but nothing stored" % (got[rid], rid))
            if rid in s.queued and v is not None and v.startswith("0 "):
                # an access node stops waiting at the deadline (Redis clock): the win must have reached it by then
                deadline_local = s.queued[rid][1] + s.timeout_ms / 1000.0
                first = min(r[3] for r in recs.get(rid, [(0, 0, 0, float("inf"))]))
                self.assertLess(first, deadline_local + 1.0, "a win reached the client only after its deadline")
        sold, per_user, _ = check_store(self, self.redis, 5, got, buy_limit=1)
        self.assertEqual(sold, wins)
        after = [r for r in ids if s.queued[r][1] > marks["resumed"] + 1.5]
        self.assertGreater(len(after), 100)
        self.assertEqual({got[r][0] for r in after}, {0})

    def test_policy_hot_reload_mid_sale(self):
        """buy_rate.lua and token.lua replaced in etcd mid-sale: later requests follow the new rule, none fail."""
        put_activity(self.etcd, 3, 103, total=100000, buy_limit=100000, buy_rate=1)
        self.start_nodes(2)
        s = self.sale(3, 103)
        marks = {}

        def reload():
            self.etcd.put("/seckill/policies/buy_rate.lua", "function allow(r, a)\n  return r.user_id % 2 == 0\nend\n")
            self.etcd.put("/seckill/policies/token.lua",
                          "function issue(r, a, secret)\n  return 'v2-' .. seckill.random_hex(16), 600\nend\n")
            marks["t"] = time.monotonic()

        ids = s.feed(list(range(1, 2401)), rate=400, events={2.0: reload})
        res = s.wait(ids, timeout=30)
        codes = [r[0] for r in res.values()]
        self.assertEqual(set(codes) - {0, 1011}, set(), "a request failed across the reload")
        before = [r for r in ids if s.queued[r][1] < marks["t"] - 0.1]
        after = [r for r in ids if s.queued[r][1] > marks["t"] + 1.2]
        self.assertGreater(len(after), 300)
        for rid in before:
            self.assertEqual(res[rid][0], 0)
            self.assertFalse(res[rid][1].startswith("v2-"))
        for rid in after:
            uid = s.queued[rid][0]
            if uid % 2:
                self.assertEqual(res[rid][0], 1011)
            else:
                self.assertEqual(res[rid][0], 0)
                self.assertTrue(res[rid][1].startswith("v2-"), res[rid])
        # the TTL the new token.lua returned is the one stored: the token expires 600 s after it was issued
        last = [r for r in after if res[r][0] == 0][-1]
        tok = harness.token_info(self.redis, 3, res[last][1])
        self.assertEqual(int(tok["expires_at"]) - int(tok["issued_at"]), 600, tok)
        self.assertEqual(int(tok["expires_at"]), res[last][2])
        self.assertGreater(int(tok["expires_at"]), int(self.redis.call("TIME")[0]), tok)
        check_store(self, self.redis, 3, res)

    def test_failing_policy_answers_1013(self):
        """buy_rate.lua failing (an error, or a loop past lua.instr_limit) for some users: those requests answer
        1013 and consume nothing; everybody else is served; the node keeps running."""
        put_activity(self.etcd, 8, 108, total=1000, buy_limit=1, buy_rate=1)
        self.start_nodes(1)
        self.etcd.put("/seckill/policies/buy_rate.lua",
                      "function allow(r, a)\n"
                      "  if r.user_id >= 900000 then error('boom') end\n"
                      "  if r.user_id >= 800000 then while true do end end\n"
                      "  return true\nend\n")
        time.sleep(1.5)
        s = self.sale(8, 108)
        bad = s.queue(list(range(900001, 900011)) + list(range(800001, 800006)))
        good = s.queue(list(range(1, 21)))
        res = s.wait(bad + good, timeout=30)
        self.assertEqual({res[r][0] for r in bad}, {1013})
        self.assertEqual({res[r][0] for r in good}, {0})
        self.assertEqual(int(self.redis.call("GET", key(8, "sold"))), 20)
        self.assertTrue(self.nodes[0].alive())
        self.assertGreaterEqual(logic_status(self.nodes[0])["policy_errors"], 15)

    def test_throughput(self):
        """Decisions/s of one logic node (2 workers) on a backlog, against redis-benchmark EVALSHA on the same
        Redis. Prints both; asserts only a floor far below what this machine does."""
        put_activity(self.etcd, 4, 104, total=10**8, buy_limit=10**6, buy_rate=1)
        n = 30000
        s = self.sale(4, 104, timeout_ms=120000)
        ids = []
        for i in range(0, n, 1000):
            ids += s.queue([1 + (u % 5000) for u in range(i, i + 1000)])
        self.assertEqual(len(ids), n)
        self.start_nodes(1)
        res = s.wait(ids, timeout=120)
        arrivals = sorted(rec[3] for recs in s.replies.snapshot().values() for rec in recs)
        span = arrivals[-1] - arrivals[0]
        rate = (len(arrivals) - 1) / span if span > 0 else float("inf")
        self.assertEqual(set(r[0] for r in res.values()), {0})
        c = Resp(self.redis.port)
        dec = c.call("SCRIPT", "LOAD", "return redis.call('INCRBY', KEYS[1], -1)")
        stock = harness.script_sha("logic_stock")
        self.assertEqual(c.call("SCRIPT", "EXISTS", stock), [1], "the node loaded another script than stock_script.c")
        deadline = c.redis_ms() + 600000

        def won(n):
            """The stock script on one entry of activity 99 (untouched by the sale): user, token and request id n."""
            keys = [harness.activity_key(99, k) for k in ("total", "sold", "users", "tokens", "wins", "expiry", "dry")]
            keys.append(harness.result_key(99, deadline))
            args = [99, 104, 10**8, 0, 10**8, harness.activity_key(99, "sec"), 0, 1]  # bucket 0 of 1
            args += [deadline, 0, 0, 1, "t%s-0123456789" % n, 1800, n, "bench:reply", "r%s" % n,
                     harness.result_keep_until(deadline)]
            return ["EVALSHA", stock, len(keys)] + keys + args

        # these arguments make a win (the result, then sold)
        one = c.call(*won(0))
        self.assertEqual(len(one), 2, one)
        self.assertRegex(one[0], r"^0 t0-0123456789 [0-9]+$")
        self.assertEqual(one[1], 1)
        c.close()

        def bench(n, *args):
            out = subprocess.run(["redis-benchmark", "-p", str(self.redis.port), "-n", str(n), "-c", "50", "-P", "16",
                                  "-r", "100000000", "-q"] + [str(a) for a in args], capture_output=True, text=True,
                                 timeout=120)
            line = out.stdout.strip().replace("\r", "\n").splitlines()[-1] if out.stdout.strip() else out.stderr
            return line.split(": ")[-1].strip()

        # the stock script itself, one entry a call, every call a win with a fresh user, token and request id
        b_dec, b_stock = bench(100000, "EVALSHA", dec, 1, "bench:stock"), bench(30000, *won("__rand_int__"))
        # the benchmark ran the win path (a few random ids may repeat)
        self.assertGreater(int(self.redis.call("GET", harness.activity_key(99, "sold"))), 0.95 * 30000, b_stock)
        sys.stderr.write("\nlogic throughput: %d decisions/s, all wins (%d entries, %.2f s, 1 node, 2 workers, "
                         "appendfsync always)\nredis-benchmark -c 50 -P 16, same Redis: EVALSHA decrement %s; "
                         "EVALSHA stock script (win path) %s\n" % (rate, n, span, b_dec, b_stock))
        self.assertGreater(rate, 1000)


if __name__ == "__main__":
    harness.main()

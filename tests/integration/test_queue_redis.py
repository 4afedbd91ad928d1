"""redis.queue_addr: the request queues (and the kill nonces) on a second, plain Redis without AOF, the decisions on the
durable one (README "A separate queue Redis"). Real servers: the durable Redis with AOF always, the queue Redis with
no AOF and no snapshot, etcd, an access+logic+admin node and a second logic node, both pointed at the queue Redis.

What must hold: the SPEC §8 guarantees with the queue elsewhere. Every decision is stored on the durable Redis (never
oversell, exactly `total`, buy_limit), nothing of the queue is written there, a replayed nonce is refused, and a
queue Redis that dies (kill -9, it comes back empty) only costs the requests it held: they answer 1008/1013 within
the deadline, nothing is sold twice or lost, and the sale goes on to sell exactly `total` once it is back.
"""

import concurrent.futures
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEV_SECRET, Etcd, Node, Redis, http, signed_params, wait_until  # noqa: E402
from sk_load import OpenLoop  # noqa: E402
from test_logic_queue import check_store, key, wait_alive  # noqa: E402

PERMISSIVE = """\
-- test_queue_redis: all load comes from 127.0.0.1, so admit everything
function admit(r)
    return true
end
"""

TIMEOUT_MS = 1500


class QueueRedisTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        pol = os.path.join(cls.tmp, "policies")
        shutil.copytree(os.path.join(harness.SOURCE_DIR, "policies"), pol)
        with open(os.path.join(pol, "limits.lua"), "w") as f:
            f.write(PERMISSIVE)
        cls.redis = Redis(cls.tmp).start()
        # the queue Redis: no AOF, no snapshot; a restart brings it back empty
        cls.qredis = Redis(cls.tmp, extra_args=["--appendonly", "no"]).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.conf = conf = {"threads": 2, "policies.dir": pol, "redis.queue_addr": cls.qredis.addr,
                "access.request_timeout_ms": TIMEOUT_MS, "redis.timeout_ms": 500, "http.idle_timeout_ms": 60000}
        cls.front = Node(cls.tmp, cls.redis, cls.etcd, plugins="access,logic,admin", conf=conf).start()
        cls.back = Node(cls.tmp, cls.redis, cls.etcd, plugins="logic", conf=conf, name="logic2").start()
        wait_alive(cls.redis, [cls.front, cls.back])

    def create(self, name, total, buy_limit=1):
        now = int(time.time())
        st, _, body = http("POST", self.front.admin + "/product/create", {
            "product_name": name, "product_total": 1000000, "status": 1})
        self.assertEqual(body.get("code"), 0, body)
        pid = body["data"]["product_id"]
        st, _, body = http("POST", self.front.admin + "/activity/create", {
            "activity_name": name, "product_id": pid, "start_time": now - 10, "end_time": now + 3600, "total": total,
            "status": 1, "speed": 0, "buy_limit": buy_limit, "buy_rate": 1})
        self.assertEqual(body.get("code"), 0, body)
        aid = body["data"]["activity_id"]

        def visible():
            st, _, b = http("GET", self.front.access + "/sec/info", params={"product_id": pid})
            return st == 200 and b["data"]["activity_id"] == aid and b["data"]["status"] == "active"

        wait_until(visible, timeout=10, msg="activity on the access node")
        time.sleep(1.0)  # every node applies etcd changes within 1 s
        return pid, aid

    def kill(self, uid, pid, params=None):
        return http("GET", self.front.access + "/sec/kill", params=params or signed_params(DEV_SECRET, "kill", uid, pid),
                    timeout=10)

    def test_sale_exact_and_queue_elsewhere(self):
        """2,400 requests from 800 users, total 300, buy_limit 2: exactly 300 wins, nobody over 2, no 1008; the stream
        lives on the queue Redis only, the decisions on the durable Redis only; /status shows both up."""
        pid, aid = self.create("queue-pear", total=300, buy_limit=2)
        users = [200000 + i for i in range(800)] * 3
        with concurrent.futures.ThreadPoolExecutor(32) as ex:
            answers = list(ex.map(lambda u: (u, self.kill(u, pid)), users))
        codes = [r[2]["code"] for _, r in answers if isinstance(r[2], dict)]
        self.assertEqual(len(codes), len(users))
        self.assertEqual(codes.count(0), 300, sorted(set(codes)))
        self.assertEqual(set(codes) - {0, 1007, 1011, 1012}, set(), "no 1008 or 1013 in a fault-free run")
        results = {}
        for u, r in answers:
            if r[2]["code"] == 0:
                results["%d-%s" % (u, r[2]["data"]["token"])] = (0, r[2]["data"]["token"])
        sold, per_user, _ = check_store(self, self.redis, aid, results, total=300, buy_limit=2)
        self.assertEqual(sold, 300)
        stream = key(aid, "queue")
        self.assertEqual(self.redis.call("EXISTS", stream), 0, "the durable Redis holds no queue")
        self.assertEqual(self.qredis.call("EXISTS", stream), 1, "the queue Redis holds the stream")
        self.assertEqual(self.qredis.call("EXISTS", key(aid, "sold")), 0, "the queue Redis holds no decision")
        st, _, body = http("GET", self.front.status + "/status")
        self.assertEqual(body["redis"].get("queue_addr"), self.qredis.addr, body["redis"])
        self.assertEqual(body["redis"].get("queue_state"), "up", body["redis"])

    def test_replayed_nonce_refused(self):
        """A (user, nance) pair is accepted once with the queue elsewhere too: the second send is 1003, also from a
        fresh connection."""
        pid, _ = self.create("queue-replay", total=10)
        params = signed_params(DEV_SECRET, "kill", 310001, pid)
        first = self.kill(310001, pid, params)
        self.assertEqual(first[2]["code"], 0, first)
        again = self.kill(310001, pid, params)
        self.assertEqual(again[2]["code"], 1003, again)

    def test_queue_redis_killed_mid_sale(self):
        """kill -9 of the queue Redis under open-loop load (60 req/s), back empty 2 s later: every request is answered
        within request_timeout_ms + 1 s, /healthz says 503 while it is down, what it held answers 1008/1013 and is never
        sold afterwards, and the sale then sells exactly `total` with no user over buy_limit."""
        total = 150
        pid, aid = self.create("queue-kill", total=total, buy_limit=1)
        users = {pid: [400000 + i for i in range(2000)]}
        load = OpenLoop([self.front.access], [pid], users, DEV_SECRET, rate=60, duration=14, workers=32, timeout=6.0)
        health = []

        def fault():
            wait_until(lambda: len(load.wins()) >= 20, timeout=20, msg="the sale to be under way")
            self.qredis.kill()
            time.sleep(0.6)
            health.append(http("GET", self.front.status + "/healthz")[0])
            time.sleep(1.4)
            self.qredis.start()

        load.run(during=fault)
        self.assertEqual(health, [503], "healthz while the queue Redis is down")
        self.assertEqual(load.unanswered(), [], "every request gets an answer")
        self.assertLessEqual(load.max_latency(), TIMEOUT_MS / 1000.0 + 1.0, "answered within the deadline + 1 s")
        codes = load.codes()
        self.assertEqual(set(codes) - {"0", "1007", "1008", "1011", "1013"}, set(), codes)
        self.assertGreater(codes.get("1008", 0) + codes.get("1013", 0), 0, "the queue Redis was down: %s" % codes)
        wins = load.wins()
        self.assertEqual(len(wins), total, "exactly total wins: %s" % codes)
        results = {"%d-%s" % (a.uid, a.token): (0, a.token) for a in wins}
        sold, per_user, tokens = check_store(self, self.redis, aid, results, total=total, buy_limit=1)
        self.assertEqual(sold, total)
        self.assertEqual(sorted(a.token for a in wins), sorted(tokens), "every stored win was told, once")
        # a request answered 1008/1013 never wins later: its user holds nothing
        lost = {a.uid for a in load.answers if a.code in (1008, 1013)} - {a.uid for a in wins}
        self.assertFalse(lost & set(per_user), "a request answered 1008/1013 was sold")

    def test_kill9_logic_node_with_queue_elsewhere(self):
        """kill -9 of the second logic node mid-sale: its pending entries on the queue Redis are claimed by the other
        node or expire, and the sale sells exactly `total`."""
        total = 200
        pid, aid = self.create("queue-logic-kill", total=total, buy_limit=1)
        users = {pid: [500000 + i for i in range(3000)]}
        load = OpenLoop([self.front.access], [pid], users, DEV_SECRET, rate=80, duration=8, workers=32, timeout=6.0)

        def fault():
            wait_until(lambda: len(load.wins()) >= 30, timeout=20, msg="the sale to be under way")
            self.back.kill()

        try:
            load.run(during=fault)
        finally:
            # a fresh node_id: the killed one's stays taken for 10 s (the node lock)
            type(self).back = Node(self.tmp, self.redis, self.etcd, plugins="logic", conf=self.conf,
                                   name="logic3").start()
            wait_alive(self.redis, [self.front, self.back], timeout=20)
        self.assertEqual(load.unanswered(), [])
        self.assertLessEqual(load.max_latency(), TIMEOUT_MS / 1000.0 + 1.0)
        wins = load.wins()
        self.assertEqual(len(wins), total, load.codes())
        results = {"%d-%s" % (a.uid, a.token): (0, a.token) for a in wins}
        sold, _, _ = check_store(self, self.redis, aid, results, total=total, buy_limit=1)
        self.assertEqual(sold, total)


if __name__ == "__main__":
    harness.main()

"""Admin durability and sync under faults, against real Redis, etcd and SQLite: etcd down and back, reconcile at
start, 200 concurrent creates, restarts (SIGTERM and SIGKILL), Redis down, and a crash between the Redis mark of a
token and its order row."""

import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import harness
from harness import Redis, Etcd, Node, http, wait_until
from test_admin_api import Admin, db_rows, make_token, wait_admin_redis


def activity_json(aid, body):
    v = {k: (float(x) if k == "buy_rate" else int(x) if k != "activity_name" else x) for k, x in body.items()}
    v["activity_id"] = aid
    v.setdefault("shards", 1)  # always written (SPEC §9)
    if v.get("buy_rate", 1) == int(v.get("buy_rate", 1)):
        v["buy_rate"] = int(v.get("buy_rate", 1))
    return v


class AdminSyncTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="admin").start()
        wait_admin_redis(cls.node)
        cls.a = Admin(cls.node)

    def setUp(self):
        super().setUp()
        if not self.etcd.alive():
            self.etcd.restart()
        if not self.redis.alive():
            self.redis.restart()
        if not self.node.alive():
            self.node.start()
        wait_admin_redis(self.node)

    def test_etcd_down_then_back(self):
        a = self.a
        pid = a.product("etcd-down-base")
        keep = a.activity(pid, name="keep")
        self.etcd.stop()
        data = a.ok("POST", "/product/create", {"product_name": "made-while-etcd-down", "product_total": 5})
        self.assertFalse(data["synced"])
        new_pid = data["product_id"]
        now = int(time.time())
        data = a.ok("POST", "/activity/create", {"activity_name": "down", "product_id": new_pid, "start_time": now,
                                                 "end_time": now + 600, "total": 5})
        self.assertFalse(data["synced"])
        new_aid = data["activity_id"]
        self.assertFalse(a.ok("POST", "/activity/update", {"activity_id": keep, "speed": 9})["synced"])
        self.assertFalse(a.ok("POST", "/activity/delete", {"activity_id": keep})["synced"])
        listed = {p["product_id"]: p for p in a.ok("GET", "/product/list")}
        self.assertFalse(listed[new_pid]["synced"])
        self.etcd.restart()
        back = time.monotonic()

        def synced():
            kv = self.etcd.get_prefix("/seckill/")
            return ("/seckill/products/%d" % new_pid in kv and "/seckill/activities/%d" % new_aid in kv and
                    "/seckill/activities/%d" % keep not in kv)

        wait_until(synced, timeout=5, interval=0.1, msg="etcd catching up within 5 s of its return")
        self.assertLess(time.monotonic() - back, 5.5)
        self.assertEqual(json.loads(self.etcd.get("/seckill/products/%d" % new_pid))["product_name"],
                         "made-while-etcd-down")
        wait_until(lambda: all(p["synced"] for p in a.ok("GET", "/product/list")), timeout=5)

    def test_etcd_stalled(self):
        """A SIGSTOPped etcd accepts connections and never answers: calls still answer within the etcd deadline."""
        a = self.a
        self.etcd.pause()
        try:
            pids = []
            for i in range(3):
                t0 = time.monotonic()
                data = a.ok("POST", "/product/create", {"product_name": "stalled-%d" % i, "product_total": 1})
                self.assertLess(time.monotonic() - t0, 4.5)
                self.assertFalse(data["synced"])
                pids.append(data["product_id"])
        finally:
            self.etcd.resume()
        wait_until(lambda: all(self.etcd.get("/seckill/products/%d" % p) for p in pids), timeout=5, interval=0.1,
                   msg="keys put within 5 s of etcd's return")

    def test_reconcile_at_start(self):
        a = self.a
        pid = a.product("reconcile")
        now = int(time.time())
        body = {"activity_name": "r", "product_id": pid, "start_time": now, "end_time": now + 900, "total": 7,
                "status": 1, "speed": 2, "buy_limit": 3, "buy_rate": "0.5"}
        aid = a.ok("POST", "/activity/create", body)["activity_id"]
        expect_a = self.etcd.get("/seckill/activities/%d" % aid)
        self.assertEqual(json.loads(expect_a), activity_json(aid, body))
        expect_p = self.etcd.get("/seckill/products/%d" % pid)
        self.node.stop()
        self.etcd.delete("/seckill/activities/%d" % aid)
        self.etcd.put("/seckill/products/%d" % pid, "{stale")
        self.etcd.put("/seckill/activities/999999", json.dumps(dict(json.loads(expect_a), activity_id=999999)))
        self.etcd.put("/seckill/products/888888", "{}")
        self.redis.call("DEL", harness.activity_key(aid, "total"))
        self.node.start()

        def restored():
            kv = self.etcd.get_prefix("/seckill/")
            return (kv.get("/seckill/activities/%d" % aid) == expect_a and kv.get("/seckill/products/%d" % pid) == expect_p
                    and "/seckill/activities/999999" not in kv and "/seckill/products/888888" not in kv)

        wait_until(restored, timeout=5, interval=0.1, msg="reconcile at start")
        wait_until(lambda: self.redis.call("GET", harness.activity_key(aid, "total")) == "7", timeout=5, msg="total rewritten")

    def test_concurrent_creates_keep_all_keys(self):
        a = self.a
        names = ["bulk-%03d" % i for i in range(200)]
        with ThreadPoolExecutor(32) as ex:
            pids = list(ex.map(lambda n: a.product(n, total=10), names))
        self.assertEqual(len(set(pids)), 200)
        now = int(time.time())

        def act(pid):
            return a.ok("POST", "/activity/create", {"activity_name": "bulk", "product_id": pid, "start_time": now,
                                                     "end_time": now + 3600, "total": 10})["activity_id"]

        with ThreadPoolExecutor(32) as ex:
            aids = list(ex.map(act, pids))
        self.assertEqual(len(set(aids)), 200)
        kv = self.etcd.get_prefix("/seckill/")
        for pid, name in zip(pids, names):
            self.assertEqual(json.loads(kv["/seckill/products/%d" % pid])["product_name"], name)
        for pid, aid in zip(pids, aids):
            self.assertEqual(json.loads(kv["/seckill/activities/%d" % aid])["product_id"], pid)
            self.assertEqual(self.redis.call("GET", harness.activity_key(aid, "total")), "10")
        self.assertEqual(db_rows(self.node, "SELECT COUNT(*) FROM products WHERE product_name LIKE 'bulk-%'"),
                         [(200, )])

    def test_restart_loses_nothing(self):
        a = self.a
        pid = a.product("durable", total=3)
        aid = a.activity(pid, name="durable", total=3)
        tok = "D" * 20
        make_token(self.redis, aid, pid, 11, tok)
        order = a.ok("POST", "/token/consume", {"token": tok, "user_id": 11, "product_id": pid})["order_id"]
        before_p, before_a = a.ok("GET", "/product/list"), a.ok("GET", "/activity/list")
        self.node.kill()  # no chance to flush anything
        # the dead process' node_id stays locked in Redis for a few seconds: come back under a new one
        self.node.conf["node_id"] += "-after-kill"
        self.node.start()
        self.assertEqual(a.ok("GET", "/product/list"), before_p)
        # sold/left are null until the admin's Redis connection is up, a moment after /healthz answers
        wait_until(lambda: a.ok("GET", "/activity/list") == before_a, timeout=5, msg="activities after SIGKILL")
        st, code, data, _ = a.post("/token/consume", {"token": tok, "user_id": 11, "product_id": pid})
        self.assertEqual((code, data["order_id"]), (1014, order))
        self.assertEqual(self.node.stop(), 0)
        self.node.start()
        wait_until(lambda: a.ok("GET", "/activity/list") == before_a, timeout=5, msg="activities after SIGTERM")

    def test_redis_down(self):
        a = self.a
        pid = a.product("redis-down")
        aid0 = a.activity(pid, name="before")
        tok = "R" * 20
        make_token(self.redis, aid0, pid, 3, tok)
        self.redis.stop()
        now = int(time.time())
        aid = a.ok("POST", "/activity/create", {"activity_name": "while-down", "product_id": pid,
                                                "start_time": now + 7200, "end_time": now + 9000, "total": 4})["activity_id"]
        st, code, _, _ = a.post("/activity/update", {"activity_id": aid, "total": 3})
        self.assertEqual(code, 1013)
        listed = {x["activity_id"]: x for x in a.ok("GET", "/activity/list")}
        self.assertIsNone(listed[aid]["sold"])
        self.assertEqual(a.post("/blacklist/add", {"type": "user", "value": 1})[1], 1013)
        self.assertEqual(a.post("/token/consume", {"token": tok, "user_id": 3, "product_id": pid})[1], 1013)
        self.redis.restart()
        wait_until(lambda: self.redis.call("GET", harness.activity_key(aid, "total")) == "4", timeout=5, msg="total after Redis")
        # the consume that failed left a pending row; the retry (or the re-drive) finishes it exactly once
        def consumed():
            st, code, data, _ = a.post("/token/consume", {"token": tok, "user_id": 3, "product_id": pid})
            return data if code in (0, 1014) else None

        data = wait_until(consumed, timeout=10)
        self.assertEqual(db_rows(self.node, "SELECT COUNT(*), MIN(state) FROM orders WHERE token = ?", (tok, )),
                         [(1, 1)])
        self.assertEqual(harness.token_info(self.redis, aid0, tok)["order_id"], str(data["order_id"]))

    def test_crash_between_mark_and_order_row(self):
        a = self.a
        pid = a.product("crash")
        aid = a.activity(pid, name="crash")
        marked, unmarked, unknown = "M" * 20, "N" * 20, "Z" * 20
        make_token(self.redis, aid, pid, 21, marked)
        make_token(self.redis, aid, pid, 22, unmarked)
        self.node.stop()
        # what a crash leaves: pending rows (step 1); for `marked`, Redis also holds the order id (step 2)
        con = sqlite3.connect(self.node.conf["admin.db"], timeout=5)
        with con:
            old = int(time.time()) - 60
            for tok, uid in ((marked, 21), (unmarked, 22), (unknown, 23)):
                con.execute("INSERT INTO orders (token, user_id, product_id, state, created_at) VALUES (?, ?, ?, 0, ?)",
                            (tok, uid, pid, old))
        ids = dict(con.execute("SELECT token, order_id FROM orders WHERE state = 0"))
        con.close()
        tokens = harness.activity_key(aid, "tokens")
        self.redis.call("HSET", tokens, marked, "%s %d" % (self.redis.call("HGET", tokens, marked), ids[marked]))
        self.node.start()

        def settled():
            rows = dict((t, (o, s)) for t, o, s in db_rows(self.node, "SELECT token, order_id, state FROM orders "
                                                                      "WHERE token IN (?, ?, ?)",
                                                           (marked, unmarked, unknown)))
            return rows if rows.get(marked, (0, 0))[1] == 1 and unknown not in rows else None

        rows = wait_until(settled, timeout=10, interval=0.2, msg="re-drive of pending orders")
        self.assertEqual(rows[marked], (ids[marked], 1))
        self.assertEqual(rows[unmarked], (ids[unmarked], 1))  # the intent is completed, once
        self.assertEqual(harness.token_info(self.redis, aid, unmarked)["order_id"], str(ids[unmarked]))
        st, code, data, _ = a.post("/token/consume", {"token": marked, "user_id": 21, "product_id": pid})
        self.assertEqual((code, data["order_id"]), (1014, ids[marked]))


if __name__ == "__main__":
    harness.main()

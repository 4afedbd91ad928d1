"""Logic layer end to end: signed /sec/kill through an access node, decided by two logic processes, tokens consumed
through the admin (SPEC §5 /token/consume), exactly once."""

import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEV_SECRET, Etcd, Node, Redis, http, signed_params, wait_until  # noqa: E402
from test_logic_queue import key, logic_node, wait_alive  # noqa: E402


def ok(tc, resp, what):
    st, _, body = resp
    tc.assertIsInstance(body, dict, "%s: %r" % (what, body))
    tc.assertEqual(body.get("code"), 0, "%s: %s %r" % (what, st, body))
    return body.get("data")


class LogicEndToEndTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        # clients get their own addresses through X-Forwarded-For, so limits.lua's per-IP caps stay out of the way
        cls.front = Node(cls.tmp, cls.redis, cls.etcd, plugins="access,logic,admin",
                         conf={"threads": 2, "access.trusted_proxies": "127.0.0.1"}).start()
        cls.back = logic_node(cls.tmp, cls.redis, cls.etcd).start()
        wait_alive(cls.redis, [cls.front, cls.back])

    def create(self, name, total, buy_limit=1, buy_rate=1, speed=0):
        now = int(time.time())
        pid = ok(self, http("POST", self.front.admin + "/product/create", {
            "product_name": name, "product_total": 100000, "status": 1}), "product/create")["product_id"]
        aid = ok(
            self,
            http("POST", self.front.admin + "/activity/create", {
                "activity_name": name, "product_id": pid, "start_time": now - 10, "end_time": now + 3600,
                "total": total, "status": 1, "speed": speed, "buy_limit": buy_limit, "buy_rate": buy_rate}),
            "activity/create")["activity_id"]

        def visible():
            st, _, body = http("GET", self.front.access + "/sec/info", params={"product_id": pid})
            return st == 200 and body["data"]["activity_id"] == aid and body["data"]["status"] == "active"

        wait_until(visible, timeout=10, msg="activity on the access node")
        time.sleep(1.0)  # every node applies etcd changes within 1 s
        return pid, aid

    def kill(self, uid, pid):
        return http("GET", self.front.access + "/sec/kill", params=signed_params(DEV_SECRET, "kill", uid, pid),
                    headers={"X-Forwarded-For": "10.7.%d.%d" % (uid // 250 % 250, uid % 250 + 1)}, timeout=10)

    def test_sale_then_consume_once(self):
        """300 users, total 50: exactly 50 wins over HTTP; each token consumable once, the second try is 1014 with
        the same order."""
        pid, aid = self.create("e2e-pear", total=50)
        with concurrent.futures.ThreadPoolExecutor(32) as ex:
            # users of their own: limits.lua counts per user and minute across tests
            answers = list(ex.map(lambda u: (u, self.kill(u, pid)), range(100001, 100301)))
        codes = [a[1][2]["code"] for a in answers if isinstance(a[1][2], dict)]
        self.assertEqual(len(codes), 300)
        self.assertEqual(codes.count(0), 50, sorted(set(codes)))
        self.assertEqual(set(codes) - {0, 1007}, set())
        self.assertEqual(int(self.redis.call("GET", key(aid, "sold"))), 50)
        winners = [(u, r[2]["data"]) for u, r in answers if r[2]["code"] == 0]
        for u, d in winners:
            self.assertEqual((d["user_id"], d["product_id"], d["activity_id"]), (u, pid, aid))
            self.assertGreater(d["expires_at"], time.time())
        # /sec/result shows the win
        u, d = winners[0]
        st, _, body = http("GET", self.front.access + "/sec/result", params=signed_params(DEV_SECRET, "result", u, pid))
        self.assertEqual(body["code"], 0, body)
        self.assertIn(d["token"], [w["token"] for w in body["data"]["wins"]])
        self.consume_all_once(pid, winners)
        st, _, body = http("POST", self.front.admin + "/token/consume", {"token": "f" * 32, "user_id": 1,
                                                                         "product_id": pid})
        self.assertEqual(body["code"], 1002)

    def consume_all_once(self, pid, winners):
        def consume(w):
            u, d = w
            form = {"token": d["token"], "user_id": u, "product_id": pid}
            return http("POST", self.front.admin + "/token/consume", form), http("POST", self.front.admin +
                                                                                 "/token/consume", form)

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            for first, again in ex.map(consume, winners):
                order = ok(self, first, "consume")["order_id"]
                self.assertEqual(again[2]["code"], 1014, again)
                self.assertEqual(again[2]["data"]["order_id"], order)

    def test_model_check_over_http(self):
        """The model check through access: 2 logic processes, 20,000 requests from 2,000 users, total 500,
        buy_limit 2, buy_rate 1 -> exactly 500 wins, nobody above 2, every request answered, no 1008, every token
        consumable once."""
        pid, aid = self.create("e2e-model", total=500, buy_limit=2)
        order = [u for _ in range(10) for u in range(1, 2001)]  # round robin: limits.lua allows 1 per user-second
        with concurrent.futures.ThreadPoolExecutor(48) as ex:
            answers = list(ex.map(lambda u: (u, self.kill(u, pid)), order))
        codes = [r[2]["code"] if isinstance(r[2], dict) else r[0] for _, r in answers]
        self.assertEqual(len(codes), 20000)
        self.assertEqual(codes.count(1008), 0)
        self.assertEqual(codes.count(0), 500)
        self.assertEqual(set(codes) - {0, 1007, 1010, 1012}, set())
        winners = [(u, r[2]["data"]) for u, r in answers if r[2]["code"] == 0]
        per_user = {}
        for u, _ in winners:
            per_user[u] = per_user.get(u, 0) + 1
        self.assertLessEqual(max(per_user.values()), 2)
        self.assertEqual(int(self.redis.call("GET", key(aid, "sold"))), 500)
        self.assertEqual(len({d["token"] for _, d in winners}), 500)
        self.consume_all_once(pid, winners)

    def test_result_lists_every_win(self):
        """buy_limit 2: two wins, then 1012; /sec/result lists both tokens (they share the user's field in Redis)."""
        pid, aid = self.create("e2e-quince", total=100, buy_limit=2)
        won = []
        for _ in range(2):
            st, _, body = self.kill(200101, pid)
            self.assertEqual(body["code"], 0, body)
            won.append(body["data"]["token"])
            time.sleep(1.1)  # limits.lua: one request per user and second
        self.assertEqual(self.kill(200101, pid)[2]["code"], 1012)
        st, _, body = http("GET", self.front.access + "/sec/result", params=signed_params(DEV_SECRET, "result",
                                                                                           200101, pid))
        self.assertEqual(body["code"], 0, body)
        self.assertEqual(sorted(w["token"] for w in body["data"]["wins"]), sorted(won))
        self.assertTrue(all(w["activity_id"] == aid for w in body["data"]["wins"]))
        # a user without a win gets an empty list
        st, _, body = http("GET", self.front.access + "/sec/result", params=signed_params(DEV_SECRET, "result",
                                                                                           200102, pid))
        self.assertEqual((body["code"], body["data"]["wins"]), (0, []))

    def test_buy_limit_and_kill_switch_over_http(self):
        pid, aid = self.create("e2e-plum", total=100, buy_limit=1)
        self.assertEqual(self.kill(200005, pid)[2]["code"], 0)
        time.sleep(1.1)  # limits.lua: one request per user and second
        self.assertEqual(self.kill(200005, pid)[2]["code"], 1012)
        ok(self, http("POST", self.front.admin + "/activity/update", {"activity_id": aid, "status": 0}), "disable")
        time.sleep(1.2)
        self.assertEqual(self.kill(200006, pid)[2]["code"], 1009)
        self.assertEqual(int(self.redis.call("GET", key(aid, "sold"))), 1)


if __name__ == "__main__":
    harness.main()

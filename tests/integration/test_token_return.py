"""Purchase tokens that are not paid go back on sale (SPEC §5 /token/cancel, §7 *Tokens*, §8.8, §8.9): a token ends
consumed, cancelled or expired, exactly one of them; cancelled and expired tokens give their unit back exactly once,
also when the logic node reaping them or the admin consuming them is killed with SIGKILL.

Real Redis, etcd and seckilld processes; logic.token_ttl = 2 s so that tokens expire during the test."""

import concurrent.futures
import os
import random
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sk_cluster  # noqa: E402
import sk_wire  # noqa: E402
from harness import DEV_SECRET, Etcd, Node, Redis, http, signed_params, wait_until  # noqa: E402
from test_logic_queue import key, logic_node, wait_alive  # noqa: E402

TTL = 2

# Test-only: writes n live tokens of one activity the way redis/logic_stock.lua does for a win (token, user pair,
# expiry index entry, winners entry, sold), n at once, so that crash tests have thousands of tokens in a blink.
INJECT = """
local n, pid, aid, exp, u0 = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
for i = 1, n do
  local tok = string.format('inj%013d', u0 + i)
  local uid = tostring(u0 + i)
  redis.call('HSET', KEYS[1], tok, uid .. ' ' .. pid .. ' ' .. aid .. ' ' .. (exp - 2) .. ' ' .. exp)
  redis.call('HSET', KEYS[2], uid, '1 ' .. tok .. ' ' .. exp)
  redis.call('ZADD', KEYS[3], exp, exp)
  redis.call('RPUSH', KEYS[3] .. ':' .. exp, tok)
  redis.call('RPUSH', KEYS[4], uid .. ' ' .. tok .. ' ' .. (exp - 2) .. ' ' .. exp)
end
redis.call('INCRBY', KEYS[5], n)
return n
"""


def ok(tc, resp, what):
    st, _, body = resp
    tc.assertIsInstance(body, dict, "%s: %r" % (what, body))
    tc.assertEqual(body.get("code"), 0, "%s: %s %r" % (what, st, body))
    return body.get("data")


def states(redis, aid):
    """{token: (uid, expires_at, state)} with state live / consumed (an order id) / cancelled / expired."""
    h = redis.call("HGETALL", key(aid, "tokens")) or []
    out = {}
    for i in range(0, len(h), 2):
        w = h[i + 1].split(" ")
        st = "live" if len(w) == 5 else w[5] if w[5] in ("cancelled", "expired") else "consumed"
        out[h[i]] = (int(w[0]), int(w[4]), st)
    return out


def counts(redis, aid):
    c = redis.call("HMGET", key(aid, "token_counts"), "consumed", "cancelled", "expired")
    return {k: int(v or 0) for k, v in zip(("consumed", "cancelled", "expired"), c)}


def create(tc, admin, access, name, total, buy_limit=1):
    now = int(time.time())
    pid = ok(tc, http("POST", admin + "/product/create", {"product_name": name, "product_total": 10 ** 6, "status": 1}),
             "product/create")["product_id"]
    aid = ok(tc, http("POST", admin + "/activity/create", {
        "activity_name": name, "product_id": pid, "start_time": now - 10, "end_time": now + 3600, "total": total,
        "status": 1, "speed": 0, "buy_limit": buy_limit, "buy_rate": 1}), "activity/create")["activity_id"]
    if access is not None:
        def visible():
            st, _, body = http("GET", access + "/sec/info", params={"product_id": pid})
            return st == 200 and body["data"]["activity_id"] == aid and body["data"]["status"] == "active"

        wait_until(visible, timeout=10, msg="activity on the access node")
    time.sleep(1.0)  # every node applies etcd changes within 1 s
    return pid, aid


def order_rows(db):
    """{token: (order_id, state)} of the admin's SQLite orders."""
    c = sqlite3.connect(db, timeout=10)
    try:
        return {t: (o, s) for o, t, s in c.execute("SELECT order_id, token, state FROM orders")}
    finally:
        c.close()


class TokenReturnTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.front = Node(cls.tmp, cls.redis, cls.etcd, plugins="access,logic,admin",
                         conf={"threads": 2, "access.trusted_proxies": "127.0.0.1", "logic.token_ttl": TTL}).start()
        # a second reaper on the same Redis: two reapers never return one unit twice
        cls.back = logic_node(cls.tmp, cls.redis, cls.etcd, **{"logic.token_ttl": TTL}).start()
        wait_alive(cls.redis, [cls.front, cls.back])
        cls.uids = iter(range(300001, 10 ** 7))

    def kill(self, uid, pid):
        return http("GET", self.front.access + "/sec/kill", params=signed_params(DEV_SECRET, "kill", uid, pid),
                    headers={"X-Forwarded-For": "10.%d.%d.%d" % (uid // 62500 % 250, uid // 250 % 250, uid % 250 + 1)},
                    timeout=10)

    def wave(self, pid, users):
        with concurrent.futures.ThreadPoolExecutor(32) as ex:
            answers = list(ex.map(lambda u: (u, self.kill(u, pid)), users))
        return [(u, r[2]["data"]) for u, r in answers if isinstance(r[2], dict) and r[2]["code"] == 0]

    def token_call(self, what, uid, pid, token):
        return http("POST", self.front.admin + "/token/" + what, {"token": token, "user_id": uid, "product_id": pid})[2]

    def activity(self, aid):
        st, _, body = http("GET", self.front.admin + "/activity/list")
        return next(a for a in body["data"] if a["activity_id"] == aid)

    def returned_total(self):
        n = 0
        for node in (self.front, self.back):
            st, _, body = http("GET", node.status + "/metrics")
            for line in body.decode().splitlines():
                if line.startswith("seckill_logic_returned_total "):
                    n += int(line.split()[1])
        return n

    def test_expired_units_sell_again(self):
        """total 40, ttl 2 s: a sale sells out, half the winners consume. After expiry left == the unconsumed count
        (within 2 s of expires_at), the access node sells them again to a new wave, which wins exactly those units;
        consumed + live tokens <= total at every sample; the counts and metrics show the returns."""
        total = 40
        pid, aid = create(self, self.front.admin, self.front.access, "ret-apple", total)
        returned0 = self.returned_total()
        bad, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                now = int(self.redis.call("TIME")[0])
                s = states(self.redis, aid).values()
                live = sum(1 for _, _, st in s if st == "live")
                consumed = sum(1 for _, _, st in s if st == "consumed")
                if consumed + live > total:
                    bad.append((now, consumed, live))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            first = self.wave(pid, [next(self.uids) for _ in range(120)])
            self.assertEqual(len(first), total)
            st, _, body = http("GET", self.front.access + "/sec/info", params={"product_id": pid})
            self.assertEqual((body["data"]["status"], body["data"]["left"]), ("sold_out", 0))
            paid = first[:total // 2]
            for u, d in paid:
                ok(self, http("POST", self.front.admin + "/token/consume",
                              {"token": d["token"], "user_id": u, "product_id": pid}), "consume")
            last_exp = max(d["expires_at"] for _, d in first)
            # every unpaid unit is back within 2 s of its expires_at (the reaper runs every 500 ms)
            wait_until(lambda: self.activity(aid)["left"] == total - len(paid), timeout=last_exp - time.time() + 2.0,
                       msg="units back")
            a = self.activity(aid)
            self.assertEqual((a["sold"], a["consumed"], a["expired"], a["cancelled"], a["returned"]),
                             (len(paid), len(paid), total - len(paid), 0, total - len(paid)))
            # the access node learns it within 1 s (its poll), and shows the units
            wait_until(lambda: http("GET", self.front.access + "/sec/info", params={"product_id": pid})[2]["data"]
                       ["left"] == total - len(paid), timeout=1.5, msg="/sec/info shows the returned units")
            self.assertEqual(self.returned_total() - returned0, total - len(paid))
            # a new wave wins exactly the returned units
            second = self.wave(pid, [next(self.uids) for _ in range(120)])
            self.assertEqual(len(second), total - len(paid))
            self.assertEqual(int(self.redis.call("GET", key(aid, "sold"))), total)
            # the winners list shows every token's state
            st, _, body = http("GET", self.front.admin + "/activity/winners", params={"activity_id": aid})
            by_token = {w["token"]: w for w in body["data"]}
            self.assertEqual(len(by_token), 2 * total - len(paid))
            for u, d in paid:
                self.assertEqual((by_token[d["token"]]["state"], by_token[d["token"]]["consumed"]), ("consumed", True))
            for u, d in first[total // 2:]:
                self.assertEqual((by_token[d["token"]]["state"], by_token[d["token"]]["returned"]), ("expired", True))
            # the second wave's tokens expire too: then only the paid units are sold
            wait_until(lambda: self.activity(aid)["sold"] == len(paid), timeout=TTL + 4, msg="second wave back")
        finally:
            stop.set()
            sampler.join()
        self.assertEqual(bad, [], "consumed + live > total")
        self.assertEqual(counts(self.redis, aid), {"consumed": 20, "cancelled": 0, "expired": 40})
        # nobody's count toward buy_limit still holds a returned token
        users = self.redis.call("HGETALL", key(aid, "users")) or []
        self.assertEqual(sorted(int(u) for u in users[0::2]), sorted(u for u, _ in paid))

    def test_cancel(self):
        """/token/cancel: the unit is back at once; cancel again, or consume after, is 1014; cancel after consume is
        1014; unknown, someone else's or expired is 1002; consume after expiry is 1002."""
        pid, aid = create(self, self.front.admin, self.front.access, "ret-banana", 10)
        won = self.wave(pid, [next(self.uids) for _ in range(3)])
        self.assertEqual(len(won), 3)
        (u1, d1), (u2, d2), (u3, d3) = won
        self.assertEqual(int(self.redis.call("GET", key(aid, "sold"))), 3)
        self.assertEqual(self.token_call("cancel", u1, pid, d1["token"])["code"], 0)
        self.assertEqual(int(self.redis.call("GET", key(aid, "sold"))), 2)
        self.assertIsNone(self.redis.call("HGET", key(aid, "users"), str(u1)))
        self.assertEqual(self.token_call("cancel", u1, pid, d1["token"])["code"], 1014)
        self.assertEqual(self.token_call("consume", u1, pid, d1["token"])["code"], 1014)
        self.assertEqual(self.token_call("consume", u2, pid, d2["token"])["code"], 0)
        self.assertEqual(self.token_call("cancel", u2, pid, d2["token"])["code"], 1014)
        self.assertEqual(self.token_call("cancel", u3 + 1, pid, d3["token"])["code"], 1002)
        self.assertEqual(self.token_call("cancel", u3, pid, "f" * 32)["code"], 1002)
        time.sleep(max(0, d3["expires_at"] - time.time()) + 0.05)
        self.assertEqual(self.token_call("cancel", u3, pid, d3["token"])["code"], 1002)
        self.assertEqual(self.token_call("consume", u3, pid, d3["token"])["code"], 1002)
        wait_until(lambda: int(self.redis.call("GET", key(aid, "sold"))) == 1, timeout=2, msg="expired unit back")
        self.assertEqual(counts(self.redis, aid), {"consumed": 1, "cancelled": 1, "expired": 1})
        self.assertEqual(set(order_rows(self.front.conf["admin.db"])) & {d1["token"], d3["token"]}, set())

    def test_buy_again_after_expiry(self):
        """buy_limit 1: a winner whose token expired may win again (the count toward buy_limit went down)."""
        pid, aid = create(self, self.front.admin, self.front.access, "ret-cherry", 10, buy_limit=1)
        u = next(self.uids)
        body = self.kill(u, pid)[2]
        self.assertEqual(body["code"], 0, body)
        time.sleep(1.1)  # limits.lua: one request per user and second
        self.assertEqual(self.kill(u, pid)[2]["code"], 1012)
        last = time.time()
        wait_until(lambda: self.redis.call("HGET", key(aid, "users"), str(u)) is None,
                   timeout=body["data"]["expires_at"] - time.time() + 2, msg="token expired")
        time.sleep(max(0, int(last) + 1.02 - time.time()))  # not in the second of the 1012 (limits.lua: 1 a second)
        again = self.kill(u, pid)[2]
        self.assertEqual(again["code"], 0, again)
        self.assertNotEqual(again["data"]["token"], body["data"]["token"])

    def test_race_consume_cancel_expiry(self):
        """300 tokens, consume and cancel of each sent at the same moment, around its expires_at: exactly one of
        consume, cancel and expiry wins each token; an order exists exactly for the consumed ones; the unit of every
        other token is back exactly once (sold == consumed)."""
        n = 300
        pid, aid = create(self, self.front.admin, self.front.access, "ret-damson", n)
        won = self.wave(pid, [next(self.uids) for _ in range(n)])
        self.assertEqual(len(won), n)
        rnd = random.Random(15)
        plan = [(u, d, d["expires_at"] + rnd.uniform(-0.4, 0.2)) for u, d in won]
        go = time.time()

        def race(item):
            u, d, at = item
            time.sleep(max(0, at - time.time()))
            with concurrent.futures.ThreadPoolExecutor(2) as ex:
                c = ex.submit(self.token_call, "consume", u, pid, d["token"])
                x = ex.submit(self.token_call, "cancel", u, pid, d["token"])
                return d["token"], c.result()["code"], x.result()["code"]

        with concurrent.futures.ThreadPoolExecutor(64) as ex:
            results = list(ex.map(race, sorted(plan, key=lambda p: p[2])))
        self.assertLess(time.time() - go, 30)
        wait_until(lambda: int(self.redis.call("ZCARD", key(aid, "expiry"))) == 0, timeout=5, msg="all reaped")
        st = states(self.redis, aid)
        orders = order_rows(self.front.conf["admin.db"])
        outcome = {"consumed": 0, "cancelled": 0, "expired": 0}
        for token, c, x in results:
            s = st[token][2]
            outcome[s] += 1
            self.assertFalse(c == 0 and x == 0, token)
            if c == 0:
                self.assertEqual(s, "consumed")
            elif x == 0:
                self.assertEqual(s, "cancelled")
            else:
                self.assertEqual(s, "expired", (token, c, x))
            self.assertEqual(token in orders, s == "consumed", token)
            if token in orders:
                self.assertEqual(orders[token][1], 1)
        sys.stderr.write("race outcome: %s\n" % outcome)
        self.assertEqual(sum(outcome.values()), n)
        self.assertEqual(counts(self.redis, aid), outcome)
        self.assertEqual(int(self.redis.call("GET", key(aid, "sold"))), outcome["consumed"])


class TokenCrashTest(harness.TestCase):
    """kill -9 of the logic node while it reaps, and of the admin while it consumes (its own Redis and etcd, and no
    other reaper)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.admin = Node(cls.tmp, cls.redis, cls.etcd, plugins="admin").start()
        cls.logic = logic_node(cls.tmp, cls.redis, cls.etcd)

    def sigkill(self, node):
        node.proc.kill()
        node.proc.wait()
        # the dead process' node lock would refuse the restart for its 10 s TTL: a supervisor waits, the test drops it
        self.redis.call("DEL", sk_wire.node_key(node.node_id))

    def inject(self, pid, aid, n, exp, u0):
        ks = [key(aid, k) for k in ("tokens", "users", "expiry", "wins", "sold")]
        return self.redis.call("EVAL", INJECT, 5, *ks, n, pid, aid, exp, u0, timeout=60)

    def check_once(self, aid, total):
        """sold + returned == total, every token decided at most once, and the users hash holds exactly the tokens
        that still count (live or consumed)."""
        st = states(self.redis, aid)
        c = counts(self.redis, aid)
        sold = int(self.redis.call("GET", key(aid, "sold")) or 0)
        by = {"live": 0, "consumed": 0, "cancelled": 0, "expired": 0}
        for _, _, s in st.values():
            by[s] += 1
        self.assertEqual(sold + c["cancelled"] + c["expired"], total)
        self.assertEqual((c["expired"], c["cancelled"], c["consumed"]), (by["expired"], by["cancelled"], by["consumed"]))
        self.assertEqual(sold, by["live"] + by["consumed"])
        users = self.redis.call("HGETALL", key(aid, "users")) or []
        self.assertEqual(len(users) // 2, by["live"] + by["consumed"])
        return by

    def test_kill_logic_while_reaping(self):
        """100,000 expired tokens; the reaper is SIGKILLed while it returns them, then restarted: every unit comes
        back exactly once. Prints the time to return them all and Redis CPU per returned unit."""
        n = 100000
        pid, aid = create(self, self.admin.admin, None, "crash-elder", n)
        self.assertEqual(self.inject(pid, aid, n, int(time.time()) - 1, 0), n)
        self.check_once(aid, n)
        self.logic.start()
        wait_until(lambda: counts(self.redis, aid)["expired"] > 2000, timeout=20, interval=0.01, msg="reaping started")
        self.sigkill(self.logic)
        mid = self.check_once(aid, n)
        sys.stderr.write("killed with %d of %d returned\n" % (mid["expired"], n))
        self.assertLess(mid["expired"], n, "the kill came too late to be mid-reap")
        cpu0 = self.cpu()
        t0 = time.monotonic()
        self.logic.start()
        wait_until(lambda: int(self.redis.call("ZCARD", key(aid, "expiry"))) == 0, timeout=60, interval=0.02,
                   msg="all returned")
        span, cpu = time.monotonic() - t0, self.cpu() - cpu0
        by = self.check_once(aid, n)
        self.assertEqual(by["expired"], n)
        left = n - mid["expired"]
        sys.stderr.write("reaper: %d expired tokens returned in %.2f s after the restart (node start included); "
                         "Redis CPU %.2f s = %.1f us per returned unit\n" % (left, span, cpu, cpu / left * 1e6))
        self.logic.stop()

    def test_reap_and_cancel_scripts_direct(self):
        """The scripts alone, on an activity no node reaps (not in etcd): 4 threads run redis/logic_reap.lua and 2 run
        redis/admin_token_cancel.lua over the same 5,000 due tokens at once; the units they report add up to 5,000
        exactly, and the bookkeeping agrees (sold 0, users empty, each token decided once)."""
        n, aid, pid = 5000, 999, 99
        self.assertEqual(self.inject(pid, aid, n, int(time.time()) - 1, 0), n)
        ks = [key(aid, k) for k in ("tokens", "sold", "users", "expiry", "token_counts")]
        cks = [key(aid, k) for k in ("tokens", "sold", "users", "token_counts")]
        reap, cancel = harness.script_source("logic_reap"), harness.script_source("admin_token_cancel")
        got = []

        def reaper():
            mine = 0
            while True:
                back, popped = self.redis.call("EVAL", reap, 5, *ks, 64)
                mine += back
                if popped == 0:
                    return mine

        def canceller(start):
            # past expires_at: cancel must refuse (the reaper owns the token) and return nothing
            codes = set()
            for i in range(start, n + 1, 50):
                codes.add(self.redis.call("EVAL", cancel, 4, *cks, i, pid, "inj%013d" % i)[0])
            return codes

        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            reapers = [ex.submit(reaper) for _ in range(4)]
            cancels = [ex.submit(canceller, s) for s in (1, 2)]
            got = [f.result() for f in reapers]
            self.assertEqual(set().union(*[f.result() for f in cancels]), {1002})
        self.assertEqual(sum(got), n, got)
        by = self.check_once(aid, n)
        self.assertEqual(by["expired"], n)

    def cpu(self):
        info = self.redis.call("INFO", "cpu")
        f = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return float(f["used_cpu_user"]) + float(f["used_cpu_sys"])

    def test_kill_admin_while_consuming(self):
        """3,000 live tokens (ttl 8 s) consumed by 16 clients; the admin is SIGKILLed mid-way and restarted; the
        re-drive finishes every order whose token Redis marked, the rest expire: orders in SQLite == consumed tokens,
        no pending row left, sold + returned == total."""
        n = 3000
        pid, aid = create(self, self.admin.admin, None, "crash-fig", n)
        exp = int(time.time()) + 8
        self.inject(pid, aid, n, exp, 1000000)
        self.logic.start()
        told = {}
        stop = threading.Event()

        def consume(i):
            if stop.is_set():
                return
            tok, uid = "inj%013d" % (1000000 + i), 1000000 + i
            try:
                st, _, body = http("POST", self.admin.admin + "/token/consume",
                                   {"token": tok, "user_id": uid, "product_id": pid}, timeout=3)
                if isinstance(body, dict) and body.get("code") == 0:
                    told[tok] = body["data"]["order_id"]
            except Exception:  # noqa: BLE001 - the admin dies under the clients
                pass

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            futs = [ex.submit(consume, i) for i in range(1, n + 1)]
            wait_until(lambda: len(told) >= 300, timeout=30, interval=0.01, msg="consumes under way")
            self.sigkill(self.admin)
            stop.set()
            for f in futs:
                f.result()
        pending = sum(1 for _, s in order_rows(self.admin.conf["admin.db"]).values() if s == 0)
        sys.stderr.write("admin killed after %d orders told, %d pending rows\n" % (len(told), pending))
        self.assertLess(len(told), n)
        self.admin.start()
        wait_until(lambda: int(self.redis.call("ZCARD", key(aid, "expiry"))) == 0,
                   timeout=exp - time.time() + 5, msg="the rest expired")
        db = self.admin.conf["admin.db"]
        wait_until(lambda: all(s == 1 for _, s in order_rows(db).values()), timeout=10, msg="no pending row")
        rows = order_rows(db)
        st = states(self.redis, aid)
        consumed = {t for t, (_, _, s) in st.items() if s == "consumed"}
        self.assertEqual(set(rows), consumed)
        for tok, oid in told.items():
            self.assertEqual(rows[tok][0], oid)
        marks = {t: int(self.redis.call("HGET", key(aid, "tokens"), t).split(" ")[5]) for t in list(consumed)[:200]}
        for t, oid in marks.items():
            self.assertEqual(rows[t][0], oid)
        by = self.check_once(aid, n)
        self.assertEqual(by["live"], 0)
        self.assertEqual(by["consumed"] + by["expired"], n)
        self.logic.stop()


class TokenClusterTest(harness.TestCase):
    """The same life cycle on a 3-master Redis Cluster: every script of an activity is one slot, so cancel, consume and
    the reaper run there unchanged, with activities on different masters."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.masters = []
        for i in range(3):
            conf = os.path.join(cls.tmp, "cluster-%d.conf" % i)
            # its bus port (port + 10000) free too and below the ephemeral range, where a client socket may hold it
            port = sk_cluster.free_cluster_port()
            cls.masters.append(Redis(cls.tmp, port=port, extra_args=("--cluster-enabled", "yes", "--cluster-config-file", conf,
                                                          "--cluster-node-timeout", "2000")).start())
        cls.masters[0].cli("--cluster", "create", *[m.addr for m in cls.masters], "--cluster-replicas", "0",
                           "--cluster-yes", timeout=60)
        wait_until(lambda: "cluster_state:ok" in cls.masters[0].call("CLUSTER", "INFO"), timeout=20,
                   msg="cluster ok")
        cls.etcd = Etcd(cls.tmp).start()
        cls.front = Node(cls.tmp, None, cls.etcd, plugins="access,logic,admin",
                         conf={"threads": 2, "access.trusted_proxies": "127.0.0.1", "logic.token_ttl": TTL,
                               "redis.cluster": "true", "redis.addr": ",".join(m.addr for m in cls.masters)}).start()
        wait_until(lambda: http("GET", cls.front.status + "/healthz")[0] == 200, timeout=20, msg="front healthy")

    def test_return_on_cluster(self):
        """Three activities (spread over the masters): sell out, consume 2, cancel 1 of each; the rest expires and is
        back within 2 s; a new wave wins exactly the returned units."""
        slots = set()
        for i in range(3):
            total = 6
            pid, aid = create(self, self.front.admin, self.front.access, "cl-%d" % i, total)
            slots.add(int(self.masters[0].call("CLUSTER", "KEYSLOT", key(aid, "tokens"))) * 3 // 16384)
            tr = TokenReturnTest
            won = tr.wave(self, pid, [700000 + 100 * i + u for u in range(20)])
            self.assertEqual(len(won), total)
            for u, d in won[:2]:
                self.assertEqual(tr.token_call(self, "consume", u, pid, d["token"])["code"], 0)
            u, d = won[2]
            self.assertEqual(tr.token_call(self, "cancel", u, pid, d["token"])["code"], 0)
            self.assertEqual(tr.activity(self, aid)["left"], 1)
            wait_until(lambda: tr.activity(self, aid)["left"] == total - 2,
                       timeout=max(d["expires_at"] for _, d in won) - time.time() + 2.0, msg="units back")
            a = tr.activity(self, aid)
            self.assertEqual((a["consumed"], a["cancelled"], a["expired"]), (2, 1, 3))
            time.sleep(0.6)  # the access poll
            again = tr.wave(self, pid, [700050 + 100 * i + u for u in range(20)])
            self.assertEqual(len(again), total - 2)
        sys.stderr.write("activities on %d of 3 masters' slot ranges\n" % len(slots))

    kill = TokenReturnTest.kill


if __name__ == "__main__":
    harness.main()

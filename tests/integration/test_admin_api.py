"""Admin API (SPEC §5) against real Redis, etcd and SQLite: every call, every validation rule (one rejected and one
accepted case at least), form and JSON bodies, the etcd values (SPEC §6) and the Redis keys (docs/DESIGN.md)."""

import hashlib
import json
import socket
import sqlite3
import threading
import time

import harness
from harness import Redis, Etcd, Node, http, wait_until, _resp_encode, _RespReader

# ---- helpers, also imported by the other test_admin_*.py ------------------------------------

class Admin:
    """Calls of one node's admin API; every call returns (http_status, code, data, message)."""

    def __init__(self, node, token=None):
        self.node = node
        self.token = token

    def call(self, method, path, body=None, json_body=None, headers=None, params=None, timeout=10):
        hdrs = dict(headers or {})
        if self.token is not None and "Authorization" not in hdrs:
            hdrs["Authorization"] = "Bearer " + self.token
        if json_body is not None:
            body = json.dumps(json_body)
            hdrs.setdefault("Content-Type", "application/json")
        st, _, out = http(method, self.node.admin + path, body=body, headers=hdrs, timeout=timeout, params=params)
        if not isinstance(out, dict):
            raise AssertionError("%s %s: not a JSON envelope: %r" % (method, path, out))
        return st, out.get("code"), out.get("data"), out.get("message")

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body=body, **kw)

    def get(self, path, params=None, **kw):
        return self.call("GET", path, params=params, **kw)

    def ok(self, method, path, body=None, **kw):
        st, code, data, msg = self.call(method, path, body=body, **kw)
        if code != 0 or st != 200:
            raise AssertionError("%s %s %r -> %s %s %s" % (method, path, body, st, code, msg))
        return data

    def product(self, name, total=100, status=1):
        return self.ok("POST", "/product/create", {"product_name": name, "product_total": total,
                                                   "status": status})["product_id"]

    def activity(self, pid, name="sale", start=None, end=None, total=10, **extra):
        now = int(time.time())
        body = {"activity_name": name, "product_id": pid, "start_time": now - 10 if start is None else start,
                "end_time": now + 3600 if end is None else end, "total": total}
        body.update(extra)
        return self.ok("POST", "/activity/create", body)["activity_id"]


def wait_admin_redis(node, token=None):
    """The admin's own Redis connection comes up a moment after /healthz answers: wait for it."""
    a = Admin(node, token)
    wait_until(lambda: a.get("/blacklist/list", {"type": "user", "limit": 1})[1] == 0, timeout=10,
               msg="the admin's Redis connection")


def db_rows(node, sql, args=()):
    """Rows of a query on the node's admin.db (WAL: a reader does not disturb the writer)."""
    con = sqlite3.connect("file:%s?mode=ro" % node.conf["admin.db"], uri=True, timeout=5)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def make_token(redis, aid, pid, uid, token, ttl=1800, issued=None):
    """Writes a purchase token the way the logic layer does (docs/DESIGN.md): its field of sk:{a<ID>}:tokens, "user_id
    product_id activity_id issued_at expires_at" (no TTL: expires_at is checked on consume), and its winners line."""
    issued = int(time.time()) if issued is None else issued
    key = harness.activity_key(aid, "tokens")
    redis.call("HSET", key, token, "%d %d %d %d %d" % (uid, pid, aid, issued, issued + ttl))
    redis.call("RPUSH", harness.activity_key(aid, "wins"), "%d %s %d %d" % (uid, token, issued, issued + ttl))
    return key


class Subscriber:
    """A raw Redis SUBSCRIBE connection that collects messages of one channel."""

    def __init__(self, redis, channel):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), timeout=5)
        self.sock.sendall(_resp_encode(["SUBSCRIBE", channel]))
        self.reader = _RespReader(self.sock)
        self.reader.read()  # the subscribe confirmation

    def next(self, timeout=3):
        self.sock.settimeout(timeout)
        msg = self.reader.read()
        return msg[2] if isinstance(msg, list) and msg and msg[0] == "message" else msg

    def close(self):
        self.sock.close()



class AdminApiTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="admin").start()
        wait_admin_redis(cls.node)
        cls.a = Admin(cls.node)
        cls.seq = 0

    def name(self, base="p"):
        type(self).seq += 1
        return "%s-%d-%d" % (base, self.seq, int(time.time() * 1000) % 100000)

    def assertCode(self, res, code, field=None):
        st, got, data, msg = res
        self.assertEqual(got, code, "expected %s, got %s %s" % (code, got, msg))
        if code == 1001:
            self.assertEqual(st, 400)
        if field is not None:
            self.assertIn(field, msg)
        return data

    # ---- products ---------------------------------------------------------------------------

    def test_product_create_rules(self):
        a = self.a
        good = {"product_name": self.name(), "product_total": 100, "status": 1}
        bad = [
            ({"product_total": 100}, "product_name"),
            ({"product_name": "", "product_total": 100}, "product_name"),
            ({"product_name": "x" * 129, "product_total": 100}, "product_name"),
            ({"product_name": "a\x01b", "product_total": 100}, "product_name"),
            ({"product_name": self.name()}, "product_total"),
            ({"product_name": self.name(), "product_total": 0}, "product_total"),
            ({"product_name": self.name(), "product_total": 10**9 + 1}, "product_total"),
            ({"product_name": self.name(), "product_total": "ten"}, "product_total"),
            ({"product_name": self.name(), "product_total": 1, "status": 2}, "status"),
        ]
        for body, field in bad:
            self.assertCode(a.post("/product/create", body), 1001, field)
        data = a.ok("POST", "/product/create", good)
        pid = data["product_id"]
        self.assertTrue(data["synced"])
        self.assertCode(a.post("/product/create", good), 1014, "product_name")
        # 128 bytes of UTF-8 is the limit, and JSON bodies work
        big = "梨" * 42 + "xx"  # 42 * 3 + 2 = 128 bytes
        pid2 = a.ok("POST", "/product/create", json_body={"product_name": big, "product_total": 10**9})["product_id"]
        value = json.loads(self.etcd.get("/seckill/products/%d" % pid2))
        self.assertEqual(value, {"product_id": pid2, "product_name": big, "product_total": 10**9, "status": 1})
        listed = {p["product_id"]: p for p in a.ok("GET", "/product/list")}
        self.assertEqual(listed[pid]["product_name"], good["product_name"])
        self.assertEqual(listed[pid]["product_total"], 100)

    def test_product_delete(self):
        a = self.a
        self.assertCode(a.post("/product/delete", {}), 1001, "product_id")
        self.assertCode(a.post("/product/delete", {"product_id": "x"}), 1001, "product_id")
        self.assertCode(a.post("/product/delete", {"product_id": 999999}), 1002)
        pid = a.product(self.name())
        aid = a.activity(pid)
        self.assertCode(a.post("/product/delete", {"product_id": pid}), 1014, "product_id")
        a.ok("POST", "/activity/delete", {"activity_id": aid})
        self.assertTrue(a.ok("POST", "/product/delete", {"product_id": pid})["synced"])
        self.assertIsNone(self.etcd.get("/seckill/products/%d" % pid))
        self.assertNotIn(pid, [p["product_id"] for p in a.ok("GET", "/product/list")])

    def test_product_update(self):
        # the console's product edit and enable/disable
        a = self.a
        self.assertCode(a.post("/product/update", {}), 1001, "product_id")
        self.assertCode(a.post("/product/update", {"product_id": 999999, "status": 0}), 1002)
        pid = a.product(self.name(), total=100)
        other = self.name()
        a.product(other)
        self.assertCode(a.post("/product/update", {"product_id": pid, "product_total": 0}), 1001, "product_total")
        self.assertCode(a.post("/product/update", {"product_id": pid, "status": 2}), 1001, "status")
        self.assertCode(a.post("/product/update", {"product_id": pid, "product_name": ""}), 1001, "product_name")
        self.assertCode(a.post("/product/update", {"product_id": pid, "product_name": other}), 1014, "product_name")
        a.activity(pid, total=60)
        self.assertCode(a.post("/product/update", {"product_id": pid, "product_total": 59}), 1014, "product_total")
        new = self.name("renamed")
        self.assertTrue(a.ok("POST", "/product/update", {"product_id": pid, "product_name": new, "product_total": 60,
                                                         "status": 0})["synced"])
        got = json.loads(self.etcd.get("/seckill/products/%d" % pid))
        self.assertEqual((got["product_name"], got["product_total"], got["status"]), (new, 60, 0))
        listed = [p for p in a.ok("GET", "/product/list") if p["product_id"] == pid][0]
        self.assertEqual((listed["product_name"], listed["product_total"], listed["status"]), (new, 60, 0))

    def test_wrong_method_and_unknown_path(self):
        self.assertCode(self.a.get("/product/create"), 1001, "method")
        st, code, _, _ = self.a.get("/product/nothing")
        self.assertEqual((st, code), (404, 1002))

    # ---- activities -------------------------------------------------------------------------

    def test_activity_create_rules(self):
        a = self.a
        pid = a.product(self.name(), total=50)
        now = int(time.time())
        base = {"activity_name": "梨子大甩卖", "product_id": pid, "start_time": now - 5, "end_time": now + 600,
                "total": 20, "status": 1, "speed": 1, "buy_limit": 1, "buy_rate": "0.2"}

        def with_(**kw):
            b = dict(base)
            for k, v in kw.items():
                if v is None:
                    b.pop(k)
                else:
                    b[k] = v
            return b

        bad = [
            (with_(activity_name=None), "activity_name", 1001),
            (with_(activity_name="x" * 129), "activity_name", 1001),
            (with_(product_id=None), "product_id", 1001),
            (with_(product_id=0), "product_id", 1001),
            (with_(product_id=987654), "product_id", 1002),
            (with_(start_time=now + 700), "start_time", 1001),
            (with_(end_time=now - 1, start_time=now - 100), "end_time", 1001),
            (with_(total=0), "total", 1001),
            (with_(total=51), "total", 1001),
            (with_(status=2), "status", 1001),
            (with_(speed=-1), "speed", 1001),
            (with_(buy_limit=0), "buy_limit", 1001),
            (with_(buy_rate=0), "buy_rate", 1001),
            (with_(buy_rate="1.01"), "buy_rate", 1001),
            (with_(buy_rate="abc"), "buy_rate", 1001),
            (with_(shards=0), "shards", 1001),
            (with_(shards=65), "shards", 1001),
            (with_(shards="two"), "shards", 1001),
        ]
        for body, field, code in bad:
            self.assertCode(a.post("/activity/create", body), code, field)
        data = a.ok("POST", "/activity/create", base)
        aid = data["activity_id"]
        self.assertTrue(data["synced"])
        value = json.loads(self.etcd.get("/seckill/activities/%d" % aid))
        expect = dict(base, activity_id=aid, buy_rate=0.2, shards=1)
        self.assertEqual(value, expect)
        self.assertEqual(self.redis.call("GET", harness.activity_key(aid, "total")), "20")
        # an enabled overlapping activity of the same product is a conflict; a disabled one is not
        over = with_(start_time=now + 300, end_time=now + 900)
        self.assertCode(a.post("/activity/create", over), 1014)
        self.assertCode(a.post("/activity/create", json_body=dict(over, status=0)), 0)
        # touching windows do not overlap ([start, end))
        self.assertCode(a.post("/activity/create", with_(start_time=now + 600, end_time=now + 900)), 0)

    def test_activity_update(self):
        a = self.a
        pid = a.product(self.name(), total=100)
        aid = a.activity(pid, total=30)
        self.assertCode(a.post("/activity/update", {"total": 5}), 1001, "activity_id")
        self.assertCode(a.post("/activity/update", {"activity_id": 99999, "total": 5}), 1002)
        self.assertCode(a.post("/activity/update", {"activity_id": aid, "buy_rate": 2}), 1001, "buy_rate")
        self.assertCode(a.post("/activity/update", {"activity_id": aid, "total": 101}), 1001, "total")
        self.assertCode(a.post("/activity/update", {"activity_id": aid, "end_time": 1}), 1001, "start_time")
        # total below sold
        self.redis.call("SET", harness.activity_key(aid, "sold"), 12)
        st, code, data, msg = a.post("/activity/update", {"activity_id": aid, "total": 11})
        self.assertEqual((code, data["sold"]), (1014, 12))
        self.assertEqual(self.redis.call("GET", harness.activity_key(aid, "total")), "30")
        self.assertTrue(a.ok("POST", "/activity/update", {"activity_id": aid, "total": 12, "speed": 4})["synced"])
        self.assertEqual(self.redis.call("GET", harness.activity_key(aid, "total")), "12")
        value = json.loads(self.etcd.get("/seckill/activities/%d" % aid))
        self.assertEqual((value["total"], value["speed"], value["buy_rate"]), (12, 4, 1))
        # an update into another enabled window is a conflict
        now = int(time.time())
        aid2 = a.activity(pid, start=now + 7200, end=now + 9000)
        self.assertCode(a.post("/activity/update", {"activity_id": aid2, "start_time": now}), 1014)
        listed = {x["activity_id"]: x for x in a.ok("GET", "/activity/list")}
        self.assertEqual((listed[aid]["sold"], listed[aid]["left"], listed[aid]["total"]), (12, 0, 12))
        self.assertEqual((listed[aid2]["sold"], listed[aid2]["left"]), (0, 10))

    def test_activity_shards(self):
        """shards (SPEC §9): 1..64, in etcd and the list; frozen with the total once the sale has begun; the totals of
        a sharded activity are its buckets' (each starts from its share: nothing is written for it)."""
        a = self.a
        pid = a.product(self.name(), total=100)
        now = int(time.time())
        later = a.activity(pid, name="later", start=now + 600, end=now + 1200, total=30, shards=3)
        self.assertEqual(json.loads(self.etcd.get("/seckill/activities/%d" % later))["shards"], 3)
        self.assertIsNone(self.redis.call("GET", harness.activity_key(later, "total")))
        # not started: both may change; back to one bucket writes the total again
        self.assertTrue(a.ok("POST", "/activity/update", {"activity_id": later, "shards": 1, "total": 20})["synced"])
        self.assertEqual(self.redis.call("GET", harness.activity_key(later, "total")), "20")
        self.assertTrue(a.ok("POST", "/activity/update", {"activity_id": later, "shards": 4})["synced"])
        self.assertIsNone(self.redis.call("GET", harness.activity_key(later, "total")))
        listed = {x["activity_id"]: x for x in a.ok("GET", "/activity/list")}
        self.assertEqual((listed[later]["shards"], listed[later]["sold"], listed[later]["left"]), (4, 0, 20))
        # started: neither the count nor the total moves, anything else does
        pid2 = a.product(self.name() + "-2", total=100)
        live = a.activity(pid2, name="live", total=30, shards=3)
        self.assertCode(a.post("/activity/update", {"activity_id": live, "shards": 2}), 1014, "shards")
        self.assertCode(a.post("/activity/update", {"activity_id": live, "total": 25}), 1014, "total")
        self.assertTrue(a.ok("POST", "/activity/update", {"activity_id": live, "speed": 7})["synced"])
        value = json.loads(self.etcd.get("/seckill/activities/%d" % live))
        self.assertEqual((value["shards"], value["total"], value["speed"]), (3, 30, 7))

    def test_activity_delete(self):
        a = self.a
        pid = a.product(self.name())
        aid = a.activity(pid)
        self.assertCode(a.post("/activity/delete", {}), 1001, "activity_id")
        self.assertCode(a.post("/activity/delete", {"activity_id": 424242}), 1002)
        self.assertTrue(a.ok("POST", "/activity/delete", {"activity_id": aid})["synced"])
        self.assertIsNone(self.etcd.get("/seckill/activities/%d" % aid))
        self.assertCode(a.post("/activity/delete", {"activity_id": aid}), 1002)
        self.assertNotIn(aid, [x["activity_id"] for x in a.ok("GET", "/activity/list")])

    def test_winners(self):
        a = self.a
        pid = a.product(self.name())
        aid = a.activity(pid)
        self.assertCode(a.get("/activity/winners"), 1001, "activity_id")
        self.assertCode(a.get("/activity/winners", {"activity_id": 777777}), 1002)
        self.assertCode(a.get("/activity/winners", {"activity_id": aid, "limit": 0}), 1001, "limit")
        self.assertEqual(a.ok("GET", "/activity/winners", params={"activity_id": aid}), [])
        make_token(self.redis, aid, pid, 7, "tokA0123456789abcdef")
        make_token(self.redis, aid, pid, 8, "tokB0123456789abcdef")
        order = a.ok("POST", "/token/consume", {"token": "tokB0123456789abcdef", "user_id": 8, "product_id": pid})
        w = a.ok("GET", "/activity/winners", params={"activity_id": aid})
        self.assertEqual([(x["user_id"], x["token"], x["consumed"]) for x in w],
                         [(7, "tokA0123456789abcdef", False), (8, "tokB0123456789abcdef", True)])
        self.assertEqual(w[1]["order_id"], order["order_id"])
        self.assertGreater(w[0]["time"], 0)

    # ---- policies ---------------------------------------------------------------------------

    def test_policy_put_get_list(self):
        a = self.a
        src = "function allow(r, a)\n  return seckill.random() < a.buy_rate\nend\n"
        st, code, data, msg = a.call("PUT", "/policy/buy_rate.lua", body=src)
        self.assertEqual(code, 0, msg)
        rev = data["revision"]
        self.assertGreater(rev, 0)
        self.assertEqual(self.etcd.get("/seckill/policies/buy_rate.lua"), src)
        got = a.ok("GET", "/policy/buy_rate.lua")
        self.assertEqual((got["source"], got["revision"], got["origin"]), (src, rev, "etcd"))
        # a broken source: 1001 with the Lua error and its line, nothing written
        st, code, _, msg = a.call("PUT", "/policy/buy_rate.lua", body="function allow(r, a)\n  return (\nend\n")
        self.assertEqual((st, code), (400, 1001))
        self.assertRegex(msg, r":[0-9]+:")
        self.assertEqual(self.etcd.get("/seckill/policies/buy_rate.lua"), src)
        self.assertCode(a.call("PUT", "/policy/evil.lua", body=src), 1001, "name")
        self.assertCode(a.call("PUT", "/policy/limits.lua", body=""), 1001, "source")
        # a form-looking body is still raw Lua (never form-decoded)
        st, code, _, msg = a.call("PUT", "/policy/limits.lua", body="a=1&b=2",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(code, 1001)
        listed = {p["name"]: p for p in a.ok("GET", "/policy/list")}
        self.assertEqual(set(listed), {"limits.lua", "buy_rate.lua", "token.lua"})
        self.assertEqual(listed["buy_rate.lua"]["revision"], rev)
        self.assertEqual(listed["buy_rate.lua"]["sha256"], hashlib.sha256(src.encode()).hexdigest())
        self.assertEqual(listed["token.lua"]["origin"], "file")
        old = a.ok("GET", "/policy/buy_rate.lua", params={"revision": rev})
        self.assertEqual(old["source"], src)
        self.assertCode(a.get("/policy/buy_rate.lua", {"revision": 1}), 1002)

    def test_policy_history_mirrors_etcdctl(self):
        src = "function admit(r)\n  return true\nend\n-- %d\n" % time.time_ns()
        self.etcd.ctl("put", "/seckill/policies/limits.lua", src)
        rev = int(json.loads(self.etcd.ctl("get", "/seckill/policies/limits.lua", "-w", "json"))["kvs"][0]
                  ["mod_revision"])

        def seen():
            h = self.a.ok("GET", "/policy/history", params={"name": "limits.lua"})
            return [x for x in h if x["revision"] == rev]

        wait_until(seen, timeout=5, msg="etcdctl put in the policy history")
        self.assertEqual(self.a.ok("GET", "/policy/limits.lua", params={"revision": rev})["source"], src)
        self.assertEqual(db_rows(self.node, "SELECT COUNT(*) FROM policy_history WHERE name = ? AND revision = ?",
                                 ("limits.lua", rev)), [(1, )])
        self.assertCode(self.a.get("/policy/history"), 1001, "name")

    # ---- blacklist --------------------------------------------------------------------------

    def test_blacklist_add_remove(self):
        a = self.a
        sub = Subscriber(self.redis, harness.BLACKLIST_NOTICE)
        try:
            bad = [
                ({"type": "host", "value": "1"}, "type"),
                ({"value": "1"}, "type"),
                ({"type": "user"}, "value"),
                ({"type": "user", "value": "0"}, "value"),
                ({"type": "user", "value": "-3"}, "value"),
                ({"type": "user", "value": "9223372036854775808"}, "value"),
                ({"type": "user", "value": "12a"}, "value"),
                ({"type": "ip", "value": "1.2.3.999"}, "value"),
                ({"type": "ip", "value": "example.com"}, "value"),
                ({"type": "ip", "value": "1.2.3.4", "reason": "x" * 257}, "reason"),
            ]
            for body, field in bad:
                self.assertCode(a.post("/blacklist/add", body), 1001, field)
            a.ok("POST", "/blacklist/add", {"type": "user", "value": "9223372036854775807", "reason": "bot"})
            self.assertEqual(sub.next(), "add user 9223372036854775807")
            a.ok("POST", "/blacklist/add", json_body={"type": "ip", "value": "2001:DB8::0001"})
            self.assertEqual(sub.next(), "add ip 2001:db8::1")
            self.assertEqual(self.redis.call("HGET", harness.BLACKLIST_USER_KEY, "9223372036854775807"), "bot")
            self.assertEqual(self.redis.call("HGET", harness.BLACKLIST_IP_KEY, "2001:db8::1"), "")
            self.assertCode(a.post("/blacklist/remove", {"type": "ip", "value": "nope"}), 1001, "value")
            self.assertTrue(a.ok("POST", "/blacklist/remove", {"type": "ip", "value": "2001:db8::1"})["removed"])
            self.assertEqual(sub.next(), "remove ip 2001:db8::1")
            self.assertIsNone(self.redis.call("HGET", harness.BLACKLIST_IP_KEY, "2001:db8::1"))
        finally:
            sub.close()

    def test_blacklist_paging(self):
        a = self.a
        n = 2500  # past the listpack size, so HSCAN batches vary
        self.redis.call("EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], '10.0.' .. math.floor(i / 256) "
                        ".. '.' .. (i % 256), 'r' .. i) end return 1", 1, harness.BLACKLIST_IP_KEY, n)
        self.assertCode(a.get("/blacklist/list", {"type": "ip", "limit": 1001}), 1001, "limit")
        self.assertCode(a.get("/blacklist/list", {"type": "ip", "limit": 0}), 1001, "limit")
        self.assertCode(a.get("/blacklist/list", {"type": "ip", "offset": "x"}), 1001, "offset")
        self.assertCode(a.get("/blacklist/list", {"type": "nope"}), 1001, "type")
        for limit in (7, 1000):
            seen, offset, pages = [], "0", 0
            while offset is not None:
                page = a.ok("GET", "/blacklist/list", params={"type": "ip", "offset": offset, "limit": limit})
                self.assertLessEqual(len(page["entries"]), limit)
                seen += [e["value"] for e in page["entries"]]
                offset = page["next_offset"]
                pages += 1
                self.assertLess(pages, n)
            ips = [x for x in seen if x.startswith("10.0.")]
            self.assertEqual(len(ips), n, "limit %d" % limit)
            self.assertEqual(len(set(ips)), n, "limit %d" % limit)

    # ---- tokens -----------------------------------------------------------------------------

    def test_token_consume(self):
        a = self.a
        pid = a.product(self.name())
        aid = a.activity(pid)
        tok = "T" * 8 + "0123456789abcdef"
        make_token(self.redis, aid, pid, 42, tok)
        bad = [
            ({"user_id": 42, "product_id": pid}, "token", 1001),
            ({"token": "short", "user_id": 42, "product_id": pid}, "token", 1001),
            ({"token": tok, "product_id": pid}, "user_id", 1001),
            ({"token": tok, "user_id": 0, "product_id": pid}, "user_id", 1001),
            ({"token": tok, "user_id": 42}, "product_id", 1001),
            ({"token": tok, "user_id": 42, "product_id": "p"}, "product_id", 1001),
            ({"token": "U" * 24, "user_id": 42, "product_id": pid}, "token", 1002),
            ({"token": tok, "user_id": 43, "product_id": pid}, "token", 1002),
        ]
        for body, field, code in bad:
            self.assertCode(a.post("/token/consume", body), code, field)
        data = a.ok("POST", "/token/consume", {"token": tok, "user_id": 42, "product_id": pid})
        self.assertEqual((data["user_id"], data["product_id"], data["activity_id"]), (42, pid, aid))
        st, code, again, _ = a.post("/token/consume", json_body={"token": tok, "user_id": 42, "product_id": pid})
        self.assertEqual((st, code, again["order_id"]), (409, 1014, data["order_id"]))
        self.assertEqual(harness.token_info(self.redis, aid, tok)["order_id"], str(data["order_id"]))
        rows = db_rows(self.node, "SELECT order_id, user_id, product_id, activity_id, state FROM orders WHERE token = ?",
                       (tok, ))
        self.assertEqual(rows, [(data["order_id"], 42, pid, aid, 1)])
        # an expired token is unknown
        old = "E" * 20
        make_token(self.redis, aid, pid, 42, old, ttl=1, issued=int(time.time()) - 1)
        self.assertCode(a.post("/token/consume", {"token": old, "user_id": 42, "product_id": pid}), 1002)
        self.assertEqual(db_rows(self.node, "SELECT COUNT(*) FROM orders WHERE token = ?", (old, )), [(0, )])
        self.assertIsNone(harness.token_info(self.redis, aid, old)["order_id"], "an expired token was marked")

    def test_token_consume_concurrent(self):
        a = self.a
        pid = a.product(self.name())
        aid = a.activity(pid)
        tok = "C" * 12 + "%012d" % (time.time_ns() % 10**12)
        make_token(self.redis, aid, pid, 5, tok)
        results, lock = [], threading.Lock()

        def one():
            r = a.post("/token/consume", {"token": tok, "user_id": 5, "product_id": pid})
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = sorted(r[1] for r in results)
        self.assertEqual(codes, [0] + [1014] * 19)
        ids = {r[2]["order_id"] for r in results}
        self.assertEqual(len(ids), 1)
        self.assertEqual(db_rows(self.node, "SELECT COUNT(*), MIN(state) FROM orders WHERE token = ?", (tok, )),
                         [(1, 1)])

    def test_status_and_envelope(self):
        st, hdrs, body = http("GET", self.node.admin + "/product/list")
        self.assertEqual(hdrs["content-type"], "application/json")
        self.assertEqual(set(body), {"code", "message", "data"})
        st, _, status = http("GET", self.node.status + "/status")
        self.assertEqual(st, 200)


class AdminAuthTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="admin",
                        conf={"admin.token": "s3cret-admin-token-0123456789"}).start()

    def test_token_required(self):
        calls = [("GET", "/product/list", None), ("POST", "/product/create", {"product_name": "x", "product_total": 1}),
                 ("GET", "/policy/list", None), ("PUT", "/policy/limits.lua", "function admit(r) return true end"),
                 ("GET", "/blacklist/list?type=ip", None), ("POST", "/token/consume", {"token": "x" * 20})]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret-admin-token-01234567890"},
                        {"Authorization": "Basic czNjcmV0"}, {"Authorization": "Bearer "}):
            for method, path, body in calls:
                st, _, out = http(method, self.node.admin + path, body=body, headers=headers)
                self.assertEqual((st, out["code"]), (401, 1015), "%s %s %s" % (method, path, headers))
        a = Admin(self.node, token="s3cret-admin-token-0123456789")
        self.assertNotIn("x", [p["product_name"] for p in a.ok("GET", "/product/list")])
        self.assertNotIn("s3cret-admin-token-0123456789", self.node.log_text())

    def test_foreign_origin(self):
        a = Admin(self.node, token="s3cret-admin-token-0123456789")
        host = self.node.conf["admin.listen"]
        for origin in ("http://evil.example", "null", "http://%s.evil" % host, "https://127.0.0.1:1"):
            st, code, _, _ = a.post("/product/create", {"product_name": "csrf", "product_total": 1},
                                    headers={"Origin": origin})
            self.assertEqual((st, code), (401, 1015), origin)
        self.assertNotIn("csrf", [p["product_name"] for p in a.ok("GET", "/product/list")])
        pid = a.ok("POST", "/product/create", {"product_name": "same-origin", "product_total": 1},
                   headers={"Origin": "http://" + host})["product_id"]
        self.assertGreater(pid, 0)


class AdminBlacklistScaleTest(harness.TestCase):
    """GET /blacklist/list stays fast with 1,000,000 entries: each page is O(limit), wherever it starts."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp, extra_args=["--appendonly", "no"]).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="admin").start()
        wait_admin_redis(cls.node)

    def test_million_entries(self):
        for chunk in range(10):
            self.redis.call("EVAL", "for i = ARGV[1], ARGV[1] + 99999 do redis.call('HSET', KEYS[1], i, 'r') end",
                            1, harness.BLACKLIST_USER_KEY, chunk * 100000 + 1, timeout=60)
        self.assertEqual(self.redis.call("HLEN", harness.BLACKLIST_USER_KEY), 1000000)
        a = Admin(self.node)
        offset, seen, worst = "0", set(), 0.0
        for _ in range(30):
            t0 = time.monotonic()
            page = a.ok("GET", "/blacklist/list", params={"type": "user", "offset": offset, "limit": 1000})
            worst = max(worst, time.monotonic() - t0)
            self.assertEqual(len(page["entries"]), 1000)
            seen.update(e["value"] for e in page["entries"])
            offset = page["next_offset"]
        self.assertEqual(len(seen), 30000)
        self.assertLess(worst, 0.5)


if __name__ == "__main__":
    harness.main()

"""Access layer (SPEC §3): every code of the SPEC table from a realistic request, the check order (a request failing two
adjacent steps gets the earlier code), parameter rules, views, headers. Real Redis, etcd and seckilld.

The helpers at the top are shared by the other test_access_*.py files."""

import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEV_SECRET, Etcd, Node, Redis, http, signed_params, wait_until  # noqa: E402

_ip_seq = [0]


def fresh_ip():
    """A distinct client address per call, for X-Forwarded-For behind a trusted 127.0.0.1."""
    _ip_seq[0] += 1
    n = _ip_seq[0]
    return "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)


def put_product(etcd, pid, status=1):
    etcd.put("/seckill/products/%d" % pid,
             json.dumps({"product_id": pid, "product_name": "p%d" % pid, "product_total": 10**9, "status": status}))


def put_activity(etcd, aid, pid, total=100, start=None, end=None, status=1, buy_limit=1, buy_rate=1.0, speed=0,
                 name=None):
    now = int(time.time())
    etcd.put(
        "/seckill/activities/%d" % aid,
        json.dumps({
            "activity_id": aid, "activity_name": name or "a%d" % aid, "product_id": pid,
            "start_time": now - 60 if start is None else start, "end_time": now + 3600 if end is None else end,
            "total": total, "status": status, "speed": speed, "buy_limit": buy_limit, "buy_rate": buy_rate
        }))


def info(node, pid):
    return http("GET", node.access + "/sec/info", params={"product_id": pid})


def wait_status(node, pid, status, aid=None, timeout=10):
    def ok():
        st, _, body = info(node, pid)
        return (isinstance(body, dict) and body.get("code") == 0 and body["data"]["status"] == status and
                (aid is None or body["data"]["activity_id"] == aid))

    wait_until(ok, timeout=timeout, msg="product %d %s on %s" % (pid, status, node.name))


def kill(node, uid, pid, ip=None, t=None, nance=None, headers=None, secret=DEV_SECRET, scope="kill", path="/sec/kill",
         method="GET", timeout=10, **override):
    params = signed_params(secret, scope, uid, pid, t=t, nance=nance)
    params.update(override)
    hdrs = dict(headers or {})
    if ip is not None:
        hdrs["X-Forwarded-For"] = ip
    if method == "POST":
        return http("POST", node.access + path, body=params, headers=hdrs, timeout=timeout)
    return http("GET", node.access + path, params=params, headers=hdrs, timeout=timeout)


def code_of(resp):
    st, _, body = resp
    assert isinstance(body, dict), "not JSON: %s %r" % (st, body)
    return body["code"]


def raw_get(node, target, extra=b""):
    """GET with a request target sent byte for byte (binary and broken escapes included). Returns (status, body)."""
    host, port = node.conf["access.listen"].split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    try:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def access_status(node):
    """The access plugin's object in /status."""
    st, _, body = http("GET", node.status + "/status")
    for p in body.get("plugins", []):
        if p.get("name") == "access":
            return p
    return {}


def wait_logic(redis, node, timeout=15, access=None):
    """Waits for the heartbeat of logic node `node`, and until `access` (default: node) counts it as alive."""
    wait_until(lambda: node.node_id in (redis.call("ZRANGE", harness.LOGIC_ALIVE_KEY, 0, -1) or []), timeout=timeout,
               msg="logic heartbeat of %s" % node.name)
    access = access or (node if "access" in node.conf["plugins"] else None)
    if access is not None:
        wait_until(lambda: access_status(access).get("logic_alive", 0) >= 1, timeout=timeout,
                   msg="%s sees a live logic node" % access.name)


# Codes each step answers, and the HTTP status of each code (SPEC §2).
HTTP_OF = {0: 200, 1001: 400, 1002: 404, 1003: 401, 1004: 403, 1005: 403, 1006: 410, 1007: 410, 1008: 504, 1009: 403,
           1010: 429, 1011: 429, 1012: 409, 1013: 503}


class AccessCodesTest(harness.TestCase):
    """One node with every plugin, behind a trusted 127.0.0.1 so that each request can have its own client IP."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, conf={"access.trusted_proxies": "127.0.0.1"}).start()
        wait_logic(cls.redis, cls.node)
        now = int(time.time())
        # product -> activity: 10 active, 11 not started, 12 ended, 13 disabled, 14 sold out after one win,
        # 15 active with a tiny buy_rate, 16 product switched off, 17 product without activity
        for pid in range(10, 18):
            put_product(cls.etcd, pid, status=0 if pid == 16 else 1)
        put_activity(cls.etcd, 100, 10, total=1000)
        put_activity(cls.etcd, 110, 11, start=now + 3600, end=now + 7200)
        put_activity(cls.etcd, 120, 12, start=now - 7200, end=now - 3600)
        put_activity(cls.etcd, 130, 13, status=0)
        put_activity(cls.etcd, 140, 14, total=1)
        put_activity(cls.etcd, 150, 15, buy_rate=0.000001)
        put_activity(cls.etcd, 160, 16)
        wait_status(cls.node, 10, "active")
        wait_status(cls.node, 16, "disabled")

    def expect(self, resp, code, why=""):
        st, hdr, body = resp
        self.assertIsInstance(body, dict, "%s: %s %r" % (why, st, body))
        self.assertEqual(body["code"], code, "%s: %r" % (why, body))
        self.assertEqual(st, HTTP_OF[code], why)
        self.assertEqual(hdr.get("cache-control"), "no-store")
        self.assertTrue(hdr.get("content-type", "").startswith("application/json"))
        if code in (1010, 1011):
            self.assertEqual(hdr.get("retry-after"), "1")
        return body

    # ---- the SPEC table, one realistic request per code ----

    def test_code_0_win_and_result(self):
        body = self.expect(kill(self.node, 1001, 10, ip=fresh_ip()), 0, "win")
        d = body["data"]
        self.assertEqual((d["product_id"], d["activity_id"], d["user_id"]), (10, 100, 1001))
        self.assertGreater(d["expires_at"], time.time())
        self.assertTrue(16 <= len(d["token"]) <= 128)
        body = self.expect(kill(self.node, 1001, 10, ip=fresh_ip(), scope="result", path="/sec/result"), 0, "result")
        self.assertEqual(body["data"]["wins"], [{"activity_id": 100, "token": d["token"], "expires_at": d["expires_at"]}])
        # a user without wins has an empty list; POST works the same
        body = self.expect(kill(self.node, 1002, 10, ip=fresh_ip(), scope="result", path="/sec/result", method="POST"),
                           0, "no wins")
        self.assertEqual(body["data"]["wins"], [])

    def test_code_1001_parameters(self):
        body = self.expect(http("GET", self.node.access + "/sec/kill"), 1001, "no params")
        self.assertIn("product_id", body["message"])
        body = self.expect(kill(self.node, 7, 10, ip=fresh_ip(), nance="short"), 1001, "nance")
        self.assertIn("nance", body["message"])
        body = self.expect(http("GET", self.node.access + "/sec/info"), 1001, "info without product_id")
        self.assertIn("product_id", body["message"])

    def test_code_1002_no_activity(self):
        self.expect(info(self.node, 17), 1002, "info")
        self.expect(info(self.node, 999999), 1002, "info, unknown product")
        self.expect(kill(self.node, 7, 17, ip=fresh_ip()), 1002, "kill")

    def test_code_1003_auth(self):
        self.expect(kill(self.node, 7, 10, ip=fresh_ip(), secret="wrong"), 1003, "bad signature")
        self.expect(kill(self.node, 7, 10, ip=fresh_ip(), t=int(time.time()) - 3600), 1003, "old time")
        self.expect(kill(self.node, 7, 10, ip=fresh_ip(), t=int(time.time()) + 3600), 1003, "future time")
        self.expect(kill(self.node, 7, 10, ip=fresh_ip(), scope="result"), 1003, "result signature on kill")
        # the signature covers the product: the same code for another product fails
        p = signed_params(DEV_SECRET, "kill", 7, 10)
        p["product_id"] = "11"
        self.expect(http("GET", self.node.access + "/sec/kill", params=p), 1003, "other product")
        # uppercase hex is accepted
        p = signed_params(DEV_SECRET, "kill", 8, 11)
        p["auth_code"] = p["auth_code"].upper()
        self.expect(http("GET", self.node.access + "/sec/kill", params=p, headers={"X-Forwarded-For": fresh_ip()}), 1005,
                    "uppercase auth_code passes step 3")

    def test_code_1003_replay(self):
        ip = fresh_ip()
        t = int(time.time())
        first = kill(self.node, 1101, 11, ip=ip, t=t, nance="replay-me-1")
        self.expect(first, 1005)
        self.expect(kill(self.node, 1101, 11, ip=ip, t=t, nance="replay-me-1"), 1003, "replay")

    def test_code_1004_blacklist(self):
        self.redis.call("HSET", harness.BLACKLIST_USER_KEY, "1201", "test")
        self.redis.call("HSET", harness.BLACKLIST_IP_KEY, "10.250.0.1", "test")
        self.redis.call("PUBLISH", harness.BLACKLIST_NOTICE, "add user 1201")
        self.redis.call("PUBLISH", harness.BLACKLIST_NOTICE, "add ip 10.250.0.1")
        try:
            wait_until(lambda: code_of(kill(self.node, 1201, 10, ip=fresh_ip())) == 1004, timeout=2, msg="user")
            self.expect(kill(self.node, 1202, 10, ip="10.250.0.1"), 1004, "ip")
            # an untrusted address inside X-Forwarded-For is the client: the blacklisted one is found behind a proxy
            self.expect(kill(self.node, 1203, 10, ip="10.250.0.1, 127.0.0.1"), 1004, "ip behind a trusted proxy")
        finally:
            self.redis.call("HDEL", harness.BLACKLIST_USER_KEY, "1201")
            self.redis.call("HDEL", harness.BLACKLIST_IP_KEY, "10.250.0.1")
            self.redis.call("PUBLISH", harness.BLACKLIST_NOTICE, "reload")

    def test_code_1005_1006_1009_states(self):
        self.expect(kill(self.node, 1301, 11, ip=fresh_ip()), 1005, "not started")
        self.expect(kill(self.node, 1302, 12, ip=fresh_ip()), 1006, "ended")
        self.expect(kill(self.node, 1303, 13, ip=fresh_ip()), 1009, "disabled")
        self.expect(kill(self.node, 1304, 16, ip=fresh_ip()), 1009, "product off")
        for pid, status in ((11, "not_started"), (12, "ended"), (13, "disabled")):
            body = self.expect(info(self.node, pid), 0)
            self.assertEqual(body["data"]["status"], status)

    def test_code_1007_sold_out(self):
        self.expect(kill(self.node, 1401, 14, ip=fresh_ip()), 0, "the only unit")
        self.expect(kill(self.node, 1402, 14, ip=fresh_ip()), 1007, "sold out")
        # within 1 s every thread knows (the control poll), and the view says so
        time.sleep(1.0)
        for _ in range(6):
            body = self.expect(info(self.node, 14), 0)
            self.assertEqual((body["data"]["status"], body["data"]["left"]), ("sold_out", 0))
        for uid in range(1403, 1413):
            self.expect(kill(self.node, uid, 14, ip=fresh_ip()), 1007, "from memory")

    def test_code_1010_rate_limited(self):
        ip = fresh_ip()
        self.expect(kill(self.node, 1501, 11, ip=ip), 1005)
        # the same user again within the second: user_sec 2 > 1
        body = self.expect(kill(self.node, 1501, 11, ip=fresh_ip()), 1010, "user_sec")
        self.assertIn("rate limited", body["message"])

    def test_code_1011_not_selected(self):
        self.expect(kill(self.node, 1601, 15, ip=fresh_ip()), 1011, "buy_rate")

    def test_code_1012_already_bought(self):
        self.expect(kill(self.node, 1701, 10, ip=fresh_ip()), 0)
        time.sleep(1.1)  # past user_sec
        self.expect(kill(self.node, 1701, 10, ip=fresh_ip()), 1012, "buy limit")

    # ---- adjacent steps: a request failing both gets the earlier code ----

    def test_order_5_6_replay_before_limits(self):
        ip, t = fresh_ip(), int(time.time())
        self.expect(kill(self.node, 1801, 11, ip=ip, t=t, nance="order-5-6-a"), 1005)
        # the same second (limit) and the same nance (replay): replay wins
        self.expect(kill(self.node, 1801, 11, ip=ip, t=t, nance="order-5-6-a"), 1003)

    def test_order_3_4_auth_before_blacklist(self):
        self.redis.call("HSET", harness.BLACKLIST_USER_KEY, "1901", "test")
        self.redis.call("PUBLISH", harness.BLACKLIST_NOTICE, "add user 1901")
        try:
            wait_until(lambda: code_of(kill(self.node, 1901, 11, ip=fresh_ip())) == 1004, timeout=2, msg="listed")
            self.expect(kill(self.node, 1901, 11, ip=fresh_ip(), secret="bad"), 1003)
            # 4 before 5: a replay of a listed user is denied, not a replay
            t = int(time.time())
            self.expect(kill(self.node, 1901, 11, ip=fresh_ip(), t=t, nance="order-4-5-a"), 1004)
            self.expect(kill(self.node, 1901, 11, ip=fresh_ip(), t=t, nance="order-4-5-a"), 1004)
        finally:
            self.redis.call("HDEL", harness.BLACKLIST_USER_KEY, "1901")
            self.redis.call("PUBLISH", harness.BLACKLIST_NOTICE, "remove user 1901")

    def test_order_1_3_params_before_auth(self):
        self.expect(kill(self.node, 2001, 10, ip=fresh_ip(), secret="bad", nance="x"), 1001)

    def test_order_6_7_limits_before_state(self):
        ip = fresh_ip()
        self.expect(kill(self.node, 2101, 12, ip=ip), 1006)
        self.expect(kill(self.node, 2101, 12, ip=ip), 1010)

    def test_order_9_10_nonce_in_redis(self):
        # another node used this nance: Redis says so (step 9), and nothing is queued
        t, nance = int(time.time()), "used-elsewhere-1"
        self.redis.call("SET", harness.nonce_key(100, 2201, nance), "1", "EX", "120")
        before = self.redis.call("XLEN", harness.queue_key(100))
        self.expect(kill(self.node, 2201, 10, ip=fresh_ip(), t=t, nance=nance), 1003)
        self.assertEqual(self.redis.call("XLEN", harness.queue_key(100)), before)
        self.assertIsNone(self.redis.call("HGET", harness.activity_key(100, "users"), "2201"))

    # ---- parameters: malformed input answers 1001 naming the parameter, and nothing crashes ----

    def test_malformed_parameters(self):
        good = signed_params(DEV_SECRET, "kill", 2301, 10)
        q = "&".join("%s=%s" % kv for kv in good.items())
        cases = [
            (b"/sec/kill?product_id=%zz&user_id=1", "product_id"),
            (b"/sec/kill?product_id=1%", "product_id"),
            (b"/sec/kill?product_id=1&product_id=2", "product_id"),
            (b"/sec/kill?product_id=12a", "product_id"),
            (b"/sec/kill?product_id=9223372036854775808", "product_id"),
            (b"/sec/kill?product_id=99999999999999999999999999", "product_id"),
            (b"/sec/kill?product_id=-1", "product_id"),
            (b"/sec/kill?product_id=3&user_id=%00", "user_id"),
            (b"/sec/kill?product_id=3&user_id=%01%02", "user_id"),
            (b"/sec/kill?product_id=3&user_id=1&time=x", "time"),
            (b"/sec/kill?product_id=3&user_id=1&time=1&nance=" + b"a" * 65, "nance"),
            (b"/sec/kill?product_id=3&user_id=1&time=1&nance=%ff%fe%fd%fc%fb%fa%f9%f8", "nance"),
            (b"/sec/kill?product_id=3&user_id=1&time=1&nance=abcdefgh&auth_code=zz", "auth_code"),
            (("/sec/kill?" + q + "&src=" + "s" * 65).encode(), "src"),
            (("/sec/kill?" + q + "&src=%07").encode(), "src"),
            (b"/sec/info?product_id=" + b"9" * 5000, "product_id"),
            (b"/sec/info?product_id=\xff\xfe", "product_id"),
            (b"/sec/result?product_id=1&user_id=0", "user_id"),
        ]
        for target, name in cases:
            st, body = raw_get(self.node, target)
            self.assertEqual(st, 400, target[:80])
            self.assertIsInstance(body, dict, (target[:80], body if isinstance(body, dict) else body[:200]))
            self.assertEqual(body["code"], 1001, target[:80])
            self.assertIn(name, body["message"], target[:80])
        # raw control bytes in the request line are refused by h2o's parser before any handler runs (its own 400)
        st, _ = raw_get(self.node, b"/sec/kill?product_id=3&user_id=\x01\x02")
        self.assertEqual(st, 400)
        # a huge value: 1001 (or h2o's own 4xx for an oversized head), never a crash
        st, body = raw_get(self.node, b"/sec/info?product_id=1&x=" + b"y" * 60000)
        self.assertIn(st, (400, 413, 414, 431))
        self.assertEqual(code_of(info(self.node, 10)), 0, "still serving")

    def test_post_form_body(self):
        body = self.expect(kill(self.node, 2401, 11, ip=fresh_ip(), method="POST"), 1005, "POST form")
        self.assertIsNone(body["data"])
        # a parameter in both the query and the body is a duplicate
        p = signed_params(DEV_SECRET, "kill", 2402, 11)
        st, _, body = http("POST", self.node.access + "/sec/kill?product_id=11", body=p)
        self.assertEqual(body["code"], 1001)
        self.assertIn("product_id", body["message"])
        st, _, body = http("POST", self.node.access + "/sec/kill", body=json.dumps(p),
                           headers={"Content-Type": "application/json"})
        self.assertEqual(body["code"], 1001)

    # ---- views ----

    def test_info_view(self):
        body = self.expect(info(self.node, 10), 0)
        d = body["data"]
        for k in ("product_id", "activity_id", "activity_name", "start_time", "end_time", "start", "end", "status",
                  "total", "left", "buy_limit", "buy_rate", "speed"):
            self.assertIn(k, d)
        self.assertEqual((d["product_id"], d["activity_id"], d["status"], d["start"], d["end"]),
                         (10, 100, "active", True, False))
        self.assertEqual(d["total"], 1000)
        self.assertLessEqual(d["left"], 1000)
        self.assertEqual(d["buy_rate"], 1)
        body = self.expect(info(self.node, 11), 0)
        self.assertEqual((body["data"]["start"], body["data"]["end"]), (False, False))

    def test_list(self):
        body = self.expect(http("GET", self.node.access + "/sec/list"), 0)
        aids = {v["activity_id"] for v in body["data"]}
        # ended 1 h ago is within the last 24 h; the disabled activity is the only one of its product, so it shows
        self.assertTrue({100, 110, 120, 130, 140, 150}.issubset(aids), aids)

    def test_in_effect_choice(self):
        now = int(time.time())
        put_product(self.etcd, 30)
        put_activity(self.etcd, 301, 30, start=now - 7200, end=now - 3600)
        put_activity(self.etcd, 302, 30, start=now + 100, end=now + 200)
        put_activity(self.etcd, 303, 30, start=now + 50, end=now + 60, status=0)
        wait_status(self.node, 30, "not_started", aid=302)
        put_activity(self.etcd, 304, 30, start=now - 10, end=now + 40)
        wait_status(self.node, 30, "active", aid=304)

    def test_only_sec_on_public_port(self):
        st, _, body = http("GET", self.node.access + "/healthz")
        self.assertEqual(st, 200)
        for path in ("/status", "/metrics", "/product/list", "/sec/nope", "/"):
            st, _, _ = http("GET", self.node.access + path)
            self.assertEqual(st, 404, path)

    def test_status_figures(self):
        st, _, body = http("GET", self.node.status + "/status")
        self.assertEqual(st, 200)
        text = json.dumps(body)
        for k in ("logic_alive", "blacklist_users", "limiter_entries", "inflight"):
            self.assertIn(k, text)
        st, _, raw = http("GET", self.node.status + "/metrics")
        self.assertIn(b"seckill_access_inflight", raw if isinstance(raw, bytes) else json.dumps(raw).encode())


class AccessRefererTest(harness.TestCase):
    """Referer whitelist: step 2, between parameters (1) and signature (3)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="access",
                        conf={"access.referer_whitelist": "shop.example.com, m.example.com:8443"}).start()
        put_product(cls.etcd, 1)
        put_activity(cls.etcd, 1, 1, start=int(time.time()) + 3600, end=int(time.time()) + 7200)
        wait_status(cls.node, 1, "not_started")

    def test_referer(self):
        good = {"Referer": "https://shop.example.com/item/1"}
        self.assertEqual(code_of(kill(self.node, 1, 1, headers=good)), 1005)
        self.assertEqual(code_of(kill(self.node, 2, 1, headers={"Referer": "https://m.example.com:8443/"})), 1005)
        self.assertEqual(code_of(kill(self.node, 3, 1)), 1004, "missing Referer")
        self.assertEqual(code_of(kill(self.node, 4, 1, headers={"Referer": "https://evil.com/shop.example.com"})), 1004)
        self.assertEqual(code_of(kill(self.node, 5, 1, headers={"Referer": "https://m.example.com/"})), 1004)
        # 1 before 2, 2 before 3
        self.assertEqual(code_of(kill(self.node, 6, 1, nance="bad")), 1001)
        self.assertEqual(code_of(kill(self.node, 7, 1, secret="bad")), 1004)


class AccessNoLogicTest(harness.TestCase):
    """An access node with no logic node anywhere: step 8 answers 1013 at once, after the earlier steps."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="access").start()
        put_product(cls.etcd, 1)
        put_activity(cls.etcd, 1, 1)
        put_product(cls.etcd, 2)
        put_activity(cls.etcd, 2, 2, start=int(time.time()) + 3600, end=int(time.time()) + 7200)
        wait_status(cls.node, 2, "not_started")
        wait_status(cls.node, 1, "active")

    def test_1013_at_once(self):
        t0 = time.time()
        resp = kill(self.node, 1, 1)
        self.assertLess(time.time() - t0, 0.5)
        self.assertEqual(code_of(resp), 1013)
        self.assertEqual(resp[0], 503)
        self.assertEqual(self.redis.call("EXISTS", harness.queue_key(1)), 0, "nothing queued")

    def test_order_7_8_state_before_liveness(self):
        self.assertEqual(code_of(kill(self.node, 2, 2)), 1005)

    def test_order_8_9_liveness_before_nonce(self):
        t, nance = int(time.time()), "seen-in-redis-1"
        self.redis.call("SET", harness.nonce_key(1, 3, nance), "1", "EX", "120")
        self.assertEqual(code_of(kill(self.node, 3, 1, t=t, nance=nance)), 1013)


if __name__ == "__main__":
    harness.main()

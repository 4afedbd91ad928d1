"""Blacklists (SPEC §3 step 4, §5): changes through the admin and through redis-cli plus the notice take effect within
1 s, a silent redis-cli edit within 60 s, and a million entries load without stalling requests."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Etcd, Node, Redis, http  # noqa: E402
from test_access_codes import code_of, fresh_ip, info, kill, put_activity, put_product, wait_status  # noqa: E402

ADMITTED = 1005


def status_of(node):
    st, _, body = http("GET", node.status + "/status")
    for p in body.get("plugins", []) if isinstance(body.get("plugins"), list) else []:
        if p.get("name") == "access":
            return p
    # the host may key plugins by name
    plugins = body.get("plugins", {})
    return plugins.get("access", body) if isinstance(plugins, dict) else body


def find_key(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_key(v, key)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_key(v, key)
            if r is not None:
                return r
    return None


class AccessBlacklistTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="access,admin",
                        conf={"access.trusted_proxies": "127.0.0.1"}).start()
        now = int(time.time())
        put_product(cls.etcd, 1)
        put_activity(cls.etcd, 1, 1, start=now + 3600, end=now + 7200)
        wait_status(cls.node, 1, "not_started")
        cls.uid = iter(range(100000, 200000))

    def code(self, uid, ip=None):
        return code_of(kill(self.node, uid, 1, ip=ip or fresh_ip()))

    def within(self, seconds, pred, what):
        t0 = time.time()
        while time.time() - t0 < seconds:
            if pred():
                return time.time() - t0
            time.sleep(0.05)
        self.fail("%s: not within %.1f s" % (what, seconds))

    def test_admin_user_and_ip(self):
        uid = next(self.uid)
        self.assertEqual(self.code(uid), ADMITTED)
        st, _, body = http("POST", self.node.admin + "/blacklist/add", {"type": "user", "value": str(uid), "reason": "t"})
        self.assertEqual(body["code"], 0, body)
        self.within(1.0, lambda: self.code(uid) == 1004, "admin add user")
        http("POST", self.node.admin + "/blacklist/remove", {"type": "user", "value": str(uid)})
        time.sleep(1.1)  # past user_sec of the checks above
        self.within(1.0, lambda: self.code(uid) == ADMITTED, "admin remove user")

        ip = fresh_ip()
        st, _, body = http("POST", self.node.admin + "/blacklist/add", {"type": "ip", "value": ip})
        self.assertEqual(body["code"], 0, body)
        self.within(1.0, lambda: self.code(next(self.uid), ip) == 1004, "admin add ip")
        http("POST", self.node.admin + "/blacklist/remove", {"type": "ip", "value": ip})
        self.within(1.0, lambda: self.code(next(self.uid), ip) == ADMITTED, "admin remove ip")

    def test_redis_cli_with_notice(self):
        uid = next(self.uid)
        self.redis.cli("HSET", harness.BLACKLIST_USER_KEY, str(uid), "fraud")
        self.redis.cli("PUBLISH", harness.BLACKLIST_NOTICE, "add user %d" % uid)
        self.within(1.0, lambda: self.code(uid) == 1004, "redis-cli add + notice")
        self.redis.cli("HDEL", harness.BLACKLIST_USER_KEY, str(uid))
        self.redis.cli("PUBLISH", harness.BLACKLIST_NOTICE, "reload")
        time.sleep(1.1)
        self.within(1.0, lambda: self.code(uid) == ADMITTED, "redis-cli remove + reload")
        # a notice that makes no sense is ignored, and the node keeps serving
        self.redis.cli("PUBLISH", harness.BLACKLIST_NOTICE, "add user notanumber")
        self.redis.cli("PUBLISH", harness.BLACKLIST_NOTICE, "\x01\x02 garbage")
        self.assertEqual(code_of(info(self.node, 1)), 0)

    def test_redis_cli_silent_within_60s(self):
        uid = next(self.uid)
        self.redis.cli("HSET", harness.BLACKLIST_USER_KEY, str(uid), "quiet")
        try:
            took = self.within(62.0, lambda: self.code(uid) == 1004, "silent edit")
            self.assertGreater(took, 0)
        finally:
            self.redis.cli("HDEL", harness.BLACKLIST_USER_KEY, str(uid))


class AccessBlacklistMillionTest(harness.TestCase):
    """A million users in sk:blacklist:user: loaded with HSCAN on the control thread while requests keep flowing."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp, appendfsync="no").start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="access",
                        conf={"access.trusted_proxies": "127.0.0.1"}).start()
        now = int(time.time())
        put_product(cls.etcd, 1)
        put_activity(cls.etcd, 1, 1, start=now + 3600, end=now + 7200)
        wait_status(cls.node, 1, "not_started")

    def fill(self, n):
        lines = []
        for base in range(0, n, 1000):
            args = ["HSET", harness.BLACKLIST_USER_KEY]
            for u in range(base + 1, min(n, base + 1000) + 1):
                args += [str(u), "x"]
            lines.append("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args))
        host, port = self.redis.addr.split(":")
        r = subprocess.run(["redis-cli", "-h", host, "-p", port, "--pipe"], input="".join(lines).encode(),
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.redis.call("HLEN", harness.BLACKLIST_USER_KEY), n)

    def test_million_entries(self):
        n = 1000000
        self.fill(n)
        worst = [0.0]
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                t0 = time.time()
                st, _, body = info(self.node, 1)
                worst[0] = max(worst[0], time.time() - t0)
                assert st == 200, body
                time.sleep(0.005)

        th = threading.Thread(target=probe, daemon=True)
        th.start()
        try:
            t0 = time.time()
            self.redis.call("PUBLISH", harness.BLACKLIST_NOTICE, "reload")
            # probe the last entry written: a periodic reload that ran while the hash was still filling may already
            # have listed the first ones (step 4 answers before the limits, so probing one user is fine)
            def listed():
                return code_of(kill(self.node, n, 1, ip=fresh_ip())) == 1004

            harness.wait_until(listed, timeout=60, interval=0.2, msg="a million entries loaded")
            took = time.time() - t0
        finally:
            stop.set()
            th.join(5)
        self.assertEqual(code_of(kill(self.node, n, 1, ip=fresh_ip())), 1004)
        self.assertEqual(code_of(kill(self.node, n + 1, 1, ip=fresh_ip())), ADMITTED)
        harness.wait_until(lambda: find_key(status_of(self.node), "blacklist_users") == n, timeout=10,
                           msg="/status blacklist_users")
        # the load took its time on the control thread; requests never waited for it
        self.assertLess(worst[0], 0.25, "worst /sec/info latency during the load: %.3f s (load %.1f s)" %
                        (worst[0], took))


if __name__ == "__main__":
    harness.main()

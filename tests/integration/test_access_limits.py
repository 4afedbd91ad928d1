"""Access limits and replays (SPEC §3 steps 5-6, §7 counts): bursts from one user and one IP are admitted exactly the
number the shipped limits.lua allows (user_sec <= 1, user_min <= 10, ip_sec <= 50, ip_min <= 500); a replay answers
1003 the second time, on the same node and across two access nodes; replays never use up a user's limits."""

import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Etcd, Node, Redis  # noqa: E402
from test_access_codes import code_of, fresh_ip, kill, put_activity, put_product, wait_logic, wait_status  # noqa: E402

ADMITTED = 1005  # the activity has not started: an admitted request stops at step 7, from memory


def at_second_start():
    """Sleeps to just after the next calendar second begins; returns that second."""
    now = time.time()
    time.sleep(1 - (now - int(now)) + 0.02)
    return int(time.time())


class AccessLimitsTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        conf = {"access.trusted_proxies": "127.0.0.1", "threads": 2}
        cls.a = Node(cls.tmp, cls.redis, cls.etcd, plugins="access,logic", conf=conf).start()
        cls.b = Node(cls.tmp, cls.redis, cls.etcd, plugins="access", conf=conf).start()
        wait_logic(cls.redis, cls.a)
        wait_logic(cls.redis, cls.a, access=cls.b)
        now = int(time.time())
        put_product(cls.etcd, 1)
        put_activity(cls.etcd, 1, 1, start=now + 3600, end=now + 7200)
        put_product(cls.etcd, 2)
        put_activity(cls.etcd, 2, 2, total=1000, buy_rate=0.000001)  # logic answers 1011: nothing is sold
        for n in (cls.a, cls.b):
            wait_status(n, 1, "not_started")
            wait_status(n, 2, "active")

    def burst(self, reqs, workers=16, retry=True):
        """Runs the request thunks concurrently inside one calendar second; retries a few times if the burst
        straddled a second boundary. Returns the codes, and whether they fit in one second."""
        for _ in range(4):
            sec = at_second_start()
            with concurrent.futures.ThreadPoolExecutor(workers) as ex:
                codes = list(ex.map(lambda f: code_of(f()), reqs))
            if int(time.time()) == sec or not retry:
                return codes, int(time.time()) == sec
            time.sleep(1.1)  # let this second's counts go; the minute counts are asserted separately
        self.fail("could not fit the burst in one second")

    def test_user_burst_one_per_second(self):
        uid = 1000
        codes, _ = self.burst([lambda: kill(self.a, uid, 1, ip=fresh_ip()) for _ in range(20)])
        self.assertEqual(codes.count(ADMITTED), 1, codes)
        self.assertEqual(codes.count(1010), 19, codes)

    def test_ip_burst_fifty_per_second(self):
        ip = fresh_ip()
        users = iter(range(2000, 2100))
        codes, _ = self.burst([lambda u=next(users): kill(self.a, u, 1, ip=ip) for _ in range(80)])
        self.assertEqual(codes.count(ADMITTED), 50, codes)
        self.assertEqual(codes.count(1010), 30, codes)

    def test_user_ten_per_minute(self):
        uid = 3000
        codes = []
        for i in range(12):
            codes.append(code_of(kill(self.a, uid, 1, ip=fresh_ip())))
            time.sleep(1.05)
        self.assertEqual(codes[:10], [ADMITTED] * 10, codes)
        self.assertEqual(codes[10:], [1010, 1010], codes)

    def test_replay_then_limits_untouched(self):
        uid = 4000
        t = at_second_start()
        self.assertEqual(code_of(kill(self.a, uid, 1, ip=fresh_ip(), t=t, nance="replay-4000-a")), ADMITTED)
        replays = [code_of(kill(self.a, uid, 1, ip=fresh_ip(), t=t, nance="replay-4000-a")) for _ in range(10)]
        self.assertEqual(replays, [1003] * 10)
        # had the replays counted, this user would be at 11 this second and 11 this minute
        codes = []
        for i in range(9):
            time.sleep(1.05)
            codes.append(code_of(kill(self.a, uid, 1, ip=fresh_ip())))
        self.assertEqual(codes, [ADMITTED] * 9, codes)
        time.sleep(1.05)
        self.assertEqual(code_of(kill(self.a, uid, 1, ip=fresh_ip())), 1010, "the 11th counted request this minute")

    def test_replay_across_nodes(self):
        uid, t, nance = 5000, int(time.time()), "cross-node-5000"
        first = kill(self.a, uid, 2, ip=fresh_ip(), t=t, nance=nance)
        self.assertIn(code_of(first), (1011, 0), first)
        self.assertEqual(code_of(kill(self.b, uid, 2, ip=fresh_ip(), t=t, nance=nance)), 1003, "other node, via Redis")
        self.assertEqual(code_of(kill(self.a, uid, 2, ip=fresh_ip(), t=t, nance=nance)), 1003, "same node")
        # the nonce key lives until time + auth.window
        ttl = self.redis.call("TTL", harness.nonce_key(2, uid, nance))
        self.assertTrue(50 <= ttl <= 62, ttl)

    def test_ip_minute_limit(self):
        """60 requests a second from one IP for 11 s: at most 50 a second pass, and once 500 requests were counted
        in the minute (rejected ones count too, SPEC §7) nothing passes."""
        ip = fresh_ip()
        users = iter(range(10000, 20000))
        admitted, fits = [], []
        for s in range(11):
            # no retry: every request counts towards the minute, so a burst is never repeated
            codes, one_second = self.burst([lambda u=next(users): kill(self.a, u, 1, ip=ip) for _ in range(60)],
                                           retry=False)
            admitted.append(codes.count(ADMITTED))
            fits.append(one_second)
            if one_second:
                self.assertLessEqual(admitted[-1], 50, admitted)
        if all(fits):
            # requests 1-480 in 8 seconds (50 of each 60 pass), then 481-500 pass, then none
            self.assertEqual(admitted, [50] * 8 + [20, 0, 0])
        else:
            self.assertEqual(admitted[-2:], [0, 0], admitted)
            self.assertLessEqual(sum(admitted), 500, admitted)


if __name__ == "__main__":
    harness.main()

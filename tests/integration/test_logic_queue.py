"""Logic layer, driven through its queue: entries XADDed to sk:queue exactly as access writes them (docs/DESIGN.md),
answers read from a pub/sub reply channel, and the outcome checked against Redis. Real Redis (AOF always), real etcd,
logic-only seckilld nodes.

The helpers here (Resp, Replies, Sale, put_activity) are imported by the other test_logic_*.py files.
"""

import json
import os
import random
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Etcd, Node, Redis, wait_until  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------------
# A small pipelining RESP client (the harness' Redis.call opens one connection per command: too slow for 20k entries)
# ---------------------------------------------------------------------------------------------------------------------


# the harness's RESP encoder and reader; error replies are harness.RedisError objects
RespError = harness.RedisError
_encode = harness._resp_encode


class Resp:
    """One connection; call() for one command, pipeline() for many. Error replies come back as RespError objects
    from pipeline() and are raised by call()."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = harness._RespReader(self.sock)
        self.f = self.reader.f

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def _read(self):
        return self.reader.read()

    def pipeline(self, cmds):
        self.sock.sendall(b"".join(_encode(c) for c in cmds))
        return [self._read() for _ in cmds]

    def call(self, *args):
        v = self.pipeline([args])[0]
        if isinstance(v, RespError):
            raise v
        return v

    def redis_ms(self):
        t = self.call("TIME")
        return int(t[0]) * 1000 + int(t[1]) // 1000


class Replies(threading.Thread):
    """Subscribes to one reply channel and records every "<id> <code> <token> <expires_at>" line of its messages (one
    message per batch of a logic worker, one line per answer). Reconnects (and re-subscribes) when Redis goes away, so
    it survives a Redis restart; messages published meanwhile are lost, which is why tests that restart Redis read the
    stored results instead."""

    def __init__(self, port, channel):
        super().__init__(daemon=True)
        self.port = port
        self.channel = channel
        self.results = {}  # id -> [(code, token, expires_at, arrival monotonic)]
        self.malformed = []  # messages with a line that is not "<id> <code> <token> <expires_at>"
        self.mu = threading.Lock()
        self.subscribed = threading.Event()
        self.stopping = False
        self.conn = None
        self.start()
        if not self.subscribed.wait(10):
            raise AssertionError("could not subscribe to %s" % channel)

    def run(self):
        while not self.stopping:
            try:
                c = Resp(self.port, timeout=0.5)
            except OSError:
                time.sleep(0.1)
                continue
            self.conn = c
            try:
                c.sock.sendall(_encode(["SUBSCRIBE", self.channel]))
                # blocking reads (a timeout mid-message would corrupt the buffered reader); stop() shuts it down
                c.sock.settimeout(None)
                while not self.stopping:
                    m = c._read()
                    if isinstance(m, list) and m[0] == "subscribe":
                        self.subscribed.set()
                    elif isinstance(m, list) and m[0] == "message":
                        now = time.monotonic()
                        try:
                            recs = [(p[0], (int(p[1]), p[2], int(p[3]), now))
                                    for p in (line.split(" ") for line in m[2].split("\n")) if len(p) == 4]
                            if len(recs) != m[2].count("\n") + 1:
                                raise ValueError(m[2])
                        except ValueError:
                            with self.mu:
                                self.malformed.append(m[2])
                            continue
                        with self.mu:
                            for rid, rec in recs:
                                self.results.setdefault(rid, []).append(rec)
            except (OSError, ConnectionError, ValueError):
                time.sleep(0.05)
            finally:
                c.close()

    def stop(self):
        self.stopping = True
        c = self.conn
        if c is not None:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.join(5)

    def snapshot(self):
        with self.mu:
            if self.malformed:
                raise AssertionError("malformed replies on %s, e.g. %r" % (self.channel, self.malformed[:3]))
            return {k: list(v) for k, v in self.results.items()}

    def wait_all(self, ids, timeout):
        ids = list(ids)

        def done():
            with self.mu:
                return self.malformed or all(i in self.results for i in ids)

        try:
            wait_until(done, timeout=timeout, interval=0.05, msg="replies")
        except AssertionError:
            with self.mu:
                missing = [i for i in ids if i not in self.results]
            raise AssertionError("%d of %d requests got no reply, e.g. %s" % (len(missing), len(ids), missing[:5]))
        self.snapshot()  # fails on a malformed reply


# ---------------------------------------------------------------------------------------------------------------------
# Activities and sales
# ---------------------------------------------------------------------------------------------------------------------


def put_activity(etcd, aid, pid, total, buy_limit=1, buy_rate=1.0, speed=0, status=1):
    """Writes a product and an activity to etcd as the admin would (SPEC §6), window open for an hour."""
    now = int(time.time())
    etcd.put("/seckill/products/%d" % pid,
             json.dumps({"product_id": pid, "product_name": "p%d" % pid, "product_total": 10**9, "status": 1}))
    etcd.put(
        "/seckill/activities/%d" % aid,
        json.dumps({
            "activity_id": aid, "activity_name": "a%d" % aid, "product_id": pid, "start_time": now - 60,
            "end_time": now + 3600, "total": total, "status": status, "speed": speed, "buy_limit": buy_limit,
            "buy_rate": buy_rate
        }))


class Sale:
    """Queues requests for one activity the way an access node does, and collects the answers."""

    def __init__(self, redis, aid, pid, timeout_ms=3000):
        self.redis = redis
        self.aid, self.pid = aid, pid
        self.timeout_ms = timeout_ms
        self.channel = harness.reply_channel("test-%s" % uuid.uuid4().hex[:12], 0)
        self.replies = Replies(redis.port, self.channel)
        self.conn = None
        self.offset = None  # Redis ms - local ms
        self.queued = {}  # id -> (uid, local monotonic when queued, stream id, deadline in Redis ms)
        self.not_queued = 0
        self.uncertain = {}  # id -> uid: sent, but Redis did not answer (it may still run them)
        self.sent = {}  # id -> (activity, deadline in Redis ms) of every entry built, queued or not
        self.seq = 0

    def _connect(self):
        if self.conn is None:
            self.conn = Resp(self.redis.port, timeout=2)
            self.offset = self.conn.redis_ms() - int(time.time() * 1000)

    def entry(self, uid, rid=None, deadline=None, aid=None, pid=None, drop=(), sid="*", stream=None):
        self.seq += 1
        rid = rid or "t%s:%d" % (self.channel[-6:], self.seq)
        if deadline is None:
            deadline = int(time.time() * 1000) + self.offset + self.timeout_ms
        fields = {
            "id": rid, "reply": self.channel, "aid": aid or self.aid, "pid": pid or self.pid, "uid": uid,
            "ip": "10.1.%d.%d" % (uid % 250, uid % 199), "now": int(time.time()), "deadline": deadline
        }
        # each activity has its own stream; `stream` queues into another activity's (what access never does)
        cmd = ["XADD", harness.queue_key(stream or fields["aid"]), sid]
        for k, v in fields.items():
            if k not in drop:
                cmd += [k, v]
        self.sent[rid] = (fields["aid"], deadline)
        return rid, cmd

    def queue(self, uids, **kw):
        """Queues one request per uid in one pipeline; returns their ids (those Redis refused are counted in
        not_queued, as an access node would answer them 1013)."""
        batch = []
        try:
            self._connect()
            batch = [self.entry(u, **kw) for u in uids]
            out = self.conn.pipeline([c for _, c in batch])
        except (OSError, ConnectionError):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self.not_queued += len(uids)
            for (rid, _), u in zip(batch, uids):
                self.uncertain[rid] = u
            return []
        ids = []
        now = time.monotonic()
        for (rid, cmd), u, r in zip(batch, uids, out):
            if isinstance(r, RespError):
                self.not_queued += 1
                continue
            self.queued[rid] = (u, now, r, int(cmd_field(cmd, "deadline")))
            ids.append(rid)
        return ids

    def feed(self, uids, rate, events=None, chunk=25):
        """Open loop at `rate` requests/s. events: {seconds_from_start: callable} run once when due."""
        events = dict(events or {})
        t0 = time.monotonic()
        ids = []
        for i in range(0, len(uids), chunk):
            due = t0 + i / float(rate)
            for at in sorted(list(events)):
                if t0 + at <= time.monotonic():
                    events.pop(at)()
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            ids += self.queue(uids[i:i + chunk])
        for at in sorted(events):
            events.pop(at)()
        return ids

    def wait(self, ids=None, timeout=30):
        self.replies.wait_all(self.queued if ids is None else ids, timeout)
        return self.results()

    def stored(self, ids):
        """id -> the result stored for it (its field of the result bucket of its activity and deadline), or None."""
        ids = list(ids)
        c = Resp(self.redis.port)
        try:
            out = c.pipeline([["HGET", harness.result_key(*self.sent[rid]), rid] for rid in ids])
        finally:
            c.close()
        return dict(zip(ids, out))

    def results(self):
        """id -> (code, token, expires_at); fails when one id got two different answers (processed twice)."""
        out = {}
        for rid, recs in self.replies.snapshot().items():
            answers = {(c, t, e) for c, t, e, _ in recs}
            if len(answers) != 1:
                raise AssertionError("request %s answered differently: %s" % (rid, answers))
            out[rid] = answers.pop()
        return out

    def close(self):
        self.replies.stop()
        if self.conn is not None:
            self.conn.close()


def cmd_field(cmd, name):
    i = cmd.index(name, 3)
    return cmd[i + 1]


def key(aid, name):
    return harness.activity_key(aid, name)


def check_store(tc, redis, aid, results, total=None, buy_limit=None):
    """Redis agrees with the answers: sold == wins list == the winning answers, tokens stored, limits held."""
    sold = int(redis.call("GET", key(aid, "sold")) or 0)
    wins = redis.call("LRANGE", key(aid, "wins"), 0, -1) or []
    users = redis.call("HGETALL", key(aid, "users")) or []
    held = {int(users[i]): harness.user_wins(users[i + 1]) for i in range(0, len(users), 2)}
    per_user = {u: h[0] for u, h in held.items()}
    tc.assertEqual(sold, len(wins))
    tc.assertEqual(sold, sum(per_user.values()))
    tokens = [w.split(" ")[1] for w in wins]
    tc.assertEqual(len(set(tokens)), len(tokens), "a token was issued twice")
    tc.assertEqual(int(redis.call("HLEN", key(aid, "tokens"))), sold, "tokens stored != wins")
    # each user's field lists exactly the (token, expires_at) of that user's wins
    listed = {}
    for w in wins:
        uid, tok, _, exp = w.split(" ")
        listed.setdefault(int(uid), []).append((tok, int(exp)))
    tc.assertEqual({u: sorted(h[1]) for u, h in held.items()}, {u: sorted(v) for u, v in listed.items()})
    won = {r[1]: rid for rid, r in results.items() if r[0] == 0}
    tc.assertTrue(set(won) <= set(tokens), "a win answered to a client is missing from Redis")
    if total is not None:
        tc.assertLessEqual(sold, total)
    if buy_limit is not None:
        tc.assertLessEqual(max(per_user.values() or [0]), buy_limit)
    now = int(redis.call("TIME")[0])
    for w in wins[:50] + wins[-50:]:
        uid, tok, issued, exp = w.split(" ")
        h = harness.token_info(redis, aid, tok) or {}
        tc.assertEqual(h.get("user_id"), uid)
        tc.assertEqual(h.get("activity_id"), str(aid))
        tc.assertEqual(h.get("issued_at"), issued)
        tc.assertEqual(h.get("expires_at"), exp)
        tc.assertIsNone(h.get("order_id"))
        # the token is valid now (Redis clock), and for no longer than it was issued for
        tc.assertTrue(int(issued) <= now < int(exp), "token issued %s, expires %s, now %d" % (issued, exp, now))
    return sold, per_user, tokens


def logic_node(tmp, redis, etcd, **conf):
    c = {"threads": 2, "access.request_timeout_ms": 3000}
    c.update(conf)
    return Node(tmp, redis, etcd, plugins="logic", conf=c)


def logic_status(node):
    """The logic plugin's object in GET /status."""
    st, _, body = harness.http("GET", node.status + "/status")
    return next(p for p in body["plugins"] if p.get("name") == "logic")


def wait_alive(redis, nodes, timeout=15):
    ids = {n.node_id for n in nodes}
    wait_until(lambda: ids <= set(redis.call("ZRANGE", harness.LOGIC_ALIVE_KEY, 0, -1) or []), timeout=timeout,
               msg="logic heartbeats of %s" % sorted(ids))


# ---------------------------------------------------------------------------------------------------------------------


class LogicQueueTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        put_activity(cls.etcd, 900, 900, 1)  # a first key, so the nodes' snapshots have a revision
        cls.nodes = [logic_node(cls.tmp, cls.redis, cls.etcd).start() for _ in range(2)]
        wait_alive(cls.redis, cls.nodes)

    def sale(self, aid, pid, **kw):
        s = Sale(self.redis, aid, pid, **kw)
        self.addCleanup(s.close)
        return s

    def test_model_check(self):
        """2 logic processes, 20,000 requests from 2,000 users, total 500, buy_limit 2, buy_rate 1."""
        put_activity(self.etcd, 1, 101, total=500, buy_limit=2, buy_rate=1)
        time.sleep(1.2)
        s = self.sale(1, 101)
        uids = [u for u in range(1, 2001) for _ in range(10)]
        random.Random(7).shuffle(uids)
        ids = s.feed(uids, rate=5000)
        self.assertEqual(len(ids), 20000)
        res = s.wait(ids, timeout=60)
        codes = [r[0] for r in res.values()]
        self.assertEqual(codes.count(0), 500, "wins")
        self.assertEqual(codes.count(1008), 0, "timeouts in a fault-free run")
        self.assertEqual(set(codes) - {0, 1007, 1012}, set())
        per_user = {}
        for rid, r in res.items():
            if r[0] == 0:
                uid = s.queued[rid][0]
                per_user[uid] = per_user.get(uid, 0) + 1
        self.assertLessEqual(max(per_user.values()), 2)
        sold, users, tokens = check_store(self, self.redis, 1, res, total=500, buy_limit=2)
        self.assertEqual(sold, 500)
        self.assertEqual(users, per_user)
        self.assertEqual(int(self.redis.call("GET", key(1, "total"))), 500)  # the snapshot's total, SET NX
        # every request is also stored, so a redelivery can never decide again
        sample = random.Random(1).sample(sorted(res), 200)
        stored = s.stored(sample)
        for rid in sample:
            code, tok, exp = stored[rid].split(" ")
            self.assertEqual((int(code), tok, int(exp)), res[rid])
        # in the bucket of its deadline, which is kept past that minute
        for rid in sample[:20]:
            k = harness.result_key(*s.sent[rid])
            self.assertEqual(int(self.redis.call("EXPIRETIME", k)), harness.result_keep_until(s.sent[rid][1]))

    def test_speed_limit(self):
        """speed=10: no calendar second of Redis TIME has more than 10 wins, and the limit is reached."""
        put_activity(self.etcd, 2, 102, total=100000, buy_limit=1000, buy_rate=1, speed=10)
        time.sleep(1.2)
        s = self.sale(2, 102)
        uids = [1 + i % 50 for i in range(900)]
        ids = s.feed(uids, rate=300)
        res = s.wait(ids, timeout=30)
        codes = [r[0] for r in res.values()]
        self.assertEqual(set(codes) - {0, 1011}, set())
        wins = self.redis.call("LRANGE", key(2, "wins"), 0, -1)
        per_sec = {}
        for w in wins:
            sec = int(w.split(" ")[2])
            per_sec[sec] = per_sec.get(sec, 0) + 1
        self.assertEqual(len(wins), codes.count(0))
        self.assertLessEqual(max(per_sec.values()), 10, per_sec)
        self.assertEqual(sorted(per_sec.values())[-1], 10, "the limit was never reached: %s" % per_sec)
        self.assertGreaterEqual(len(per_sec), 2)

    def test_buy_rate_share(self):
        """buy_rate 0.2 over 10,000 eligible requests: the win share is within 4 sigma of 0.2."""
        put_activity(self.etcd, 3, 103, total=100000, buy_limit=1, buy_rate=0.2)
        time.sleep(1.2)
        s = self.sale(3, 103)
        uids = list(range(1, 10001))
        ids = s.feed(uids, rate=5000)
        res = s.wait(ids, timeout=60)
        codes = [r[0] for r in res.values()]
        self.assertEqual(set(codes) - {0, 1011}, set())
        n, p = 10000, 0.2
        sigma = (n * p * (1 - p))**0.5
        self.assertLess(abs(codes.count(0) - n * p), 4 * sigma, "wins %d" % codes.count(0))
        check_store(self, self.redis, 3, res, buy_limit=1)

    def test_code_precedence(self):
        """stock gone (1007) > user at buy_limit (1012) > lottery no (1011)."""
        put_activity(self.etcd, 4, 104, total=3, buy_limit=1, buy_rate=1)
        time.sleep(1.2)
        s = self.sale(4, 104)

        def one(uid):
            rid = s.queue([uid])[0]
            return s.wait([rid], timeout=10)[rid][0]

        self.assertEqual(one(1), 0)
        self.assertEqual(one(1), 1012)
        put_activity(self.etcd, 4, 104, total=3, buy_limit=1, buy_rate=0.000001)
        time.sleep(1.2)
        self.assertEqual(one(1), 1012, "buy limit before the lottery")
        self.assertEqual(one(2), 1011)
        put_activity(self.etcd, 4, 104, total=3, buy_limit=1, buy_rate=1)
        time.sleep(1.2)
        self.assertEqual(one(2), 0)
        self.assertEqual(one(3), 0)
        self.assertEqual(one(4), 1007)
        self.assertEqual(one(1), 1007, "sold out before the buy limit")
        self.assertEqual(int(self.redis.call("GET", key(4, "sold"))), 3)

    def test_request_seen_again_returns_stored_result(self):
        put_activity(self.etcd, 5, 105, total=10, buy_limit=5, buy_rate=1)
        time.sleep(1.2)
        s = self.sale(5, 105)
        s._connect()
        rid, cmd = s.entry(7)
        # the same request id twice in one pipeline (both may land in one batch), then once more later
        s.conn.pipeline([cmd, cmd])
        s.queued[rid] = (7, time.monotonic(), None, 0)
        first = s.wait([rid], timeout=10)[rid]
        self.assertEqual(first[0], 0)
        s.conn.call(*cmd)
        wait_until(lambda: len(s.replies.snapshot()[rid]) >= 3, timeout=10, msg="three answers")
        self.assertEqual(s.results()[rid], first)  # results() also fails on two different answers
        self.assertEqual(int(self.redis.call("GET", key(5, "sold"))), 1)
        self.assertEqual(int(self.redis.call("LLEN", key(5, "wins"))), 1)

    def test_deadline_in_redis_time(self):
        """An entry whose deadline passed (or that was added after it) answers 1008 and touches no stock."""
        put_activity(self.etcd, 6, 106, total=10, buy_limit=5, buy_rate=1)
        time.sleep(1.2)
        s = self.sale(6, 106)
        s._connect()
        now = s.conn.redis_ms()
        late = s.queue([1], deadline=now - 1)
        # added after its deadline: an explicit stream id 400 ms ahead, deadline 200 ms ahead
        added_late = s.queue([2], deadline=now + 200, sid="%d-0" % (now + 400))
        res = s.wait(late + added_late, timeout=10)
        self.assertEqual(res[late[0]][0], 1008)
        self.assertEqual(res[added_late[0]][0], 1008)
        self.assertIsNone(self.redis.call("GET", key(6, "sold")))
        self.assertIsNone(s.stored(late)[late[0]])
        stored = harness.stored_results(self.redis, 6)
        self.assertNotIn(late[0], stored)  # in no bucket at all
        self.assertNotIn(added_late[0], stored)
        time.sleep(0.5)  # let the clock pass the explicit id before other tests queue
        ok = s.queue([3])
        self.assertEqual(s.wait(ok, timeout=10)[ok[0]][0], 0)

    def test_unknown_activity_and_malformed_entries(self):
        put_activity(self.etcd, 8, 108, total=10, buy_limit=5, buy_rate=1)
        time.sleep(1.2)
        s = self.sale(7, 107)  # activity 7 does not exist; its entry sits in activity 8's stream, which logic reads
        unknown = s.queue([1], stream=8)
        self.assertEqual(s.wait(unknown, timeout=10)[unknown[0]][0], 1002)
        self.assertIn("1002", s.stored(unknown)[unknown[0]])  # stored, too
        wrong_product = s.queue([1], aid=8, pid=999)
        bad_uid = s.queue([1], aid=8, pid=108, drop=("uid", ))
        no_reply = s.queue([1], aid=8, pid=108, drop=("reply", ))
        res = s.wait(wrong_product + bad_uid, timeout=10)
        self.assertEqual(res[wrong_product[0]][0], 1002)
        self.assertEqual(res[bad_uid[0]][0], 1013)
        self.assertIsNone(self.redis.call("GET", key(8, "sold")))
        # the entry nobody can be answered for is still acknowledged (not left pending forever)
        sid = s.queued[no_reply[0]][2]
        wait_until(lambda: not self.redis.call("XPENDING", harness.queue_key(8), "logic", sid, sid, 1), timeout=10,
                   msg="ack of the unanswerable entry")
        for n in self.nodes:
            self.assertTrue(n.alive())

    def test_disable_mid_sale(self):
        """status 0 while requests flow: after it applies, every request answers 1009 and stock stops moving."""
        put_activity(self.etcd, 9, 109, total=100000, buy_limit=100, buy_rate=1)
        time.sleep(1.2)
        s = self.sale(9, 109)
        marks = {}

        def disable():
            put_activity(self.etcd, 9, 109, total=100000, buy_limit=100, buy_rate=1, status=0)
            marks["t"] = time.monotonic()

        def sold_after_apply():
            marks["sold"] = int(self.redis.call("GET", key(9, "sold")) or 0)

        ids = s.feed([1 + i % 100 for i in range(2000)], rate=500, events={1.5: disable, 2.8: sold_after_apply})
        res = s.wait(ids, timeout=30)
        late = [rid for rid in ids if s.queued[rid][1] > marks["t"] + 1.0]
        early = [rid for rid in ids if s.queued[rid][1] < marks["t"] - 0.2]
        self.assertGreater(len(late), 300)
        self.assertEqual({res[r][0] for r in late}, {1009})
        self.assertEqual({res[r][0] for r in early}, {0})
        self.assertEqual(int(self.redis.call("GET", key(9, "sold"))), marks["sold"], "a win after the kill switch")
        check_store(self, self.redis, 9, res)

    def test_disabled_while_queued(self):
        """Requests queued while the activity was on, decided after it was switched off: 1009, nothing sold."""
        put_activity(self.etcd, 10, 110, total=100, buy_limit=5, buy_rate=1)
        time.sleep(1.2)
        for n in self.nodes:
            self.assertEqual(n.stop(), 0)
        try:
            s = self.sale(10, 110, timeout_ms=30000)
            ids = s.queue(list(range(1, 51)))
            put_activity(self.etcd, 10, 110, total=100, buy_limit=5, buy_rate=1, status=0)
            self.nodes[0].start()
            res = s.wait(ids, timeout=30)
            self.assertEqual({r[0] for r in res.values()}, {1009})
            self.assertIsNone(self.redis.call("GET", key(10, "sold")))
        finally:
            for n in self.nodes:
                if not n.alive():
                    n.start()
            wait_alive(self.redis, self.nodes)

    def test_script_flushed_mid_sale(self):
        """SCRIPT FLUSH under running nodes: the NOSCRIPT replies make them load the script again; nothing fails."""
        put_activity(self.etcd, 12, 112, total=100000, buy_limit=1, buy_rate=1)
        time.sleep(1.2)
        s = self.sale(12, 112)
        flush = lambda: self.redis.call("SCRIPT", "FLUSH")  # noqa: E731
        ids = s.feed(list(range(1, 1501)), rate=1000, events={0.3: flush, 0.8: flush})
        res = s.wait(ids, timeout=30)
        self.assertEqual({r[0] for r in res.values()}, {0})
        check_store(self, self.redis, 12, res, buy_limit=1)
        self.assertGreater(sum(logic_status(n)["script_reloads"] for n in self.nodes), 0)
        self.assertEqual(sum(logic_status(n)["script_errors"] for n in self.nodes), 0)

    def test_queue_is_trimmed_and_status(self):
        """Acknowledged entries are trimmed (XACK frees nothing), and /status shows the decisions."""
        put_activity(self.etcd, 11, 111, total=5, buy_limit=1, buy_rate=1)
        time.sleep(1.2)
        s = self.sale(11, 111)
        ids = s.queue(list(range(1, 201)))
        s.wait(ids, timeout=20)
        wait_until(lambda: int(self.redis.call("XLEN", harness.queue_key(11))) < 50, timeout=10, msg="XTRIM")
        sts = [logic_status(n) for n in self.nodes]
        self.assertGreaterEqual(sum(st["decisions"]["1007"] for st in sts), 195)
        self.assertEqual([st["ready_workers"] for st in sts], [2, 2])
        wait_until(lambda: logic_status(self.nodes[0])["queue"]["pending"] == 0, timeout=5, msg="pending 0")
        st, _, body = harness.http("GET", self.nodes[0].status + "/metrics")
        self.assertEqual(st, 200)
        self.assertIn(b'seckill_logic_decisions_total{code="1007"}', body)


if __name__ == "__main__":
    harness.main()

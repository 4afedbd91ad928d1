"""The common part of the Redis Cluster sale tests (issue 12, SPEC §8.10 / §9): a base TestCase that starts a Redis
Cluster (sk_cluster.RedisCluster), one etcd, an admin node and N access + M logic nodes with redis.cluster = true,
creates activities until their {a<id>} tags cover every master, drives them with sk_load.OpenLoop and checks the
sale's invariants through the admin API and the cluster.

The daemon must be cluster-aware (issue 12 "The client") and use the one-slot layout ("The Redis layout"). When the
built seckilld shows neither (cluster_support()), the tests skip and say what is missing.
"""

import glob
import hashlib
import os
import shutil
import sys
import time
import unittest

import harness
import sk_wire
from harness import DEV_SECRET, Etcd, http, wait_until
from sk_cluster import RedisCluster, activity_slot, cluster_node
from sk_load import OpenLoop

PERMISSIVE = """\
-- sk_clustersale: all load comes from 127.0.0.1, so admit everything
function admit(r)
    return true
end
"""


def lua_scripts():
    """{path relative to the source tree: source bytes} of every Redis script file of the project (the redis/*.lua
    files the layout module embeds byte-identically): every .lua outside policies/, bench/, tests/ and build*/."""
    out = {}
    skip = ("policies", "bench", "tests", "node_modules", "docs", "var")
    for p in sorted(glob.glob(os.path.join(harness.SOURCE_DIR, "**", "*.lua"), recursive=True)):
        rel = os.path.relpath(p, harness.SOURCE_DIR)
        top = rel.split(os.sep)[0]
        if top.startswith("build") or top.startswith(".") or top in skip:
            continue
        with open(p, "rb") as f:
            out[rel] = f.read()
    return out


def cluster_support():
    """(ok, why). ok when the built seckilld has a cluster-aware Redis client (it sends ASKING and asks CLUSTER
    SLOTS) and the source tree has the one-slot layout's redis/*.lua scripts."""
    missing = []
    binary = os.path.join(harness.BUILD_DIR, "seckilld")
    try:
        with open(binary, "rb") as f:
            data = f.read()
    except OSError as e:
        return False, "no seckilld binary (%s)" % e
    if b"ASKING" not in data or b"SLOTS" not in data:
        missing.append("the host's Redis client is not cluster-aware (no ASKING / CLUSTER SLOTS in %s)" % binary)
    if not lua_scripts():
        missing.append("no Redis script files (redis/*.lua) in %s: the one-slot layout has not landed" %
                       harness.SOURCE_DIR)
    return (not missing), "; ".join(missing)


def akey(aid, what):
    """The Redis key `what` (sold, users, tokens, wins, q) of activity aid: from sk_wire's layout helpers when it has
    them, else the documented sk:{a<aid>}:<what>."""
    for fn in ("activity_key", "akey"):
        f = getattr(sk_wire, fn, None)
        if f is not None:
            return f(aid, what)
    f = getattr(sk_wire, "%s_key" % what, None)
    if f is not None and what != "result":
        try:
            return f(aid)
        except TypeError:
            pass
    return "sk:{a%d}:%s" % (int(aid), what)


class ClusterSale(harness.TestCase):
    test_timeout = 200
    masters, replicas, node_timeout_ms = 3, 0, 1000
    wait_replicas = None
    request_timeout_ms = 2000
    slack_ms = 1500  # Python open-loop client on two busy cores, plus redirects
    n_access, n_logic = 2, 2
    extra_conf = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ok, why = cluster_support()
        if not ok and not os.environ.get("SK_FORCE_CLUSTER_TESTS"):
            raise unittest.SkipTest("Redis Cluster support missing from this build: " + why)
        pol = os.path.join(cls.tmp, "policies")
        shutil.copytree(os.path.join(harness.SOURCE_DIR, "policies"), pol)
        with open(os.path.join(pol, "limits.lua"), "w") as f:
            f.write(PERMISSIVE)
        cls.rc = RedisCluster(cls.tmp, masters=cls.masters, replicas=cls.replicas,
                              node_timeout_ms=cls.node_timeout_ms, appendfsync="always").start()
        cls.etcd = Etcd(cls.tmp).start()
        common = dict({"policies.dir": pol, "access.request_timeout_ms": cls.request_timeout_ms,
                       "http.idle_timeout_ms": 60000}, **cls.extra_conf)
        kw = {"wait_replicas": cls.wait_replicas}
        cls.admin = cluster_node(cls.tmp, cls.rc, cls.etcd, plugins="admin", name="admin", conf=dict(common, threads=1),
                                 **kw)
        cls.access = [cluster_node(cls.tmp, cls.rc, cls.etcd, plugins="access", name="access%d" % i, conf=common, **kw)
                      for i in range(1, cls.n_access + 1)]
        cls.logic = [cluster_node(cls.tmp, cls.rc, cls.etcd, plugins="logic", name="logic%d" % i, conf=common, **kw)
                     for i in range(1, cls.n_logic + 1)]
        for n in cls.all_nodes():
            n.start(timeout=40)
        for n in cls.all_nodes():
            wait_until(lambda: http("GET", n.status + "/healthz", timeout=2)[0] == 200, timeout=30,
                       msg="%s healthy on the cluster" % n.name)

    @classmethod
    def all_nodes(cls):
        return [cls.admin] + cls.access + cls.logic

    # ---- admin ------------------------------------------------------------------------------------------------------
    def admin_ok(self, method, path, body=None, params=None):
        st, _, out = http(method, self.admin.admin + path, body=body, params=params, timeout=10)
        self.assertIsInstance(out, dict, "%s %s: %r" % (method, path, out))
        self.assertEqual(out.get("code"), 0, "%s %s %r -> %s %r" % (method, path, body, st, out))
        return out.get("data")

    def create_activities(self, per_master=2, minimum=6, total=40, buy_limit=2, speed=0, max_create=40, tag="sale"):
        """Creates one product + one activity at a time until every master holds at least per_master activities and
        there are at least `minimum`. Returns [{"pid", "aid", "total", "speed", "buy_limit", "master"}]."""
        masters = self.rc.masters()
        count = {m.port: 0 for m in masters}
        acts = []
        now = int(time.time())
        for i in range(max_create):
            if len(acts) >= minimum and min(count.values()) >= per_master:
                break
            pid = self.admin_ok("POST", "/product/create", {"product_name": "%s-%d-%d" % (tag, os.getpid(), i),
                                                            "product_total": 100000, "status": 1})["product_id"]
            sp = speed if callable(speed) is False else speed(len(acts))
            aid = self.admin_ok("POST", "/activity/create", {
                "activity_name": "%s-%d" % (tag, i), "product_id": pid, "start_time": now - 5, "end_time": now + 3600,
                "total": total, "status": 1, "speed": sp, "buy_limit": buy_limit, "buy_rate": 1})["activity_id"]
            m = self.rc.master_for_slot(activity_slot(aid))
            count[m.port] = count.get(m.port, 0) + 1
            acts.append({"pid": pid, "aid": aid, "total": total, "speed": sp, "buy_limit": buy_limit, "master": m})
        self.assertGreaterEqual(min(count.values()), per_master, "activity tags did not cover every master: %s" % count)
        for a in self.access:
            for x in acts:
                wait_until(lambda: http("GET", a.access + "/sec/info", params={"product_id": x["pid"]})[2]["data"]
                           ["status"] == "active", timeout=15, msg="activity %d active on %s" % (x["aid"], a.name))
        return acts

    def winners(self, aid):
        out, off = [], 0
        while True:
            page = self.admin_ok("GET", "/activity/winners", params={"activity_id": aid, "offset": off, "limit": 1000})
            out += page
            if len(page) < 1000:
                return out
            off += 1000

    def sold(self):
        return {a["activity_id"]: a.get("sold", 0) for a in self.admin_ok("GET", "/activity/list")}

    # ---- load -------------------------------------------------------------------------------------------------------
    def load(self, acts, rate, duration, users_per_product=60, during=None, workers=200):
        users = {x["pid"]: [9000000 + x["pid"] * 10000 + k for k in range(users_per_product)] for x in acts}
        lp = OpenLoop([a.access for a in self.access], [x["pid"] for x in acts], users, DEV_SECRET, rate=rate,
                      duration=duration, workers=workers, timeout=(self.request_timeout_ms + 1000 + self.slack_ms) / 1000 + 2)
        lp.run(during=during)
        return lp

    @property
    def bound_s(self):
        return (self.request_timeout_ms + 1000 + self.slack_ms) / 1000.0

    def check_answers(self, lp, allowed=(0, 1007, 1011, 1012)):
        """Every request answered with an envelope, in time, with an allowed code."""
        bad = [a for a in lp.answers if a.code is None]
        self.assertEqual(bad[:5], [], "unanswered: %d, e.g. %s" % (len(bad), [(b.err, b.lat) for b in bad[:5]]))
        late = [a for a in lp.answers if a.lat > self.bound_s]
        self.assertEqual(len(late), 0, "%d answers later than %.1f s (max %.2f s)" % (len(late), self.bound_s,
                                                                                  lp.max_latency()))
        codes = lp.codes()
        self.assertEqual(set(int(c) for c in codes) - set(allowed), set(), "codes %s; %s" % (codes, self.breakdown(lp)))
        self.assertGreaterEqual(len(lp.answers), 0.9 * lp.rate * lp.duration)

    @staticmethod
    def breakdown(lp):
        """Per product: its codes, and when (seconds after the load began) its first and last non-win answers came."""
        out = []
        for pid in lp.products:
            mine = [a for a in lp.answers if a.pid == pid]
            odd = sorted(a.sched - lp.t0 for a in mine if a.code not in (0, 1007, 1011, 1012))
            out.append("product %d: %s%s" % (pid, lp.codes(pid), " odd answers at %.2f..%.2f s" % (odd[0], odd[-1])
                                                                 if odd else ""))
        return "; ".join(out)

    def check_activity(self, x, lp, exact=False, told_subset_only=False):
        """§8.1-8.3 (and the tokens) for activity x: sold <= total, sold == wins told (or >= when told_subset_only),
        per user <= buy_limit, every told token among the winners and in the activity's tokens hash, sold == total
        when exact. Returns (sold, winners)."""
        aid = x["aid"]
        sold = self.sold()[aid]
        ws = self.winners(aid)
        told = lp.wins(x["pid"])
        self.assertLessEqual(sold, x["total"], "oversold activity %d" % aid)
        self.assertEqual(len(ws), sold, "winners of %d" % aid)
        if told_subset_only:
            self.assertLessEqual(len(told), sold)
        else:
            told_tokens = {a.token for a in told}
            untold = [w for w in ws if w["token"] not in told_tokens]
            detail = ["user %d (token issued at %s): answers %s" % (
                w["user_id"], w["time"], [(a.code, round(a.sched - lp.t0, 2), round(a.lat, 3), a.access[-5:])
                                          for a in lp.answers if a.pid == x["pid"] and a.uid == w["user_id"]])
                      for w in untold[:5]]
            self.assertEqual(len(told), sold, "wins told to clients == sold, activity %d; stored wins no client was "
                             "told of: %s" % (aid, detail))
        if exact:
            self.assertEqual(sold, x["total"], "undersold activity %d (buy_rate 1, demand far above the stock)" % aid)
        per_user = {}
        for w in ws:
            per_user[w["user_id"]] = per_user.get(w["user_id"], 0) + 1
        self.assertLessEqual(max(per_user.values() or [0]), x["buy_limit"], "a user over buy_limit in %d" % aid)
        tokens = {w["token"]: w["user_id"] for w in ws}
        self.assertEqual(len(tokens), len(ws), "duplicate tokens in %d" % aid)
        for a in told:
            self.assertEqual(tokens.get(a.token), a.uid, "a token told to user %d is not among the winners of %d" %
                             (a.uid, aid))
        stored = self.rc.call_key(akey(aid, "tokens"), "HLEN", akey(aid, "tokens"))
        self.assertEqual(stored, sold, "tokens hash of %d on its master" % aid)
        for a in told[:50]:
            self.assertIsNotNone(self.rc.call_key(akey(aid, "tokens"), "HGET", akey(aid, "tokens"), a.token))
        return sold, ws

    def check_speed(self, x, ws):
        per_sec = {}
        for w in ws:
            per_sec[int(w["time"])] = per_sec.get(int(w["time"]), 0) + 1
        self.assertLessEqual(max(per_sec.values() or [0]), x["speed"], "activity %d sold %s per second (speed %d)" %
                             (x["aid"], per_sec, x["speed"]))
        return per_sec

    # ---- Redis ------------------------------------------------------------------------------------------------------
    def script_calls(self):
        return {m.port: RedisCluster.script_calls(m) for m in self.rc.masters()}

    def assert_no_crossslot(self):
        for n in self.rc.nodes:
            if n.alive():
                es = RedisCluster.errorstats(n)
                self.assertNotIn("CROSSSLOT", es, "%s: INFO errorstats %s" % (n.addr, es))

    def report(self, line):
        sys.stderr.write("%s: %s\n" % (type(self).__name__, line))


def sha1_hex(b):
    return hashlib.sha1(b).hexdigest()

"""Issue 12 / SPEC §8.10 and §9: kill -9 of a master that holds a selling activity, with redis.wait_replicas = 1.
3 masters with 1 replica each, cluster-node-timeout 1000 ms, 2 access + 2 logic nodes, two activities per master,
open-loop load on all of them while a master is SIGKILLed: the one that holds a selling activity and the reply
channel of access1's first thread (the worst case for fault isolation). Asserted:
- its replica takes over (promoted, owns the slots, cluster_state:ok again);
- no client told "won" is missing: every token a client received is among /activity/winners and in the activity's
  tokens hash on the new master (WAIT 1 confirmed it on the replica before the client was told);
- no oversell: sold <= total everywhere, no user over buy_limit; a stored win no client heard of is possible only for
  a request whose answer was 1008/1013 while the master died (reported, and bounded by those answers);
- the activities on the other masters kept selling throughout: each surviving master's activities won requests
  inside the failover window (from the kill until the replica was promoted);
- every request answered within access.request_timeout_ms + 1 s (plus client slack), also on the dead master's slots.
Skipped while the build lacks the cluster-aware client or the one-slot layout.
"""

import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import sk_wire  # noqa: E402
from sk_cluster import keyslot  # noqa: E402
from sk_clustersale import ClusterSale, akey  # noqa: E402

MAX_GAP_S = 2.0  # at ~80 requests/s on the live masters' activities, a longer pause in their wins is a stall


class ClusterFailover(ClusterSale):
    replicas = 1
    node_timeout_ms = 1000
    wait_replicas = 1

    def test_kill9_master_mid_sale(self):
        acts = self.create_activities(per_master=2, minimum=6, total=1000, buy_limit=1, tag="failover")
        # the victim: the master that also holds an access thread's reply channel (sk:reply:<node_id>:<thread>), when
        # the layout names one: the worst case for "only the activities on its slots answer 1013" (SPEC §9)
        victim = acts[0]["master"]
        fmt = getattr(sk_wire, "KEY_FORMATS", {}).get("REPLY")
        if fmt:
            victim = self.rc.master_for_slot(keyslot(fmt % (self.access[0].node_id, 0)))
        victim_act = [x for x in acts if x["master"] is victim][0]
        replica = self.rc.replica_of(victim)
        self.assertIsNotNone(replica, "no replica of %s" % victim.addr)
        seen = {}

        def fault():
            time.sleep(3)
            seen["t_kill"] = time.monotonic()
            self.rc.kill_master(victim)
            seen["failover_s"] = self.rc.wait_failover(replica, timeout=30)
            seen["t_done"] = time.monotonic()

        lp = self.load(acts, rate=120, duration=12, users_per_product=3000, during=fault)
        self.report("killed %s at %.2f s into the load, replica %s promoted in %.1f s; codes %s; max latency %.0f ms" % (
            victim.addr, seen["t_kill"] - lp.t0, replica.addr, seen["failover_s"], lp.codes(), lp.max_latency() * 1000))
        self.assertEqual(replica.role(), "master")
        self.check_answers(lp, allowed=(0, 1007, 1011, 1012, 1013, 1008))
        on_victim = [x for x in acts if x["master"] is victim]
        others = [x for x in acts if x["master"] is not victim]
        for x in on_victim:
            sold, ws = self.check_activity(x, lp, told_subset_only=True)
            unknown = sum(1 for a in lp.answers if a.pid == x["pid"] and a.code in (1008, 1013))
            told = len(lp.wins(x["pid"]))
            self.report("activity %d (dead master): sold %d, told %d, 1008/1013 answers %d" % (x["aid"], sold, told,
                                                                                            unknown))
            self.assertLessEqual(sold - told, unknown, "wins nobody was told of, beyond the unknown outcomes")
            told_users = {a.uid for a in lp.wins(x["pid"])}
            untold = [w for w in ws if w["user_id"] not in told_users]
            if untold:
                codes = {a.code for a in lp.answers if a.pid == x["pid"] and a.uid in {w["user_id"] for w in untold}}
                self.report("activity %d: %d stored win(s) whose client was answered %s (SPEC §8.5: a 1008/1013 "
                            "consumes no stock)" % (x["aid"], len(untold), codes))
            tokens = set(self.rc.call_key(akey(x["aid"], "tokens"), "HKEYS", akey(x["aid"], "tokens")) or [])
            lost = [a for a in lp.wins(x["pid"]) if a.token not in tokens]
            self.assertEqual(lost, [], "wins told to clients are missing on the promoted replica")
        problems = []  # gathered, so that one run shows every way the live masters' sale suffered
        for x in others:
            try:
                self.check_activity(x, lp)
            except AssertionError as e:
                problems.append("activity %d on live master %d: %s" % (x["aid"], x["master"].port, e))
        # the other masters kept selling through the failover window: no gap of more than MAX_GAP_S between their wins
        ends = sorted(a.sched + a.lat for a in lp.answers if a.code == 0 and a.pid in {x["pid"] for x in others})
        inside = [seen["t_kill"]] + [t for t in ends if seen["t_kill"] <= t <= seen["t_done"]] + [seen["t_done"]]
        gap = max(b - a for a, b in zip(inside, inside[1:]))
        self.report("longest gap between wins on the live masters during the failover: %.2f s" % gap)
        self.assertLessEqual(gap, MAX_GAP_S, "the live masters' activities stalled during the failover")
        for m in {x["master"].port for x in others}:
            mine = {x["pid"] for x in others if x["master"].port == m}
            inside = [a for a in lp.answers if a.pid in mine and a.code == 0
                      and seen["t_kill"] <= a.sched + a.lat <= seen["t_done"]]
            self.report("master %d: %d wins inside the failover window" % (m, len(inside)))
            self.assertGreater(len(inside), 0, "master %d's activities stopped selling during the failover" % m)
            bad = [a for a in lp.answers if a.pid in mine and a.code in (1008, 1013)]
            if bad:
                problems.append("activities on live master %d answered 1008/1013: %d (%s), at %s s after the kill"
                             " (the replica was promoted %.2f s after it)" % (
                                 m, len(bad), {a.code for a in bad},
                                 sorted(round(a.sched - seen["t_kill"], 2) for a in bad)[:20],
                                 seen["t_done"] - seen["t_kill"]) + "; per activity and access node: %s" % sorted(
                                     collections.Counter((a.pid, a.access, a.msg) for a in bad).items()))
        if problems:
            self.fail("\n".join(problems))
        self.assert_no_crossslot()
        for n in self.all_nodes():
            self.assertTrue(n.alive(), n.tail())


if __name__ == "__main__":
    harness.main()

"""The etcd list + watch of a node (SPEC §6), against a real etcd started with
--experimental-watch-progress-notify-interval=1s, observed through GET /status ("etcd" object):

- a key change is applied within 1 s;
- a bad value is skipped, shown in "errors", and the last good version stays;
- deleting a policy key brings the policy file back;
- etcd killed, nothing changed, etcd restarted, then a change: the node catches up;
- etcd stopped and restarted, changes and a compaction past the node's revision while the node was away: the node
  re-lists and ends with exactly etcd's content;
- a stopped (SIGSTOP) etcd is detected as dead, and the node recovers when it resumes;
- a node started while etcd is down serves the policy files, then loads etcd when it comes.

The node loads only the logic plugin: the admin plugin reconciles etcd with its SQLite store at start, which would
fight the keys this test writes by hand.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Etcd, Node, Redis, http, wait_until  # noqa: E402

P = "/seckill/"


def activity(aid, pid=1, total=20, status=1, name=None):
    now = int(time.time())
    return json.dumps({
        "activity_id": aid, "activity_name": name or "sale %d" % aid, "product_id": pid, "start_time": now - 60,
        "end_time": now + 3600, "total": total, "status": status, "speed": 0, "buy_limit": 1, "buy_rate": 1
    })


def product(pid, total=100, name=None):
    return json.dumps({"product_id": pid, "product_name": name or "p%d" % pid, "product_total": total, "status": 1})


def policy_file(name):
    with open(os.path.join(harness.SOURCE_DIR, "policies", name)) as f:
        return f.read()


class EtcdNodeMixin:

    def etcd_status(self, node=None):
        st, _, body = http("GET", (node or self.node).status + "/status", timeout=3)
        self.assertEqual(st, 200, body)
        return body["etcd"]

    def wait_healthz(self, want, node=None):
        """Waits until GET /healthz answers 200 with status `want` (the host's Redis check comes up shortly after
        the start)."""
        url = (node or self.node).status + "/healthz"
        wait_until(lambda: http("GET", url, timeout=2)[:3:2] == (200, {"status": want}), timeout=10,
                   msg="healthz %s" % want)

    def wait_status(self, pred, timeout=10.0, msg="etcd status", node=None):
        """Polls /status until pred(etcd_object) is true; returns (object, seconds waited)."""
        t0 = time.monotonic()
        last = {}

        def check():
            last["s"] = self.etcd_status(node)
            return pred(last["s"])

        try:
            wait_until(check, timeout=timeout, interval=0.02, msg=msg)
        except AssertionError:
            raise AssertionError("%s; last etcd status: %s\n%s" % (msg, json.dumps(last.get("s")),
                                                                    (node or self.node).tail(20))) from None
        return last["s"], time.monotonic() - t0

    @staticmethod
    def acts(s):
        return {a["activity_id"]: a for a in s["snapshot"]["activity_list"]}

    @staticmethod
    def pol(s, name):
        for p in s["snapshot"]["policies"]:
            if p["name"] == name:
                return p
        return None

    @staticmethod
    def error_keys(s):
        return {e["key"]: e for e in s["errors"]}

    def assert_matches_etcd(self, s):
        """The node's snapshot holds exactly the valid activities etcd has now."""
        want = {}
        for k, v in self.etcd.get_prefix(P + "activities/").items():
            try:
                a = json.loads(v)
                want[a["activity_id"]] = a["total"]
            except (ValueError, KeyError):
                pass
        got = {aid: a["total"] for aid, a in self.acts(s).items()}
        self.assertEqual(got, want)


class EtcdWatchTest(EtcdNodeMixin, harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp, progress_interval="1s").start()
        cls.etcd.put(P + "products/1", product(1))
        cls.rev0 = cls.etcd.put(P + "activities/1", activity(1, total=20))
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="logic").start()

    def test_1_initial_list(self):
        s, _ = self.wait_status(lambda s: s["state"] == "watching" and s["up"], msg="watching")
        self.assertGreaterEqual(s["revision"], self.rev0)
        self.assertEqual(s["snapshot"]["products"], 1)
        self.assertEqual(self.acts(s)[1]["total"], 20)
        self.assertGreaterEqual(s["relists"], 1)
        self.assertEqual(s["errors"], [])
        self.assertEqual(s["endpoint"], self.etcd.endpoint)
        # without an etcd version, every policy comes from the files (revision 0)
        self.assertEqual(sorted(p["name"] for p in s["snapshot"]["policies"]),
                         ["buy_rate.lua", "limits.lua", "token.lua"])
        self.assertTrue(all(p["revision"] == 0 for p in s["snapshot"]["policies"]))

    def test_2_change_applied_within_1s(self):
        self.wait_status(lambda s: s["state"] == "watching", msg="watching")
        for total in (30, 31, 32):
            rev = self.etcd.put(P + "activities/2", activity(2, total=total))
            s, took = self.wait_status(lambda s: s["revision"] >= rev and self.acts(s).get(2, {}).get("total") == total,
                                       timeout=5, msg="activity 2 total %d" % total)
            self.assertLess(took, 1.0, "change applied after %.3f s" % took)
        self.etcd.delete(P + "activities/2")
        s, took = self.wait_status(lambda s: 2 not in self.acts(s), timeout=5, msg="activity 2 deleted")
        self.assertLess(took, 1.0)

    def test_3_bad_value_skipped_and_shown(self):
        good = self.etcd.put(P + "activities/3", activity(3, total=7))
        self.wait_status(lambda s: self.acts(s).get(3, {}).get("total") == 7, msg="activity 3")
        bad = self.etcd.put(P + "activities/3", '{"activity_id": 3, "total": ')
        s, _ = self.wait_status(lambda s: "activities/3" in self.error_keys(s), msg="bad JSON listed")
        err = self.error_keys(s)["activities/3"]
        self.assertEqual(err["revision"], bad)
        self.assertIn("JSON", err["error"])
        self.assertEqual(self.acts(s)[3]["total"], 7, "the last good version stays")
        self.assertGreater(bad, good)
        # out of range, and an id that does not match the key
        self.etcd.put(P + "activities/3", activity(3, total=0))
        s, _ = self.wait_status(lambda s: "total" in self.error_keys(s).get("activities/3", {}).get("error", ""),
                                msg="total out of range")
        self.etcd.put(P + "activities/4", activity(5))
        s, _ = self.wait_status(lambda s: "activities/4" in self.error_keys(s), msg="mismatched id listed")
        self.assertNotIn(4, self.acts(s))
        self.assertNotIn(5, self.acts(s))
        # a policy that does not compile is skipped too; the file version stays in effect
        self.etcd.put(P + "policies/limits.lua", "function admit(r) return (")
        s, _ = self.wait_status(lambda s: "policies/limits.lua" in self.error_keys(s), msg="bad policy listed")
        self.assertEqual(self.pol(s, "limits.lua")["revision"], 0)
        self.assertIn("skipped", self.node.log_text())
        # fixing the values clears the errors
        self.etcd.put(P + "activities/3", activity(3, total=8))
        self.etcd.delete(P + "activities/4")
        self.etcd.delete(P + "policies/limits.lua")
        s, _ = self.wait_status(lambda s: s["errors"] == [] and self.acts(s).get(3, {}).get("total") == 8,
                                msg="errors cleared")
        self.assertEqual(s["error_count"], 0)

    def test_4_policy_override_and_delete(self):
        src = policy_file("buy_rate.lua") + "\n-- etcd override\n"
        rev = self.etcd.put(P + "policies/buy_rate.lua", src)
        s, took = self.wait_status(lambda s: (self.pol(s, "buy_rate.lua") or {}).get("revision") == rev,
                                   msg="policy from etcd")
        self.assertLess(took, 1.0)
        self.etcd.delete(P + "policies/buy_rate.lua")
        s, _ = self.wait_status(lambda s: (self.pol(s, "buy_rate.lua") or {}).get("revision") == 0,
                                msg="file back after delete")

    def test_5_kill_restart_catch_up(self):
        self.wait_status(lambda s: s["state"] == "watching", msg="watching")
        self.wait_healthz("ok")
        self.etcd.kill()
        s, took = self.wait_status(lambda s: not s["up"], timeout=10, msg="down after kill")
        self.assertTrue(s["last_error"])
        st, _, body = http("GET", self.node.status + "/healthz")
        self.assertEqual((st, body.get("status")), (200, "degraded"))
        time.sleep(1.5)  # a few reconnect attempts against a dead endpoint
        self.assertFalse(self.etcd_status()["up"])
        self.etcd.start()
        rev = self.etcd.put(P + "activities/6", activity(6, total=66))
        s, took = self.wait_status(lambda s: s["up"] and self.acts(s).get(6, {}).get("total") == 66, timeout=10,
                                   msg="caught up after restart")
        self.assertGreaterEqual(s["revision"], rev)
        self.assert_matches_etcd(s)
        self.wait_healthz("ok")

    def test_6_compacted_while_away(self):
        s, _ = self.wait_status(lambda s: s["state"] == "watching", msg="watching")
        relists = s["relists"]
        # The node is frozen so that etcd's restart, the changes and the compaction all happen while it is away.
        self.node.pause()
        try:
            self.etcd.stop()
            self.etcd.start()
            self.etcd.delete(P + "activities/1")
            self.etcd.put(P + "activities/7", activity(7, total=77))
            self.etcd.put(P + "activities/3", activity(3, total=33))
            self.etcd.put(P + "activities/8", "not json")
            last = self.etcd.put(P + "products/2", product(2))
            self.etcd.ctl("compact", str(last))
        finally:
            self.node.resume()
        s, took = self.wait_status(lambda s: s["relists"] > relists and s["revision"] >= last and s["up"], timeout=15,
                                   msg="re-listed after compaction")
        self.assert_matches_etcd(s)
        self.assertNotIn(1, self.acts(s))
        self.assertEqual(self.acts(s)[7]["total"], 77)
        self.assertEqual(self.acts(s)[3]["total"], 33)
        self.assertEqual(s["snapshot"]["products"], 2)
        self.assertIn("activities/8", self.error_keys(s))
        self.assertIn("compacted", self.node.log_text())
        # and the new watch works
        rev = self.etcd.put(P + "activities/7", activity(7, total=78))
        self.wait_status(lambda s: s["revision"] >= rev and self.acts(s)[7]["total"] == 78, timeout=3,
                         msg="watching after the re-list")

    def test_7_stopped_etcd_is_dead(self):
        # the node learns etcd's progress interval (1 s here) from two notifications on one stream
        s, _ = self.wait_status(lambda s: s["state"] == "watching" and 500 < s["progress_interval_ms"] < 1500,
                                timeout=10, msg="progress interval learned")
        time.sleep(0.5)
        self.etcd.pause()
        try:
            s, took = self.wait_status(lambda s: not s["up"], timeout=15, msg="a silent stream is detected")
            # 2.5 intervals of silence, plus the 0.5 s check period; a re-watch probe would take 5 s + 2 s
            self.assertLess(took, 5.0)
            self.assertIn("progress intervals", s["last_error"])
        finally:
            self.etcd.resume()
        rev = self.etcd.put(P + "activities/9", activity(9, total=9))
        s, _ = self.wait_status(lambda s: s["up"] and s["revision"] >= rev and 9 in self.acts(s), timeout=10,
                                msg="recovered after SIGCONT")
        self.assert_matches_etcd(s)


class EtcdDownAtStartTest(EtcdNodeMixin, harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp, progress_interval="1s").start()
        cls.rev = cls.etcd.put(P + "activities/1", activity(1, total=11))
        cls.etcd.stop()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd, plugins="logic").start()

    def test_files_then_etcd(self):
        # the control thread publishes the policy files as soon as its first list failed
        s, took = self.wait_status(lambda s: len(s["snapshot"]["policies"]) == 3, timeout=5, msg="policy files")
        self.assertFalse(s["up"])
        self.assertEqual(s["state"], "down")
        self.assertEqual(s["snapshot"]["activities"], 0)
        self.assertTrue(all(p["revision"] == 0 for p in s["snapshot"]["policies"]))
        self.wait_healthz("degraded")
        self.assertFalse(self.etcd_status()["up"])
        self.etcd.start()
        s, _ = self.wait_status(lambda s: s["up"] and self.acts(s).get(1, {}).get("total") == 11, timeout=10,
                                msg="loaded once etcd is up")
        self.assertGreaterEqual(s["revision"], self.rev)


if __name__ == "__main__":
    harness.main()

"""redis.queue_addr with redis.cluster: the queues on one plain Redis without AOF, the data on a 3-master Redis Cluster
(AOF always), 2 access + 2 logic nodes. A fault-free open-loop sale over activities on every master: every request
answered in time, no 1008 or 1013, every activity sells exactly its total with no user over buy_limit, the streams are
on the queue Redis and on no master, and no master saw CROSSSLOT.
"""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Redis  # noqa: E402
from sk_clustersale import ClusterSale, akey  # noqa: E402


class ClusterQueueRedisTest(ClusterSale):

    @classmethod
    def setUpClass(cls):
        # the class directory is made by the base class, so the queue Redis gets its own
        cls.qdir = tempfile.mkdtemp(prefix="sk-cluster-queue-")
        cls.qredis = Redis(cls.qdir, extra_args=["--appendonly", "no"]).start()
        cls.extra_conf = {"redis.queue_addr": cls.qredis.addr}
        try:
            super().setUpClass()
        except BaseException:
            cls.qredis.kill()
            shutil.rmtree(cls.qdir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.qredis.kill()
            shutil.rmtree(cls.qdir, ignore_errors=True)

    def test_sale_with_queue_elsewhere(self):
        acts = self.create_activities(per_master=1, minimum=3, total=40, buy_limit=2, tag="cq")
        lp = self.load(acts, rate=100, duration=6, users_per_product=60)
        self.check_answers(lp)
        codes = lp.codes()
        self.assertNotIn("1008", codes)
        self.assertNotIn("1013", codes)
        for x in acts:
            self.check_activity(x, lp, exact=True)
            q = akey(x["aid"], "queue")
            self.assertEqual(self.qredis.call("EXISTS", q), 1, "stream %s on the queue Redis" % q)
            self.assertEqual(self.rc.call_key(q, "EXISTS", q), 0, "stream %s on its master" % q)
        self.assert_no_crossslot()
        self.report("codes %s, max latency %.0f ms" % (codes, lp.max_latency() * 1000))


if __name__ == "__main__":
    harness.main()

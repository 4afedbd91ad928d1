"""The operators' console in a real browser (Debian's headless Chromium, driven by playwright-core).

Two nodes against one Redis and one etcd: A (access, logic, admin, with admin.token) and B (access only). The
browser script tests/browser/console.mjs logs in with the token, creates a product and an activity through the UI
(and sees a validation error next to its field), saves a policy with a syntax error (and sees its line), runs one
seckill-bench against each access node at once, and checks that the dashboard shows the wins and a rate for each
node. Its screenshots are kept in BUILD_DIR/artifacts: dashboard.png (the README's docs/dashboard.png is one),
activity-error.png and policy-error.png. Both nodes run the ASan+UBSan build when scripts/test.sh has made one.

Also, without a browser: the console's files with their Content-Type, path traversal refused, the token and the
Origin rule on /dashboard/data, and the shape of its answer.
"""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import BUILD_DIR, SOURCE_DIR, Etcd, Node, Redis  # noqa: E402

TOKEN = "console-test-admin-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
BROWSER_DIR = os.path.join(SOURCE_DIR, "tests", "browser")
CONSOLE_DIR = os.path.join(SOURCE_DIR, "plugins", "admin", "console")


def hostport(url):
    return url.split("://", 1)[1]


class ConsoleTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        conf = {"admin.console_dir": CONSOLE_DIR}
        # under scripts/test.sh both run the ASan+UBSan build (the publisher and the dashboard are new C code)
        env = {"LSAN_OPTIONS": "suppressions=" + os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan-h2o.supp")}
        cls.a = Node(cls.tmp, cls.redis, cls.etcd, name="consoleA", conf=dict(conf, **{"admin.token": TOKEN}),
                     asan=True, env=env).start()
        cls.b = Node(cls.tmp, cls.redis, cls.etcd, plugins="access", name="consoleB", conf=conf, asan=True,
                     env=env).start()
        for n in (cls.a, cls.b):
            harness.wait_until(lambda n=n: harness.http("GET", n.status + "/healthz")[0] == 200, timeout=20,
                               msg="node healthy")
        cls.auth = {"Authorization": "Bearer " + TOKEN}

    @classmethod
    def tearDownClass(cls):
        # stopped here so that a leak or an error at exit is seen (LeakSanitizer reports when the process ends)
        reports = []
        for n in (cls.a, cls.b):
            n.stop()
            if n.sanitizer_report():
                reports.append("%s: %s" % (n.name, n.sanitizer_report()))
        super().tearDownClass()
        if reports:
            raise AssertionError("sanitizer reports:\n" + "\n".join(reports))

    def get(self, path, headers=None):
        return harness.http("GET", self.a.admin + path, headers=headers)

    def test_1_files(self):
        for path, ctype in (("/", "text/html"), ("/console/app.js", "text/javascript"), ("/console/app.css", "text/css"),
                            ("/console/chart.js", "text/javascript")):
            st, hdr, body = self.get(path)
            self.assertEqual(st, 200, path)
            self.assertTrue(hdr["content-type"].startswith(ctype), (path, hdr["content-type"]))
        st, _, body = self.get("/console/chart.js")
        self.assertIn(b"Chart.js v", body[:200])
        for bad in ("/console/../admin.h", "/console/%2e%2e/admin.h", "/console/.hidden.js", "/console/app.sh",
                    "/console/a%2fb.js", "/console/" + "a" * 80 + ".js"):
            st, _, _ = self.get(bad)
            self.assertEqual(st, 404, bad)
        st, _, body = self.get("/healthz")
        self.assertEqual((st, body), (200, {"status": "ok"}))

    def test_2_dashboard_data_auth_and_shape(self):
        st, _, body = self.get("/dashboard/data")
        self.assertEqual((st, body["code"]), (401, 1015))
        st, _, body = self.get("/dashboard/data", headers=dict(self.auth, Origin="http://evil.example"))
        self.assertEqual((st, body["code"]), (401, 1015))
        # the console's own requests carry its origin, which is the admin's host
        same = dict(self.auth, Origin=self.a.admin)

        def both_nodes():
            st, _, body = self.get("/dashboard/data", headers=same)
            ids = {n["node_id"] for n in body["data"]["nodes"]} if st == 200 else set()
            return body if {self.a.node_id, self.b.node_id} <= ids else None

        body = harness.wait_until(both_nodes, timeout=10, msg="both nodes published")
        data = body["data"]
        self.assertGreater(data["now_ms"], 0)
        nb = next(n for n in data["nodes"] if n["node_id"] == self.b.node_id)
        self.assertEqual(nb["roles"], ["access"])
        for k in ("ts_ms", "started_ms", "wins", "codes", "paths", "lat", "policies", "redis", "etcd"):
            self.assertIn(k, nb)
        self.assertEqual(len(nb["lat"]["counts"]), len(nb["lat"]["le_us"]) + 1)
        self.assertEqual(sorted(p["name"] for p in nb["policies"]), ["buy_rate.lua", "limits.lua", "token.lua"])
        self.assertIsInstance(data["activities"], list)
        # a node that stops leaves the dashboard once its hash expires
        key = "sk:stats:" + self.b.node_id
        self.assertGreater(int(self.redis.call("PTTL", key)), 0)

    def test_3_browser(self):
        node = shutil.which("node")
        if not (os.access(CHROMIUM, os.X_OK) and node and os.path.isdir(os.path.join(BROWSER_DIR, "node_modules"))):
            self.fail("chromium, node or tests/browser/node_modules missing: run scripts/setup.sh")
        artifacts = os.path.join(BUILD_DIR, "artifacts")
        os.makedirs(artifacts, exist_ok=True)
        shot = os.path.join(artifacts, "dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        cfg = {
            "admin": self.a.admin, "token": TOKEN, "chromium": CHROMIUM, "shot": shot,
            "bench": os.path.join(BUILD_DIR, "seckill-bench"), "redis": self.redis.addr, "secret": harness.DEV_SECRET,
            "benches": [{"access": hostport(self.a.access), "node_id": self.a.node_id},
                        {"access": hostport(self.b.access), "node_id": self.b.node_id}],
        }
        env = dict(os.environ, SK_CONSOLE_TEST=json.dumps(cfg), HOME=self.tmp)
        t0 = time.time()
        r = subprocess.run([node, os.path.join(BROWSER_DIR, "console.mjs")], cwd=BROWSER_DIR, env=env,
                           capture_output=True, text=True, timeout=120)
        out = r.stdout + r.stderr
        print(out)
        print("browser run: %.1f s" % (time.time() - t0))
        self.assertEqual(r.returncode, 0, out + "\n" + self.a.tail() + "\n" + self.b.tail())
        self.assertIn("all checks passed", r.stdout)
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    harness.main()

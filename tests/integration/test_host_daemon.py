"""The host daemon: command line, --check, start-up refusals, the status listener, Redis health, SIGTERM."""

import os
import signal
import time

import harness
from harness import Etcd, Node, Redis, http, run_seckilld, wait_until, write_conf


class CheckTest(harness.TestCase):
    """`seckilld --check` and the refusals that need no server."""

    def conf(self, **kv):
        path = os.path.join(self.tmp, "c%d.conf" % int(time.time() * 1e6))
        base = {"policies.dir": os.path.join(harness.SOURCE_DIR, "policies")}
        base.update({k.replace("__", "."): v for k, v in kv.items()})
        write_conf(path, base)
        return path

    def test_check_ok(self):
        rc, out, err = run_seckilld(["-c", self.conf(), "--check"])
        self.assertEqual(rc, 0, err)
        self.assertIn("OK", out)

    def test_check_names_bad_key(self):
        cases = [
            ({"threads": "lots"}, "threads"),
            ({"redis__timeout_ms": "0"}, "redis.timeout_ms"),
            ({"access__listen": "nowhere"}, "access.listen"),
            ({"etcd__prefix": "noslash"}, "etcd.prefix"),
            ({"log__level": "chatty"}, "log.level"),
            ({"no__such__key": "1"}, "no.such.key"),
        ]
        for kv, key in cases:
            rc, out, err = run_seckilld(["-c", self.conf(**kv), "--check"])
            self.assertNotEqual(rc, 0, kv)
            self.assertIn(key, err, kv)

    def test_set_overrides_and_errors(self):
        path = self.conf()
        rc, _, err = run_seckilld(["-c", path, "--set", "threads=3", "--check"])
        self.assertEqual(rc, 0, err)
        rc, _, err = run_seckilld(["-c", path, "--set", "bogus=1", "--check"])
        self.assertNotEqual(rc, 0)
        self.assertIn("bogus", err)
        rc, _, err = run_seckilld(["-c", path, "--set", "auth.window=abc", "--check"])
        self.assertNotEqual(rc, 0)
        self.assertIn("auth.window", err)

    def test_missing_file_and_usage(self):
        rc, _, err = run_seckilld(["-c", os.path.join(self.tmp, "nope.conf"), "--check"])
        self.assertNotEqual(rc, 0)
        self.assertIn("nope.conf", err)
        rc, _, err = run_seckilld(["--frobnicate"])
        self.assertNotEqual(rc, 0)

    def test_refuses_public_listener_with_default_secrets(self):
        rc, _, err = run_seckilld(["-c", self.conf(access__listen="0.0.0.0:18082"), "--check"])
        self.assertNotEqual(rc, 0)
        self.assertIn("auth.secret", err)
        rc, _, err = run_seckilld(["-c", self.conf(access__listen="0.0.0.0:18082", auth__secret="prod-secret-1"),
                                   "--check"])
        self.assertNotEqual(rc, 0)
        self.assertIn("logic.token_secret", err)
        rc, _, err = run_seckilld(["-c", self.conf(access__listen="0.0.0.0:18082", auth__secret="prod-secret-1",
                                                   logic__token_secret="prod-secret-2"), "--check"])
        self.assertEqual(rc, 0, err)

    def test_refuses_public_admin_without_token(self):
        kv = dict(admin__listen="0.0.0.0:18081", auth__secret="prod-secret-1", logic__token_secret="prod-secret-2")
        rc, _, err = run_seckilld(["-c", self.conf(**kv), "--check"])
        self.assertNotEqual(rc, 0)
        self.assertIn("admin.token", err)
        kv["admin__token"] = "an-admin-token"
        rc, _, err = run_seckilld(["-c", self.conf(**kv), "--check"])
        self.assertEqual(rc, 0, err)

    def test_check_rejects_broken_policy_dir(self):
        pdir = os.path.join(self.tmp, "badpolicies")
        os.makedirs(pdir, exist_ok=True)
        for name in ("limits.lua", "buy_rate.lua", "token.lua"):
            with open(os.path.join(harness.SOURCE_DIR, "policies", name)) as src, \
                    open(os.path.join(pdir, name), "w") as dst:
                dst.write(src.read())
        with open(os.path.join(pdir, "limits.lua"), "w") as f:
            f.write("function admit(r)\n  return true +\nend\n")
        rc, _, err = run_seckilld(["-c", self.conf(policies__dir=pdir), "--check"])
        self.assertNotEqual(rc, 0)
        self.assertIn("limits.lua", err)


class RunningNodeTest(harness.TestCase):
    """A node with all three plugins against real Redis and etcd."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()
        cls.node = Node(cls.tmp, cls.redis, cls.etcd).start()
        wait_until(lambda: http("GET", cls.node.status + "/healthz")[0] == 200, timeout=10)

    def test_healthz_everywhere(self):
        for base in (self.node.status, self.node.access, self.node.admin):
            st, hdr, body = http("GET", base + "/healthz")
            self.assertEqual(st, 200)
            self.assertEqual(body, {"status": "ok"})
            self.assertTrue(hdr["content-type"].startswith("application/json"))

    def test_status_json(self):
        st, _, body = http("GET", self.node.status + "/status")
        self.assertEqual(st, 200)
        self.assertEqual(body["node_id"], self.node.node_id)
        names = sorted(p["name"] for p in body["plugins"])
        self.assertEqual(names, ["access", "admin", "logic"])
        for p in body["plugins"]:
            self.assertTrue(p["version"])
        self.assertEqual(body["redis"]["state"], "up")
        self.assertIn("state", body["etcd"])
        self.assertGreaterEqual(body["uptime_s"], 0)
        pol = {p["name"]: p for p in body["policies"]}
        for name in ("limits.lua", "buy_rate.lua", "token.lua"):
            self.assertIn(name, pol)

    def test_metrics_text(self):
        http("GET", self.node.access + "/sec/info?product_id=1")
        http("GET", self.node.access + "/sec/no-such-%d" % os.getpid())
        st, hdr, body = http("GET", self.node.status + "/metrics")
        self.assertEqual(st, 200)
        text = body.decode() if isinstance(body, bytes) else str(body)
        self.assertIn("seckill_requests_total{", text)
        # labelled by the real path, and an unknown path by one shared label, never by itself
        self.assertIn('seckill_requests_total{plugin="access",path="/sec/info",code="1002"}', text)
        self.assertIn('path="other"', text)
        self.assertNotIn('path="/sec/"', text)
        self.assertNotIn("no-such", text)
        self.assertIn("seckill_request_duration_seconds_bucket{", text)
        self.assertIn("seckill_redis_up 1", text)

    def test_public_port_serves_only_its_api(self):
        for path in ("/status", "/metrics", "/product/list", "/"):
            st, _, body = http("GET", self.node.access + path)
            self.assertEqual(st, 404, path)
            self.assertEqual(body["code"], 1002, path)
        st, _, body = http("GET", self.node.status + "/sec/info?product_id=1")
        self.assertEqual(st, 404)

    def test_malformed_http_does_not_hurt(self):
        import socket
        for junk in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"G" * 100000 + b"\r\n\r\n"):
            s = socket.create_connection(("127.0.0.1", int(self.node.conf["access.listen"].split(":")[1])), timeout=5)
            try:
                s.sendall(junk)
                s.recv(4096)
            except OSError:
                pass
            finally:
                s.close()
        st, _, _ = http("GET", self.node.access + "/healthz")
        self.assertEqual(st, 200)

    def test_duplicate_node_id_refused(self):
        twin = Node(self.tmp, self.redis, self.etcd, conf={"node_id": self.node.node_id}, name="twin")
        twin.write_conf()
        rc, _, err = run_seckilld(["-c", twin.conf_path], timeout=30)
        self.assertNotEqual(rc, 0)
        self.assertIn("node_id", err)
        self.assertIn("already", err)


class RedisHealthTest(harness.TestCase):
    """/status and /healthz follow Redis going down and coming back."""

    def test_redis_down_and_back(self):
        redis = Redis(self.tmp).start()
        etcd = Etcd(self.tmp).start()
        node = Node(self.tmp, redis, etcd).start()
        wait_until(lambda: http("GET", node.status + "/status")[2]["redis"]["state"] == "up", timeout=10)
        redis.stop()
        wait_until(lambda: http("GET", node.status + "/status")[2]["redis"]["state"] == "down", timeout=10)
        st, _, body = http("GET", node.status + "/healthz")
        self.assertEqual(st, 503)
        redis.start()
        wait_until(lambda: http("GET", node.status + "/status")[2]["redis"]["state"] == "up", timeout=10)
        wait_until(lambda: http("GET", node.status + "/healthz")[0] == 200, timeout=10)
        self.assertEqual(node.stop(), 0)

    def test_etcd_down_is_degraded(self):
        redis = Redis(self.tmp).start()
        etcd = Etcd(self.tmp).start()
        node = Node(self.tmp, redis, etcd).start()
        wait_until(lambda: http("GET", node.status + "/healthz")[2] == {"status": "ok"}, timeout=10)
        etcd.stop()
        wait_until(lambda: http("GET", node.status + "/healthz")[2] == {"status": "degraded"}, timeout=15)
        self.assertEqual(http("GET", node.status + "/healthz")[0], 200)
        etcd.start()
        wait_until(lambda: http("GET", node.status + "/healthz")[2] == {"status": "ok"}, timeout=15)
        node.stop()

    def test_sigterm_exits_zero(self):
        redis = Redis(self.tmp).start()
        etcd = Etcd(self.tmp).start()
        node = Node(self.tmp, redis, etcd).start()
        t0 = time.time()
        self.assertEqual(node.stop(timeout=15), 0)
        self.assertLess(time.time() - t0, 10)
        self.assertIn("stopped", node.log_text())


if __name__ == "__main__":
    harness.main()

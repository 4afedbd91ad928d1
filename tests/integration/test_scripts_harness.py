"""Tests of tests/integration/harness.py itself: real Redis and etcd processes, ports, cleanup."""

import base64
import hashlib
import hmac
import http.client as httpclient
import http.server as httpserver
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEV_SECRET, Etcd, Node, Redis, http, sign, signed_params, user_key, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def pid_dead(pid):
    """True when pid is gone or a zombie (a reparented zombie may wait for init to reap it)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def run_script(body, timeout=60, **kw):
    """Run a Python snippet that imports the harness; returns the Popen (stdout/stderr piped)."""
    code = "import sys; sys.path.insert(0, %r)\n" % HERE + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


class RedisTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()

    def test_cli_and_call(self):
        self.assertEqual(self.redis.cli("SET", "k1", "hello world"), "OK")
        self.assertEqual(self.redis.call("GET", "k1"), "hello world")
        self.assertEqual(self.redis.cli("GET", "k1"), "hello world")
        self.assertEqual(self.redis.call("INCRBY", "n1", 5), 5)
        self.assertIsNone(self.redis.call("GET", "nope"))
        with self.assertRaises(harness.RedisError):
            self.redis.call("NOSUCHCOMMAND")
        self.assertEqual(self.redis.addr, "127.0.0.1:%d" % self.redis.port)

    def test_aof_always_on_loopback(self):
        self.assertEqual(self.redis.call("CONFIG", "GET", "appendonly"), ["appendonly", "yes"])
        self.assertEqual(self.redis.call("CONFIG", "GET", "appendfsync"), ["appendfsync", "always"])
        self.assertEqual(self.redis.call("CONFIG", "GET", "bind")[1], "127.0.0.1")
        self.assertTrue(self.redis.dir.startswith(self.tmp))

    def test_pause_resume(self):
        self.redis.pause()
        try:
            # A stopped Redis still accepts TCP connects (the kernel does), but never answers.
            t0 = time.monotonic()
            with self.assertRaises(OSError):
                self.redis.call("PING", timeout=0.5)
            self.assertLess(time.monotonic() - t0, 3)
        finally:
            self.redis.resume()
        self.assertEqual(self.redis.call("PING"), "PONG")

    def test_kill_restart_keeps_data_and_port(self):
        r = Redis(self.tmp).start()
        for _ in range(7):
            r.call("INCR", "sold")
        port, pid = r.port, r.pid
        r.kill()
        self.assertFalse(r.alive())
        self.assertFalse(harness.port_is_listening(port))
        r.restart()
        self.assertEqual(r.port, port)
        self.assertNotEqual(r.pid, pid)
        self.assertEqual(r.call("GET", "sold"), "7")  # AOF with appendfsync always survives SIGKILL
        self.assertEqual(r.stop(), 0)
        self.assertFalse(harness.port_is_listening(port))
        self.assertTrue(pid_dead(pid))

    def test_password(self):
        r = Redis(self.tmp, password="s3cret").start()
        self.assertEqual(r.call("PING"), "PONG")
        self.assertEqual(r.cli("PING"), "PONG")
        with socket.create_connection(("127.0.0.1", r.port), timeout=2) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            self.assertIn(b"NOAUTH", s.recv(200))
        r.stop()


class EtcdTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.etcd = Etcd(cls.tmp).start()

    def test_put_get_ctl(self):
        e = self.etcd
        self.assertTrue(e.endpoint.startswith("http://127.0.0.1:"))
        rev = e.put("/seckill/products/1", '{"product_id":1}')
        self.assertGreater(rev, 0)
        self.assertEqual(e.get("/seckill/products/1"), '{"product_id":1}')
        self.assertEqual(e.ctl("get", "--print-value-only", "/seckill/products/1"), '{"product_id":1}')
        e.ctl("put", "/seckill/policies/limits.lua", input="return 1\n")
        self.assertEqual(e.get("/seckill/policies/limits.lua"), "return 1\n")
        self.assertEqual(set(e.get_prefix("/seckill/")), {"/seckill/products/1", "/seckill/policies/limits.lua"})
        self.assertEqual(e.delete("/seckill/products/1"), 1)
        self.assertIsNone(e.get("/seckill/products/1"))

    def test_progress_notifications_every_second(self):
        # Nodes detect dead watch streams from progress notifications; the harness promises 1 s.
        conn = httpclient.HTTPConnection("127.0.0.1", self.etcd.port, timeout=5)
        req = {"create_request": {"key": base64.b64encode(b"/quiet/").decode(), "progress_notify": True}}
        conn.request("POST", "/v3/watch", body=json.dumps(req))
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        t0 = time.monotonic()
        progress = 0
        while progress < 2 and time.monotonic() - t0 < 8:
            line = resp.readline()
            msg = json.loads(line)["result"]
            if not msg.get("created") and not msg.get("events") and not msg.get("canceled"):
                progress += 1
        conn.close()
        self.assertEqual(progress, 2)
        self.assertLess(time.monotonic() - t0, 6)

    def test_kill_restart_keeps_data(self):
        e = Etcd(self.tmp).start()
        e.put("/k", "v")
        port, pid = e.port, e.pid
        e.kill()
        self.assertFalse(harness.port_is_listening(port))
        e.restart()
        self.assertEqual(e.port, port)
        self.assertEqual(e.get("/k"), "v")
        e.stop()
        self.assertFalse(e.alive())
        self.assertFalse(harness.port_is_listening(port))
        self.assertFalse(harness.port_is_listening(e.peer_port))
        self.assertTrue(pid_dead(pid))

    def test_pause_resume(self):
        self.etcd.pause()
        try:
            with self.assertRaises(OSError):
                http("GET", self.etcd.endpoint + "/health", timeout=0.5)
        finally:
            self.etcd.resume()
        wait_until(lambda: http("GET", self.etcd.endpoint + "/health")[2] == {"health": "true"}, timeout=10)


class PortsTest(harness.TestCase):

    def test_free_ports_unique_bindable_outside_ephemeral(self):
        lo, hi = harness._ephemeral_range()
        ports = [harness.free_port() for _ in range(40)]
        self.assertEqual(len(set(ports)), 40)
        for p in ports:
            self.assertFalse(lo <= p <= hi, p)
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            s.close()

    def test_no_collision_between_processes(self):
        mine = {harness.free_port() for _ in range(30)}
        p = run_script("""
            import harness, time
            print(" ".join(str(harness.free_port()) for _ in range(60)), flush=True)
        """)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        theirs = {int(x) for x in out.split()}
        self.assertEqual(len(theirs), 60)
        self.assertEqual(mine & theirs, set())


class CleanupTest(harness.TestCase):
    """Every process the harness started dies with the test process, however it ends."""

    SCRIPT = """
        import harness, os, signal, sys, time
        tmp = harness.make_tmp()
        r = harness.Redis(tmp).start()
        e = harness.Etcd(tmp).start()
        print(r.pid, e.pid, r.port, tmp, flush=True)
        mode = sys.argv[1] if len(sys.argv) > 1 else "exit"
        sys.stdin.readline()  # the parent has seen the children alive
        if mode == "exit":
            sys.exit(0)
        if mode == "raise":
            raise RuntimeError("boom")
        time.sleep(60)
    """

    def check(self, mode, sig=None):
        code = "import sys; sys.path.insert(0, %r)\n" % HERE + textwrap.dedent(self.SCRIPT)
        p = subprocess.Popen([sys.executable, "-c", code, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        self.assertTrue(line, p.stderr.read() if p.poll() is not None else "no output")
        rpid, epid, rport, tmp = line.split()
        rpid, epid, rport = int(rpid), int(epid), int(rport)
        self.addCleanup(shutil.rmtree, tmp, True)
        self.assertFalse(pid_dead(rpid))
        self.assertFalse(pid_dead(epid))
        p.stdin.write("go\n")
        p.stdin.flush()
        if sig is not None:
            time.sleep(0.2)
            p.send_signal(sig)
        p.communicate(timeout=30)
        wait_until(lambda: pid_dead(rpid) and pid_dead(epid), timeout=10, msg="children of a %s test to die" % mode)
        wait_until(lambda: not harness.port_is_listening(rport), timeout=5)

    def test_normal_exit(self):
        self.check("exit")

    def test_uncaught_exception(self):
        self.check("raise")

    def test_sigterm(self):
        self.check("sleep", signal.SIGTERM)

    def test_sigkill(self):
        # A CTest timeout SIGKILLs the test: PR_SET_PDEATHSIG takes the children down with it.
        self.check("sleep", signal.SIGKILL)

    def test_per_test_timeout_and_exit_status(self):
        p = run_script("""
            import harness, time
            class T(harness.TestCase):
                test_timeout = 1
                def test_hangs(self):
                    time.sleep(30)
            harness.main()
        """)
        t0 = time.monotonic()
        out, err = p.communicate(timeout=30)
        self.assertLess(time.monotonic() - t0, 15)
        for kept in re.findall(r"harness: kept (\S+)", err):
            shutil.rmtree(kept, ignore_errors=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("exceeded its timeout", err)

    def test_class_tmp_dirs_are_fresh_and_removed(self):
        p = run_script("""
            import harness, os
            seen = []
            class A(harness.TestCase):
                def test_a(self):
                    seen.append(self.tmp)
                    self.assertTrue(os.path.isdir(self.tmp))
            class B(A):
                pass
            import unittest
            unittest.main(exit=False, argv=["x"])
            print("DIRS", *seen)
        """)
        out, err = p.communicate(timeout=30)
        dirs = out.split("DIRS", 1)[1].split()
        self.assertEqual(len(dirs), 2, err)
        self.assertNotEqual(dirs[0], dirs[1])
        for d in dirs:
            self.assertFalse(os.path.exists(d))


class _Handler(httpserver.BaseHTTPRequestHandler):

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.startswith("/json"):
            body = json.dumps({"code": 1002, "message": "not found", "path": self.path}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Multi", "a")
            self.send_header("X-Multi", "b")
        else:
            body = b"\x00\x01 not json"
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        body = json.dumps({"ct": self.headers.get("Content-Type"), "body": data.decode("latin-1")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HttpAndSignTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        cls.url = "http://127.0.0.1:%d" % cls.server.server_address[1]
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        super().tearDownClass()

    def test_error_status_is_returned_not_raised(self):
        st, hdr, body = http("GET", self.url + "/json", params={"a": "1 2"})
        self.assertEqual(st, 404)
        self.assertEqual(body["code"], 1002)
        self.assertEqual(body["path"], "/json?a=1+2")
        self.assertEqual(hdr["content-type"], "application/json")
        self.assertEqual(hdr["x-multi"], "a, b")

    def test_non_json_body_is_bytes(self):
        st, _, body = http("GET", self.url + "/raw")
        self.assertEqual(st, 200)
        self.assertEqual(body, b"\x00\x01 not json")

    def test_bodies(self):
        _, _, b = http("POST", self.url + "/p", body={"product_name": "梨子", "n": 1})
        self.assertEqual(b["ct"], "application/x-www-form-urlencoded")
        self.assertEqual(b["body"], "product_name=%E6%A2%A8%E5%AD%90&n=1")
        _, _, b = http("POST", self.url + "/p", body="return 1", headers={"Content-Type": "text/plain"})
        self.assertEqual((b["ct"], b["body"]), ("text/plain", "return 1"))
        _, _, b = http("POST", self.url + "/p", body=b"\xff\x00")
        self.assertEqual(b["body"], "\xff\x00")

    def test_connection_error_raises(self):
        with self.assertRaises(OSError):
            http("GET", "http://127.0.0.1:%d/" % harness.free_port(), timeout=2)

    def test_signature_matches_spec(self):
        # SPEC §4, spelled out independently of harness.sign.
        key = hmac.new(DEV_SECRET.encode(), b"user:42", hashlib.sha256).hexdigest()
        self.assertEqual(user_key(DEV_SECRET, 42), key)
        want = hmac.new(key.encode(), b"kill:42:7:1700000000:abcdefgh", hashlib.sha256).hexdigest()
        self.assertEqual(sign(DEV_SECRET, "kill", 42, 7, 1700000000, "abcdefgh"), want)
        self.assertNotEqual(sign(DEV_SECRET, "result", 42, 7, 1700000000, "abcdefgh"), want)

    def test_signed_params(self):
        a = signed_params(DEV_SECRET, "kill", 5, 9)
        b = signed_params(DEV_SECRET, "kill", 5, 9)
        self.assertNotEqual(a["nance"], b["nance"])
        self.assertRegex(a["nance"], r"^[A-Za-z0-9_-]{8,64}$")
        self.assertLessEqual(abs(int(a["time"]) - time.time()), 2)
        self.assertEqual(a["auth_code"], sign(DEV_SECRET, "kill", 5, 9, a["time"], a["nance"]))
        c = signed_params("other", "result", 5, 9, t=100, nance="fixednance")
        self.assertEqual((c["time"], c["nance"], c["user_id"], c["product_id"]), ("100", "fixednance", "5", "9"))

    def test_signature_matches_c_tool(self):
        # The C signer (common/sk_sign.c, the same code the access plugin verifies with) and the
        # harness must agree, or every signed integration test is meaningless.
        tool = os.path.join(harness.BUILD_DIR, "seckill-sign")
        if not os.access(tool, os.X_OK):
            self.skipTest("%s not built" % tool)
        out = subprocess.run([tool, "-s", DEV_SECRET, "user-key", "42"], capture_output=True, text=True, timeout=10)
        self.assertEqual(out.stdout.strip(), user_key(DEV_SECRET, 42), out.stderr)
        for scope in ("kill", "result"):
            out = subprocess.run([tool, "-s", "another secret", "-S", scope, "sign", "9223372036854775807", "7",
                                  "1700000000", "Ab_-0123456789"], capture_output=True, text=True, timeout=10)
            got = dict(kv.split("=", 1) for kv in out.stdout.strip().split("&"))
            self.assertEqual(got, signed_params("another secret", scope, 9223372036854775807, 7, 1700000000,
                                                "Ab_-0123456789"))

    def test_wait_until(self):
        n = {"i": 0}

        def ready():
            n["i"] += 1
            if n["i"] < 3:
                raise ValueError("not yet")
            return n["i"]

        self.assertEqual(wait_until(ready, timeout=5, interval=0.01), 3)
        t0 = time.monotonic()
        def never():
            raise ValueError("x")

        with self.assertRaisesRegex(AssertionError, "the moon.*ValueError"):
            wait_until(never, timeout=0.3, msg="the moon")
        with self.assertRaisesRegex(AssertionError, "timed out"):
            wait_until(lambda: False, timeout=0.2)
        self.assertLess(time.monotonic() - t0, 2)


class NodeConfTest(harness.TestCase):

    def test_conf_file(self):
        r = Redis(self.tmp, password="pw")  # not started: only its address and password are used
        n = Node(self.tmp, r, None, plugins="access,logic", conf={"threads": 1, "log.level": None})
        path = n.write_conf()
        conf = {}
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    k, v = (x.strip() for x in line.split("=", 1))
                    conf[k] = v
        self.assertEqual(conf["plugins"], "access,logic")
        self.assertEqual(conf["threads"], "1")
        self.assertNotIn("log.level", conf)
        self.assertEqual(conf["redis.addr"], r.addr)
        self.assertEqual(conf["redis.password"], "pw")
        self.assertTrue(conf["admin.db"].startswith(self.tmp))
        self.assertTrue(conf["log.file"].startswith(self.tmp))
        self.assertEqual(conf["policies.dir"], os.path.join(harness.SOURCE_DIR, "policies"))
        ports = {conf[k].rsplit(":", 1)[1] for k in ("access.listen", "admin.listen", "status.listen")}
        self.assertEqual(len(ports), 3)
        self.assertTrue(all(conf[k].startswith("127.0.0.1:") for k in ("access.listen", "admin.listen")))
        self.assertEqual(n.status, "http://" + conf["status.listen"])
        m = Node(self.tmp, r, None)
        self.assertNotEqual(m.node_id, n.node_id)
        self.assertNotEqual(m.conf["access.listen"], n.conf["access.listen"])


@unittest.skipUnless(os.access(os.path.join(harness.BUILD_DIR, "seckilld"), os.X_OK), "seckilld not built")
class NodeTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis(cls.tmp).start()
        cls.etcd = Etcd(cls.tmp).start()

    def test_start_stop(self):
        n = Node(self.tmp, self.redis, self.etcd).start()
        self.assertTrue(n.alive())
        st, hdr, body = http("GET", n.status + "/healthz")
        self.assertIn(st, (200, 503))
        self.assertEqual(n.stop(), 0)
        self.assertFalse(n.alive())
        for k in ("access.listen", "admin.listen", "status.listen"):
            self.assertFalse(harness.port_is_listening(int(n.conf[k].rsplit(":", 1)[1])), k)
        self.assertTrue(os.path.exists(n.conf["log.file"]) or os.path.exists(n.outfile))

    def test_early_exit_raises_with_log(self):
        n = Node(self.tmp, self.redis, self.etcd, conf={"no.such.key": "1"})
        with self.assertRaisesRegex(RuntimeError, "exited early"):
            n.start(timeout=10)
        self.assertIn("no.such.key", n.log_text())

    def test_run_seckilld_check(self):
        n = Node(self.tmp, self.redis, self.etcd)
        rc, out, err = harness.run_seckilld(["-c", n.write_conf(), "--check"])
        self.assertEqual(rc, 0, out + err)
        rc, out, err = harness.run_seckilld(["-c", n.conf_path, "--check", "--set", "threads=banana"])
        self.assertNotEqual(rc, 0)
        self.assertIn("threads", out + err)


if __name__ == "__main__":
    harness.main()

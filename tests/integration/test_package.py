"""The Debian package: `cmake --build BUILD_DIR --target package` makes seckill_<version>_amd64.deb.

- dpkg-deb -I: name, version (CMakeLists.txt's project version), architecture, Depends on the shared libraries
  (dpkg-shlibdeps) and on libjs-chart.js, the conffile;
- dpkg-deb -c: every file of the installed layout, and nothing from the build tree or the tests;
- dpkg -x into a temporary root: the installed seckilld --check against the installed config passes (paths moved
  to the temporary root with --set), a bad --set fails naming the key, and a plugin_dir without plugins fails;
- the installed daemon, started from that root against a real Redis and etcd, serves the installed console.
"""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import BUILD_DIR, SOURCE_DIR, Etcd, Node, Redis  # noqa: E402

EXPECTED = {
    "etc/seckill/seckill.conf",
    "lib/systemd/system/seckilld@.service",
    "usr/bin/seckilld",
    "usr/bin/seckill-sign",
    "usr/bin/seckill-bench",
    "usr/lib/seckill/seckilld",
    "usr/lib/seckill/plugins/access.so",
    "usr/lib/seckill/plugins/logic.so",
    "usr/lib/seckill/plugins/admin.so",
    "usr/share/seckill/policies/limits.lua",
    "usr/share/seckill/policies/buy_rate.lua",
    "usr/share/seckill/policies/token.lua",
    "usr/share/seckill/console/index.html",
    "usr/share/seckill/console/app.js",
    "usr/share/seckill/console/app.css",
    "usr/share/doc/seckill/README.md",
}


def project_version():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        return re.search(r"project\(seckill VERSION ([0-9.]+)", f.read()).group(1)


class PackageTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for tool in ("dpkg-deb", "dpkg", "dpkg-shlibdeps"):
            if shutil.which(tool) is None:
                raise RuntimeError("%s missing: run scripts/setup.sh (dpkg-dev)" % tool)
        cls.version = project_version()
        cls.deb = os.path.join(BUILD_DIR, "seckill_%s_amd64.deb" % cls.version)
        if os.path.exists(cls.deb):
            os.unlink(cls.deb)
        r = subprocess.run(["cmake", "--build", BUILD_DIR, "--target", "package"], capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0 or not os.path.exists(cls.deb):
            raise RuntimeError("package build failed:\n" + r.stdout[-3000:] + r.stderr[-3000:])
        cls.root = os.path.join(cls.tmp, "root")
        subprocess.run(["dpkg", "-x", cls.deb, cls.root], check=True, timeout=60)

    def info(self, field):
        r = subprocess.run(["dpkg-deb", "-f", self.deb, field], capture_output=True, text=True, check=True)
        return r.stdout.strip()

    def test_1_control(self):
        r = subprocess.run(["dpkg-deb", "-I", self.deb], capture_output=True, text=True, check=True)
        self.assertIn("conffiles", r.stdout)
        self.assertEqual(self.info("Package"), "seckill")
        self.assertEqual(self.info("Version"), self.version)
        self.assertEqual(self.info("Architecture"), "amd64")
        deps = self.info("Depends")
        for lib in ("libc6", "libh2o-evloop", "libhiredis", "liblua5.4", "libsqlite3", "libcjson", "libcurl", "libev4",
                    "libssl3", "libjs-chart.js"):
            self.assertIn(lib, deps)
        r = subprocess.run(["dpkg-deb", "--ctrl-tarfile", self.deb], capture_output=True, check=True)
        ctl = os.path.join(self.tmp, "ctl")
        os.makedirs(ctl, exist_ok=True)
        subprocess.run(["tar", "-x", "-C", ctl], input=r.stdout, check=True)
        with open(os.path.join(ctl, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/seckill/seckill.conf"])

    def test_2_contents(self):
        r = subprocess.run(["dpkg-deb", "-c", self.deb], capture_output=True, text=True, check=True)
        files = set()
        for line in r.stdout.splitlines():
            name = line.split()[5]
            if not name.endswith("/"):
                files.add(name[2:] if name.startswith("./") else name)
        self.assertEqual(files, EXPECTED)
        self.assertEqual(os.readlink(os.path.join(self.root, "usr/bin/seckilld")), "../lib/seckill/seckilld")

    def test_3_unit(self):
        with open(os.path.join(self.root, "lib/systemd/system/seckilld@.service")) as f:
            unit = f.read()
        for line in ("ExecStart=/usr/bin/seckilld -c /etc/seckill/%i.conf", "Restart=on-failure", "DynamicUser=yes",
                     "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "StateDirectory=seckill/%i"):
            self.assertIn(line + "\n", unit)
        with open(os.path.join(self.root, "etc/seckill/seckill.conf")) as f:
            conf = f.read()
        self.assertIn("policies.dir = /usr/share/seckill/policies\n", conf)
        self.assertIn("admin.console_dir = /usr/share/seckill/console\n", conf)

    def check(self, *sets):
        argv = [os.path.join(self.root, "usr/bin/seckilld"), "-c", os.path.join(self.root, "etc/seckill/seckill.conf"),
                "--check", "--set", "policies.dir=" + os.path.join(self.root, "usr/share/seckill/policies"), "--set",
                "admin.console_dir=" + os.path.join(self.root, "usr/share/seckill/console")]
        for s in sets:
            argv += ["--set", s]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=self.tmp)

    def test_4_installed_check(self):
        # plugin_dir is not set: the default next to the real binary (through the /usr/bin symlink) must be right
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("configuration and policies OK", r.stdout)
        r = self.check("redis.timeout_ms=soon")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("redis.timeout_ms", r.stderr)
        r = self.check("no.such_key=1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no.such_key", r.stderr)
        r = self.check("plugin_dir=" + self.tmp)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("plugin_dir", r.stderr)

    def test_5_installed_daemon_serves_console(self):
        redis = Redis(self.tmp).start()
        etcd = Etcd(self.tmp).start()
        node = Node(self.tmp, redis, etcd, name="installed", conf={
            "plugin_dir": None,  # the installed default
            "policies.dir": os.path.join(self.root, "usr/share/seckill/policies"),
            "admin.console_dir": os.path.join(self.root, "usr/share/seckill/console"),
        })
        node.binary = os.path.join(self.root, "usr/bin/seckilld")
        try:
            node.start()
            harness.wait_until(lambda: harness.http("GET", node.admin + "/healthz")[0] == 200, timeout=20,
                               msg="installed node healthy")
            st, hdr, body = harness.http("GET", node.admin + "/")
            self.assertEqual(st, 200)
            self.assertTrue(hdr["content-type"].startswith("text/html"))
            self.assertIn(b"SecKill console", body)
            st, _, _ = harness.http("GET", node.admin + "/console/chart.js")
            self.assertEqual(st, 200)
            self.assertIn(os.path.join(self.root, "usr/lib/seckill/plugins"), node.log_text())
        finally:
            node.stop()
            etcd.stop()
            redis.stop()


if __name__ == "__main__":
    harness.main()

"""Real clusters for the integration tests (Python 3 stdlib only): a Redis Cluster, a multi-member etcd, seckilld
nodes on a Redis Cluster, and private network namespaces joined by a bridge.

    from sk_cluster import RedisCluster, EtcdCluster, cluster_node, Netns

    rc = RedisCluster(tmp, masters=3, replicas=0).start()      # redis-cli --cluster create, cluster_state:ok
    ec = EtcdCluster(tmp, members=3).start()                   # --initial-cluster, a leader elected
    node = cluster_node(tmp, rc, ec, plugins="access,logic")   # redis.cluster=true, redis.addr=<seed list>

Every server is started through sk_proc._spawn, so it is killed when the test process ends (normally, on a fatal
signal, or through PR_SET_PDEATHSIG when the test process is SIGKILLed), like every other harness server. Netns
deletes its namespaces at exit; namespaces left by a test process that was SIGKILLed are deleted by the next
Netns.start() (their names carry the dead pid).
"""

import contextlib
import fcntl
import json
import os
import re
import socket
import subprocess
import time
import unittest

import sk_proc
from harness import Etcd, Node, Redis, RedisError, _resp_encode, _RespReader
from sk_proc import ProcessExited, _spawn, _tail, at_exit, free_port, netns_enter, wait_until

__all__ = [
    "crc16", "keyslot", "activity_slot", "resp_call", "free_cluster_port", "ClusterRedis", "RedisCluster", "EtcdCluster", "cluster_node",
    "Netns", "netns_supported"
]

# ---------------------------------------------------------------------------------------------
# Slots
# ---------------------------------------------------------------------------------------------


def crc16(data):
    """CRC16-XMODEM (poly 0x1021, init 0), as Redis Cluster hashes keys."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def keyslot(key):
    """The hash slot of key, with the hash-tag rule (the bytes between the first '{' and the next '}', if any)."""
    k = key.encode() if isinstance(key, str) else bytes(key)
    i = k.find(b"{")
    if i >= 0:
        j = k.find(b"}", i + 1)
        if j > i + 1:
            k = k[i + 1:j]
    return crc16(k) % 16384


def activity_slot(aid):
    """The slot of every key of activity aid (tag {a<aid>}, SPEC §9 / issue 12)."""
    return keyslot("{a%d}" % int(aid))


def resp_call(host, port, *args, password=None, timeout=5, netns=None, asking=False):
    """One command on a fresh connection to host:port; the parsed reply, RedisError raised for an error reply."""
    with netns_enter(netns), socket.create_connection((host, port), timeout=timeout) as s:
        pre = []
        if password:
            pre.append(["AUTH", password])
        if asking:
            pre.append(["ASKING"])
        s.sendall(b"".join(_resp_encode(c) for c in pre) + _resp_encode(args))
        r = _RespReader(s)
        with r.f:
            for _ in pre:
                v = r.read()
                if isinstance(v, RedisError):
                    raise v
            v = r.read()
        if isinstance(v, RedisError):
            raise v
        return v


def parse_info(text):
    """INFO text as {field: value} (values as str)."""
    out = {}
    for line in (text or "").splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


# ---------------------------------------------------------------------------------------------
# Ports: a cluster node also listens on port + 10000 (its bus)
# ---------------------------------------------------------------------------------------------

BUS_OFFSET = 10000


def free_cluster_port():
    """A free loopback port P whose bus port P + 10000 is free too, below 65536, and locked for this process like
    every port free_port() hands out. Prefers a P whose bus port lies below the kernel's ephemeral range."""
    lo, _ = sk_proc._ephemeral_range()
    for attempt in range(400):
        p = free_port()
        bus = p + BUS_OFFSET
        if bus > 65535 or (attempt < 300 and bus >= lo):
            continue
        with sk_proc._port_mu:
            if bus in sk_proc._ports_taken:
                continue
            try:
                fcntl.lockf(sk_proc._port_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, bus)
            except OSError:
                continue
            if not sk_proc._bindable(bus):
                fcntl.lockf(sk_proc._port_lock_fd, fcntl.LOCK_UN, 1, bus)
                continue
            sk_proc._ports_taken.add(bus)
        return p
    raise RuntimeError("no free port pair (P, P+%d) below 65536" % BUS_OFFSET)


# ---------------------------------------------------------------------------------------------
# Redis Cluster
# ---------------------------------------------------------------------------------------------


class ClusterRedis(Redis):
    """One redis-server --cluster-enabled yes node (AOF on, appendfsync as given)."""

    name = "redis-cluster"

    def __init__(self, tmp, node_timeout_ms=1000, appendfsync="always", extra_args=()):
        super().__init__(tmp, appendfsync=appendfsync, port=free_cluster_port(), extra_args=extra_args)

    def _argv(self):
        return super()._argv() + [
            "--cluster-enabled", "yes", "--cluster-config-file",
            os.path.join(self.dir, "nodes.conf"), "--cluster-node-timeout",
            str(self.node_timeout_ms), "--cluster-require-full-coverage", "no"
        ]

    node_timeout_ms = 1000

    def start(self, timeout=15):
        if self.alive():
            return self
        first = self.proc is None
        for attempt in range(3):
            os.makedirs(self.dir, exist_ok=True)
            self.proc = _spawn(self._argv(), self.outfile, netns=self.netns)
            try:
                wait_until(self._ping_or_die, timeout=timeout, interval=0.02, msg="redis PING")
                return self
            except ProcessExited:
                if attempt == 2 or not first or "Address already in use" not in _tail(self.logfile):
                    raise
                self.port = free_cluster_port()
                self._set_dirs()
        return self

    def info(self, section=None):
        return parse_info(self.call(*(["INFO", section] if section else ["INFO"])))

    def cluster_info(self):
        return parse_info(self.call("CLUSTER", "INFO"))

    def myid(self):
        return self.call("CLUSTER", "MYID")

    def role(self):
        return self.info("replication").get("role")

    def __repr__(self):
        return "<redis %s%s>" % (self.addr, "" if self.alive() else " dead")


class RedisCluster:
    """masters x (1 + replicas) cluster nodes on free loopback ports under tmp/rcluster, joined with
    `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`; start() returns once every node says
    cluster_state:ok, every replica's link is up, and every node agrees on the slot map."""

    def __init__(self, tmp, masters=3, replicas=0, node_timeout_ms=1000, appendfsync="always", extra_args=()):
        self.tmp = os.path.join(tmp, "rcluster")
        os.makedirs(self.tmp, exist_ok=True)
        self.nmasters, self.nreplicas = masters, replicas
        self.nodes = []
        for _ in range(masters * (1 + replicas)):
            n = ClusterRedis(self.tmp, appendfsync=appendfsync, extra_args=extra_args)
            n.node_timeout_ms = node_timeout_ms
            self.nodes.append(n)
        self._ids = {}

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    def start(self, timeout=60):
        for n in self.nodes:
            n.start()
        argv = ["redis-cli", "--cluster", "create"] + [n.addr for n in self.nodes]
        argv += ["--cluster-replicas", str(self.nreplicas), "--cluster-yes"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed (%d):\n%s\n%s" % (r.returncode, r.stdout[-3000:],
                                                                                  r.stderr[-2000:]))
        self._ids = {n.myid(): n for n in self.nodes}
        self.wait_ok(timeout=timeout)
        return self

    def wait_ok(self, timeout=30, nodes=None):
        """Waits until every live node (or those given) reports cluster_state:ok, all of them see the same slot map
        covering all 16384 slots, and every live replica's link to its master is up."""

        def ok():
            live = [n for n in (nodes or self.nodes) if n.alive()]
            maps = set()
            for n in live:
                if n.cluster_info().get("cluster_state") != "ok":
                    return False
                if n.role() == "slave" and n.info("replication").get("master_link_status") != "up":
                    return False
                m = self._slots_of(n)
                if sum(e - s + 1 for s, e, _ in m) != 16384:
                    return False
                maps.add(tuple(m))
            return len(maps) == 1

        wait_until(ok, timeout=timeout, interval=0.1, msg="redis cluster_state:ok and one slot map on every node")
        return self

    def stop(self):
        for n in self.nodes:
            if n.alive():
                n.stop()

    def kill(self):
        for n in self.nodes:
            n.kill()

    # ---- topology -------------------------------------------------------------------------------------------------
    @property
    def seeds(self):
        """The seed list for redis.addr (every node, masters first)."""
        return ",".join(n.addr for n in sorted(self.nodes, key=lambda n: n.role() != "master" if n.alive() else 2)
                        if n.alive()) or ",".join(n.addr for n in self.nodes)

    # Node(...) reads redis.addr / redis.password from its redis argument
    @property
    def addr(self):
        return self.seeds

    password = None

    def by_id(self, node_id):
        if node_id not in self._ids:
            self._ids = {n.myid(): n for n in self.nodes if n.alive()} | self._ids
        return self._ids.get(node_id)

    def by_port(self, port):
        for n in self.nodes:
            if n.port == int(port):
                return n
        return None

    def _any(self):
        for n in self.nodes:
            if n.alive():
                return n
        raise RuntimeError("no live cluster node")

    @staticmethod
    def _slots_of(node):
        out = []
        for ent in node.call("CLUSTER", "SLOTS") or []:
            out.append((int(ent[0]), int(ent[1]), int(ent[2][1])))
        return sorted(out)

    def slot_map(self, via=None):
        """[(first, last, master port)] as `via` (default: the first live node) sees it."""
        return self._slots_of(via or self._any())

    def masters(self):
        """The live masters that own slots, ordered by their first slot."""
        seen = []
        for _, _, port in self.slot_map():
            n = self.by_port(port)
            if n is not None and n not in seen and n.alive():
                seen.append(n)
        return seen

    def replica_of(self, master):
        """The replica (a live node whose role is slave) that replicates master, or None."""
        for n in self.nodes:
            if n is master or not n.alive():
                continue
            rep = n.info("replication")
            if rep.get("role") == "slave" and int(rep.get("master_port", 0)) == master.port:
                return n
        return None

    def master_for_slot(self, slot, via=None):
        for s, e, port in self.slot_map(via):
            if s <= slot <= e:
                return self.by_port(port)
        return None

    def master_for_key(self, key):
        return self.master_for_slot(keyslot(key))

    def call_key(self, key, *args, timeout=5):
        """A command for key, sent to the master of its slot, following one MOVED/ASK."""
        node = self.master_for_key(key)
        try:
            return node.call(*args, timeout=timeout)
        except RedisError as e:
            m = re.match(r"(MOVED|ASK) \d+ ([\d.]+):(\d+)", str(e))
            if not m:
                raise
            return resp_call(m.group(2), int(m.group(3)), *args, timeout=timeout, asking=m.group(1) == "ASK")

    # ---- stats ----------------------------------------------------------------------------------------------------
    @staticmethod
    def commandstats(node):
        """{command: {"calls": int, "usec": int, "failed_calls": int, ...}} from INFO commandstats."""
        out = {}
        for k, v in parse_info(node.call("INFO", "commandstats")).items():
            if k.startswith("cmdstat_"):
                out[k[len("cmdstat_"):]] = {
                    a: (float(b) if "." in b else int(b))
                    for a, b in (kv.split("=", 1) for kv in v.split(","))
                }
        return out

    @staticmethod
    def errorstats(node):
        """{error prefix: count} from INFO errorstats (e.g. {"CROSSSLOT": 2})."""
        out = {}
        for k, v in parse_info(node.call("INFO", "errorstats")).items():
            if k.startswith("errorstat_"):
                out[k[len("errorstat_"):]] = int(v.split("=", 1)[1])
        return out

    @staticmethod
    def script_calls(node):
        """EVAL + EVALSHA (and their _RO forms) calls node served."""
        cs = RedisCluster.commandstats(node)
        return sum(cs.get(c, {}).get("calls", 0) for c in ("eval", "evalsha", "eval_ro", "evalsha_ro"))

    # ---- resharding -----------------------------------------------------------------------------------------------
    def migrate_slot(self, slot, src, dst, batch=10, pause=0.0, step_hook=None, timeout_ms=5000):
        """Moves slot from master src to master dst the way `redis-cli --cluster reshard` does: SETSLOT IMPORTING on
        dst, MIGRATING on src, then GETKEYSINSLOT + MIGRATE ... KEYS in batches of `batch` keys with `pause` seconds
        between batches (a slow, stepwise move mid-sale when pause > 0; step_hook(moved_so_far) after each batch),
        then SETSLOT NODE dst on dst, src and every other master. Returns the number of keys moved."""
        src_id, dst_id = src.myid(), dst.myid()
        dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        for _ in range(100000):
            keys = src.call("CLUSTER", "GETKEYSINSLOT", slot, batch) or []
            if not keys:
                break
            for attempt in range(20):
                try:
                    src.call("MIGRATE", dst.host, dst.port, "", 0, timeout_ms, "KEYS", *keys, timeout=timeout_ms / 1000 + 5)
                    break
                except RedisError as e:
                    if "BUSYKEY" in str(e):  # a key written meanwhile on dst (ASK): the source copy is the older one
                        src.call("MIGRATE", dst.host, dst.port, "", 0, timeout_ms, "REPLACE", "KEYS", *keys)
                        break
                    if attempt == 19:
                        raise
                    time.sleep(0.05)
            moved += len(keys)
            if step_hook is not None:
                step_hook(moved)
            if pause:
                time.sleep(pause)
        others = [m for m in self.masters() if m is not src and m is not dst]
        for n in [dst, src] + others:
            n.call("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        return moved

    # ---- failover -------------------------------------------------------------------------------------------------
    def kill_master(self, i_or_node):
        """SIGKILL a master (an index into masters(), or the node). Returns (the killed node, its replica or None)."""
        m = self.masters()[i_or_node] if isinstance(i_or_node, int) else i_or_node
        rep = self.replica_of(m)
        m.kill()
        return m, rep

    def wait_failover(self, replica, timeout=30):
        """Waits until replica is a master that owns slots and every live node is ok with one slot map. Returns the
        seconds waited."""
        t0 = time.monotonic()
        wait_until(lambda: replica.role() == "master" and replica in self.masters(), timeout=timeout, interval=0.05,
                   msg="replica %s promoted" % replica.addr)
        self.wait_ok(timeout=max(5, timeout - (time.monotonic() - t0)))
        return time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# etcd cluster
# ---------------------------------------------------------------------------------------------


class EtcdMember(Etcd):

    def __init__(self, tmp, name, cluster):
        self.member_name = name
        self.cluster = cluster
        super().__init__(tmp, progress_interval="1s")

    def _argv(self):
        argv = super()._argv()
        i = argv.index("--initial-cluster")
        argv[i + 1] = self.cluster.initial_cluster()
        argv[argv.index("--name") + 1] = self.member_name
        return argv + ["--heartbeat-interval", "100", "--election-timeout", "1000"]

    def spawn(self):
        self.proc = _spawn(self._argv(), self.outfile, netns=self.netns)
        return self

    def status(self, timeout=2):
        """POST /v3/maintenance/status: {"leader": int, "member_id": int, "raft_term": int, ...}."""
        d = self._gw("maintenance/status", {}, timeout=timeout)
        return {
            "leader": int(d.get("leader", 0)),
            "member_id": int(d.get("header", {}).get("member_id", 0)),
            "raft_term": int(d.get("raftTerm", d.get("raft_term", 0)) or 0),
            "revision": int(d.get("header", {}).get("revision", 0)),
        }

    def __repr__(self):
        return "<etcd %s %s%s>" % (self.member_name, self.endpoint, "" if self.alive() else " dead")


class EtcdCluster:
    """members etcd processes e0..e(n-1) on free loopback ports, one raft cluster (--initial-cluster,
    --heartbeat-interval 100 --election-timeout 1000, progress notifications every 1 s)."""

    def __init__(self, tmp, members=3):
        self.tmp = os.path.join(tmp, "ecluster")
        os.makedirs(self.tmp, exist_ok=True)
        self.members = [EtcdMember(self.tmp, "e%d" % i, self) for i in range(members)]

    def initial_cluster(self):
        return ",".join("%s=http://%s:%d" % (m.member_name, m.host, m.peer_port) for m in self.members)

    @property
    def endpoints(self):
        """The etcd.endpoints value: every member's client URL, comma-separated."""
        return ",".join(m.endpoint for m in self.members)

    endpoint = endpoints  # Node(...) reads etcd.endpoint

    def start(self, timeout=30):
        for m in self.members:
            m.spawn()
        for m in self.members:
            wait_until(m._healthy_or_die, timeout=timeout, interval=0.05, msg="etcd %s /health" % m.member_name)
        self.wait_leader(timeout=timeout)
        return self

    def live(self):
        return [m for m in self.members if m.alive()]

    def leader(self):
        """The member that is leader now, as the live members report it (None while there is none)."""
        for m in self.live():
            try:
                st = m.status()
            except Exception:  # noqa: BLE001 - a member that does not answer is skipped
                continue
            if st["leader"]:
                for x in self.live():
                    with contextlib.suppress(Exception):
                        if x.status()["member_id"] == st["leader"]:
                            return x
        return None

    def wait_leader(self, exclude=None, timeout=20):
        """Waits until every live member names the same live leader, not `exclude`. Returns it."""

        def pred():
            ids = set()
            for m in self.live():
                ids.add(m.status(timeout=1)["leader"])
            if len(ids) != 1 or 0 in ids:
                return None
            lid = ids.pop()
            for m in self.live():
                if m.status(timeout=1)["member_id"] == lid and m is not exclude:
                    return m
            return None

        return wait_until(pred, timeout=timeout, interval=0.02, msg="an etcd leader")

    def kill_leader(self):
        """SIGKILL the leader; returns it."""
        m = self.leader()
        assert m is not None, "no etcd leader"
        m.kill()
        return m

    def _first(self, fn):
        err = None
        for m in self.live():
            try:
                return fn(m)
            except Exception as e:  # noqa: BLE001 - try the next member
                err = e
        raise err or RuntimeError("no live etcd member")

    def put(self, key, value):
        return self._first(lambda m: m.put(key, value))

    def get(self, key):
        return self._first(lambda m: m.get(key))

    def get_prefix(self, prefix):
        return self._first(lambda m: m.get_prefix(prefix))

    def delete(self, key):
        return self._first(lambda m: m.delete(key))

    def ctl(self, *args, **kw):
        return self._first(lambda m: m.ctl(*args, **kw))

    def kill(self):
        for m in self.members:
            m.kill()


# ---------------------------------------------------------------------------------------------
# seckilld on a cluster
# ---------------------------------------------------------------------------------------------


def cluster_node(tmp, rcluster, etcd, plugins="access,logic", name=None, conf=None, wait_replicas=None, **kw):
    """A Node whose redis.addr is rcluster's seed list with redis.cluster = true (and redis.wait_replicas when given);
    etcd may be an Etcd or an EtcdCluster (etcd.endpoints lists every member). conf: extra --set style keys."""
    c = {"redis.cluster": "true", "redis.addr": rcluster.seeds}
    if wait_replicas is not None:
        c["redis.wait_replicas"] = wait_replicas
    c.update(conf or {})
    return Node(tmp, None, etcd, plugins=plugins, name=name, conf=c, **kw)


def daemon_cluster_support(build_dir=None):
    """(ok, why): whether this seckilld accepts redis.cluster = true (`seckilld --check`), for the Phase-2 tests."""
    import harness
    d = sk_proc.make_tmp("sk-probe-")
    try:
        conf = os.path.join(d, "probe.conf")
        harness.write_conf(conf, {"plugins": "logic", "policies.dir": os.path.join(harness.SOURCE_DIR, "policies"),
                                  "plugin_dir": os.path.join(harness.BUILD_DIR, "plugins"),
                                  "redis.cluster": "true", "redis.addr": "127.0.0.1:1,127.0.0.1:2",
                                  "admin.db": os.path.join(d, "x.db")})
        rc, out, err = harness.run_seckilld(["-c", conf, "--check"])
        return rc == 0, (out + err).strip()[-400:]
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Network namespaces
# ---------------------------------------------------------------------------------------------


def _ip(*args, check=True):
    r = subprocess.run(["ip"] + [str(a) for a in args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s failed (%d): %s" % (" ".join(map(str, args)), r.returncode, r.stderr.strip()))
    return r


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def netns_supported():
    """(ok, why): whether this process may create network namespaces (`ip netns add`)."""
    name = "skprobe%d" % os.getpid()
    try:
        r = _ip("netns", "add", name, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return False, "cannot run ip: %s" % e
    if r.returncode != 0:
        return False, "`ip netns add` is not permitted here: %s" % r.stderr.strip()
    _ip("netns", "del", name, check=False)
    return True, ""


class Netns:
    """Private network namespaces joined by a bridge that lives in a namespace of its own.

    Host h gets namespace "sk<pid>-<h>", loopback up, and eth0 with SUBNET.<n>/24, whose veth peer "v-<h>" is a port
    of bridge br0 in namespace "sk<pid>-br". The addresses exist only inside these namespaces. link_down(h) cuts h's
    cable (its bridge port goes down), link_up(h) restores it. Every namespace is deleted at exit (sk_proc.at_exit),
    on teardown(), and, when a test process was SIGKILLed, by the next start() (the names carry the dead pid)."""

    def __init__(self, hosts, subnet="10.77.0"):
        self.prefix = "sk%d-" % os.getpid()
        self.hosts = list(hosts)
        self.subnet = subnet
        self.addrs = {h: "%s.%d" % (subnet, i + 2) for i, h in enumerate(self.hosts)}
        self.created = []

    def ns(self, host):
        return self.prefix + host

    def addr(self, host):
        return self.addrs[host]

    @staticmethod
    def reap_stale():
        r = _ip("netns", "list", check=False)
        for line in r.stdout.splitlines():
            m = re.match(r"(sk(\d+)-\S+)", line.strip())
            if m and not _pid_alive(int(m.group(2))):
                _ip("netns", "del", m.group(1), check=False)

    def start(self):
        ok, why = netns_supported()
        if not ok:
            raise unittest.SkipTest("network namespaces not available: " + why)
        self.reap_stale()
        at_exit(self.teardown)
        br = self.ns("br")
        self._add(br)
        _ip("-n", br, "link", "set", "lo", "up")
        _ip("-n", br, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        _ip("-n", br, "link", "set", "br0", "up")
        for h in self.hosts:
            n = self.ns(h)
            self._add(n)
            _ip("-n", n, "link", "set", "lo", "up")
            _ip("-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "v-" + h, "netns", br)
            _ip("-n", br, "link", "set", "v-" + h, "master", "br0")
            _ip("-n", br, "link", "set", "v-" + h, "up")
            _ip("-n", n, "addr", "add", self.addrs[h] + "/24", "dev", "eth0")
            _ip("-n", n, "link", "set", "eth0", "up")
        # every host reaches every other across the bridge
        for h in self.hosts:
            for o in self.hosts:
                if o != h:
                    wait_until(lambda: self.run(h, ["ping", "-c", "1", "-W", "1", self.addrs[o]]).returncode == 0
                               if _have_ping() else True, timeout=10, interval=0.1, msg="ping %s -> %s" % (h, o))
        return self

    def _add(self, name):
        _ip("netns", "add", name)
        self.created.append(name)

    def run(self, host, argv, timeout=30, **kw):
        """subprocess.run(argv) inside host's namespace (`ip netns exec`)."""
        return subprocess.run(["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv], capture_output=True,
                              text=True, timeout=timeout, **kw)

    def popen(self, host, argv, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv], **kw)

    def enter(self, host):
        """Context manager: the calling thread's sockets are made in host's namespace."""
        return netns_enter(self.ns(host))

    def link_down(self, host):
        _ip("-n", self.ns("br"), "link", "set", "v-" + host, "down")

    def link_up(self, host):
        _ip("-n", self.ns("br"), "link", "set", "v-" + host, "up")

    def teardown(self):
        while self.created:
            _ip("netns", "del", self.created.pop(), check=False)


def _have_ping():
    from shutil import which
    return which("ping") is not None


def dump(obj):
    return json.dumps(obj, sort_keys=True)

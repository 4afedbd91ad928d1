"""Process and port plumbing for the integration harness (Python 3 stdlib only).

Every child started through _spawn is registered and SIGKILLed when the test process exits (normally, on
SIGTERM/SIGINT/SIGHUP, and through PR_SET_PDEATHSIG even when the test process itself is SIGKILLed). free_port hands
out loopback ports that no concurrent test process can also get. harness.py builds its servers on _Server and
re-exports the public names, so tests keep importing them from harness.
"""

import atexit
import contextlib
import ctypes
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything we start is registered here and killed at exit.
# ---------------------------------------------------------------------------------------------

_procs_lock = threading.Lock()
_procs = []  # subprocess.Popen objects still possibly alive
_spawned = [0]  # how many processes were spawned, so a test class can find the ones it started
_PR_SET_PDEATHSIG = 1

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None


def _pdeathsig_preexec():
    # The child gets SIGKILL when the thread that forked it dies. Only used for children forked by
    # the main thread: a child started from a helper thread would otherwise die with that thread.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _spawn(argv, stdout_path, env=None, cwd=None, netns=None):
    """Popen with output to a file, registered for cleanup, dying with us when possible. With netns, the program runs
    inside that network namespace (`ip netns exec` execs it: the pid is the program's own)."""
    if netns:
        argv = ["ip", "netns", "exec", netns] + list(argv)
    out = open(stdout_path, "ab", buffering=0)
    try:
        main_thread = threading.current_thread() is threading.main_thread()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             start_new_session=True, preexec_fn=_pdeathsig_preexec if main_thread else None)
    finally:
        out.close()
    with _procs_lock:
        _spawned[0] += 1
        p.sk_seq = _spawned[0]
        _procs.append(p)
    return p


def _reap(p):
    with _procs_lock:
        if p in _procs:
            _procs.remove(p)


def _hard_kill(p):
    if p is None or p.poll() is not None:
        _reap(p)
        return
    with contextlib.suppress(ProcessLookupError):
        p.send_signal(signal.SIGCONT)  # a SIGSTOPped process must not stay a zombie-to-be
        p.kill()
    with contextlib.suppress(Exception):
        p.wait(timeout=10)
    _reap(p)


def kill_all():
    """SIGKILL every process the harness started and that is still alive."""
    with _procs_lock:
        procs = list(_procs)
    for p in procs:
        _hard_kill(p)


_exit_hooks = []  # run after kill_all at exit and on a fatal signal (e.g. deleting network namespaces)


def at_exit(fn):
    """Run fn() once when the test process ends (normally or on SIGTERM/SIGINT/SIGHUP), after its children are
    killed. Returns fn."""
    _exit_hooks.append(fn)
    return fn


def _run_exit_hooks():
    kill_all()
    while _exit_hooks:
        fn = _exit_hooks.pop()
        with contextlib.suppress(Exception):
            fn()


atexit.register(_run_exit_hooks)


def _on_fatal_signal(signum, frame):
    _run_exit_hooks()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    with contextlib.suppress(ValueError, OSError):  # not the main thread of the interpreter
        signal.signal(_sig, _on_fatal_signal)

_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def netns_enter(name):
    """Run the body with the calling thread inside network namespace `name` (/run/netns/<name>): sockets created (and
    connected) in it belong to that namespace and keep working after the thread has switched back. None: a no-op."""
    if not name:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc is None or _libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into network namespace %s failed" % name)
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:  # a thread left in the wrong namespace would lie everywhere
                os._exit(70)
    finally:
        os.close(own)


# ---------------------------------------------------------------------------------------------
# Temporary directories and ports
# ---------------------------------------------------------------------------------------------


def make_tmp(prefix="sk-test-"):
    """A fresh temporary directory (not removed automatically)."""
    return tempfile.mkdtemp(prefix=prefix)


@contextlib.contextmanager
def tmpdir(prefix="sk-test-"):
    """Context manager: a fresh temporary directory, removed at the end unless SK_KEEP_TMP=1."""
    d = make_tmp(prefix)
    try:
        yield d
    finally:
        if not os.environ.get("SK_KEEP_TMP"):
            shutil.rmtree(d, ignore_errors=True)


_port_lock_path = os.path.join(tempfile.gettempdir(), "sk-test-ports.lock")
_port_lock_fd = None  # one fd for the life of the process: closing any fd of the file would drop our locks
_ports_taken = set()
_port_mu = threading.Lock()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
            return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # No SO_REUSEADDR: a port with a TIME_WAIT socket is refused too, which is what we want.
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A loopback TCP port that nothing listens on and that no other harness process has handed out.

    Ports are drawn outside the kernel's ephemeral range, so an outgoing connection cannot grab one
    between this check and the server's bind. Each port handed out is locked (one byte of a shared
    lock file) for the life of this process, so concurrent test processes never collide; a port is
    never handed out twice by one process, so a stopped server's port stays its own for restart().
    """
    global _port_lock_fd
    lo, hi = _ephemeral_range()
    ranges = [(r0, r1) for r0, r1 in ((15000, min(lo, 32768)), (max(hi + 1, 61000), 65000)) if r1 - r0 > 100]
    ranges = ranges or [(15000, 32768)]
    with _port_mu:
        if _port_lock_fd is None:
            _port_lock_fd = os.open(_port_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        for _ in range(2000):
            r0, r1 = random.choice(ranges)
            port = random.randrange(r0, r1)
            if port in _ports_taken:
                continue
            try:
                # A POSIX record lock on byte <port> of one shared file, released when we exit.
                fcntl.lockf(_port_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
            except OSError:
                continue
            if not _bindable(port):
                fcntl.lockf(_port_lock_fd, fcntl.LOCK_UN, 1, port)
                continue
            _ports_taken.add(port)
            return port
    # Fall back to the kernel's choice (bind 0) if the ranges are exhausted.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_is_listening(port, host="127.0.0.1", timeout=0.5):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Waiting
# ---------------------------------------------------------------------------------------------


class ProcessExited(RuntimeError):
    """A process the harness started exited while we waited for it. wait_until lets it through at once."""


def wait_until(pred, timeout=10.0, interval=0.05, msg=None):
    """Call pred() until it returns a truthy value, and return that value.

    Exceptions raised by pred count as "not yet", except ProcessExited, which is raised at once.
    After `timeout` seconds, raise AssertionError naming msg (or pred) and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except ProcessExited:
            raise
        except Exception as e:  # noqa: BLE001 - a failing probe is "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            what = msg or getattr(pred, "__name__", repr(pred))
            extra = " (last error: %r)" % (last_exc, ) if last_exc is not None else ""
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)


def _tail(path, n=60):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return "(no %s: %s)" % (path, e)


class _Server:
    """Common process control: start/stop/kill/pause/resume of one child."""

    name = "server"
    proc = None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pause(self):
        """SIGSTOP the process (it keeps its sockets; connects still succeed, nothing answers)."""
        assert self.alive(), "%s is not running" % self.name
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        """SIGCONT the process."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)

    def _terminate(self, timeout):
        """SIGTERM (a stopped process is continued first) and wait; SIGKILL when it is still there after timeout.
        True when it exited on its own."""
        p = self.proc
        exited = True
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _hard_kill(p)
                exited = False
        _reap(p)
        return exited

    def stop(self, timeout=10):
        """SIGTERM, wait; SIGKILL if it did not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        self._terminate(timeout)
        return self.proc.returncode

    def kill(self):
        """SIGKILL and wait."""
        _hard_kill(self.proc)
        return self.proc.returncode if self.proc is not None else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

"""Running untrusted Python (code written by models) behind an operating-system boundary.

Each worker of a pre-started pool is a Python interpreter (``python -I -S``: no site-packages, no environment)
started by util-linux ``unshare`` in new PID, network, mount, IPC and UTS namespaces (and a user namespace when
the trainer is not root), chrooted into a read-only view of the system (``/usr``, ``/lib*`` and the Python
installation, its site-packages hidden) with a private tmpfs ``/tmp`` and nothing else: no ``/proc``, no home, no
project files, no network but an unconfigured loopback, an empty environment. ``setpriv`` then drops it to an
unprivileged user (uid 65534 when the trainer is root; otherwise root only inside its own user namespace) with no
capabilities and ``no_new_privs``. These are standard Debian tools, present wherever util-linux is; bubblewrap
would do the same but is not installed by default. The worker (``games/sandbox_worker.py``) is PID 1 of its
namespace and non-dumpable; for each job it forks a child in a fresh, empty folder with rlimits on CPU time,
address space, file size, open files and processes (none: no fork, no thread), runs the code behind an audit
hook (defence in depth: its state is held in default arguments and builtin constants, out of reach of patched
modules), and after the job kills every other process of its namespace and wipes ``/tmp``.

The result channel: the child writes one length-prefixed JSON frame; the worker and then this process read a
bounded amount, validate it strictly (schema, known status, size, nesting depth) and turn anything else into a
CRASH verdict for that one job; a worker that dies or stalls is replaced and its job reported, never raised.
The harness ends its own result frame with a per-job nonce that only its frames hold, serialises the verdict with an
encoder of builtins taken before the job ran (a job may replace ``json.dumps.__code__``), and the job cannot reach a
frame (``sys._getframe``, ``tb_frame``, ``gi_frame`` and the like are refused, as are ``gc`` and ``/proc``): a frame
the job writes itself is reported FORBIDDEN, and the harness's captured sender is out of reach. Still, the value is
whatever the job's code computed, so it is data: callers compare it in trusted code with expected values that never
enter the sandbox (``run_calls`` and ``returned``; ``creator_solver`` checks every answer that way and runs the
determinism check in two fresh processes), never an expression such as ``f(x) == expected`` evaluated inside.

Fail closed: when the namespaces cannot be created (no util-linux, a kernel or container that forbids them),
``run_code`` raises ``SandboxUnavailable`` naming why. ``SELFPLAY_SANDBOX=insecure`` opts into the old
process-only sandbox (rlimits and the audit hook, no namespaces), with a warning on every run.
``selfplay doctor`` says which applies on this machine.

What it does not protect against: a flaw in the kernel or CPython; reading what the read-only view shows
(system libraries and the Python standard library); CPU and memory up to the limits; timing side channels.
For hostile code at scale, run the whole trainer in a container or VM as well.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import shlex
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATUSES = ("OK", "EXCEPTION", "TIMEOUT", "MEMORY", "FORBIDDEN", "OUTPUT_LIMIT", "CRASH")
INSECURE_ENV = "SELFPLAY_SANDBOX"  # =insecure: run without namespaces (warned on every run)
WORKER_SOURCE = (Path(__file__).with_name("sandbox_worker.py")).read_text()
NOBODY = 65534
FRAME_CAP = 4_000_000


class SandboxUnavailable(RuntimeError):
    """The operating-system isolation cannot be set up here (and the insecure fallback was not chosen)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one execution."""

    timeout_s: float = 2.0  # wall clock
    cpu_s: int = 2  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 512  # address space (RLIMIT_AS)
    output_bytes: int = 65_536  # stdout + stderr, and any file written (RLIMIT_FSIZE)
    open_files: int = 32  # RLIMIT_NOFILE


@dataclass
class Execution:
    """The structured outcome of one execution."""

    status: str  # one of STATUSES
    value: Any = None  # the expression's value (JSON types), or its repr when ``value_is_repr``
    value_is_repr: bool = False
    stdout: str = ""
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "OK"


# -- launching one isolated worker ------------------------------------------------------------------------------
_SCRIPT = r"""
set -eu
R=/tmp/root
$MOUNT -t tmpfs -o size=1m,mode=0755 selfplay-base /tmp
mkdir -p "$R"
view() {  # a read-only view of $1 at the same path inside the new root (symlinks copied as symlinks)
  if [ -L "$1" ]; then mkdir -p "$R$(dirname "$1")"; ln -s "$(readlink "$1")" "$R$1"
  elif [ -d "$1" ]; then mkdir -p "$R$1"; $MOUNT --bind "$1" "$R$1"; $MOUNT -o remount,bind,ro,nosuid "$R$1"
  elif [ -e "$1" ]; then mkdir -p "$R$(dirname "$1")"; : > "$R$1"; $MOUNT --bind "$1" "$R$1"; $MOUNT -o remount,bind,ro,nosuid "$R$1"
  fi
}
for p in $VIEWS; do view "$p"; done
for p in $HIDE; do if [ -d "$R$p" ]; then $MOUNT -t tmpfs -o size=4k,mode=0555 selfplay-hidden "$R$p"; fi; done
mkdir -p "$R/tmp"
$MOUNT -t tmpfs -o size=$TMP_MB,mode=1777,nosuid,nodev selfplay-tmp "$R/tmp"
$MOUNT -o remount,ro,nosuid,nodev /tmp 2>/dev/null || $MOUNT -o remount,bind,ro /tmp
cd "$R"
exec $ENV -i $CHROOT "$R" $SETPRIV $PRIVS -- "$PYTHON" -I -S -c "$1" "$2" isolated $DROP
"""


def _tool(name: str) -> str:
    for folder in ("/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if not found:
        raise SandboxUnavailable(f"the sandbox needs util-linux's {name!r}, which is not installed")
    return found


def _launch_argv(marker: str) -> list[str]:
    """The command that starts one isolated worker: unshare, then the mount script, chroot and setpriv."""
    if sys.platform != "linux":
        raise SandboxUnavailable(f"the sandbox needs Linux namespaces; this is {sys.platform}")
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    views = [
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        "/libx32",
        "/bin",
        "/sbin",
        "/etc/ld.so.cache",
        "/dev/null",
        "/dev/zero",
        "/dev/random",
        "/dev/urandom",
        prefix,
    ]
    if not python.startswith(prefix + os.sep):
        views.append(os.path.dirname(python))
    stdlib = os.path.realpath(sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})["stdlib"])
    hide = [os.path.join(stdlib, "site-packages"), os.path.join(prefix, "local")]
    root = os.geteuid() == 0
    # as root, the worker keeps only CAP_SETUID/CAP_SETGID to drop to NOBODY itself after exec (which also makes it
    # non-dumpable); in a user namespace it stays root there, with no capability at all
    privs = "--inh-caps=-all --no-new-privs " + (
        "--bounding-set=-all,+setuid,+setgid" if root else "--bounding-set=-all"
    )
    env = {
        "MOUNT": _tool("mount"),
        "CHROOT": _tool("chroot"),
        "ENV": _tool("env"),
        "SETPRIV": _tool("setpriv"),
        "PRIVS": privs,
        "PYTHON": python,
        "VIEWS": " ".join(shlex.quote(v) for v in views),
        "HIDE": " ".join(shlex.quote(h) for h in hide),
        "TMP_MB": "64m",
        "DROP": str(NOBODY) if root else "",
    }
    script = _SCRIPT
    for key, value in env.items():
        script = script.replace(f"${key}", value if key in ("VIEWS", "HIDE", "PRIVS", "DROP") else shlex.quote(value))
    namespaces = ["--pid", "--fork", "--kill-child", "--net", "--mount", "--ipc", "--uts"]
    if not root:
        namespaces = ["--user", "--map-root-user", *namespaces]
    return [_tool("unshare"), *namespaces, "--", "/bin/sh", "-c", script, "selfplay-sandbox", WORKER_SOURCE, marker]


def _fallback_argv(folder: str) -> list[str]:
    """The insecure fallback: the same worker without namespaces, working in ``folder``."""
    return [os.path.realpath(sys.executable), "-I", "-S", "-c", WORKER_SOURCE, "", f"fallback:{folder}"]


def _read_frame(fd: int, deadline: float) -> bytes | None:
    """One length-prefixed frame from ``fd`` by ``deadline``; None on end of input, timeout or an oversized frame."""

    def exactly(size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, min(size - len(data), 1 << 20))
            if not chunk:
                return None
            data += chunk
        return data

    head = exactly(4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    return None if size > FRAME_CAP else exactly(size)


class Worker:
    """One isolated worker process and its pipes."""

    def __init__(self, insecure: bool = False):
        self.insecure = insecure
        self.folder = tempfile.mkdtemp(prefix="selfplay-sandbox-")
        marker = os.path.join(self.folder, "outside-marker")
        Path(marker).write_text("the sandbox must not see this file")
        argv = _fallback_argv(self.folder) if insecure else _launch_argv(marker)
        # a session of its own keeps a terminal's Ctrl-C for the trainer; the worker ends when the trainer does, as
        # its stdin closes (PR_SET_PDEATHSIG would follow the starting *thread*, which run_many's threads are)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={},
                cwd="/",
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            self._cleanup()
            raise SandboxUnavailable(f"cannot start the sandbox: {exc}") from None
        body = _read_frame(self.proc.stdout.fileno(), time.monotonic() + 20)
        try:
            self.hello = json.loads(body) if body else None
        except ValueError:
            self.hello = None
        problem = self._check_hello()
        if problem:
            err = self._stderr_tail()
            self.close()
            raise SandboxUnavailable(problem + (f" ({err})" if err else ""))

    def _check_hello(self) -> str | None:
        h = self.hello
        if not isinstance(h, dict) or not h.get("ready"):
            return "the sandbox worker did not start"
        if self.insecure:
            return None
        if h.get("pid") != 1:
            return f"the sandbox is not in its own PID namespace (pid {h.get('pid')})"
        if h.get("marker_visible"):
            return "the sandbox can see the trainer's files"
        if os.geteuid() == 0 and (h.get("uid") != NOBODY or h.get("groups")):
            return f"the sandbox runs as uid {h.get('uid')}, not as the unprivileged {NOBODY}"
        return None

    def _stderr_tail(self) -> str:
        """The last line the failed launch wrote to stderr (it is given two seconds to finish writing it)."""
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            return (self.proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()[-1][:300]
        except (OSError, IndexError, ValueError):
            return ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, code: str, expression: str | None, limits: Limits) -> Execution:
        """One job; a stalled, dead or garbled worker gives a CRASH verdict (the pool replaces it)."""
        start = time.perf_counter()
        body = json.dumps({"code": code, "expression": expression, "limits": asdict(limits)}).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(body)) + body)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return Execution("CRASH", error="the sandbox worker died", seconds=time.perf_counter() - start)
        raw = _read_frame(self.proc.stdout.fileno(), time.monotonic() + limits.timeout_s + 10)
        parsed = _parse_verdict(raw)
        if parsed is None:
            self.close()
            return Execution("CRASH", error="the sandbox worker stopped answering", seconds=time.perf_counter() - start)
        verdict, restart = parsed
        if restart:  # the job changed the worker's own priority, affinity or limits: it is replaced
            self.close()
        return verdict

    def close(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


_VERDICT_KEYS = {"status", "value", "repr", "error", "stdout", "seconds", "restart"}


def _parse_verdict(raw: bytes | None) -> tuple[Execution, bool] | None:
    """A worker's verdict frame as (an Execution, whether the worker must be replaced), or None when it is not
    exactly one well-formed verdict."""
    if raw is None:
        return None
    try:
        v = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    if (
        not isinstance(v, dict)
        or set(v) != _VERDICT_KEYS
        or v["status"] not in STATUSES
        or not isinstance(v["restart"], bool)
    ):
        return None
    if (
        not isinstance(v["repr"], bool)
        or not isinstance(v["stdout"], str)
        or not isinstance(v["seconds"], (int, float))
        or not (v["error"] is None or isinstance(v["error"], str))
    ):
        return None
    return Execution(v["status"], v["value"], v["repr"], v["stdout"], v["error"], float(v["seconds"])), v["restart"]


class Pool:
    """Pre-started isolated workers; jobs go to whichever is idle."""

    def __init__(self, size: int, insecure: bool = False):
        self.insecure = insecure
        self.pid = os.getpid()
        self.idle: queue.Queue[Worker] = queue.Queue()
        self.size = 0
        self.lock = threading.Lock()
        self.grow(size)

    def grow(self, size: int) -> None:
        with self.lock:
            while self.size < size:
                self.idle.put(Worker(self.insecure))
                self.size += 1

    def run(self, code: str, expression: str | None, limits: Limits) -> Execution:
        worker = self._alive(self.idle.get())  # one that ended after its last job is replaced first
        try:
            return worker.run(code, expression, limits)
        finally:
            try:
                self.idle.put(self._alive(worker))
            except SandboxUnavailable:  # the job's verdict still stands; the pool is one worker smaller
                pass

    def _alive(self, worker: Worker) -> Worker:
        """``worker``, or a fresh one in its place when it has ended; a slot that cannot be refilled leaves the
        pool (and the error is raised)."""
        if worker.alive:
            return worker
        worker.close()
        try:
            return Worker(self.insecure)
        except SandboxUnavailable:
            with self.lock:
                self.size -= 1
            raise

    def close(self) -> None:
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                return


_POOL: Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool(size: int) -> Pool:
    """The process's pool (started on first use; a forked child starts its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            insecure = os.environ.get(INSECURE_ENV, "").lower() == "insecure"
            if insecure:
                msg = (
                    f"{INSECURE_ENV}=insecure: untrusted code runs WITHOUT operating-system isolation (rlimits and "
                    "an audit hook only); do not use this with models you do not trust"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                print(f"selfplay: warning: {msg}", file=sys.stderr)
            _POOL = Pool(size, insecure)
            atexit.register(_POOL.close)
    _POOL.grow(size)
    return _POOL


def run_code(code: str, expression: str | None = None, limits: Limits = Limits()) -> Execution:
    """Execute ``code`` and then evaluate ``expression`` (e.g. ``"f(3)"``) in an isolated sandbox; raises
    ``SandboxUnavailable`` when isolation cannot be set up (unless ``SELFPLAY_SANDBOX=insecure``)."""
    return _pool(1).run(code, expression, limits)


def run_many(
    jobs: list[tuple[str, str | None]], limits: Limits = Limits(), workers: int | None = None
) -> list[Execution]:
    """Run many ``(code, expression)`` jobs on the pool's isolated workers; results in job order. One job's
    failure (even a worker it killed) is its own verdict; the others are unaffected."""
    size = max(1, min(16, workers or min(4, os.cpu_count() or 2)))
    pool = _pool(size)
    with ThreadPoolExecutor(max_workers=min(pool.size, max(1, len(jobs)))) as threads:
        return list(threads.map(lambda job: pool.run(job[0], job[1], limits), jobs))


def run_calls(code: str, calls: list[str], limits: Limits = Limits(), workers: int | None = None) -> list[Execution]:
    """The safe pattern for checking model-written code: run ``code`` once per call expression (``"f(3)"``, built
    from inputs only) and return each value as untrusted data, to be compared in trusted code (``returned``) with
    expected values that never enter the sandbox. An expression such as ``f(3) == 7`` would carry the answer in, and
    its True would come from the job's own process."""
    return run_many([(code, call) for call in calls], limits, workers)


def returned(result: Execution, expected: Any) -> bool:
    """Whether a job ended normally with exactly ``expected`` as its value (JSON types, compared here, outside the
    sandbox, with bool, int and float kept apart: ``1`` is not ``True``)."""
    return result.ok and not result.value_is_repr and same_value(result.value, expected)


def same_value(a: Any, b: Any) -> bool:
    """Equality of JSON-like values that also requires the same types (``True`` != ``1``, ``1`` != ``1.0``); tuples
    equal lists, as a value comes back from the sandbox as JSON."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def isolation_report() -> tuple[bool, str]:
    """Whether untrusted code runs isolated on this machine, and a line saying how (or why not)."""
    try:
        worker = Worker()
    except SandboxUnavailable as exc:
        fallback = os.environ.get(INSECURE_ENV, "").lower() == "insecure"
        return False, f"isolation unavailable: {exc}" + (
            f" ({INSECURE_ENV}=insecure is set: jobs run unisolated, with a warning)"
            if fallback
            else f"; untrusted code is refused (set {INSECURE_ENV}=insecure to run it without isolation)"
        )
    try:
        result = worker.run("x = 20", "x + 22", Limits())
        seen = worker.hello.get("root_entries", [])
    finally:
        worker.close()
    user = "root inside a user namespace, no capabilities" if os.geteuid() != 0 else f"uid {NOBODY}, no capabilities"
    if (result.status, result.value) != ("OK", 42):
        return False, f"isolation started but a trivial job failed: {result.status} {result.error}"
    return True, (
        f"isolation works: PID, network, mount, IPC and UTS namespaces via util-linux unshare; {user}, "
        f"no_new_privs; a read-only view of /{', /'.join(seen)} with a private /tmp"
    )

"""Running untrusted Python (code written by models) in a separate, limited process.

Each execution gets a fresh interpreter (``python -I -S``: no site-packages, no user paths, no environment
variables of the parent) in a new session, in an empty temporary directory that is deleted afterwards, with
rlimits on CPU time, address space, file size (so stdout cannot flood) and open files, and a wall-clock
timeout after which the whole process group is SIGKILLed. Before the code runs, an audit hook (PEP 578) that
cannot be removed refuses: creating sockets, starting processes (fork, exec, spawn, subprocess, os.system),
loading native code (ctypes, cffi), signalling other processes, changing rlimits, opening files for writing
outside the temporary directory, opening any file outside it and the Python installation (so neither the
parent's files nor /proc/<pid>/environ), and file-system changes outside it.

What it does not protect against: a flaw in CPython or the kernel; CPU and memory of a few hundred MB per
execution (bounded, not zero); code that reads the interpreter's own memory, e.g. to forge the result channel
(compare returned values in the caller rather than trusting a flag the code could set); timing side channels.
For hostile code at scale, run the whole trainer in a container or VM as well.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

STATUSES = ("OK", "EXCEPTION", "TIMEOUT", "MEMORY", "FORBIDDEN", "OUTPUT_LIMIT", "CRASH")

_HARNESS = r'''
import json, os, sys
_fd = int(sys.argv[1])
_tmp = os.path.realpath(os.getcwd())
_py = [os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}]
_devices = {"/dev/null", "/dev/urandom", "/dev/random", "/dev/zero"}
_blocked = {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
            "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
            "os.kill", "os.killpg", "os.setuid", "os.setgid", "os.chroot", "resource.setrlimit", "sys.addaudithook",
            "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof", "ctypes.call_function",
            "sys.remote_exec", "os.startfile", "pty.spawn", "_posixsubprocess.fork_exec", "mmap.__new__"}
_blocked_modules = {"ctypes", "_ctypes", "cffi", "_posixsubprocess", "_xxsubinterpreters", "_interpreters"}
_path_events = {"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
                "os.link", "os.truncate", "os.utime", "shutil.rmtree", "os.chdir"}
_listing_events = {"os.listdir", "os.scandir"}  # the import system lists the installation's folders

class Forbidden(Exception):
    pass

def _inside(path, roots):
    real = os.path.realpath(os.fsdecode(path))
    return any(real == r or real.startswith(r + os.sep) for r in roots)

def _hook(event, args):
    if event in _blocked:
        raise Forbidden(f"{event} is not allowed in the sandbox")
    if event == "import" and args[0].split(".")[0] in _blocked_modules:
        raise Forbidden(f"importing {args[0]} is not allowed in the sandbox")
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        writing = (mode and any(c in str(mode) for c in "wax+")) or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
        if _inside(path, [_tmp]):
            return
        if not writing and (_inside(path, _py) or os.path.realpath(os.fsdecode(path)) in _devices):
            return
        raise Forbidden(f"opening {os.fsdecode(path)!r} {'for writing ' if writing else ''}outside the sandbox")
    if event in _listing_events:
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path, [_tmp] + _py):
            raise Forbidden(f"{event} on {os.fsdecode(path)!r} outside the sandbox")
    if event in _path_events:
        for path in args[:2]:
            if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path, [_tmp]):
                raise Forbidden(f"{event} on {os.fsdecode(path)!r} outside the sandbox")

def _value(v):
    try:
        json.dumps(v)
        return v, False
    except (TypeError, ValueError):
        return repr(v), True

_source = sys.stdin.read()
_code, _expression = json.loads(_source)
_out = os.fdopen(_fd, "w")
sys.addaudithook(_hook)
_result = {"status": "OK", "value": None, "repr": False, "error": None}
_scope = {"__name__": "__sandbox__"}
try:
    exec(compile(_code, "<sandbox>", "exec"), _scope)
    if _expression:
        _result["value"], _result["repr"] = _value(eval(compile(_expression, "<expression>", "eval"), _scope))
except Forbidden as exc:
    _result.update(status="FORBIDDEN", error=str(exc))
except MemoryError:
    _result.update(status="MEMORY", error="MemoryError")
except RecursionError as exc:
    _result.update(status="EXCEPTION", error=f"RecursionError: {exc}")
except OSError as exc:
    _result.update(status="OUTPUT_LIMIT" if exc.errno == 27 else "EXCEPTION", error=f"{type(exc).__name__}: {exc}")
except BaseException as exc:
    name = type(exc).__name__
    forbidden = isinstance(exc.__context__, Forbidden) or "Forbidden" in name
    _result.update(status="FORBIDDEN" if forbidden else "EXCEPTION", error=f"{name}: {exc}"[:2000])
try:
    sys.stdout.flush()
except BaseException:
    pass
_out.write(json.dumps(_result))
_out.flush()
os._exit(0)
'''


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


def _limit(limits: Limits):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * 2**20,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_code(code: str, expression: str | None = None, limits: Limits = Limits()) -> Execution:
    """Execute ``code`` and then evaluate ``expression`` (e.g. ``"f(3)"``) in a fresh sandboxed interpreter."""
    tmp = tempfile.mkdtemp(prefix="selfplay-sandbox-")
    start = time.perf_counter()
    read_fd, write_fd = os.pipe()
    out_path = os.path.join(tmp, ".stdout")
    proc = None
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HARNESS, str(write_fd)], stdin=subprocess.PIPE, stdout=out,
                stderr=subprocess.STDOUT, cwd=tmp, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                pass_fds=(write_fd,), start_new_session=True, preexec_fn=_limit(limits))
        os.close(write_fd)
        write_fd = -1
        try:
            proc.communicate(json.dumps([code, expression]).encode(), timeout=limits.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc)
        with os.fdopen(read_fd, "rb") as channel:
            read_fd = -1
            raw = channel.read(1_000_000)
        seconds = time.perf_counter() - start
        stdout = _read_capped(out_path, limits.output_bytes)
        return _verdict(proc.returncode, raw, stdout, timed_out, seconds, limits)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read_capped(path: str, cap: int) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(cap).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _verdict(returncode: int, raw: bytes, stdout: str, timed_out: bool, seconds: float, limits: Limits) -> Execution:
    if timed_out:
        return Execution("TIMEOUT", stdout=stdout, error=f"wall-clock limit of {limits.timeout_s}s", seconds=seconds)
    if raw:
        r = json.loads(raw)
        return Execution(r["status"], r["value"], r["repr"], stdout, r["error"], seconds)
    kills = {signal.SIGXCPU: ("TIMEOUT", f"CPU limit of {limits.cpu_s}s"),
             signal.SIGKILL: ("TIMEOUT", f"CPU limit of {limits.cpu_s}s"),
             signal.SIGXFSZ: ("OUTPUT_LIMIT", f"output beyond {limits.output_bytes} bytes")}
    if returncode is not None and returncode < 0 and -returncode in kills:
        status, error = kills[-returncode]
        return Execution(status, stdout=stdout, error=error, seconds=seconds)
    if "MemoryError" in stdout:
        return Execution("MEMORY", stdout=stdout, error="MemoryError", seconds=seconds)
    if len(stdout.encode()) >= limits.output_bytes:
        return Execution("OUTPUT_LIMIT", stdout=stdout, error=f"output beyond {limits.output_bytes} bytes", seconds=seconds)
    return Execution("CRASH", stdout=stdout, error=f"the interpreter ended with code {returncode} and no result",
                     seconds=seconds)


def run_many(jobs: list[tuple[str, str | None]], limits: Limits = Limits(), workers: int | None = None) -> list[Execution]:
    """Run many ``(code, expression)`` jobs in parallel sandboxes; results in job order."""
    with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(lambda job: run_code(job[0], job[1], limits), jobs))

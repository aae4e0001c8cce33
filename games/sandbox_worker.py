"""The program that runs inside the sandbox (trusted code; untrusted code only ever runs in its forked children).

``games.sandbox`` starts it as ``python -I -S -c <this file's source>`` inside fresh PID, network, mount, IPC and
UTS namespaces, chrooted into a read-only view of the system with a private tmpfs ``/tmp``, as an unprivileged
user with no capabilities and ``no_new_privs``. It is PID 1 of its PID namespace, so a job cannot SIGKILL it, and
it drops from root to the unprivileged user itself (when the trainer is root), which makes it non-dumpable, so a
job cannot ptrace it or read its memory. It must not import anything outside the
standard library (no site-packages are visible).

Protocol on stdin / stdout: frames of a 4-byte big-endian length and a JSON body. First it sends a hello frame
describing where it runs; then, for each job frame ``{"code", "expression", "limits"}``, it forks a child in a fresh
empty working directory with the job's rlimits (``RLIMIT_NPROC`` 0: the child can start no process or thread), runs
the code there behind an audit hook, and answers one verdict frame. After each job it kills every other process of
its namespace and wipes ``/tmp``, so nothing a job leaves behind reaches the next one.
"""

import json
import os
import resource
import select
import signal
import struct
import sys
import time

STATUSES = ("OK", "EXCEPTION", "TIMEOUT", "MEMORY", "FORBIDDEN", "OUTPUT_LIMIT", "CRASH")
RESULT_CAP = 1_000_000  # bytes a job may send back
MODE = sys.argv[2] if len(sys.argv) > 2 else "isolated"  # "isolated", or "fallback:<folder>" (no namespaces)
ISOLATED = MODE == "isolated"
TMP = "/tmp" if ISOLATED else MODE.partition(":")[2]  # wiped after every job
JOB_DIR = TMP + "/job"
OUTPUT = TMP + "/.output"


def read_frame(fd, cap):
    """One frame from ``fd``; None at end of input or when it is malformed or larger than ``cap``."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > cap:
        return None
    return _read_exactly(fd, size)


def _read_exactly(fd, size):
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def write_frame(fd, obj):
    data = json.dumps(obj).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def depth_ok(value, limit=64):
    """True when a decoded JSON value nests at most ``limit`` deep (iteratively: a hostile value cannot recurse us)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


NONCE_BYTES = 16


def validate(raw, nonce):
    """The child's result frame (a 4-byte length, the JSON verdict, the 16-byte nonce) as a verdict dict; None when it
    is anything but one well-formed frame; False when it is well formed but does not end with this job's nonce: a
    frame the job's code wrote itself."""
    if raw is None or len(raw) < 4:
        return None
    (size,) = struct.unpack(">I", raw[:4])
    if size == len(raw) - 4 - NONCE_BYTES:
        body, trailer = raw[4 : 4 + size], raw[4 + size :]
    elif size == len(raw) - 4:  # a frame in the old shape, without a nonce: never the harness's
        body, trailer = raw[4:], b""
    else:  # nothing before or after the one frame
        return None
    try:
        result = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(result, dict) or set(result) != {"status", "value", "repr", "error"}:
        return None
    if result["status"] not in STATUSES or not isinstance(result["repr"], bool):
        return None
    if result["error"] is not None and not isinstance(result["error"], str):
        return None
    if not depth_ok(result["value"]):
        return None
    if trailer != bytes.fromhex(nonce):
        return False
    return result


# -- inside the forked child ------------------------------------------------------------------------------------
def _make_hook(tmp, forbidden, no_frame):
    """The audit hook (PEP 578), defence in depth behind the operating system's isolation. Its whole state is in
    default arguments (immutable tuples, frozensets, strings and its own code object; setting the hook's
    ``__code__`` or ``__defaults__`` is itself an audited event it refuses, while other functions' stay settable, as
    ``collections.namedtuple(defaults=...)`` needs) and it calls no Python-level function, so code that patches
    modules, globals or builtins changes nothing it relies on."""
    blocked = frozenset(
        {
            "socket.__new__",
            "socket.connect",
            "socket.bind",
            "socket.getaddrinfo",
            "socket.sendto",
            "subprocess.Popen",
            "os.system",
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "os.fork",
            "os.forkpty",
            "os.kill",
            "os.killpg",
            "os.setuid",
            "os.setgid",
            "os.chroot",
            "resource.setrlimit",
            "resource.prlimit",
            "sys.addaudithook",
            "ctypes.dlopen",
            "ctypes.dlsym",
            "ctypes.cdata",
            "ctypes.addressof",
            "ctypes.call_function",
            "sys.remote_exec",
            "os.startfile",
            "pty.spawn",
            "_posixsubprocess.fork_exec",
            "mmap.__new__",
            "os.mkfifo",
            "os.mknod",
            "os.setxattr",
            "os.removexattr",
            "os.symlink",
            "os.link",
            "os.chdir",
            "sqlite3.connect",
            "readline.read_history_file",
            "readline.write_history_file",
            "readline.append_history_file",
            "readline.read_init_file",
            "os.setpriority",
            "os.sched_setaffinity",
            "os.sched_setscheduler",
            "os.sched_setparam",
            "os.pidfd_open",
            "signal.pthread_kill",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "code.__new__",
            "sys.setprofile",
            "sys.settrace",
            "fcntl.ioctl",
            "os.chown",
            "os.lchown",
            "sys._current_frames",
            "sys.monitoring.register_callback",
        }
    )
    # frames reach the harness's own frames (its sender, the job's expression, the nonce that marks its result):
    # sys._getframe is refused with a ValueError, which the standard library already expects from it
    frame_events = frozenset({"sys._getframe", "sys._getframemodulename"})
    frame_attrs = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})
    modules = frozenset(
        {
            "ctypes",
            "_ctypes",
            "cffi",
            "_posixsubprocess",
            "_xxsubinterpreters",
            "_interpreters",
            "sqlite3",
            "_sqlite3",
            "readline",
            "_testcapi",
            "_testinternalcapi",
            "faulthandler",
        }
    )
    path_events = frozenset(
        {
            "open",
            "os.remove",
            "os.rmdir",
            "os.rename",
            "os.mkdir",
            "os.chmod",
            "os.truncate",
            "os.utime",
            "shutil.rmtree",
            "os.listdir",
            "os.scandir",
            "os.listxattr",
            "os.getxattr",
        }
    )
    stdlib = tuple(p for p in sys.path if p)

    def hook(
        event,
        args,
        _blocked=blocked,
        _modules=modules,
        _paths=path_events,
        _tmp=tmp,
        _stdlib=stdlib,
        _forbidden=forbidden,
        _frames=frame_events,
        _frame_attrs=frame_attrs,
        _no_frame=no_frame,
        _str=str,
        _bytes=bytes,
        _int=int,
        _isinstance=isinstance,
        _exact=str.__getitem__,
        _all=slice(None),
        _decode=bytes.decode,
        _type=type,
        _function=type(_make_hook),
        _guarded=("__code__", "__defaults__", "__kwdefaults__"),
        _self=None,
    ):
        if event in _blocked:
            raise _forbidden(event + " is not allowed in the sandbox")
        if event in _frames:
            raise _no_frame(event + " is not allowed in the sandbox: frames reach the harness")
        if event == "object.__getattr__":
            if len(args) > 1 and _type(args[1]) is _str and args[1] in _frame_attrs:
                raise _forbidden("reading ." + args[1] + " is not allowed in the sandbox: frames reach the harness")
            return
        if event == "import":
            if args[0].partition(".")[0] in _modules:
                raise _forbidden("importing " + args[0] + " is not allowed in the sandbox")
            where = args[1] if len(args) > 1 else None  # the file of an extension module: native code
            if _isinstance(where, _str) and not any(where.startswith(p + "/") for p in _stdlib):
                raise _forbidden("loading native code from " + repr(where) + " is not allowed in the sandbox")
            return
        if event == "object.__setattr__":
            # type() and a real function's __code__ are read in C: no Python code of the job runs here
            if (
                _type(args[0]) is _function
                and args[0].__code__ is _self
                and (_type(args[1]) is not _str or args[1] in _guarded)
            ):
                raise _forbidden(
                    "replacing the audit hook's " + _exact(_str(args[1]), _all) + " is not allowed in the sandbox"
                )
            return
        if event not in _paths or not args:
            return
        path = args[0]
        if path is None or _isinstance(path, _int):
            return
        if _isinstance(path, _bytes):
            path = _decode(path, "utf-8", "replace")
        if not _isinstance(path, _str):
            raise _forbidden(event + " on a path that is not a str or bytes (pass paths as strings in the sandbox)")
        path = _exact(path, _all)  # an exact str: a subclass cannot override startswith or split
        # no symlinks can be made (os.symlink is refused), so a relative path without '..' stays in the folder
        if ".." in path.split("/"):
            raise _forbidden(event + " on " + repr(path) + ": '..' is not allowed in the sandbox")
        if not path.startswith("/") or path == _tmp or path.startswith(_tmp + "/"):
            return
        # listing a folder only reads it (the import system lists a package's folder to import its submodules)
        writing = event not in ("open", "os.listdir", "os.scandir") or (
            event == "open"
            and ((args[1] and any(c in _str(args[1]) for c in "wax+")) or (len(args) > 2 and args[2] & 0o3103))
        )  # O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND
        reading_stdlib = not writing and any(path == p or path.startswith(p + "/") for p in _stdlib)
        if reading_stdlib or (event == "open" and not writing and path in ("/dev/null", "/dev/urandom")):
            return
        raise _forbidden(event + " on " + repr(path) + " outside the sandbox")

    # the same function, holding its own code object as a default: the one function whose attributes it guards
    return type(hook)(
        hook.__code__, hook.__globals__, "hook", hook.__defaults__[:-1] + (hook.__code__,), hook.__closure__
    )


def _encoder():
    """A JSON encoder for the result frame built only from builtins taken now, before any job code runs: json.dumps
    is Python code whose ``__code__`` a job could replace to read (or rewrite) what the harness sends. Exact JSON
    types only (tuples as lists); anything else raises TypeError, a NaN or infinity ValueError."""
    import json.encoder

    quote = json.encoder.encode_basestring_ascii  # the C function where CPython has it, taken before the job
    int_repr, float_repr, join, items, kind = int.__repr__, float.__repr__, str.join, dict.items, type

    def encode(value, depth=0):
        if value is None:
            return "null"
        if value is True or value is False:
            return "true" if value is True else "false"
        t = kind(value)
        if t is int:
            return int_repr(value)
        if t is float:
            text = float_repr(value)
            if text in ("nan", "inf", "-inf"):
                raise ValueError("not a JSON number")
            return text
        if t is str:
            return quote(value)
        if depth > 64:
            raise ValueError("nested too deep")
        if t is list or t is tuple:
            return "[" + join(",", [encode(v, depth + 1) for v in value]) + "]"
        if t is dict:
            parts = []
            for k, v in items(value):
                if kind(k) is not str:
                    raise TypeError("a key that is not a string")
                parts.append(quote(k) + ":" + encode(v, depth + 1))
            return "{" + join(",", parts) + "}"
        raise TypeError("not a JSON value")

    return encode


def run_job(job, result_fd, nonce):
    """In the forked child: run the job's code and expression and write one result frame: a 4-byte length, the JSON
    verdict, then the job's 16-byte nonce, which never passes through code the job could have changed."""
    import builtins

    encode, write, pack, to_bytes = _encoder(), os.write, struct.pack, str.encode  # taken before the job runs
    mark = bytes.fromhex(nonce)

    class Forbidden(Exception):
        pass

    class NoFrame(Forbidden, ValueError):  # sys._getframe's callers in the standard library catch ValueError
        pass

    def send(result):
        try:
            body = to_bytes(encode(result))
        except (TypeError, ValueError, RecursionError):
            body = to_bytes(encode({"status": "CRASH", "value": None, "repr": False, "error": "unserialisable result"}))
        frame = pack(">I", len(body)) + body + mark
        while frame:
            frame = frame[write(result_fd, frame) :]

    code, expression = compile(job["code"], "<sandbox>", "exec"), job.get("expression")
    expression = compile(expression, "<expression>", "eval") if expression else None
    hook = _make_hook(JOB_DIR, Forbidden, NoFrame)
    blocked = hook.__defaults__[1]
    for name in list(sys.modules):  # a module already loaded would import without an audit event
        if name.partition(".")[0] in blocked:
            del sys.modules[name]
    sys.addaudithook(hook)
    result = {"status": "OK", "value": None, "repr": False, "error": None}
    job = nonce = None  # the job's expression and the nonce stay only in the harness's frames and in ``mark``
    scope = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        exec(code, scope)
        if expression is not None:
            value = eval(expression, scope)
            try:
                encode(value)
                result["value"] = value
            except (TypeError, ValueError, RecursionError):
                text = repr(value)
                result["value"], result["repr"] = (
                    str.__getitem__(text if type(text) is str else "?", slice(0, 10000)),
                    True,
                )
    except Forbidden as exc:
        result.update(status="FORBIDDEN", error=str.__getitem__(f"{exc}", slice(0, 2000)))
    except MemoryError:
        result.update(status="MEMORY", error="MemoryError")
    except RecursionError as exc:
        result.update(status="EXCEPTION", error=f"RecursionError: {exc}")
    except OSError as exc:
        result.update(status="OUTPUT_LIMIT" if exc.errno == 27 else "EXCEPTION", error=f"{type(exc).__name__}: {exc}")
    except BaseException as exc:  # noqa: BLE001 - every ending of untrusted code becomes a verdict
        name = type(exc).__name__
        forbidden = isinstance(exc.__context__, Forbidden) or "Forbidden" in name
        result.update(status="FORBIDDEN" if forbidden else "EXCEPTION", error=f"{name}: {exc}"[:2000])
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001
        pass
    send(result)
    os._exit(0)


def _child(job, result_fd, out_fd, nonce):
    limits = job["limits"]
    os.setsid()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.closerange(3, result_fd)
    os.closerange(result_fd + 1, 4096)
    os.chdir(JOB_DIR)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    for name, value in (
        ("RLIMIT_CPU", (limits["cpu_s"], limits["cpu_s"] + 1)),
        ("RLIMIT_AS", (limits["memory_mb"] * 2**20,) * 2),
        ("RLIMIT_FSIZE", (limits["output_bytes"],) * 2),
        ("RLIMIT_NOFILE", (limits["open_files"],) * 2),
        ("RLIMIT_CORE", (0, 0)),
        ("RLIMIT_NPROC", (0, 0)),
    ):
        resource.setrlimit(getattr(resource, name), value)
    run_job(job, result_fd, nonce)


# -- the worker loop (PID 1 of the namespace) -------------------------------------------------------------------
def _wipe_tmp():
    """Remove everything under TMP (the private tmpfs /tmp when isolated) and make a fresh, empty job folder."""
    for root, dirs, files in os.walk(TMP, topdown=False):
        for name in files:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
        for name in dirs:
            path = os.path.join(root, name)
            try:
                os.unlink(path) if os.path.islink(path) else os.rmdir(path)
            except OSError:
                pass
    os.mkdir(JOB_DIR, 0o700)


def _reap_all(child):
    """Kill every other process of the namespace (kill(-1) from PID 1 spares only PID 1; without namespaces only
    the child's process group) and reap them."""
    try:
        os.kill(-1, signal.SIGKILL) if ISOLATED else os.killpg(child, signal.SIGKILL)
    except OSError:
        pass
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if not ISOLATED:
                return
            time.sleep(0.001)


def run_one(job):
    """Fork a child for ``job``, collect its result frame within the wall-clock limit, clean up; the verdict."""
    limits = job["limits"]
    _wipe_tmp()
    out_fd = os.open(OUTPUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    read_fd, write_fd = os.pipe()
    nonce = os.urandom(16).hex()  # only the harness's frame in the child holds it
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            _child(job, write_fd, out_fd, nonce)
        finally:
            os._exit(70)
    os.close(write_fd)
    os.close(out_fd)
    raw, status, timed_out, too_big, eof = b"", None, False, False, False
    deadline = start + limits["timeout_s"]
    while not (eof and status is not None):
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        if not eof and select.select([read_fd], [], [], min(left, 0.05))[0]:
            chunk = os.read(read_fd, 65536)
            raw += chunk
            eof = not chunk
            if len(raw) > RESULT_CAP:
                too_big = True
                break
            continue
        if status is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
            elif eof:
                time.sleep(0.002)
    os.close(read_fd)
    _reap_all(pid)
    if status is None:
        try:
            status = os.waitpid(pid, 0)[1]
        except ChildProcessError:
            status = 0
    seconds = time.monotonic() - start
    with open(OUTPUT, "rb") as f:
        output = f.read(limits["output_bytes"]).decode("utf-8", "replace")
    verdict = _verdict(raw, status, timed_out, too_big, output, limits, nonce)
    verdict.update(stdout=output, seconds=seconds)
    return verdict


def _verdict(raw, status, timed_out, too_big, output, limits, nonce):
    if timed_out:
        return {
            "status": "TIMEOUT",
            "value": None,
            "repr": False,
            "error": f"wall-clock limit of {limits['timeout_s']}s",
        }
    if too_big:
        return {"status": "CRASH", "value": None, "repr": False, "error": "the result exceeded 1,000,000 bytes"}
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if raw:
        result = validate(raw, nonce)
        if result is False:
            return {
                "status": "FORBIDDEN",
                "value": None,
                "repr": False,
                "error": "the job wrote a result frame of its own: a forged verdict",
            }
        if result is not None:
            return result
        return {"status": "CRASH", "value": None, "repr": False, "error": "the job sent a malformed result"}
    kills = {
        signal.SIGXCPU: ("TIMEOUT", f"CPU limit of {limits['cpu_s']}s"),
        signal.SIGKILL: ("TIMEOUT", f"CPU limit of {limits['cpu_s']}s"),
        signal.SIGXFSZ: ("OUTPUT_LIMIT", f"output beyond {limits['output_bytes']} bytes"),
    }
    if signum in kills:
        state, error = kills[signum]
        return {"status": state, "value": None, "repr": False, "error": error}
    if "MemoryError" in output:
        return {"status": "MEMORY", "value": None, "repr": False, "error": "MemoryError"}
    if len(output.encode()) >= limits["output_bytes"]:
        return {
            "status": "OUTPUT_LIMIT",
            "value": None,
            "repr": False,
            "error": f"output beyond {limits['output_bytes']} bytes",
        }
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -(signum or 0)
    return {
        "status": "CRASH",
        "value": None,
        "repr": False,
        "error": f"the interpreter ended with code {code} and no result",
    }


def _drop_privileges(uid):
    """Become ``uid`` (from root, with only CAP_SETUID and CAP_SETGID left by setpriv): every capability goes, and
    since the credentials change after exec the kernel makes this process non-dumpable (fs.suid_dumpable), so no
    job of the same user can ptrace it or open its memory."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _own_state():
    """The worker's scheduling and limits, which a job of the same user could change (it is restarted if so)."""
    limits = tuple(resource.getrlimit(getattr(resource, n)) for n in dir(resource) if n.startswith("RLIMIT_"))
    return os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)), os.sched_getscheduler(0), limits


def main():
    marker = sys.argv[1] if len(sys.argv) > 1 else ""
    if len(sys.argv) > 3 and sys.argv[3]:
        _drop_privileges(int(sys.argv[3]))
    hello = {
        "ready": True,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "marker_visible": bool(marker) and os.path.exists(marker),
        "cwd": os.getcwd(),
        "root_entries": sorted(os.listdir("/")),
        "groups": os.getgroups(),
    }
    write_frame(1, hello)
    state = _own_state()
    while True:
        body = read_frame(0, 10_000_000)
        if body is None:
            return
        try:
            job = json.loads(body)
            verdict = run_one(job)
        except Exception as exc:  # noqa: BLE001 - a broken job frame must not end the worker
            verdict = {
                "status": "CRASH",
                "value": None,
                "repr": False,
                "error": f"worker: {type(exc).__name__}: {exc}",
                "stdout": "",
                "seconds": 0.0,
            }
        restart = _own_state() != state  # a job reached this worker's priority, affinity or limits
        write_frame(1, {**verdict, "restart": restart})
        if restart:  # the pool starts a fresh worker in its place
            return


main()

"""Hostile code in the sandbox: nothing escapes its limits, and the parent and the other runs are unaffected."""

import os
import resource
import sqlite3
from pathlib import Path

import pytest

from selfplay.games import sandbox
from selfplay.games.sandbox import Limits, run_code, run_many

LIMITS = Limits(timeout_s=1.5, cpu_s=1, memory_mb=256, output_bytes=20_000)
HERE = Path(__file__).resolve()

HOSTILE = {  # name: (code, expected status)
    "infinite loop": ("while True:\n    pass", "TIMEOUT"),
    "C-level cpu burn": ("sum(range(10**12))", "TIMEOUT"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "FORBIDDEN"),
    "huge list": ("x = [0] * 10**10", "MEMORY"),
    "huge bytearray": ("x = bytearray(2**40)", "MEMORY"),
    "growing memory": ("x = []\nwhile True:\n    x.append(' ' * 10**7)", ("MEMORY", "TIMEOUT")),  # slow under load
    "write /tmp": ("open('/tmp/selfplay-evil.txt', 'w').write('x')", "FORBIDDEN"),
    "write next to the tests": (f"open({str(HERE.parent / 'evil.py')!r}, 'w').write('x')", "FORBIDDEN"),
    "read the parent's source": (f"open({str(HERE)!r}).read()", "FORBIDDEN"),
    "read /etc/passwd": ("open('/etc/passwd').read()", "FORBIDDEN"),
    "read the parent's environment": ("import os\nopen(f'/proc/{os.getppid()}/environ').read()", "FORBIDDEN"),
    "list the home folder": ("import os\nos.listdir(os.path.expanduser('~'))", ("FORBIDDEN", "EXCEPTION")),
    "socket": ("import socket\nsocket.socket().connect(('127.0.0.1', 22))", "FORBIDDEN"),
    "dns lookup": ("import socket\nsocket.getaddrinfo('example.com', 80)", "FORBIDDEN"),
    "urllib": ("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:1')", "FORBIDDEN"),
    "ctypes": ("import ctypes\nctypes.CDLL(None).system(b'true')", "FORBIDDEN"),
    "ctypes via importlib": ("import importlib\nimportlib.import_module('_ctypes')", "FORBIDDEN"),
    "subprocess": ("import subprocess\nsubprocess.run(['true'])", "FORBIDDEN"),
    "os.system": ("import os\nos.system('true')", "FORBIDDEN"),
    "os.execv": ("import os\nos.execv('/bin/true', ['true'])", "FORBIDDEN"),
    "posix_spawn": ("import os\nos.posix_spawn('/bin/true', ['true'], {})", "FORBIDDEN"),
    "kill the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "FORBIDDEN"),
    "kill the group": ("import os, signal\nos.killpg(0, signal.SIGKILL)", "FORBIDDEN"),
    "raise rlimits": ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "FORBIDDEN"),
    "new audit hook, then read": (
        "import sys\nsys.addaudithook(lambda *a: None)\nopen('/etc/passwd').read()",
        "FORBIDDEN",
    ),
    "chdir out": ("import os\nos.chdir('/')", "FORBIDDEN"),
    "symlink out": ("import os\nos.symlink('/etc/passwd', 'p')\nopen('p').read()", "FORBIDDEN"),
    "mmap": ("import mmap\nmmap.mmap(-1, 2**20)", "FORBIDDEN"),
    "deep recursion": ("def f(n):\n    return f(n + 1)\nf(0)", "EXCEPTION"),
    "output flood": ("while True:\n    print('x' * 1000)", "OUTPUT_LIMIT"),
    "file flood in its folder": (
        "with open('big', 'w') as f:\n    while True:\n        f.write('x' * 10**6)",
        "OUTPUT_LIMIT",
    ),
    "ignore SIGTERM and spin": (
        "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass",
        "TIMEOUT",
    ),
    "too many files": ("fs = [open(f'f{i}', 'w') for i in range(1000)]", "EXCEPTION"),
    "hard exit": ("import os\nos._exit(3)", "CRASH"),
    "thread bomb": (
        "import threading, time\nfor _ in range(100000):\n    threading.Thread(target=time.sleep, args=(60,)).start()",
        ("MEMORY", "EXCEPTION", "TIMEOUT"),
    ),
}

# The result channel: find the job's result pipe (a FIFO among the open descriptors) and abuse it.
FIND_PIPE = (
    "import os, stat, struct, json\n"
    "def _fifo(fd):\n"
    "    try:\n"
    "        return stat.S_ISFIFO(os.fstat(fd).st_mode)\n"
    "    except OSError:\n"
    "        return False\n"
    "fds = [fd for fd in range(3, 64) if _fifo(fd)]\n"
    "def frame(body):\n"
    "    return struct.pack('>I', len(body)) + body\n"
)
OK_BODY = "json.dumps({'status': 'OK', 'value': 42, 'repr': False, 'error': None}).encode()"

# The escapes of the audit-hook-only sandbox, and more. Each must be contained: FORBIDDEN where the hook sees it;
# where CPython raises no audit event (mkfifo, mknod, setpriority, sched_*, pidfd, setuid) the operating system
# contains it (a private /tmp, a PID namespace whose PID 1 is the worker, no capabilities), and the tests below
# check that nothing outside changed.
HOSTILE.update(
    {
        "empty the hook's lists via __main__": (
            "import sys\nm = sys.modules['__main__']\nfor k in list(vars(m)):\n"
            "    v = getattr(m, k)\n    if isinstance(v, (set, frozenset, list, dict)):\n        setattr(m, k, type(v)())\n"
            "import os\nos.system('id')",
            "FORBIDDEN",
        ),
        "swap the hook's code via gc": (
            "import gc\nfor f in gc.get_objects():\n    if getattr(f, '__name__', '') == 'hook':\n"
            "        f.__code__ = (lambda e, a: None).__code__\nimport os\nos.system('id')",
            "FORBIDDEN",
        ),
        # the hook is reachable through the frames of the job's runner; its attributes are not writable
        "empty the hook's defaults via frames": (
            "import sys\nh = sys._getframe(1).f_locals['hook']\nh.__defaults__ = ()\nopen('/etc/passwd').read()",
            "FORBIDDEN",
        ),
        "swap the hook's code via frames": (
            "import sys\nh = sys._getframe(1).f_locals['hook']\nh.__code__ = (lambda e, a: None).__code__\n"
            "import os\nos.system('id')",
            "FORBIDDEN",
        ),
        "set the hook's kwdefaults with object.__setattr__": (
            "import sys\nh = sys._getframe(1).f_locals['hook']\nobject.__setattr__(h, '__kwdefaults__', {})",
            "FORBIDDEN",
        ),
        "patch os.path.realpath": (
            "import os\nos.path.realpath = lambda p: '/tmp/job'\nopen('/etc/passwd').read()",
            "FORBIDDEN",
        ),
        "patch builtins.isinstance": (
            "import builtins\nbuiltins.isinstance = lambda *a: False\nopen('/etc/passwd').read()",
            "FORBIDDEN",
        ),
        "patch str.startswith through a subclass": (
            "class S(str):\n    def startswith(self, *a):\n        return True\nopen(S('/etc/passwd')).read()",
            ("FORBIDDEN", "OK", "EXCEPTION"),
        ),
        "dir_fd through a symlink made inside": (
            "import os\nos.symlink('/', 'root')\nfd = os.open('root', os.O_RDONLY)\n"
            "os.open('etc/passwd', os.O_RDONLY, dir_fd=fd)",
            "FORBIDDEN",
        ),
        "dir_fd of the root": (
            "import os\nfd = os.open('/', os.O_RDONLY)\nos.open('etc/passwd', os.O_RDONLY, dir_fd=fd)",
            "FORBIDDEN",
        ),
        "dot-dot out of the folder": ("open('../../etc/passwd').read()", "FORBIDDEN"),
        "write next to the worker's output": ("open('/tmp/.output', 'w').write('forged')", "FORBIDDEN"),
        "mkfifo": ("import os\nos.mkfifo('/tmp/fifo')", ("FORBIDDEN", "OK", "EXCEPTION")),
        "mknod": ("import os, stat\nos.mknod('node', stat.S_IFIFO | 0o600)", ("FORBIDDEN", "OK", "EXCEPTION")),
        "setxattr": ("import os\nos.setxattr('.', 'user.evil', b'1')", "FORBIDDEN"),
        "sqlite3 file outside": (
            "import sqlite3\nsqlite3.connect('/tmp/evil.sqlite').execute('create table t(x)')",
            "FORBIDDEN",
        ),
        "readline history": ("import readline\nreadline.write_history_file('/tmp/history')", "FORBIDDEN"),
        "pidfd_send_signal to the parent": (
            "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)",
            ("FORBIDDEN", "OK", "EXCEPTION"),
        ),
        "setpriority of the parent": (
            "import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 19)",
            ("FORBIDDEN", "OK", "EXCEPTION"),
        ),
        "sched_setaffinity of the parent": (
            "import os\nos.sched_setaffinity(os.getppid(), {0})",
            ("FORBIDDEN", "OK", "EXCEPTION"),
        ),
        "SCHED_IDLE on the parent": (
            "import os\nos.sched_setscheduler(os.getppid(), os.SCHED_IDLE, os.sched_param(0))",
            ("FORBIDDEN", "OK", "EXCEPTION"),
        ),
        "prlimit on the parent": (
            "import os, resource\nresource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (1, 1))",
            "FORBIDDEN",
        ),
        "kill PID 1": ("import os\nos.kill(1, 9)", ("FORBIDDEN", "OK", "EXCEPTION")),
        "pthread_kill": (
            "import signal, threading\nsignal.pthread_kill(threading.get_ident(), 9)",
            ("FORBIDDEN", "OK", "EXCEPTION"),
        ),
        "sys.settrace": ("import sys\nsys.settrace(lambda *a: None)", "FORBIDDEN"),
        "build a code object": ("(lambda: 0).__code__.replace(co_consts=(1,))", "FORBIDDEN"),
        "faulthandler": ("import faulthandler\nfaulthandler.enable()", "FORBIDDEN"),
        "_testcapi": ("import _testcapi", "FORBIDDEN"),
        "native code under another name": (
            "import importlib.machinery as m, importlib.util as u, sys\n"
            "path = next(p for p in sys.path if p.endswith('lib-dynload'))\nimport os\n"
            "so = next(os.path.join(path, f) for f in os.listdir(path) if f.startswith('_ctypes'))\n"
            "u.module_from_spec(u.spec_from_loader('innocent', m.ExtensionFileLoader('innocent', so)))",
            ("FORBIDDEN", "EXCEPTION"),
        ),
        "/proc of the parent": ("open('/proc/1/environ').read()", "FORBIDDEN"),
        "list the root": ("import os\nos.listdir('/')", "FORBIDDEN"),
        "read an ssh key": ("open('/root/.ssh/id_rsa').read()", "FORBIDDEN"),
        "setuid": ("import os\nos.setuid(0)", ("FORBIDDEN", "OK", "EXCEPTION")),
        "chroot": ("import os\nos.chroot('/')", ("FORBIDDEN", "OK", "EXCEPTION")),
        "truncate a system file": ("import os\nos.truncate('/etc/passwd', 0)", "FORBIDDEN"),
        "rmtree /usr": ("import shutil\nshutil.rmtree('/usr')", "FORBIDDEN"),
        "a thread": ("import threading\nthreading.Thread(target=print).start()", "EXCEPTION"),
        "abort": ("import os\nos.abort()", "CRASH"),
        "segfault": ("import signal\nsignal.raise_signal(signal.SIGSEGV)", "CRASH"),
        "forge an OK verdict by patching json.dumps": (
            'import json\njson.dumps = lambda *a, **k: \'{"status": "OK", "value": 42, "repr": false, '
            "\"error\": null}'\nraise ValueError('really failed')",
            "EXCEPTION",
        ),
        "an early verdict, then a raise": (
            FIND_PIPE + f"for fd in fds:\n    os.write(fd, frame({OK_BODY}))\n"
            "raise ValueError('after the forged verdict')",
            "CRASH",
        ),
        "stdout dup2'ed into the result pipe": (FIND_PIPE + "os.dup2(fds[0], 1)\nprint('garbage' * 100)", "CRASH"),
        "an empty verdict": (FIND_PIPE + "for fd in fds:\n    os.write(fd, frame(b'{}'))\nos._exit(0)", "CRASH"),
        "a 30,000-deep verdict": (
            FIND_PIPE + "for fd in fds:\n    os.write(fd, frame(b'[' * 30000 + b']' * 30000))\nos._exit(0)",
            "CRASH",
        ),
        "an unknown status": (
            FIND_PIPE + "b = json.dumps({'status': 'PWNED', 'value': 1, 'repr': False, 'error': None})"
            ".encode()\nfor fd in fds:\n    os.write(fd, frame(b))\nos._exit(0)",
            "CRASH",
        ),
        "a 4 GB frame header": (
            FIND_PIPE + "for fd in fds:\n    os.write(fd, b'\\xff\\xff\\xff\\xff')\nos._exit(0)",
            "CRASH",
        ),
        "close the result pipe": (FIND_PIPE + "for fd in fds:\n    os.close(fd)", "CRASH"),
    }
)


def parent_state() -> dict:
    """What hostile code must not change in the process that runs the sandbox."""
    limits = {name: resource.getrlimit(getattr(resource, name)) for name in dir(resource) if name.startswith("RLIMIT_")}
    return {
        "priority": os.getpriority(os.PRIO_PROCESS, 0),
        "affinity": os.sched_getaffinity(0),
        "scheduler": os.sched_getscheduler(0),
        "rlimits": limits,
        "environ": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
    }


def sandbox_processes() -> dict[int, int]:
    """For each pool worker (its unshare process): how many processes run below it (the worker itself is one)."""
    from selfplay.games import sandbox

    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass

    def below(pid: int) -> int:
        children = [c for c, parent in parents.items() if parent == pid]
        return len(children) + sum(below(c) for c in children)

    workers = list(sandbox._POOL.idle.queue) if sandbox._POOL else []
    return {w.proc.pid: below(w.proc.pid) for w in workers}


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    sentinel = outside / "sentinel.txt"
    sentinel.write_text("untouched")
    secret = outside / "credentials"
    secret.write_text("hunter2-file-secret")
    runs = outside / "episodes.sqlite"  # another run's records
    db = sqlite3.connect(runs)
    db.execute("create table episodes(id)")
    db.execute("insert into episodes values (1)")
    db.commit()
    db.close()
    os.environ["SELFPLAY_TEST_SECRET"] = "hunter2"
    extra = {
        "delete a file outside": (f"import os\nos.remove({str(sentinel)!r})", "FORBIDDEN"),
        "rename a file outside": (f"import os\nos.rename({str(sentinel)!r}, 'stolen')", "FORBIDDEN"),
        "read a credentials file": (f"print(open({str(secret)!r}).read())", "FORBIDDEN"),
        "read it through os.open": (
            f"import os\nprint(os.read(os.open({str(secret)!r}, os.O_RDONLY), 100))",
            "FORBIDDEN",
        ),
        "delete another run's episodes": (
            f"import sqlite3\nsqlite3.connect({str(runs)!r}).execute('delete from episodes')",
            "FORBIDDEN",
        ),
        "append to a file outside": (f"open({str(sentinel)!r}, 'a').write('x')", "FORBIDDEN"),
    }
    cases = {**HOSTILE, **extra}
    benign = [
        ("def f(x):\n    return x * 2", "f(21)"),
        ("import math", "math.factorial(10)"),
        # what model-written programs use: submodules of stdlib packages, typing, defaults set by the stdlib
        (
            "from typing import List\nfrom collections.abc import Sequence\nfrom fractions import Fraction\n"
            "from collections import namedtuple\nP = namedtuple('P', 'x y', defaults=[2])\n"
            "from dataclasses import dataclass\n@dataclass\nclass A:\n    n: int = 3\n"
            "def f(xs: List[int]) -> int:\n    return sum(xs) + P(1).y + A().n",
            "f([1, 2])",
        ),
        ("def g(a=1):\n    return a\ng.__defaults__ = (7,)", "g()"),
    ]
    jobs = [(code, None) for code, _ in cases.values()] + benign + [("import os", "dict(os.environ)")]
    before = parent_state()
    results = run_many(jobs, LIMITS, workers=4)
    return cases, results, {"sentinel": sentinel, "secret": secret, "runs": runs, "before": before}


def test_at_least_seventy_hostile_snippets_are_contained(hostile_results):
    cases, results, _ = hostile_results
    assert len(cases) >= 70
    wrong = {}
    for (name, (_, expected)), result in zip(cases.items(), results):
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if result.status not in allowed:
            wrong[name] = (result.status, result.error)
    assert not wrong, wrong


def test_the_parent_and_the_other_runs_are_unaffected(hostile_results):
    cases, results, found = hostile_results
    benign, environ = results[len(cases) : len(cases) + 4], results[-1]
    assert [(r.status, r.value) for r in benign] == [("OK", 42), ("OK", 3628800), ("OK", 8), ("OK", 7)], benign
    # an empty environment (Python itself sets LC_CTYPE, PEP 538), no secret of the parent
    assert environ.status == "OK" and set(environ.value) <= {"LC_CTYPE"}
    assert found["sentinel"].read_text() == "untouched"
    db = sqlite3.connect(found["runs"])
    assert db.execute("select count(*) from episodes").fetchone() == (1,)
    db.close()
    leaked = [r for r in results if "hunter2" in f"{r.stdout}{r.value}{r.error}"]
    assert not leaked
    assert not Path("/tmp/selfplay-evil.txt").exists() and not (HERE.parent / "evil.py").exists()
    assert (
        not Path("/tmp/evil.sqlite").exists() and not Path("/tmp/history").exists() and not Path("/tmp/fifo").exists()
    )
    assert parent_state() == found["before"]  # priority, affinity, scheduler, rlimits, environment
    counts = sandbox_processes()
    assert counts and all(count == 1 for count in counts.values()), counts  # no job left a process behind
    assert run_code("x = 1", "x + 1", LIMITS).value == 2  # the parent still runs sandboxes


def test_isolation_is_active_not_a_silent_fallback():
    """CI runs this on a fresh machine: the namespaces must really be there."""
    assert os.environ.get(sandbox.INSECURE_ENV, "") != "insecure"
    works, line = sandbox.isolation_report()
    assert works, line
    r = run_code("import os", "[os.getpid(), os.getppid(), os.getuid(), sorted(os.environ)]", LIMITS)
    pid, ppid, uid, env = r.value
    assert ppid == 1 and pid > 1 and set(env) <= {"LC_CTYPE"}  # PID namespace: the worker is PID 1; no env
    if os.geteuid() == 0:
        assert uid == sandbox.NOBODY


def test_without_isolation_it_refuses_unless_told(monkeypatch):
    """Fail closed: a machine where namespaces cannot be made refuses untrusted code, naming why; the explicit
    opt-in runs it without isolation and warns."""
    monkeypatch.setattr(sandbox, "_POOL", None)
    monkeypatch.setattr(
        sandbox, "_launch_argv", lambda marker: ["/bin/sh", "-c", "echo 'unshare: Operation not permitted' >&2; exit 1"]
    )
    monkeypatch.delenv(sandbox.INSECURE_ENV, raising=False)
    with pytest.raises(sandbox.SandboxUnavailable, match="Operation not permitted"):
        run_code("x = 1", "x")
    ok, line = sandbox.isolation_report()
    assert not ok and "refused" in line
    monkeypatch.setenv(sandbox.INSECURE_ENV, "insecure")
    with pytest.warns(RuntimeWarning, match="WITHOUT operating-system isolation"):
        r = run_code("x = 20", "x + 22", LIMITS)
    assert (r.status, r.value) == ("OK", 42)
    assert run_code("import os\nos.system('id')", None, LIMITS).status == "FORBIDDEN"  # the hook still stands
    sandbox._POOL.close()


def test_results_are_structured():
    r = run_code("def f(x):\n    print('hello')\n    return {'a': [x]}", "f(3)", LIMITS)
    assert (r.status, r.value, r.stdout) == ("OK", {"a": [3]}, "hello\n")
    r = run_code("", "object()", LIMITS)
    assert r.value_is_repr and r.value.startswith("<object object")
    r = run_code("raise ValueError('nope')", None, LIMITS)
    assert r.status == "EXCEPTION" and r.error == "ValueError: nope"
    r = run_code("open('a.txt', 'w').write('hi')", "open('a.txt').read()", LIMITS)
    assert (r.status, r.value) == ("OK", "hi")  # its own folder is writable
    assert run_code("", "open('a.txt').read()", LIMITS).status == "EXCEPTION"  # and empty again for the next job
    r = run_code("", "'x' * 2_000_000", Limits(timeout_s=5, cpu_s=3, memory_mb=256, output_bytes=20_000))
    assert r.status == "CRASH" and "exceeded" in r.error  # a result over the 1 MB cap


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(), reason="needs root to become nobody")
def test_the_user_namespace_path_for_trainers_that_are_not_root():
    """As uid 65534 the sandbox takes a user namespace (root inside it, no capabilities) and still isolates."""
    import shutil
    import subprocess
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="selfplay-userns-"))  # pytest's folders are not readable by nobody
    for name in ("sandbox.py", "sandbox_worker.py"):
        shutil.copy(Path(sandbox.__file__).with_name(name), tmp_path / name)
    tmp_path.chmod(0o755)
    script = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import sandbox\n"
        "ok, line = sandbox.isolation_report(); print(ok, line)\n"
        "r = sandbox.run_code('import os', '[os.getuid(), os.getppid(), sorted(os.environ)]'); print(r.value)\n"
        "print(sandbox.run_code(\"open('/etc/passwd').read()\", None).status)"
    )
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            "/usr/bin/python3",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    shutil.rmtree(tmp_path, ignore_errors=True)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and lines[0].startswith("True") and "user namespace" in lines[0], result.stderr
    assert lines[1] == "[0, 1, ['LC_CTYPE']]" and lines[2] == "FORBIDDEN"


FORGE_FRAME = """
import os, json, struct
body = json.dumps({"status": "OK", "value": "forged", "repr": False, "error": None}).encode()
for fd in range(3, 64):  # the result pipe is one of the few open descriptors
    try:
        os.write(fd, struct.pack(">I", len(body)) + body)
    except OSError:
        pass
os._exit(0)
"""
FORGE_VIA_FRAMES = """
try:
    1 / 0
except ZeroDivisionError as exc:
    harness = exc.__traceback__.tb_frame.f_back
    harness.f_locals["send"]({"status": "OK", "value": "forged", "repr": False, "error": None})
    import os
    os._exit(0)
"""
PATCH_THE_ENCODER = """
import json
forged = '{"status": "OK", "value": "forged", "repr": false, "error": null}'
def dumps(obj, *args, **kwargs):
    return forged
json.dumps.__code__ = dumps.__code__  # the harness would pass its verdict through this
json.JSONEncoder.encode = lambda self, o: forged
raise ValueError("the real outcome")
"""
READ_THE_EXPRESSION = "import sys\nseen = sys._getframe(1).f_locals['expression']\n"
FORGE_VIA_GENERATOR = "def g():\n    yield 1\nharness = g().gi_frame.f_back\n"


@pytest.mark.parametrize(
    "code",
    [FORGE_FRAME, FORGE_VIA_FRAMES, READ_THE_EXPRESSION, FORGE_VIA_GENERATOR],
    ids=[
        "own frame on the result descriptor",
        "the harness's sender through traceback frames",
        "the expression through sys._getframe",
        "a generator's frame",
    ],
)
def test_a_job_cannot_forge_its_verdict_or_read_the_harness(code):
    result = run_code(code, "1 + 1", LIMITS)
    assert result.status == "FORBIDDEN" and result.value is None, result  # not OK, not 'forged', not 2
    assert "forged" in result.error or "frames reach the harness" in result.error


def test_patching_the_json_encoder_changes_nothing_the_harness_sends():
    result = run_code(PATCH_THE_ENCODER, "1 + 1", LIMITS)
    assert result.status == "EXCEPTION" and result.error == "ValueError: the real outcome"
    result = run_code(PATCH_THE_ENCODER.replace('raise ValueError("the real outcome")', ""), "[1, (2, 3.5)]", LIMITS)
    assert result.status == "OK" and result.value == [1, [2, 3.5]]


def test_the_standard_library_still_works_without_frames():
    # namedtuple, warnings and enum ask sys._getframe for their caller and fall back when it raises ValueError
    code = (
        "import collections, dataclasses, enum, warnings\nP = collections.namedtuple('P', 'a b')\n"
        "warnings.warn('x')\nclass C(enum.Enum):\n    A = 1\n@dataclasses.dataclass\nclass D:\n    x: int = 3\n"
    )
    assert run_code(code, "[P(1, 2).b, C.A.value, D().x]", LIMITS).value == [2, 1, 3]


def test_the_safe_pattern_compares_outside_so_a_forged_pass_earns_nothing():
    # a unit test of model code: f(2) must return 4. Evaluated inside, `f(2) == 4` would be the job's to answer.
    honest, cheat = "def f(x):\n    return x * 2\n", "def f(x):\n    return 0\n" + FORGE_FRAME
    assert [sandbox.returned(r, 4) for r in sandbox.run_calls(honest, ["f(2)"], LIMITS)] == [True]
    for code in (cheat, "def f(x):\n    return x * 2\n" + FORGE_VIA_FRAMES):
        (result,) = sandbox.run_calls(code, ["f(2)"], LIMITS)
        assert not sandbox.returned(result, 4) and result.status == "FORBIDDEN"
    assert not sandbox.returned(sandbox.Execution("OK", 1), True) and sandbox.same_value([1, [2.0]], (1, (2.0,)))


def test_creator_solver_checks_answers_outside_the_sandbox():
    from selfplay.games.creator_solver import CreatorSolver

    game = CreatorSolver(task="input")
    game.reset(0)
    # the creator's program forges a verdict whenever it is called with anything but its own INPUT
    forge = FORGE_FRAME.replace('"forged"', "True").strip().replace("\n", "\n    ")  # True: what `f(7) == 10` wants
    code = "def f(x):\n    if x == 5:\n        return 10\n    " + forge
    game.step("creator", [(code, "5")])
    assert game.malformed is None and game.reference == 10
    assert game.step("solver", [5, 7, None]) == [1.0, 0.0, 0.0]  # 7 forges a pass inside: it earns nothing

"""Hostile code in the sandbox: nothing escapes its limits, and the parent and the other runs are unaffected."""

import os
from pathlib import Path

import pytest

from selfplay.games.sandbox import Limits, run_code, run_many

LIMITS = Limits(timeout_s=1.5, cpu_s=1, memory_mb=256, output_bytes=20_000)
HERE = Path(__file__).resolve()

HOSTILE = {  # name: (code, expected status)
    "infinite loop": ("while True:\n    pass", "TIMEOUT"),
    "C-level cpu burn": ("sum(range(10**12))", "TIMEOUT"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "FORBIDDEN"),
    "huge list": ("x = [0] * 10**10", "MEMORY"),
    "huge bytearray": ("x = bytearray(2**40)", "MEMORY"),
    "growing memory": ("x = []\nwhile True:\n    x.append(' ' * 10**7)", "MEMORY"),
    "write /tmp": ("open('/tmp/selfplay-evil.txt', 'w').write('x')", "FORBIDDEN"),
    "write next to the tests": (f"open({str(HERE.parent / 'evil.py')!r}, 'w').write('x')", "FORBIDDEN"),
    "read the parent's source": (f"open({str(HERE)!r}).read()", "FORBIDDEN"),
    "read /etc/passwd": ("open('/etc/passwd').read()", "FORBIDDEN"),
    "read the parent's environment": ("import os\nopen(f'/proc/{os.getppid()}/environ').read()", "FORBIDDEN"),
    "list the home folder": ("import os\nos.listdir(os.path.expanduser('~'))", "FORBIDDEN"),
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
    "new audit hook, then read": ("import sys\nsys.addaudithook(lambda *a: None)\nopen('/etc/passwd').read()", "FORBIDDEN"),
    "chdir out": ("import os\nos.chdir('/')", "FORBIDDEN"),
    "symlink out": ("import os\nos.symlink('/etc/passwd', 'p')\nopen('p').read()", "FORBIDDEN"),
    "mmap": ("import mmap\nmmap.mmap(-1, 2**20)", "FORBIDDEN"),
    "deep recursion": ("def f(n):\n    return f(n + 1)\nf(0)", "EXCEPTION"),
    "output flood": ("while True:\n    print('x' * 1000)", "OUTPUT_LIMIT"),
    "file flood in its folder": ("with open('big', 'w') as f:\n    while True:\n        f.write('x' * 10**6)", "OUTPUT_LIMIT"),
    "ignore SIGTERM and spin": ("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU):\n"
                                "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass", "TIMEOUT"),
    "too many files": ("fs = [open(f'f{i}', 'w') for i in range(1000)]", "EXCEPTION"),
    "hard exit": ("import os\nos._exit(3)", "CRASH"),
    "thread bomb": ("import threading, time\nfor _ in range(100000):\n    threading.Thread(target=time.sleep, args=(60,)).start()",
                    ("MEMORY", "EXCEPTION", "TIMEOUT")),
}


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory):
    sentinel = tmp_path_factory.mktemp("outside") / "sentinel.txt"
    sentinel.write_text("untouched")
    os.environ["SELFPLAY_TEST_SECRET"] = "hunter2"
    extra = {
        "delete a file outside": (f"import os\nos.remove({str(sentinel)!r})", "FORBIDDEN"),
        "rename a file outside": (f"import os\nos.rename({str(sentinel)!r}, 'stolen')", "FORBIDDEN"),
    }
    cases = {**HOSTILE, **extra}
    benign = [("def f(x):\n    return x * 2", "f(21)"), ("import math", "math.factorial(10)")]
    jobs = [(code, None) for code, _ in cases.values()] + benign + [("import os", "dict(os.environ)")]
    results = run_many(jobs, LIMITS, workers=4)
    return cases, results, sentinel


def test_at_least_thirty_hostile_snippets_are_contained(hostile_results):
    cases, results, _ = hostile_results
    assert len(cases) >= 30
    wrong = {}
    for (name, (_, expected)), result in zip(cases.items(), results):
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if result.status not in allowed:
            wrong[name] = (result.status, result.error)
    assert not wrong, wrong


def test_the_parent_and_the_other_runs_are_unaffected(hostile_results):
    cases, results, sentinel = hostile_results
    benign, environ = results[len(cases):len(cases) + 2], results[-1]
    assert [(r.status, r.value) for r in benign] == [("OK", 42), ("OK", 3628800)]
    assert "SELFPLAY_TEST_SECRET" not in environ.value and environ.status == "OK"
    assert sentinel.read_text() == "untouched"
    assert not Path("/tmp/selfplay-evil.txt").exists() and not (HERE.parent / "evil.py").exists()
    assert run_code("x = 1", "x + 1", LIMITS).value == 2  # the parent still runs sandboxes


def test_results_are_structured():
    r = run_code("def f(x):\n    print('hello')\n    return {'a': [x]}", "f(3)", LIMITS)
    assert (r.status, r.value, r.stdout) == ("OK", {"a": [3]}, "hello\n")
    r = run_code("", "object()", LIMITS)
    assert r.value_is_repr and r.value.startswith("<object object")
    r = run_code("raise ValueError('nope')", None, LIMITS)
    assert r.status == "EXCEPTION" and r.error == "ValueError: nope"
    r = run_code("open('a.txt', 'w').write('hi')", "open('a.txt').read()", LIMITS)
    assert (r.status, r.value) == ("OK", "hi")  # its own folder is writable

"""``selfplay serve`` under hostile load, against real servers started here: oversized prompts are refused by name
while normal requests beside them keep being answered, a deadline, and an API key."""

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from selfplay.serve import check_access, is_loopback

KEY = "test-key-123"


def start(*options):
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfplay.cli", "serve", "tiny", "--port", "0", "--name", "policy", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "serving policy" in line, line + proc.stderr.read()
    return proc, line.strip().rsplit(" at ", 1)[1]


@pytest.fixture(scope="module")
def guarded():
    proc, url = start("--api-key", KEY, "--max-prompt-tokens", "300", "--timeout", "60")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def call(url, body=None, key=KEY, path="/chat/completions", timeout=60):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ask(text, max_tokens=4):
    return {
        "model": "policy",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def test_every_route_asks_for_the_key(guarded):
    assert call(guarded, key=None, path="/models")[0] == 401
    assert call(guarded, ask("hi"), key="wrong-key-000")[0] == 401
    status, reply = call(guarded, path="/models")
    assert status == 200 and reply["data"][0]["id"] == "policy"
    assert call(guarded, ask("hi"))[0] == 200


def test_prompts_over_the_limit_are_refused_naming_it(guarded):
    status, reply = call(guarded, ask("word " * 1000))  # ~1,000 tokens, under the character bound: tokenized
    assert status == 400 and "over this server's limit of 300 prompt tokens" in reply["error"]["message"]
    status, reply = call(guarded, ask("x" * 2_000_000))  # refused before the model's thread sees it
    assert status == 400 and "2000000 characters" in reply["error"]["message"] and "300" in reply["error"]["message"]
    status, reply = call(guarded, ask("hi", max_tokens=5000))
    assert status == 400 and "--max-tokens" in reply["error"]["message"]
    status, reply = call(guarded, ask("hi", max_tokens=1024))  # 1024 + 1024 > the tiny model's 2048 positions: fits
    assert status == 200


def test_an_oversized_flood_does_not_stall_the_other_clients(guarded):
    normal = []

    def client():
        for _ in range(5):
            start = time.perf_counter()
            status, _ = call(guarded, ask("What is 2 + 2?"))
            normal.append((status, time.perf_counter() - start))

    def flood():
        for _ in range(3):
            assert call(guarded, ask("y" * 2_000_000), timeout=60)[0] == 400

    threads = [threading.Thread(target=client) for _ in range(2)] + [threading.Thread(target=flood) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(normal) == 10 and all(status == 200 for status, _ in normal), normal


def test_a_request_past_the_deadline_gets_a_504():
    proc, url = start("--timeout", "0.05", "--max-tokens", "4096")
    try:
        status, reply = call(url, {"messages": [{"role": "user", "content": "count"}], "max_tokens": 1500, "n": 64})
        assert status == 504 and "--timeout of 0.05 s" in reply["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_listening_beyond_loopback_needs_a_key():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="--host 0.0.0.0 listens beyond this machine: set --api-key"):
        check_access("0.0.0.0", None)
    check_access("0.0.0.0", KEY)
    result = subprocess.run(
        [sys.executable, "-m", "selfplay.cli", "serve", "tiny", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "set --api-key" in result.stderr

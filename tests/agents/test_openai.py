"""``openai:`` agents against real servers started here: ``selfplay serve`` in a subprocess, and small
stdlib servers that stall or fail first (no mock of the HTTP layer)."""

import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selfplay.agents.base import Request
from selfplay.agents.openai_agent import OpenAIAgent
from selfplay.serve import resolve_model
from selfplay.agents.specs import build_agent, parse_spec
from selfplay.arena.play import paired_matches, play
from selfplay.arena.tournament import main as tournament
from selfplay.games.tictactoe import TicTacToe


@pytest.fixture(scope="module")
def served():
    """``selfplay serve tiny --port 0`` in its own process; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "selfplay.cli", "serve", "tiny", "--port", "0", "--name", "policy"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "serving policy" in line, line + proc.stderr.read()
    yield line.strip().rsplit(" at ", 1)[1]
    proc.terminate()
    proc.wait(timeout=10)


def post(url, body):
    request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_server_speaks_the_chat_completions_api(served):
    with urllib.request.urlopen(served + "/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "policy"
    status, reply = post(served, {"model": "policy", "messages": [{"role": "user", "content": "hi"}],
                                  "max_tokens": 3, "n": 3, "temperature": 0})
    assert status == 200 and len(reply["choices"]) == 3
    assert len({c["message"]["content"] for c in reply["choices"]}) == 1  # greedy: the same answer three times
    assert reply["usage"]["completion_tokens"] <= 9 and reply["choices"][0]["finish_reason"] in ("length", "stop")
    for bad, words in (({"messages": []}, "messages"), ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n 0"),
                       ({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, "temperature")):
        status, reply = post(served, bad)
        assert status == 400 and words in reply["error"]["message"]


def test_a_served_checkpoint_plays_and_is_rated(served, tmp_path):
    spec = f"openai:policy@{served}:max_tokens=6,temperature=0"
    agents = {"served": build_agent(spec, name="served"), "random": build_agent("random")}
    episodes = play(TicTacToe, paired_matches(TicTacToe.roles, ["served", "random"], 6), agents, progress=False)
    served_steps = [s for ep in episodes for s in ep.steps if s.agent == "served"]
    assert served_steps and all(ep.status in ("done", "forfeit") for ep in episodes)
    assert all(s.failure in (None, "PARSE_ERROR", "ILLEGAL") for s in served_steps)  # answered, not errors
    out = tmp_path / "tour"
    assert tournament(["tictactoe", "--agents", f"served={spec}", "random", "expert", "--games", "4", "--out", str(out),
                       "--bootstrap", "10"]) == 0
    names = {r["agent"] for r in json.loads((out / "summary.json").read_text())["ratings"]}
    assert names == {"served", "random", "expert"}


class Stall(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        time.sleep(5)

    def log_message(self, *args):
        pass


class FailFirst(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self):  # noqa: N802
        FailFirst.calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        body = {"choices": [{"message": {"role": "assistant", "content": "[5]"}}]} if FailFirst.calls > 1 else {}
        data = json.dumps(body).encode()
        self.send_response(200 if FailFirst.calls > 1 else 503)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def start(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_a_stalled_server_gives_timeout_attempts_not_a_crash():
    server, url = start(Stall)
    agents = {"slow": OpenAIAgent("m", url, name="slow", timeout=0.3, retries=1), "random": build_agent("random")}
    [ep] = play(TicTacToe, paired_matches(TicTacToe.roles, ["slow", "random"], 1), agents, progress=False)
    server.shutdown()
    slow = [s for s in ep.steps if s.agent == "slow"]
    assert ep.status == "forfeit" and slow[0].failure == "TIMEOUT" and "within 0.3s" in slow[0].error


def test_retries_with_backoff_after_a_server_error():
    server, url = start(FailFirst)
    agent = OpenAIAgent("m", url, retries=2)
    game = TicTacToe()
    game.reset(0)
    [[completion]] = agent.act([Request(game, "player_0", game.observe("player_0"))])
    server.shutdown()
    assert completion.text == "[5]" and completion.meta["attempts"] == 2 and FailFirst.calls == 2


def test_serve_resolves_runs_checkpoints_and_models(tmp_path):
    from tests.arena.test_tournament import fake_run

    run = fake_run(tmp_path / "run")
    latest = run / "checkpoints" / "step_000004"
    assert resolve_model(str(run)) == f"hf:{latest / 'policy'}"
    assert resolve_model(str(latest)) == f"hf:{latest / 'policy'}"
    assert resolve_model(str(latest / "policy")) == f"hf:{latest / 'policy'}"


def test_specs_and_targets_are_checked():
    assert parse_spec("openai:gpt@http://127.0.0.1:8000/v1:temperature=0").arg == "gpt@http://127.0.0.1:8000/v1"
    for bad in ("openai", "openai:gpt", "openai:gpt@ftp://x"):
        with pytest.raises(ValueError, match="openai:MODEL@BASE_URL"):
            parse_spec(bad)
    with pytest.raises(ValueError, match="unknown option"):
        OpenAIAgent("m", "http://127.0.0.1:1/v1", colour="red")
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        resolve_model(str(__import__("pathlib").Path(__file__).parent))
    assert resolve_model("tiny") == "tiny"


def test_a_served_checkpoint_rates_the_same_as_the_checkpoint_loaded_directly(tmp_path):
    """The same checkpoint twice, served over HTTP and loaded in-process, greedy: the same ratings within their
    intervals, and one prompt at a time the same answers token for token. (Across batches of different shapes a
    random tiny model's near-flat logits can tip a greedy choice, so whole games are compared by rating.)"""
    from selfplay.agents.llm import render_prompt
    from selfplay.arena.records import open_store
    from tests.arena.test_tournament import fake_run

    policy = fake_run(tmp_path / "run", steps=(3,)) / "checkpoints" / "step_000003" / "policy"
    proc = subprocess.Popen([sys.executable, "-m", "selfplay.cli", "serve", str(policy), "--port", "0", "--name", "ckpt"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip().rsplit(" at ", 1)[1]
        out = tmp_path / "tour"
        assert tournament(["tictactoe", "--agents", f"direct=hf:{policy}:temperature=0,max_new_tokens=6",
                           f"served=openai:ckpt@{url}:temperature=0,max_tokens=6", "random", "--games", "20",
                           "--out", str(out), "--bootstrap", "50"]) == 0
        views = list({tuple((m["role"], m["content"]) for m in s.messages): None for ep in open_store(out).episodes()
                      for s in ep.steps if s.agent == "served" and s.attempt == 0})[:5]
        direct = build_agent(f"hf:{policy}:temperature=0,max_new_tokens=6")
        for view in views:
            messages = [{"role": r, "content": c} for r, c in view]
            status, reply = post(url, {"messages": messages, "max_tokens": 6, "temperature": 0})
            [mine] = direct.generate([render_prompt(direct.tokenizer, messages)])
            assert status == 200 and reply["choices"][0]["message"]["content"] == mine.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert views
    ratings = {r["agent"]: r for r in json.loads((out / "summary.json").read_text())["ratings"]}
    direct_r, served_r = ratings["direct"], ratings["served"]
    assert direct_r["low"] <= served_r["elo"] <= direct_r["high"] and served_r["low"] <= direct_r["elo"] <= served_r["high"]

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
from selfplay.agents.spec_syntax import parse_spec
from selfplay.agents.specs import build_agent
from selfplay.arena.matches import paired_matches
from selfplay.arena.play import play
from selfplay.arena.tournament import main as tournament
from selfplay.games.tictactoe import TicTacToe
from selfplay.serve import resolve_model


@pytest.fixture(scope="module")
def served():
    """``selfplay serve tiny --port 0`` in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfplay.cli", "serve", "tiny", "--port", "0", "--name", "policy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "serving policy" in line, line + proc.stderr.read()
    yield line.strip().rsplit(" at ", 1)[1]
    proc.terminate()
    proc.wait(timeout=10)


def post(url, body):
    request = urllib.request.Request(
        url + "/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_server_speaks_the_chat_completions_api(served):
    with urllib.request.urlopen(served + "/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "policy"
    status, reply = post(
        served,
        {"model": "policy", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "n": 3, "temperature": 0},
    )
    assert status == 200 and len(reply["choices"]) == 3
    assert len({c["message"]["content"] for c in reply["choices"]}) == 1  # greedy: the same answer three times
    assert reply["usage"]["completion_tokens"] <= 9 and reply["choices"][0]["finish_reason"] in ("length", "stop")
    for bad, words in (
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n 0"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, "temperature"),
    ):
        status, reply = post(served, bad)
        assert status == 400 and words in reply["error"]["message"]


def test_the_server_reads_what_openai_clients_send_and_answers_as_openai_does(served):
    """Text-part content and the developer role, stop strings cut from the text, the sampled tokens' log-probs, a
    streamed answer as server-sent events; a body that is not an object or an image part is a 400 naming it."""
    user = [{"role": "developer", "content": "short"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    status, reply = post(served, {"messages": user, "max_tokens": 8, "temperature": 0, "logprobs": True})
    assert status == 200
    [choice] = reply["choices"]
    text, logprobs = choice["message"]["content"], choice["logprobs"]["content"]
    assert len(logprobs) == reply["usage"]["completion_tokens"] and all(-50 < x["logprob"] <= 0 for x in logprobs)
    assert len(text) >= 3, text
    _, same = post(
        served,
        {
            "messages": [{"role": "system", "content": "short"}, {"role": "user", "content": "hi"}],
            "max_tokens": 8,
            "temperature": 0,
        },
    )
    assert same["choices"][0]["message"]["content"] == text  # parts and developer read as plain text and system
    cut = text[2]
    _, stopped = post(served, {"messages": user, "max_tokens": 8, "temperature": 0, "stop": cut})
    assert stopped["choices"][0]["message"]["content"] == text[: text.index(cut)]
    assert stopped["choices"][0]["finish_reason"] == "stop"
    request = urllib.request.Request(
        served + "/chat/completions",
        headers={"Content-Type": "application/json"},
        data=json.dumps(
            {
                "messages": user,
                "max_tokens": 8,
                "temperature": 0,
                "n": 2,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode(),
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        events = [line[6:] for line in r.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    streamed = {}
    for chunk in chunks:
        for c in chunk["choices"]:
            streamed[c["index"]] = streamed.get(c["index"], "") + c["delta"].get("content", "")
    assert streamed == {0: text, 1: text} and chunks[-1]["usage"]["completion_tokens"] == 16
    for bad, words in (
        ([1, 2], "request body: expected a JSON object"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            "messages[0].content: expected a string or a list of text parts",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 2},
            "top_logprobs 2: not served",
        ),
    ):
        status, reply = post(served, bad)
        assert status == 400 and words in reply["error"]["message"], reply


def test_a_served_checkpoint_plays_and_is_rated(served, tmp_path):
    spec = f"openai:policy@{served}:max_tokens=6,temperature=0"
    agents = {"served": build_agent(spec, name="served"), "random": build_agent("random")}
    episodes = play(TicTacToe, paired_matches(TicTacToe.roles, ["served", "random"], 6), agents, progress=False)
    served_steps = [s for ep in episodes for s in ep.steps if s.agent == "served"]
    assert served_steps and all(ep.status in ("done", "forfeit") for ep in episodes)
    assert all(s.failure in (None, "PARSE_ERROR", "ILLEGAL") for s in served_steps)  # answered, not errors
    out = tmp_path / "tour"
    assert (
        tournament(
            [
                "tictactoe",
                "--agents",
                f"served={spec}",
                "random",
                "expert",
                "--games",
                "4",
                "--out",
                str(out),
                "--bootstrap",
                "10",
            ]
        )
        == 0
    )
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


def test_a_refused_request_records_what_the_server_said_and_is_not_retried(served):
    agent = OpenAIAgent("policy", served, retries=3, max_tokens=5000)  # over the server's --max-tokens (1024)
    game = TicTacToe()
    game.reset(0)
    start = time.perf_counter()
    [[completion]] = agent.act([Request(game, "player_0", game.observe("player_0"))])
    assert completion.meta["failure"] == "AGENT_ERROR" and time.perf_counter() - start < 2
    assert (
        "HTTP 400" in completion.meta["error"]
        and "max_tokens 5000: expected an integer in [1, 1024]" in completion.meta["error"]
        and "(after 1 try)" in completion.meta["error"]
    )


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
    from selfplay.agents.prompts import render_prompt
    from selfplay.arena.records import open_store
    from tests.arena.test_tournament import fake_run

    policy = fake_run(tmp_path / "run", steps=(3,)) / "checkpoints" / "step_000003" / "policy"
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfplay.cli", "serve", str(policy), "--port", "0", "--name", "ckpt"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip().rsplit(" at ", 1)[1]
        out = tmp_path / "tour"
        assert (
            tournament(
                [
                    "tictactoe",
                    "--agents",
                    f"direct=hf:{policy}:temperature=0,max_new_tokens=6",
                    f"served=openai:ckpt@{url}:temperature=0,max_tokens=6",
                    "random",
                    "--games",
                    "20",
                    "--out",
                    str(out),
                    "--bootstrap",
                    "50",
                ]
            )
            == 0
        )
        views = list(
            {
                tuple((m["role"], m["content"]) for m in s.messages): None
                for ep in open_store(out).episodes()
                for s in ep.steps
                if s.agent == "served" and s.attempt == 0
            }
        )[:5]
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
    assert (
        direct_r["low"] <= served_r["elo"] <= direct_r["high"]
        and served_r["low"] <= direct_r["elo"] <= served_r["high"]
    )

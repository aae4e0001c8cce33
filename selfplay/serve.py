"""``selfplay serve``: an OpenAI-compatible chat-completions endpoint for a checkpoint or a model.

    selfplay serve runs/kuhn_poker_tiny                       # the run's latest checkpoint
    selfplay serve runs/x/checkpoints/step_000100 --port 8001 # one checkpoint
    selfplay serve smollm2                                    # any agent spec: smollm2, tiny, hf:PATH

Other harnesses (and selfplay's own ``openai:`` agents) can then evaluate the trained policy:
``POST /v1/chat/completions`` (``model``, ``messages``, ``max_tokens``, ``temperature``, ``top_p``, ``n``, ``stop``,
``seed``) and ``GET /v1/models``. Requests that arrive together with the same sampling settings are generated
in one batched call. Standard library HTTP server, on localhost by default.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "stop", "seed")


def resolve_model(target: str) -> str:
    """An agent spec for ``target``: a run directory (its latest checkpoint), a checkpoint, a model directory, or
    already a spec (``smollm2``, ``tiny``, ``hf:PATH``)."""
    from selfplay.arena.rundir import list_checkpoints

    from selfplay.agents.checkpoints import checkpoint_policy

    path = Path(target)
    if not path.exists():
        from selfplay.agents.specs import parse_spec

        parse_spec(target)  # a spec, or a clear error naming what was expected
        return target
    checkpoints = list_checkpoints(path) if path.is_dir() else []
    for candidate in (path, *checkpoints[-1:]):  # a model or checkpoint, else the run's latest checkpoint
        policy = checkpoint_policy(candidate)
        if policy is not None:
            return f"hf:{policy}"
    raise FileNotFoundError(f"{target!r} is neither a model directory, a checkpoint with policy/, nor a run with "
                            f"checkpoints; expected one of those or an agent spec (smollm2, tiny, hf:PATH)")


@dataclass
class _Job:
    messages: list[dict]
    sampling: tuple
    n: int
    model: str
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None


class Generator:
    """One thread that owns the models: it takes every waiting request, groups them by model and sampling settings
    and answers each group with one batched ``generate`` call. ``agents``: {served model id: LLM agent} (a LoRA or
    clone checkpoint serves one id per role)."""

    def __init__(self, agents: dict[str, Any], max_batch: int = 64):
        self.agents, self.max_batch = agents, max_batch
        self.jobs: queue.Queue[_Job] = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def submit(self, messages: list[dict], sampling: tuple, n: int, model: str) -> Any:
        job = _Job(messages, sampling, n, model)
        self.jobs.put(job)
        job.done.wait()
        if isinstance(job.result, Exception):
            raise job.result
        return job.result

    def _loop(self) -> None:
        while True:
            batch = [self.jobs.get()]
            time.sleep(0.002)  # let requests sent together arrive together
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            groups: dict[tuple, list[_Job]] = {}
            for job in batch:
                groups.setdefault((job.model, job.sampling), []).append(job)
            for (model, sampling), jobs in groups.items():
                self._generate(self.agents[model], sampling, jobs)

    def _generate(self, agent, sampling: tuple, jobs: list[_Job]) -> None:
        from selfplay.agents.llm import SamplingConfig, render_prompt

        max_tokens, temperature, top_p, stop, seed = sampling
        try:
            agent.sampling = SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_tokens,
                                            stop=list(stop), seed=seed)
            prompts = [render_prompt(agent.tokenizer, job.messages) for job in jobs]
            rows = [p for p, job in zip(prompts, jobs) for _ in range(job.n)]
            completions = agent.generate(rows)
            i = 0
            for prompt, job in zip(prompts, jobs):
                job.result = (len(prompt), completions[i:i + job.n], max_tokens)
                i += job.n
        except Exception as exc:  # noqa: BLE001 - answered as a 500 for these requests only
            for job in jobs:
                job.result = exc
        for job in jobs:
            job.done.set()


def _sampling(body: dict) -> tuple:
    """The request's sampling settings, validated; ValueError names the bad field."""
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 64))
    temperature = body.get("temperature", 1.0)
    top_p = body.get("top_p", 1.0)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    seed = body.get("seed", 0)
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
        raise ValueError(f"max_tokens {max_tokens!r}: expected an integer in [1, 4096]")
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise ValueError(f"temperature {temperature!r}: expected a number in [0, 2]")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p {top_p!r}: expected a number in (0, 1]")
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ValueError("stop: expected a string or a list of strings")
    if not isinstance(seed, int):
        raise ValueError(f"seed {seed!r}: expected an integer")
    return max_tokens, float(temperature), float(top_p), tuple(stop), seed


def make_handler(generator: Generator):
    """The request handler class serving the generator's models (with one model, a request's ``model`` is not
    checked; with one per role it picks the role's)."""
    ids = list(generator.agents)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: one line per request is noise for an evaluation harness
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error" if status < 500
                                          else "server_error"}})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "selfplay"}
                                                            for i in ids]})
            else:
                self._error(404, f"no route {self.path}: try POST /v1/chat/completions or GET /v1/models")

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                return self._error(404, f"no route {self.path}: try POST /v1/chat/completions")
            try:
                size = int(self.headers.get("Content-Length", "0"))
                if size > 8_000_000:
                    return self._error(413, "request body over 8 MB")
                body = json.loads(self.rfile.read(size) or b"{}")
                messages = body.get("messages")
                if not isinstance(messages, list) or not messages or not all(
                        isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in
                        ("system", "user", "assistant") for m in messages):
                    raise ValueError("messages: expected a non-empty list of {role: system|user|assistant, content}")
                n = body.get("n", 1)
                if not isinstance(n, int) or not 1 <= n <= 64:
                    raise ValueError(f"n {n!r}: expected an integer in [1, 64]")
                sampling = _sampling(body)
                model = body.get("model") if len(ids) > 1 else ids[0]
                if model not in ids:
                    raise ValueError(f"model {model!r}: this server holds one model per role; expected one of "
                                     f"{', '.join(ids)}")
            except (ValueError, TypeError) as exc:
                return self._error(400, str(exc))
            try:
                prompt_tokens, completions, max_tokens = generator.submit(messages, sampling, n, model)
            except Exception as exc:  # noqa: BLE001
                return self._error(500, f"generation failed: {type(exc).__name__}: {exc}")
            used = sum(len(c.completion_ids or []) for c in completions)
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": model,
                "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                             "finish_reason": "length" if len(c.completion_ids or []) >= max_tokens else "stop"}
                            for i, c in enumerate(completions)],
                "usage": {"prompt_tokens": prompt_tokens * n, "completion_tokens": used,
                          "total_tokens": prompt_tokens * n + used}})

    return Handler


def serve(target: str, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
          ready=None) -> None:
    """Load the model and serve until interrupted; ``ready(url)`` is called once the socket listens."""
    from transformers.utils import logging as hf_logging

    from selfplay.agents.specs import build_agent

    hf_logging.disable_progress_bar()
    spec = resolve_model(target)
    agent = build_agent(spec, name=name or Path(target).name or target)
    agents = getattr(agent, "agents", None) or {agent.name: agent}  # a LoRA or clone checkpoint: one id per role
    server = ThreadingHTTPServer((host, port), make_handler(Generator(agents)))
    url = f"http://{host}:{server.server_address[1]}/v1"
    served = f"{agent.name} ({spec})" if len(agents) == 1 else f"{spec} as models {', '.join(agents)} (one per role)"
    (ready or (lambda u: print(f"serving {served} at {u}", flush=True)))(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

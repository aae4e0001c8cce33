"""``selfplay serve``: an OpenAI-compatible chat-completions endpoint for a checkpoint or a model.

    selfplay serve runs/kuhn_poker_tiny                       # the run's latest checkpoint
    selfplay serve runs/x/checkpoints/step_000100 --port 8001 # one checkpoint
    selfplay serve smollm2                                    # any agent spec: smollm2, tiny, hf:PATH

Other harnesses (and selfplay's own ``openai:`` agents) can then evaluate the trained policy:
``POST /v1/chat/completions`` (``model``, ``messages`` with string or text-part content, ``max_tokens``,
``temperature``, ``top_p``, ``n``, ``stop``, ``seed``, ``logprobs``, ``stream``) and ``GET /v1/models``. Requests that
arrive together with the same sampling settings are generated in one batched call. Standard library HTTP server, on
localhost by default.

Under hostile load: a prompt longer than ``--max-prompt-tokens`` (default: the model's context less the answer's
``max_tokens``) is refused with a 400 naming the limit, a prompt of more characters than that many tokens could
hold before it is even read into the model's thread; ``max_tokens`` is capped by ``--max-tokens``; a request not
answered within ``--timeout`` seconds gets a 504 and its generation is dropped if it has not started; and
``--api-key`` (or ``SELFPLAY_API_KEY``) makes every route ask for ``Authorization: Bearer KEY``, which is required to
listen beyond the loopback address.
"""

from __future__ import annotations

import ipaddress
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from selfplay.chat_api import PromptTooLong, make_handler

SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "stop", "seed")
API_KEY_ENV = "SELFPLAY_API_KEY"


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_prompt_tokens: int | None = None  # None: the model's context less the request's max_tokens
    max_tokens: int = 1024  # the most tokens a request may ask to generate
    timeout_s: float = 60.0  # a request not answered by then gets a 504


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_model(target: str) -> str:
    """An agent spec for ``target``: a run directory (its latest checkpoint), a checkpoint, a model directory, or
    already a spec (``smollm2``, ``tiny``, ``hf:PATH``)."""
    from selfplay.agents.checkpoint_paths import checkpoint_policy
    from selfplay.arena.rundir import list_checkpoints

    path = Path(target)
    if not path.exists():
        from selfplay.agents.spec_syntax import parse_spec

        kind = parse_spec(target).kind  # a spec, or a clear error naming what was expected
        if kind not in ("smollm2", "tiny", "hf"):
            raise ValueError(
                f"{target!r}: a {kind} agent answers from a game's state, not from chat messages; "
                f"expected a model (smollm2, tiny, hf:PATH), a checkpoint or a run"
            )
        return target
    checkpoints = list_checkpoints(path) if path.is_dir() else []
    for candidate in (path, *checkpoints[-1:]):  # a model or checkpoint, else the run's latest checkpoint
        policy = checkpoint_policy(candidate)
        if policy is not None:
            return f"hf:{policy}"
    raise FileNotFoundError(
        f"{target!r} is neither a model directory, a checkpoint with policy/, nor a run with "
        f"checkpoints; expected one of those or an agent spec (smollm2, tiny, hf:PATH)"
    )


@dataclass
class _Job:
    messages: list[dict]
    sampling: tuple
    n: int
    model: str
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    abandoned: bool = False  # its client's deadline passed: skipped if its generation has not started


class Generator:
    """One thread that owns the models: it takes every waiting request, groups them by model and sampling settings
    and answers each group with one batched ``generate`` call. ``agents``: {served model id: LLM agent} (a LoRA or
    clone checkpoint serves one id per role)."""

    def __init__(self, agents: dict[str, Any], max_batch: int = 64, limits: Limits = Limits()):
        self.agents, self.max_batch, self.limits = agents, max_batch, limits
        self.jobs: queue.Queue[_Job] = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def prompt_limit(self, model: str, max_tokens: int) -> int:
        """The most prompt tokens a request to ``model`` asking ``max_tokens`` may send."""
        context = getattr(self.agents[model].model.config, "max_position_embeddings", None)
        fits = context - max_tokens if context else None
        limits = [v for v in (self.limits.max_prompt_tokens, fits) if v is not None]
        return max(0, min(limits)) if limits else 1 << 30

    def submit(self, messages: list[dict], sampling: tuple, n: int, model: str) -> Any:
        """Queue one request and wait for it, at most ``limits.timeout_s`` (TimeoutError)."""
        job = _Job(messages, sampling, n, model)
        self.jobs.put(job)
        if not job.done.wait(self.limits.timeout_s):
            job.abandoned = True
            raise TimeoutError(f"no answer within the server's --timeout of {self.limits.timeout_s:g} s")
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
                if not job.abandoned:
                    groups.setdefault((job.model, job.sampling), []).append(job)
            for (model, sampling), jobs in groups.items():
                self._generate(self.agents[model], sampling, jobs)

    def _generate(self, agent, sampling: tuple, jobs: list[_Job]) -> None:
        from selfplay.agents.llm import SamplingConfig
        from selfplay.agents.prompts import render_prompt

        max_tokens, temperature, top_p, stop, seed = sampling
        try:
            agent.sampling = SamplingConfig(
                temperature=temperature, top_p=top_p, max_new_tokens=max_tokens, stop=list(stop), seed=seed
            )
            prompts, limit = [], self.prompt_limit(jobs[0].model, max_tokens)
            for job in list(jobs):  # a prompt over the limit is its own request's 400, before any generation
                prompt = render_prompt(agent.tokenizer, job.messages)
                if len(prompt) > limit:
                    job.result = PromptTooLong(
                        f"the prompt has {len(prompt)} tokens: over this server's limit of "
                        f"{limit} prompt tokens with max_tokens={max_tokens}"
                    )
                    job.done.set()
                    jobs.remove(job)
                else:
                    prompts.append(prompt)
            if not jobs:
                return
            rows = [p for p, job in zip(prompts, jobs) for _ in range(job.n)]
            completions = agent.generate(rows)
            i = 0
            for prompt, job in zip(prompts, jobs):
                job.result = (len(prompt), completions[i : i + job.n], max_tokens)
                i += job.n
        except Exception as exc:  # noqa: BLE001 - answered as a 500 for these requests only
            for job in jobs:
                job.result = exc
        for job in jobs:
            job.done.set()


def check_access(host: str, api_key: str | None) -> None:
    """Listening beyond the loopback address needs an API key: anyone who reaches the port could use the model."""
    if api_key is None and not is_loopback(host):
        raise ValueError(
            f"--host {host} listens beyond this machine: set --api-key KEY (or {API_KEY_ENV}) so that "
            f"only clients sending 'Authorization: Bearer KEY' are answered"
        )
    if api_key is not None and len(api_key) < 8:
        raise ValueError("--api-key: expected at least 8 characters")


def serve(
    target: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    ready=None,
    limits: Limits = Limits(),
    api_key: str | None = None,
) -> None:
    """Load the model and serve until interrupted; ``ready(url)`` is called once the socket listens."""
    from transformers.utils import logging as hf_logging

    from selfplay.agents.specs import build_agent

    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    check_access(host, api_key)
    hf_logging.disable_progress_bar()
    spec = resolve_model(target)
    try:  # the socket first: a taken port is said before the model loads (requests wait in the backlog meanwhile)
        server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
    except OSError as exc:  # the port is taken, the host is not this machine's
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    agent = build_agent(spec, name=name or Path(target).name or target)
    agents = getattr(agent, "agents", None) or {agent.name: agent}  # a LoRA or clone checkpoint: one id per role
    server.RequestHandlerClass = make_handler(Generator(agents, limits=limits), api_key)
    url = f"http://{host}:{server.server_address[1]}/v1"
    served = f"{agent.name} ({spec})" if len(agents) == 1 else f"{spec} as models {', '.join(agents)} (one per role)"
    (ready or (lambda u: print(f"serving {served} at {u}", flush=True)))(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

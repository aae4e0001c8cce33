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

import hmac
import ipaddress
import json
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "stop", "seed")
CHARS_PER_TOKEN = 32  # no token of a real vocabulary spans more characters: more characters than this many times
# the token limit cannot fit, and are refused before the tokenizer sees them
API_KEY_ENV = "SELFPLAY_API_KEY"


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_prompt_tokens: int | None = None  # None: the model's context less the request's max_tokens
    max_tokens: int = 1024  # the most tokens a request may ask to generate
    timeout_s: float = 60.0  # a request not answered by then gets a 504


class PromptTooLong(ValueError):
    """A prompt over the server's token limit (answered as a 400 naming it)."""


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
    from selfplay.agents.checkpoints import checkpoint_policy
    from selfplay.arena.rundir import list_checkpoints

    path = Path(target)
    if not path.exists():
        from selfplay.agents.specs import parse_spec

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


def _sampling(body: dict, cap: int = 4096) -> tuple:
    """The request's sampling settings, validated (``max_tokens`` at most ``cap``); ValueError names the bad field."""
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 64))
    temperature = body.get("temperature", 1.0)
    top_p = body.get("top_p", 1.0)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    seed = body.get("seed", 0)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= cap:
        raise ValueError(f"max_tokens {max_tokens!r}: expected an integer in [1, {cap}] (this server's --max-tokens)")
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise ValueError(f"temperature {temperature!r}: expected a number in [0, 2]")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p {top_p!r}: expected a number in (0, 1]")
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ValueError("stop: expected a string or a list of strings")
    if not isinstance(seed, int):
        raise ValueError(f"seed {seed!r}: expected an integer")
    return max_tokens, float(temperature), float(top_p), tuple(stop), seed


ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _messages(body: Any) -> list[dict]:
    """The request's chat messages as ``{role, content: str}``: text parts joined, OpenAI's ``developer`` role read
    as ``system``; ValueError names the first bad message and what was expected."""
    if not isinstance(body, dict):
        raise ValueError(f"request body: expected a JSON object, got {type(body).__name__}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: expected a non-empty list of {role: system|user|assistant, content}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ValueError(
                f"messages[{i}]: expected {{role: system|developer|user|assistant, content}}, got {json.dumps(m)[:80]}"
            )
        content = m.get("content")
        if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
        ):
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ValueError(
                f"messages[{i}].content: expected a string or a list of text parts "
                f"([{{type: text, text}}]), got {json.dumps(content)[:80]}"
            )
        out.append({"role": ROLES[m["role"]], "content": content})
    return out


def _choice(i: int, completion: Any, stop: tuple, max_tokens: int, logprobs: bool, tokenizer: Any) -> dict:
    """One choice of the answer: the text cut before the first stop string (as OpenAI returns it), why it ended,
    and with ``logprobs`` each sampled token's log-probability."""
    text, ids = completion.text, completion.completion_ids or []
    cuts = [text.find(x) for x in stop if x in text]
    finish = "stop" if cuts or len(ids) < max_tokens else "length"
    choice = {
        "index": i,
        "message": {"role": "assistant", "content": text[: min(cuts)] if cuts else text},
        "logprobs": None,
        "finish_reason": finish,
    }
    if logprobs:
        pieces = [tokenizer.decode([t]) for t in ids]
        choice["logprobs"] = {
            "content": [
                {"token": p, "logprob": float(lp), "bytes": list(p.encode()), "top_logprobs": []}
                for p, lp in zip(pieces, completion.logprobs or [])
            ]
        }
    return choice


def make_handler(generator: Generator, api_key: str | None = None):
    """The request handler class serving the generator's models (with one model, a request's ``model`` is not
    checked; with one per role it picks the role's); with ``api_key`` every route asks for it."""
    ids = list(generator.agents)
    limits = generator.limits

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 120  # seconds a connection may stay silent (a body shorter than its Content-Length)

        def log_message(self, *args) -> None:  # quiet: one line per request is noise for an evaluation harness
            pass

        def _send(self, status: int, payload: dict) -> None:
            self._write(status, "application/json", json.dumps(payload).encode())

        def _write(self, status: int, kind: str, data: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client left before its answer: nothing to tell
                self.close_connection = True

        def _error(self, status: int, message: str) -> None:
            self._send(
                status,
                {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}},
            )

        def _authorised(self) -> bool:
            """True when no key is set or the request carries it (compared in constant time); else a 401 is sent."""
            if api_key is None:
                return True
            given = self.headers.get("Authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return True
            self.close_connection = True
            self._error(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'")
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if not self._authorised():
                return
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(
                    200, {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "selfplay"} for i in ids]}
                )
            else:
                self._error(404, f"no route {self.path}: try POST /v1/chat/completions or GET /v1/models")

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                return self._error(404, f"no route {self.path}: try POST /v1/chat/completions")
            try:
                size = int(self.headers.get("Content-Length", "0"))
                if size > 8_000_000:
                    self.close_connection = True  # the unread body must not be taken for the next request
                    return self._error(413, "request body over 8 MB")
                body = json.loads(self.rfile.read(size) or b"{}")
                messages = _messages(body)
                n = body.get("n", 1)
                if not isinstance(n, int) or not 1 <= n <= 64:
                    raise ValueError(f"n {n!r}: expected an integer in [1, 64]")
                sampling = _sampling(body, limits.max_tokens)
                logprobs, stream = body.get("logprobs") or False, body.get("stream") or False
                if not isinstance(logprobs, bool) or not isinstance(stream, bool):
                    raise ValueError("logprobs and stream: expected true or false")
                if body.get("top_logprobs"):
                    raise ValueError(
                        f"top_logprobs {body['top_logprobs']!r}: not served; logprobs=true gives the "
                        f"sampled tokens' log-probabilities"
                    )
                model = body.get("model") if len(ids) > 1 else ids[0]
                if model not in ids:
                    raise ValueError(
                        f"model {model!r}: this server holds one model per role; expected one of {', '.join(ids)}"
                        if model is not None
                        else f"model: required, this server holds one model per role: {', '.join(ids)}"
                    )
                limit = generator.prompt_limit(model, sampling[0])
                if limit < 1:
                    raise ValueError(f"max_tokens {sampling[0]}: leaves no room for a prompt in the model's context")
                chars = sum(len(m["content"]) for m in messages)
                if chars > limit * CHARS_PER_TOKEN:  # refused here, before the model's thread tokenizes it
                    raise PromptTooLong(
                        f"the prompt has {chars} characters: more than this server's limit of "
                        f"{limit} prompt tokens with max_tokens={sampling[0]} can hold"
                    )
            except (ValueError, TypeError) as exc:
                return self._error(400, str(exc))
            try:
                prompt_tokens, completions, max_tokens = generator.submit(messages, sampling, n, model)
            except PromptTooLong as exc:
                return self._error(400, str(exc))
            except TimeoutError as exc:
                return self._error(504, str(exc))
            except Exception as exc:  # noqa: BLE001
                return self._error(500, f"generation failed: {type(exc).__name__}: {exc}")
            used = sum(len(c.completion_ids or []) for c in completions)
            tokenizer = generator.agents[model].tokenizer
            answer = {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    _choice(i, c, sampling[3], max_tokens, logprobs, tokenizer) for i, c in enumerate(completions)
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens * n,
                    "completion_tokens": used,
                    "total_tokens": prompt_tokens * n + used,
                },
            }
            if stream:
                options = body.get("stream_options")
                self._stream(answer, isinstance(options, dict) and options.get("include_usage") is True)
            else:
                self._send(200, answer)

        def _stream(self, answer: dict, usage: bool) -> None:
            """The answer as server-sent events, as OpenAI streams it: per choice a chunk with the role and the whole
            text, then one with the finish reason, then ``[DONE]`` (generation is batched, so nothing is gained by
            sending tokens earlier); with ``stream_options.include_usage`` a last chunk with the usage."""
            head = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
            events = []
            for c in answer["choices"]:
                delta = {"index": c["index"], "delta": c["message"], "logprobs": c["logprobs"], "finish_reason": None}
                events += [
                    head | {"choices": [delta]},
                    head | {"choices": [{"index": c["index"], "delta": {}, "finish_reason": c["finish_reason"]}]},
                ]
            if usage:
                events.append(head | {"choices": [], "usage": answer["usage"]})
            data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
            self._write(200, "text/event-stream", data)

    return Handler


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

"""Agents served over the OpenAI chat-completions API (vLLM, llama.cpp, hosted APIs, ``selfplay serve``).

Spec: ``openai:MODEL@BASE_URL[:key=value,...]``, e.g. ``openai:gpt-4o-mini@https://api.openai.com/v1`` or
``openai:policy@http://127.0.0.1:8000/v1:temperature=0``. The key comes from the environment variable named by
``key_env`` (default ``OPENAI_API_KEY``; none is sent when it is unset). Every sample of an arena round is one
request, sent concurrently (``concurrency``, default 16); failures are retried with exponential backoff
(``retries``, default 3; HTTP 429 and 5xx and connection errors), and a request still unanswered after
``timeout`` seconds (default 30) becomes a TIMEOUT attempt of that game, not an error of the batch. Standard
library only (``urllib``), so no client package is needed.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from selfplay.agents.base import Completion, Request

OPTIONS = {
    "temperature": float,
    "max_tokens": int,
    "top_p": float,
    "timeout": float,
    "retries": int,
    "concurrency": int,
    "key_env": str,
    "seed": int,
    "stop": str,
}


class OpenAIAgent:
    """Plays by asking an OpenAI-compatible chat-completions endpoint, one request per sample."""

    def __init__(self, model: str, base_url: str, name: str = "openai", **options):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"openai agent: unknown option(s) {unknown}; expected some of {', '.join(OPTIONS)}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"openai agent: base URL {base_url!r} must start with http:// or https://")
        self.name, self.model, self.url = name, model, base_url.rstrip("/") + "/chat/completions"
        opts = {k: OPTIONS[k](v) for k, v in options.items()}
        self.temperature = opts.get("temperature", 1.0)
        self.max_tokens = opts.get("max_tokens", 32)
        self.top_p = opts.get("top_p")
        self.timeout = opts.get("timeout", 30.0)
        self.retries = opts.get("retries", 3)
        self.concurrency = max(1, opts.get("concurrency", 16))
        self.stop = opts["stop"].split("|") if "stop" in opts else None
        self.seed = opts.get("seed")
        self.key = os.environ.get(opts.get("key_env", "OPENAI_API_KEY"))

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        jobs = [(r.messages, i) for i, r in enumerate(requests) for _ in range(r.samples)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(jobs)))) as pool:
            answers = list(pool.map(lambda job: self._ask(job[0]), jobs))
        out: list[list[Completion]] = [[] for _ in requests]
        for (_, i), completion in zip(jobs, answers):
            out[i].append(completion)
        return out

    def _ask(self, messages: list[dict]) -> Completion:
        """One chat completion, retried with backoff; a TIMEOUT (or AGENT_ERROR) completion when it never came."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.stop:
            body["stop"] = self.stop
        if self.seed is not None:
            body["seed"] = self.seed
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.key}"} if self.key else {})}
        data = json.dumps(body).encode()
        error, failure = "", "AGENT_ERROR"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(8.0, 0.25 * 2 ** (attempt - 1)))
            try:
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.loads(response.read(4_000_000))
                text = reply["choices"][0]["message"]["content"] or ""
                return Completion(text, meta={"usage": reply.get("usage", {}), "attempts": attempt + 1})
            except urllib.error.HTTPError as exc:
                error, failure = f"HTTP {exc.code} from {self.url}{_said(exc)}", "AGENT_ERROR"
                if exc.code != 429 and exc.code < 500:
                    break  # a client error does not improve with retries
            except TimeoutError as exc:
                error, failure = f"no answer from {self.url} within {self.timeout:g}s ({exc})", "TIMEOUT"
            except urllib.error.URLError as exc:
                timed_out = isinstance(exc.reason, (TimeoutError, socket.timeout))
                error = f"{'no answer' if timed_out else 'cannot reach'} {self.url}: {exc.reason}"
                failure = "TIMEOUT" if timed_out else "AGENT_ERROR"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                error, failure = f"malformed reply from {self.url}: {type(exc).__name__}: {exc}", "AGENT_ERROR"
        tries = attempt + 1
        return Completion(
            "", meta={"failure": failure, "error": f"{error} (after {tries} tr{'ies' if tries > 1 else 'y'})"}
        )


def _said(exc: urllib.error.HTTPError) -> str:
    """What the server said about the error (its ``error.message``, else the body's start), for the record."""
    try:
        body = exc.read(20_000).decode(errors="replace")
    except OSError:
        return ""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body
    message = " ".join(str(message).split())[:300]
    return f": {message}" if message else ""

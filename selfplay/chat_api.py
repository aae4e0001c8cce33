"""The OpenAI chat-completions protocol of ``selfplay serve``: reading a request (each bad field a 400 that names
it), the answer and its stream, and the HTTP handler that puts them on the wire."""

from __future__ import annotations

import hmac
import json
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server's batching generator; only its type is needed here
    from selfplay.serve import Generator

CHARS_PER_TOKEN = 32  # no token of a real vocabulary spans more characters: more characters than this many times
# the token limit cannot fit, and are refused before the tokenizer sees them


class PromptTooLong(ValueError):
    """A prompt over the server's token limit (answered as a 400 naming it)."""


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


def _choice(i: int, completion: Any, stop: tuple, *, max_tokens: int, logprobs: bool, tokenizer: Any) -> dict:
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


@dataclass
class ChatRequest:
    """One validated chat-completions request."""

    messages: list[dict]
    sampling: tuple  # (max_tokens, temperature, top_p, stop, seed)
    n: int
    model: str
    logprobs: bool
    stream: bool
    usage_in_stream: bool


def read_request(body: Any, generator: Generator) -> ChatRequest:
    """The request, validated against this server's models and limits; ValueError names the bad field."""
    ids = list(generator.agents)
    messages = _messages(body)
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 64:
        raise ValueError(f"n {n!r}: expected an integer in [1, 64]")
    sampling = _sampling(body, generator.limits.max_tokens)
    logprobs, stream = body.get("logprobs") or False, body.get("stream") or False
    if not isinstance(logprobs, bool) or not isinstance(stream, bool):
        raise ValueError("logprobs and stream: expected true or false")
    if body.get("top_logprobs"):
        raise ValueError(
            f"top_logprobs {body['top_logprobs']!r}: not served; logprobs=true gives the sampled tokens' log-probabilities"
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
    options = body.get("stream_options")
    usage = isinstance(options, dict) and options.get("include_usage") is True
    return ChatRequest(messages, sampling, n, model, logprobs, stream, usage)


def answer(request: ChatRequest, prompt_tokens: int, *, completions: list, max_tokens: int, tokenizer: Any) -> dict:
    """The chat.completion object for ``completions`` of ``request``."""
    used = sum(len(c.completion_ids or []) for c in completions)
    stop, n = request.sampling[3], request.n
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            _choice(i, c, stop, max_tokens=max_tokens, logprobs=request.logprobs, tokenizer=tokenizer)
            for i, c in enumerate(completions)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens * n,
            "completion_tokens": used,
            "total_tokens": prompt_tokens * n + used,
        },
    }


def stream_events(answer: dict, usage: bool) -> bytes:
    """The answer as server-sent events, as OpenAI streams it: per choice a chunk with the role and the whole text,
    then one with the finish reason, then ``[DONE]`` (generation is batched, so nothing is gained by sending tokens
    earlier); with ``usage`` (``stream_options.include_usage``) a last chunk with the usage."""
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
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


class ChatHandler(BaseHTTPRequestHandler):
    """Serves ``generator``'s models (with one model, a request's ``model`` is not checked; with one per role it picks
    the role's); with ``api_key`` every route asks for it. :func:`make_handler` binds the two."""

    protocol_version = "HTTP/1.1"
    timeout = 120  # seconds a connection may stay silent (a body shorter than its Content-Length)
    generator: Generator
    api_key: str | None = None

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
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind}})

    def _authorised(self) -> bool:
        """True when no key is set or the request carries it (compared in constant time); else a 401 is sent."""
        if self.api_key is None:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
            return True
        self.close_connection = True
        self._error(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'")
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._authorised():
            return
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            models = [{"id": i, "object": "model", "owned_by": "selfplay"} for i in self.generator.agents]
            self._send(200, {"object": "list", "data": models})
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
            request = read_request(json.loads(self.rfile.read(size) or b"{}"), self.generator)
        except (ValueError, TypeError) as exc:
            return self._error(400, str(exc))
        try:
            prompt_tokens, completions, max_tokens = self.generator.submit(
                request.messages, request.sampling, request.n, request.model
            )
        except PromptTooLong as exc:
            return self._error(400, str(exc))
        except TimeoutError as exc:
            return self._error(504, str(exc))
        except Exception as exc:  # noqa: BLE001
            return self._error(500, f"generation failed: {type(exc).__name__}: {exc}")
        tokenizer = self.generator.agents[request.model].tokenizer
        reply = answer(request, prompt_tokens, completions=completions, max_tokens=max_tokens, tokenizer=tokenizer)
        if request.stream:
            self._write(200, "text/event-stream", stream_events(reply, request.usage_in_stream))
        else:
            self._send(200, reply)


def make_handler(generator: Generator, api_key: str | None = None) -> type[ChatHandler]:
    """The request handler class serving ``generator``'s models, asking for ``api_key`` when set."""
    return type("Handler", (ChatHandler,), {"generator": generator, "api_key": api_key})

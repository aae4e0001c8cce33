"""LLM agents: a causal LM (optionally one LoRA adapter of it) answering batches of chat observations.

All pending requests of one agent go into one left-padded ``generate`` call (a ``samples=K`` request is K
rows). For every completion the agent returns the prompt ids, the completion ids and the per-token
sampling log-probabilities ``log softmax(logits / temperature)`` at the sampled token -- the same quantity
``token_logprobs`` recomputes in a teacher-forced pass, so training needs no guesswork. Top-p truncation is
not folded into the log-probabilities (as in TRL and vLLM).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from selfplay.agents.backends import generate_static, generate_vllm
from selfplay.agents.base import Completion, Request
from selfplay.agents.checkpoint_paths import checkpoint_policy, policy_dir, run_sampling
from selfplay.agents.checkpoints import RoleAgent, load_role_models
from selfplay.agents.decode import Decoder
from selfplay.agents.models import load_model
from selfplay.agents.precision import computing
from selfplay.agents.prompts import (
    PromptMemo,
    adds_default_system,
    decode_texts,
    observation,
    render_prompt,
    render_prompts,
)
from selfplay.agents.sampling import BACKENDS, OBSERVERS, SamplingConfig, warn_no_compact  # noqa: F401
from selfplay.agents.scoring import Packed, pack, scored_logprobs
from selfplay.agents.spec_syntax import MODEL_OPTIONS
from selfplay.agents.token_sampling import next_allowed, through_stop
from selfplay.agents.weights import activate_adapter


def _greedy_choice(paths: dict[str, tuple[list[int], list[float]]]) -> dict[str, float]:
    """Greedy decoding down the trie of legal spellings: at each step the most likely allowed token (the options
    sharing a prefix share that step's distribution), so probability 1 on the action greedy decoding spells."""
    candidates, n = list(paths), 0
    while len(candidates) > 1:
        best = max(candidates, key=lambda a: paths[a][1][n])
        token = paths[best][0][n]
        candidates = [a for a in candidates if len(paths[a][0]) > n and paths[a][0][n] == token]
        n += 1
    return {a: float(a == candidates[0]) for a in paths}


class LLMAgent:
    """A causal LM playing from chat observations; ``adapter`` selects one LoRA adapter of a PEFT model."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        sampling: SamplingConfig | None = None,
        *,
        name: str = "llm",
        adapter: str | None = None,
        engine_factory=None,
    ):
        self.name, self.model, self.tokenizer, self.adapter = name, model, tokenizer, adapter
        self.sampling = sampling or SamplingConfig()
        self.engine_factory = engine_factory  # backend=vllm: what builds the engine (vllm.LLM unless given)
        if self.sampling.backend == "vllm" and engine_factory is None:
            from selfplay.agents.vllm_backend import unavailable

            reason = unavailable()
            if reason:
                raise ValueError(f"agent {name!r}: backend=vllm, but {reason}; use backend=native")
        self.calls = 0
        self.decoder: Decoder | None = None
        self._spelled: dict[tuple[str, ...], list[list[int]]] = {}  # legal actions -> token ids (_spelling)
        self.bare_system: bool | None = None  # decided on first use from the chat template
        self.stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        self.prompt_memo = PromptMemo()

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        read = [self._messages(r) for r in requests]
        prompts = render_prompts(self.tokenizer, read, self.prompt_memo)
        if any(r.slot for r in requests):  # an answer slot: the start of the model's own turn, part of its prompt
            prompts = [p + self._slot_ids(r.slot) if r.slot else p for p, r in zip(prompts, requests)]
            read = [[*m, {"role": "assistant", "content": r.slot}] if r.slot else m for m, r in zip(read, requests)]
        context = getattr(self.model.config, "max_position_embeddings", None)
        new = self.sampling.max_new_tokens
        fits = [context is None or len(p) + new <= context for p in prompts]
        rows = [p for p, r, ok in zip(prompts, requests, fits) if ok for _ in range(r.samples)]
        legal = [r.legal_actions for r, ok in zip(requests, fits) if ok for _ in range(r.samples)]
        flat: list[Completion] = []
        size = self.sampling.batch_size
        for start in range(0, len(rows), size):
            flat += self.generate(
                rows[start : start + size], legal[start : start + size] if self.sampling.constrained else None
            )
        out, i = [], 0
        for p, r, ok in zip(prompts, requests, fits):
            if ok:
                out.append(flat[i : i + r.samples])
                i += r.samples
            else:  # beyond the positions the model was trained on, its answers would be noise: an attempt that failed
                error = (
                    f"the prompt of {len(p)} tokens plus max_new_tokens={new} exceeds the model's context of "
                    f"{context} positions"
                )
                out.append(
                    [
                        Completion("", prompt_ids=list(p), meta={"failure": "AGENT_ERROR", "error": error})
                        for _ in range(r.samples)
                    ]
                )
        for messages, r, completions in zip(read, requests, out):  # what the model read, where the game's chat differs
            if messages is not r.messages:
                for c in completions:
                    c.meta["read"] = messages
        return out

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], legal: list[list[str] | None] | None = None) -> list[Completion]:
        """Sample one completion per prompt in one batched call (optionally constrained to legal actions)."""
        if self.sampling.cache == "static":
            with computing(self.model):
                return generate_static(self, prompts, legal)
        if self.sampling.backend == "vllm":
            return generate_vllm(self, prompts)
        s, tok = self.sampling, self.tokenizer
        decoder = self._decoder()
        spelled = self._spell(legal)
        stopped = None
        if s.stop:

            def stopped(row: int, tokens: list[int]) -> bool:
                text = tok.decode(tokens, skip_special_tokens=True)
                return any(x in text for x in s.stop)

        seed = s.seed + self.calls  # reproducible, yet every call samples afresh
        self.calls += 1
        with self._adapter(), computing(self.model):
            rows = decoder.decode(
                prompts,
                self._budget(spelled),
                temperature=s.temperature,
                top_p=s.top_p,
                legal=spelled,
                seed=seed,
                stopped=stopped,
            )
        texts = decode_texts(tok, [r.tokens for r in rows])
        return [
            Completion(
                text,
                prompt_ids=list(p),
                completion_ids=r.tokens,
                logprobs=r.logprobs,
                allowed=r.allowed,
                temperature=s.temperature,
            )
            for p, r, text in zip(prompts, rows, texts)
        ]

    def _until_stop(self, tokens: list[int]) -> list[int]:
        """``tokens`` up to the first stop token or the token that completes a stop string (where the native
        decoder stops)."""
        tokens = tokens[: through_stop(tokens, self.stop_ids)]
        if self.sampling.stop:
            for n in range(1, len(tokens) + 1):
                text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
                if any(x in text for x in self.sampling.stop):
                    return tokens[:n]
        return tokens

    def _decoder(self) -> Decoder:
        if self.decoder is None:
            self.decoder = Decoder(
                self.model,
                self.tokenizer.eos_token_id,
                self.stop_ids,
                max_rows=self.sampling.batch_size,
                graphs=self.sampling.graphs,
                pack=self.sampling.pack,
            )
        return self.decoder

    @contextmanager
    def session(self) -> Iterator[None]:
        """A stretch of calls with unchanged weights (one arena ``play``): shared prompt prefixes computed by one
        call are reused by the next (``Decoder.session``)."""
        if self.sampling.cache == "static" or self.sampling.backend == "vllm":
            yield
            return
        with self._decoder().session():
            yield

    def _spell(self, legal: list[list[str] | None] | None) -> list[list[list[int]] | None] | None:
        """Each row's legal action texts as token ids (None for an unconstrained row, or for no constraint at all)."""
        if not legal:
            return None
        return [None if options is None else self._spelling(tuple(options)) for options in legal]

    def _spelling(self, options: tuple[str, ...]) -> list[list[int]]:
        """One list of legal actions as token ids, remembered: a game that lists thousands of actions every turn
        (a creator's whole grammar) is tokenised once, not once a request."""
        cache = self._spelled
        if options not in cache:
            if len(cache) >= 64:
                cache.pop(next(iter(cache)))
            cache[options] = [self.tokenizer.encode(a, add_special_tokens=False) for a in options]
        return cache[options]

    def _budget(self, spelled: list[list[list[int]] | None] | None) -> int:
        """``max_new_tokens``, raised where a constrained row's longest legal action (and its end) needs more: a
        constrained answer can only be a legal action, so cutting one short would only make it invalid."""
        longest = max((len(t) + 1 for options in spelled or [] if options for t in options), default=0)
        return max(self.sampling.max_new_tokens, longest)

    @torch.no_grad()
    def action_probabilities(self, requests: list[Request], batch_rows: int = 512) -> list[dict[str, float]]:
        """The exact probability that this agent answers each legal action of each request: the policy it samples.

        Constrained decoding spells one legal action token by token, each token drawn from ``softmax(logits / T)``
        renormalised over the tokens that continue some legal action (and end-of-text once one is complete), so
        P(action) is the product of those probabilities along its spelling and the end token; the probabilities
        over the legal actions sum to 1, whatever their lengths. Greedy decoding (T = 0) puts 1 on the argmax path.
        """
        if not self.sampling.constrained:
            raise ValueError("action probabilities are exact only for constrained decoding (constrained=true)")
        tok, eos = self.tokenizer, self.tokenizer.eos_token_id
        device = next(self.model.parameters()).device
        rows, owners = [], []
        for i, r in enumerate(requests):
            prompt = render_prompt(tok, self._messages(r)) + (self._slot_ids(r.slot) if r.slot else [])
            spelled = [tok.encode(a, add_special_tokens=False) for a in r.legal_actions]
            for action, ids in zip(r.legal_actions, spelled):
                path, allowed = ids + [eos], []
                for n in range(len(path)):
                    allowed.append(next_allowed(spelled, ids[:n], eos))
                rows.append((prompt, path, allowed))
                owners.append((i, action))
        temperature = self.sampling.temperature
        logps = []
        for start in range(0, len(rows), batch_rows):
            chunk = rows[start : start + batch_rows]
            batch = {
                k: v.to(device)
                for k, v in pack([p for p, _, _ in chunk], [c for _, c, _ in chunk], tok.pad_token_id).items()
            }
            with self._adapter():
                picked = scored_logprobs(
                    self.model, Packed.of(batch), temperature=temperature or 1.0, allowed=[a for _, _, a in chunk]
                )
            logps += [picked[j, : len(c)].tolist() for j, (_, c, _) in enumerate(chunk)]
        per_request: list[dict[str, tuple[list[int], list[float]]]] = [{} for _ in requests]
        for (i, action), (_, path, _), steps in zip(owners, rows, logps):
            per_request[i][action] = (path, steps)
        if temperature == 0:
            return [_greedy_choice(paths) for paths in per_request]
        return [{a: math.exp(sum(steps)) for a, (_, steps) in paths.items()} for paths in per_request]

    def tabular_policy(self, tree, roles: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
        """This agent's exact policy at every information state of a ``games.exact`` tree (of ``roles``, default
        all), keyed as the tree keys them."""
        infos = [i for i in tree.infostates().values() if roles is None or i.role in roles]
        probs = self.action_probabilities([Request(None, i.role, i.chat(), 1, list(i.legal), i.compact) for i in infos])
        return {i.key: p for i, p in zip(infos, probs)}

    def _slot_ids(self, slot: str) -> list[int]:
        """The token ids of an answer slot, appended after the chat template's generation prompt."""
        return list(self.tokenizer.encode(slot, add_special_tokens=False))

    def _messages(self, request: Request) -> list[dict]:
        if self.bare_system is None:
            self.bare_system = adds_default_system(self.tokenizer)
        if self.sampling.observer == "compact" and request.compact is None:
            warn_no_compact(request.game, self.name)
        return observation(request, self.sampling.observer, self.bare_system)

    def _adapter(self):
        if self.adapter is not None:
            activate_adapter(self.model, self.adapter)  # one adapter per call: a batch never mixes adapters
        return nullcontext()


_MODELS: dict[tuple, tuple[torch.nn.Module, object]] = {}


def build_llm_agent(spec, seed: int = 0, name: str | None = None) -> LLMAgent | RoleAgent:
    """An LLM agent from a parsed spec; agents with the same model options share one loaded model. ``hf:`` of a
    training checkpoint plays its policy: a LoRA or clone checkpoint as a ``RoleAgent``, each role with its own
    adapter or clone."""
    options = dict(spec.options)
    load = {k: options.pop(k) for k in MODEL_OPTIONS if k in options}
    options.setdefault("seed", seed)
    path = spec.arg
    if spec.kind == "hf" and Path(path).is_dir():
        path = str(checkpoint_policy(path) or path)  # a checkpoint: its policy/
        options = {**run_sampling(path), **options}  # a checkpoint samples as its run evaluated, unless told otherwise
    sampling = SamplingConfig.from_options(options)
    key = (spec.kind, path, *sorted(load.items()))
    name = name or spec.text
    if spec.kind == "hf" and policy_dir(path) is not None:
        if key not in _MODELS:
            _MODELS[key] = load_role_models(path, **load)
        roles, tokenizer = _MODELS[key]
        return RoleAgent(
            {
                role: LLMAgent(module, tokenizer, sampling, name=name, adapter=adapter)
                for role, (module, adapter) in roles.items()
            },
            name,
        )
    if key not in _MODELS:
        _MODELS[key] = load_model(spec.kind, path, seed=seed, **load)
    model, tokenizer = _MODELS[key]
    return LLMAgent(model, tokenizer, sampling, name=name)

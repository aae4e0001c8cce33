"""LLM agents: a causal LM (optionally one LoRA adapter of it) answering batches of chat observations.

All pending requests of one agent go into one left-padded ``generate`` call (a ``samples=K`` request is K
rows). For every completion the agent returns the prompt ids, the completion ids and the per-token
sampling log-probabilities ``log softmax(logits / temperature)`` at the sampled token -- the same quantity
``token_logprobs`` recomputes in a teacher-forced pass, so training needs no guesswork. Top-p truncation is
not folded into the log-probabilities (as in TRL and vLLM).
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from selfplay.agents.base import Completion, Request
from selfplay.agents.sampling import BACKENDS, OBSERVERS, SamplingConfig, warn_no_compact  # noqa: F401
from selfplay.agents.checkpoints import RoleAgent, checkpoint_policy, load_role_models, policy_dir, run_sampling
from selfplay.agents.decode import (Decoder, default_min_saving, next_allowed, plain_head, power_of_two, radix_tree,
                                    through_stop)
from selfplay.agents.models import load_model
from selfplay.agents.specs import MODEL_OPTIONS
from selfplay.agents.tree_forward import forward_plan, tree_may_pay, tree_pays, tree_states
from selfplay.agents.weights import activate_adapter


def observation(request: Request, observer: str, bare_system: bool = False) -> list[dict]:
    """The messages an agent reads: the game's chat, or (``compact``) its one-line observation as the first user
    turn followed by any re-prompts of this turn; ``bare_system`` puts an empty system turn first (for chat
    templates that would otherwise add a default system prompt longer than the observation)."""
    if observer != "compact" or request.compact is None:
        return request.messages
    first = next((i for i, m in enumerate(request.messages) if m["role"] == "user"), len(request.messages) - 1)
    bare = [{"role": "system", "content": ""}] if bare_system else []
    return [*bare, {"role": "user", "content": request.compact}, *request.messages[first + 1:]]


def adds_default_system(tokenizer) -> bool:
    """Whether the chat template inserts a system prompt of its own when the messages have none (SmolLM2's does)."""
    probe = [{"role": "user", "content": "x"}]
    return len(render_prompt(tokenizer, probe)) > len(render_prompt(tokenizer, [{"role": "system", "content": ""}, *probe]))


def render_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a chat observation with the generation prompt appended."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


class PromptMemo:
    """Token ids of the conversations one tokenizer has rendered, keyed by the conversation's text (a game's
    observations recur across turns, games and training steps: TicTacToe has 5,478 positions). At most ``limit``
    kept (as 8-byte arrays: ~2 KB for a 150-token prompt and its key), oldest out first; everything is dropped when
    the tokenizer's chat template changes."""

    def __init__(self, limit: int = 16384):
        self.limit, self.template, self.ids = limit, None, OrderedDict()

    def check(self, tokenizer) -> None:
        template = getattr(tokenizer, "chat_template", None)
        if template != self.template:
            self.template = template
            self.ids.clear()

    def add(self, keys: list[str], ids: list[list[int]]) -> None:
        self.ids.update(zip(keys, (array("q", row) for row in ids)))
        while len(self.ids) > self.limit:
            self.ids.popitem(last=False)


def render_prompts(tokenizer, conversations: list[list[dict]], memo: PromptMemo | None = None) -> list[list[int]]:
    """:func:`render_prompt` of many observations: rendered in one template call, tokenised in one batch (what
    ``apply_chat_template(tokenize=True)`` does per conversation, at half the cost); with a ``memo``, conversations
    it holds are not rendered again."""
    if not conversations:
        return []
    first: dict[str, int] = {}  # identical observations (every game's opening, say) are rendered once
    slot = [first.setdefault(repr(c), len(first)) for c in conversations]
    keys = list(first)
    known: list[list[int] | array | None] = [None] * len(keys)
    if memo is not None:
        memo.check(tokenizer)
        known = [memo.ids.get(k) for k in keys]
    todo = [j for j, ids in enumerate(known) if ids is None]
    unique = [None] * len(keys)
    for c, j in zip(conversations, slot):
        unique[j] = c
    if todo:
        fresh = _render(tokenizer, [unique[j] for j in todo])
        for j, ids in zip(todo, fresh):
            known[j] = ids
        if memo is not None:
            memo.add([keys[j] for j in todo], fresh)
    return [list(known[j]) for j in slot]


def _render(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    """Token ids of ``conversations``: one template call, one batch tokenisation."""
    texts = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    # the fast tokenizer's ids alone (no per-row BatchEncoding), unless an earlier call of the tokenizer with padding
    # or truncation left them switched on in its backend: the generic call switches them off again
    if backend is not None and getattr(tokenizer, "is_fast", False) and backend.padding is None \
            and backend.truncation is None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [list(row) for row in tokenizer(texts, add_special_tokens=False, padding=False,
                                           truncation=False)["input_ids"]]


def decode_texts(tokenizer, rows: list[list[int]]) -> list[str]:
    """``tokenizer.decode(row, skip_special_tokens=True)`` of every row; a fast tokenizer decodes them in one batch
    (unless it cleans up tokenization spaces, which only its Python side does)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and getattr(tokenizer, "is_fast", False) \
            and not getattr(tokenizer, "clean_up_tokenization_spaces", True):
        return backend.decode_batch(rows, skip_special_tokens=True)
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows]


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask (width rounded up to ``multiple``)."""
    width = -(-max(len(r) for r in rows) // multiple) * multiple
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of left-padded prompt + right-padded completion, with mask, positions and the completion mask."""
    plen = max(len(p) for p in prompts)
    clen = max(1, max(len(c) for c in completions))
    ids = torch.full((len(prompts), plen + clen), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, plen - len(p):plen + len(c)] = torch.tensor(p + c, dtype=torch.long)
        mask[i, plen - len(p):plen + len(c)] = 1
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
            "completion_mask": mask[:, plen:], "prompt_width": torch.tensor(plen)}


def allowed_mask(allowed: list[list[list[int] | None] | None], vocab: int, device) -> torch.Tensor:
    """Additive (rows, tokens, vocab) mask: 0 where a token was allowed, -inf elsewhere; None allows all."""
    width = max([len(a) for a in allowed if a] or [1])
    mask = torch.zeros(len(allowed), width, vocab, device=device)
    for i, row in enumerate(allowed):
        for t, ids in enumerate(row or []):
            if ids is not None:
                mask[i, t] = float("-inf")
                mask[i, t, ids] = 0.0
    return mask


def completion_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, prompt_width: int,
                        temperature: float = 1.0, allowed: list | None = None) -> torch.Tensor:
    """(rows, completion tokens) ``log softmax(logits / T)`` at the completion tokens.

    ``logits`` may cover only the last positions (``logits_to_keep``), as long as it starts by the last prompt
    token. ``allowed`` (per row, per token: the allowed ids or None) renormalises over constrained choices.
    """
    skipped = input_ids.shape[1] - logits.shape[1]
    shifted = logits[:, prompt_width - 1 - skipped:-1].float() / (temperature or 1.0)
    if allowed is not None and any(allowed):
        mask = allowed_mask(allowed, shifted.shape[-1], shifted.device)
        pad = shifted.shape[1] - mask.shape[1]
        shifted = shifted + torch.nn.functional.pad(mask, (0, 0, 0, max(pad, 0)))[:, :shifted.shape[1]]
    targets = input_ids[:, prompt_width:].unsqueeze(-1)
    return shifted.gather(-1, targets).squeeze(-1) - torch.logsumexp(shifted, dim=-1)


def scored_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    position_ids: torch.Tensor, prompt_width: int, temperature: float = 1.0,
                    allowed: list | None = None) -> torch.Tensor:
    """(rows, completion tokens) teacher-forced ``log softmax(logits / T)`` of each completion token of a
    :func:`pack` batch (0 at padding), differentiable; ``allowed`` as in :func:`completion_logprobs`.

    Where the output layer is a plain linear map (``plain_head``), only the positions that score a real completion
    token go through it, and a constrained position only through its allowed tokens' rows: the same renormalised
    log-probability as masking the full vocabulary, without the (rows, tokens, vocabulary) logits.
    """
    head = plain_head(model)
    targets, valid = input_ids[:, prompt_width:], attention_mask[:, prompt_width:].bool()
    if head is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       logits_to_keep=input_ids.shape[1] - prompt_width + 1).logits
        return completion_logprobs(logits, input_ids, prompt_width, temperature, allowed).masked_fill(~valid, 0.0)
    hidden = completion_states(model.get_decoder(), input_ids, attention_mask, position_ids, prompt_width)
    out = torch.zeros(targets.shape, dtype=torch.float32, device=input_ids.device)
    scale = 1.0 / (temperature or 1.0)
    constrained = constrained_positions(attention_mask[:, prompt_width:], allowed)
    free = valid.clone()
    if constrained:
        ci = torch.tensor([i for i, _, _ in constrained], device=out.device)
        ct = torch.tensor([t for _, t, _ in constrained], device=out.device)
        free[ci, ct] = False
    fi, ft = free.nonzero(as_tuple=True)
    if len(fi):
        z = head(hidden[fi, ft]).float() * scale
        out = out.index_put((fi, ft), z.gather(-1, targets[fi, ft, None]).squeeze(-1) - torch.logsumexp(z, -1))
    if constrained:
        picked = targets[ci, ct].tolist()
        union = sorted({x for _, _, ids in constrained for x in ids} | set(picked))
        column = {x: j for j, x in enumerate(union)}
        rows = torch.tensor(union, device=out.device)
        z = torch.nn.functional.linear(hidden[ci, ct], head.weight[rows],
                                       None if head.bias is None else head.bias[rows]).float() * scale
        keep = torch.zeros(z.shape, dtype=torch.bool)
        keep[[k for k, (_, _, ids) in enumerate(constrained) for _ in ids],
             [column[x] for _, _, ids in constrained for x in ids]] = True
        z = z.masked_fill(~keep.to(z.device), float("-inf"))  # a token outside its allowed set: -inf, as masked
        chosen = torch.tensor([column[x] for x in picked], device=out.device)
        out = out.index_put((ci, ct), z.gather(-1, chosen[:, None]).squeeze(-1) - torch.logsumexp(z, -1))
    return out


def completion_states(decoder: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      position_ids: torch.Tensor, prompt_width: int) -> torch.Tensor:
    """The decoder's last hidden states that predict each completion token of a :func:`pack` batch, (rows,
    completion tokens, hidden), differentiable; what stands at padding positions is unspecified.

    Where the rows share prefixes (a seat's system prompt and rules, a GRPO group's prompt, a state many games
    reach) and the tokens saved outweigh the extra forwards (``tree_pays``), they run along their radix tree, each
    shared run once (``agents/tree_forward.py``); otherwise (or under activation checkpointing, which drops caches)
    in one pass over whole rows.
    """
    def plain() -> torch.Tensor:
        return decoder(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=position_ids).last_hidden_state[:, prompt_width - 1:-1]

    if getattr(decoder, "gradient_checkpointing", False):
        return plain()
    rows, width = input_ids.shape
    saving = default_min_saving(input_ids.device)
    lengths = attention_mask[:, :prompt_width].sum(1).tolist(), attention_mask[:, prompt_width:].sum(1).tolist()
    sequences = [r[prompt_width - p:prompt_width + c] for r, p, c in zip(input_ids.tolist(), *lengths)]
    if not tree_may_pay(decoder, rows * width, len(set(map(tuple, sequences)))):
        return plain()
    nodes = radix_tree(sequences, saving)
    wanted = [list(range(p - 1, p + c - 1)) for p, c in zip(*lengths)]
    if not any(wanted) or not tree_pays(decoder, rows * width, nodes, forward_plan(nodes, saving)):
        return plain()
    states = tree_states(decoder, sequences, wanted, saving, nodes=nodes)
    return torch.nn.functional.pad(states, (0, 0, 0, width - prompt_width - states.shape[1]))


def constrained_positions(completion_mask: torch.Tensor, allowed: list | None) -> list[tuple[int, int, list[int]]]:
    """(row, completion token, allowed ids) of every real completion token that ``allowed`` constrains."""
    flags = completion_mask.tolist()
    return [(i, t, ids) for i, row in enumerate(allowed or ()) for t, ids in enumerate(row or ())
            if ids is not None and t < len(flags[i]) and flags[i][t]]


def token_logprobs(model: torch.nn.Module, prompts: list[list[int]], completions: list[list[int]], pad_id: int,
                   temperature: float = 1.0, allowed: list | None = None) -> list[torch.Tensor]:
    """Teacher-forced ``log softmax(logits / T)`` of each completion token given its prompt (differentiable)."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in pack(prompts, completions, pad_id).items()}
    picked = scored_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                             int(batch["prompt_width"]), temperature, allowed)
    return [picked[i, :len(c)] for i, c in enumerate(completions)]


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

    def __init__(self, model: torch.nn.Module, tokenizer, sampling: SamplingConfig | None = None,
                 name: str = "llm", adapter: str | None = None, engine_factory=None):
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
            flat += self.generate(rows[start:start + size], legal[start:start + size] if self.sampling.constrained else None)
        out, i = [], 0
        for p, r, ok in zip(prompts, requests, fits):
            if ok:
                out.append(flat[i:i + r.samples])
                i += r.samples
            else:  # beyond the positions the model was trained on, its answers would be noise: an attempt that failed
                error = (f"the prompt of {len(p)} tokens plus max_new_tokens={new} exceeds the model's context of "
                         f"{context} positions")
                out.append([Completion("", prompt_ids=list(p), meta={"failure": "AGENT_ERROR", "error": error})
                            for _ in range(r.samples)])
        for messages, r, completions in zip(read, requests, out):  # what the model read, where the game's chat differs
            if messages is not r.messages:
                for c in completions:
                    c.meta["read"] = messages
        return out

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], legal: list[list[str] | None] | None = None) -> list[Completion]:
        """Sample one completion per prompt in one batched call (optionally constrained to legal actions)."""
        if self.sampling.cache == "static":
            return self._generate_hf(prompts, legal)
        if self.sampling.backend == "vllm":
            return self._generate_vllm(prompts)
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
        with self._adapter():
            rows = decoder.decode(prompts, self._budget(spelled), s.temperature, s.top_p, spelled, seed, stopped)
        texts = decode_texts(tok, [r.tokens for r in rows])
        return [Completion(text, prompt_ids=list(p), completion_ids=r.tokens, logprobs=r.logprobs, allowed=r.allowed)
                for p, r, text in zip(prompts, rows, texts)]

    def _generate_vllm(self, prompts: list[list[int]]) -> list[Completion]:
        """Sample with the colocated vLLM engine (synchronised to this agent's weights first), then score the tokens
        with this agent's own model: the log-probabilities training uses are the teacher-forced ones."""
        from selfplay.agents.vllm_backend import engine_for

        s, tok = self.sampling, self.tokenizer
        engine = engine_for(self.model, s.vllm_memory, s.seed, self.engine_factory)
        engine.sync(self.model, self.adapter)
        call, self.calls = self.calls, self.calls + 1
        seeds = [hash((s.seed, call, i)) & 0x7FFFFFFF for i in range(len(prompts))]  # reproducible, fresh per call
        rows = engine.generate(prompts, s.max_new_tokens, s.temperature, s.top_p, seeds, self.stop_ids)
        tokens = [self._until_stop(t) for t, _ in rows]
        with self._adapter():
            exact = token_logprobs(self.model, prompts, tokens, tok.pad_token_id, s.temperature or 1.0)
        return [Completion(text, prompt_ids=list(p), completion_ids=t, logprobs=x.tolist(),
                           meta={"engine_logprobs": lp[:len(t)]})
                for p, t, x, (_, lp), text in zip(prompts, tokens, exact, rows, decode_texts(tok, tokens))]

    def _until_stop(self, tokens: list[int]) -> list[int]:
        """``tokens`` up to the first stop token or the token that completes a stop string (where the native
        decoder stops)."""
        tokens = tokens[:through_stop(tokens, self.stop_ids)]
        if self.sampling.stop:
            for n in range(1, len(tokens) + 1):
                text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
                if any(x in text for x in self.sampling.stop):
                    return tokens[:n]
        return tokens

    def _decoder(self) -> Decoder:
        if self.decoder is None:
            self.decoder = Decoder(self.model, self.tokenizer.eos_token_id, self.stop_ids,
                                   max_rows=self.sampling.batch_size, graphs=self.sampling.graphs,
                                   pack=self.sampling.pack)
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

    def _generate_hf(self, prompts: list[list[int]], legal: list[list[str] | None] | None = None) -> list[Completion]:
        """Transformers' ``generate`` with a static KV cache and compiled decoding (shapes bucketed), for GPUs."""
        s, tok = self.sampling, self.tokenizer
        device = next(self.model.parameters()).device
        real = len(prompts)
        # bucket (batch, width) so compiled graphs are reused across calls
        prompts = prompts + [prompts[0]] * (power_of_two(real) - real)
        legal = legal + [legal[0]] * (len(prompts) - real) if legal else legal
        ids, mask = left_pad(prompts, tok.pad_token_id, device, multiple=64)
        spelled = self._spell(legal)
        allowed, allowed_log = self._constraint(spelled, ids.shape[1]) if spelled else (None, {})
        budget = self._budget(spelled)
        torch.manual_seed(s.seed + self.calls)  # reproducible, yet every call samples afresh
        self.calls += 1
        with self._adapter():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, do_sample=s.temperature > 0, max_new_tokens=budget,
                temperature=s.temperature if s.temperature > 0 else None, top_p=s.top_p if s.temperature > 0 else None,
                top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                stop_strings=s.stop or None, tokenizer=tok if s.stop else None, prefix_allowed_tokens_fn=allowed,
                output_logits=True, return_dict_in_generate=True, cache_implementation="static")
        new = out.sequences[:, ids.shape[1]:]
        temp = s.temperature if s.temperature > 0 else 1.0
        steps = []
        for t, logits in enumerate(out.logits):
            logits = logits.float() / temp
            if allowed_log:  # the constrained policy: renormalise over the tokens that were allowed
                logits = logits + allowed_mask([[allowed_log.get(i, {}).get(t)] for i in range(len(prompts))],
                                               len(self.tokenizer), logits.device)[:, 0, :logits.shape[-1]]
            steps.append(torch.log_softmax(logits, dim=-1).gather(-1, new[:, t:t + 1]).squeeze(-1))
        logprobs = torch.stack(steps, dim=1).cpu() if steps else torch.zeros(len(prompts), 0)
        new = new.cpu()
        completions = []
        for i, prompt in enumerate(prompts[:real]):
            tokens = new[i].tolist()
            end = through_stop(tokens, self.stop_ids)
            tokens = tokens[:end]
            choices = [allowed_log[i].get(t) for t in range(end)] if allowed_log else None
            completions.append(Completion(tok.decode(tokens, skip_special_tokens=True), prompt_ids=list(prompt),
                                          completion_ids=tokens, logprobs=logprobs[i, :end].tolist(), allowed=choices))
        return completions

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
            chunk = rows[start:start + batch_rows]
            batch = {k: v.to(device) for k, v in pack([p for p, _, _ in chunk], [c for _, c, _ in chunk],
                                                      tok.pad_token_id).items()}
            with self._adapter():
                picked = scored_logprobs(self.model, batch["input_ids"], batch["attention_mask"],
                                         batch["position_ids"], int(batch["prompt_width"]), temperature or 1.0,
                                         [a for _, _, a in chunk])
            logps += [picked[j, :len(c)].tolist() for j, (_, c, _) in enumerate(chunk)]
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

    def _constraint(self, spelled: list[list[list[int]] | None], width: int):
        """``prefix_allowed_tokens_fn`` that lets row b spell only one of its legal actions, then stop; and the
        log of what was allowed (row -> step -> token ids), so that log-probabilities and training use the
        constrained policy: a forced token has probability 1 and so no gradient.
        """
        vocab = list(range(len(self.tokenizer)))
        eos = self.tokenizer.eos_token_id
        log: dict[int, dict[int, list[int]]] = {i: {} for i, options in enumerate(spelled) if options is not None}

        def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
            options = spelled[batch_id]
            if options is None:
                return vocab
            prefix = sent[width:].tolist()
            log[batch_id][len(prefix)] = next_allowed(options, prefix, eos)
            return log[batch_id][len(prefix)]

        return allowed, log

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
        return RoleAgent({role: LLMAgent(module, tokenizer, sampling, name=name, adapter=adapter)
                          for role, (module, adapter) in roles.items()}, name)
    if key not in _MODELS:
        _MODELS[key] = load_model(spec.kind, path, seed=seed, **load)
    model, tokenizer = _MODELS[key]
    return LLMAgent(model, tokenizer, sampling, name=name)

"""Teacher-forced scoring: the log-probability a model gives each completion token of a batch, ``log softmax(logits /
T)``, differentiable. The decoder's sampled log-probabilities equal it (tested); training scores its samples with it
(``training/scoring.py``), and the agent uses it where an engine's own numbers cannot be trusted (vLLM).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from selfplay.agents.kv_cache import plain_head
from selfplay.agents.precision import computing
from selfplay.agents.radix import default_min_saving, radix_tree
from selfplay.agents.tree_forward import forward_plan, tree_may_pay, tree_pays, tree_states


def left_pad(
    rows: list[list[int]], pad_id: int, device: torch.device, multiple: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask (width rounded up to ``multiple``)."""
    width = -(-max(len(r) for r in rows) // multiple) * multiple
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of left-padded prompt + right-padded completion, with mask, positions and the completion mask."""
    plen = max(len(p) for p in prompts)
    clen = max(1, max(len(c) for c in completions))
    ids = torch.full((len(prompts), plen + clen), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, plen - len(p) : plen + len(c)] = torch.tensor(p + c, dtype=torch.long)
        mask[i, plen - len(p) : plen + len(c)] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        "completion_mask": mask[:, plen:],
        "prompt_width": torch.tensor(plen),
    }


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


def completion_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    prompt_width: int,
    *,
    temperature: float = 1.0,
    allowed: list | None = None,
) -> torch.Tensor:
    """(rows, completion tokens) ``log softmax(logits / T)`` at the completion tokens.

    ``logits`` may cover only the last positions (``logits_to_keep``), as long as it starts by the last prompt
    token. ``allowed`` (per row, per token: the allowed ids or None) renormalises over constrained choices.
    """
    skipped = input_ids.shape[1] - logits.shape[1]
    shifted = logits[:, prompt_width - 1 - skipped : -1].float() / (temperature or 1.0)
    if allowed is not None and any(allowed):
        mask = allowed_mask(allowed, shifted.shape[-1], shifted.device)
        pad = shifted.shape[1] - mask.shape[1]
        shifted = shifted + torch.nn.functional.pad(mask, (0, 0, 0, max(pad, 0)))[:, : shifted.shape[1]]
    targets = input_ids[:, prompt_width:].unsqueeze(-1)
    return shifted.gather(-1, targets).squeeze(-1) - torch.logsumexp(shifted, dim=-1)


class Packed(NamedTuple):
    """A batch of prompt + completion rows as the model reads it (:func:`pack`'s first four entries)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    prompt_width: int

    @classmethod
    def of(cls, packed: dict) -> Packed:
        """From :func:`pack`'s dictionary."""
        return cls(packed["input_ids"], packed["attention_mask"], packed["position_ids"], int(packed["prompt_width"]))

    def rows(self, index: torch.Tensor) -> Packed:
        """The rows ``index`` of this batch."""
        return Packed(self.input_ids[index], self.attention_mask[index], self.position_ids[index], self.prompt_width)


def scored_logprobs(
    model: torch.nn.Module,
    batch: Packed,
    *,
    temperature: float = 1.0,
    allowed: list | None = None,
    tree: bool | None = None,
) -> torch.Tensor:
    """(rows, completion tokens) teacher-forced ``log softmax(logits / T)`` of each completion token of a
    :func:`pack` batch (0 at padding), differentiable; ``allowed`` as in :func:`completion_logprobs`.

    Where the output layer is a plain linear map (``plain_head``), only the positions that score a real completion
    token go through it, and a constrained position only through its allowed tokens' rows: the same renormalised
    log-probability as masking the full vocabulary, without the (rows, tokens, vocabulary) logits. ``tree``: run
    shared prefixes once (True), never (False), or where the cost model says it pays (None; :func:`completion_states`).
    """
    with computing(model):  # the products in the model's compute dtype, as its sampler ran them
        return _scored(model, batch, temperature=temperature, allowed=allowed, tree=tree)


def _scored(model: torch.nn.Module, batch: Packed, *, temperature: float, allowed: list | None, tree: bool | None):
    input_ids, attention_mask, position_ids, prompt_width = batch
    head = plain_head(model)
    targets, valid = input_ids[:, prompt_width:], attention_mask[:, prompt_width:].bool()
    if head is None:
        logits = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=input_ids.shape[1] - prompt_width + 1,
        ).logits
        return completion_logprobs(
            logits, input_ids, prompt_width, temperature=temperature, allowed=allowed
        ).masked_fill(~valid, 0.0)
    hidden = completion_states(model.get_decoder(), batch, tree=tree)
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
        out = out.index_put(
            (ci, ct),
            _constrained_logprobs(head, hidden[ci, ct], picked=targets[ci, ct], constrained=constrained, scale=scale),
        )
    return out


def _constrained_logprobs(head, hidden: torch.Tensor, *, picked: torch.Tensor, constrained: list, scale: float):
    """Each constrained position's log-probability of its token, renormalised over its allowed ids: the output layer
    evaluated only on the rows some position may emit (the union), -inf outside each position's own set."""
    picked = picked.tolist()
    union = sorted({x for _, _, ids in constrained for x in ids} | set(picked))
    column = {x: j for j, x in enumerate(union)}
    rows = torch.tensor(union, device=hidden.device)
    z = torch.nn.functional.linear(hidden, head.weight[rows], None if head.bias is None else head.bias[rows]).float()
    z = z * scale
    keep = torch.zeros(z.shape, dtype=torch.bool)
    keep[
        [k for k, (_, _, ids) in enumerate(constrained) for _ in ids],
        [column[x] for _, _, ids in constrained for x in ids],
    ] = True
    z = z.masked_fill(~keep.to(z.device), float("-inf"))  # a token outside its allowed set: -inf, as masked
    chosen = torch.tensor([column[x] for x in picked], device=hidden.device)
    return z.gather(-1, chosen[:, None]).squeeze(-1) - torch.logsumexp(z, -1)


def completion_states(decoder: torch.nn.Module, batch: Packed, *, tree: bool | None = None) -> torch.Tensor:
    """The decoder's last hidden states that predict each completion token of a :func:`pack` batch, (rows,
    completion tokens, hidden), differentiable; what stands at padding positions is unspecified.

    Where the rows share prefixes (a seat's system prompt and rules, a GRPO group's prompt, a state many games
    reach) and the tokens saved outweigh the extra forwards (``tree_pays``), they run along their radix tree, each
    shared run once (``agents/tree_forward.py``); otherwise (or under activation checkpointing, which drops caches)
    in one pass over whole rows. ``tree=True`` skips the cost model, ``tree=False`` always runs whole rows.
    """
    input_ids, attention_mask, position_ids, prompt_width = batch

    def plain() -> torch.Tensor:
        return decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state[
            :, prompt_width - 1 : -1
        ]

    if tree is False or getattr(decoder, "gradient_checkpointing", False):
        return plain()
    rows, width = input_ids.shape
    saving = default_min_saving(input_ids.device)
    lengths = attention_mask[:, :prompt_width].sum(1).tolist(), attention_mask[:, prompt_width:].sum(1).tolist()
    sequences = [r[prompt_width - p : prompt_width + c] for r, p, c in zip(input_ids.tolist(), *lengths)]
    if tree is None and not tree_may_pay(decoder, rows * width, len(set(map(tuple, sequences)))):
        return plain()
    nodes = radix_tree(sequences, saving)
    wanted = [list(range(p - 1, p + c - 1)) for p, c in zip(*lengths)]
    if not any(wanted) or (tree is None and not tree_pays(decoder, rows * width, nodes, forward_plan(nodes, saving))):
        return plain()
    states = tree_states(decoder, sequences, wanted, min_saving=saving, nodes=nodes)
    return torch.nn.functional.pad(states, (0, 0, 0, width - prompt_width - states.shape[1]))


def constrained_positions(completion_mask: torch.Tensor, allowed: list | None) -> list[tuple[int, int, list[int]]]:
    """(row, completion token, allowed ids) of every real completion token that ``allowed`` constrains."""
    flags = completion_mask.tolist()
    return [
        (i, t, ids)
        for i, row in enumerate(allowed or ())
        for t, ids in enumerate(row or ())
        if ids is not None and t < len(flags[i]) and flags[i][t]
    ]


def token_logprobs(
    model: torch.nn.Module,
    prompts: list[list[int]],
    completions: list[list[int]],
    pad_id: int,
    *,
    temperature: float = 1.0,
    allowed: list | None = None,
) -> list[torch.Tensor]:
    """Teacher-forced ``log softmax(logits / T)`` of each completion token given its prompt (differentiable)."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in pack(prompts, completions, pad_id).items()}
    picked = scored_logprobs(model, Packed.of(batch), temperature=temperature, allowed=allowed)
    return [picked[i, : len(c)] for i, c in enumerate(completions)]

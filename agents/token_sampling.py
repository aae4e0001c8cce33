"""Token sampling: ``softmax(logits / T)`` by inverse CDF with one uniform per row, nucleus truncation, constraints
to the legal spellings, and where a completion ends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def next_allowed(options: list[list[int]], prefix: list[int], eos: int) -> list[int]:
    """Tokens that continue some legal spelling after ``prefix`` (end-of-text once a spelling is complete)."""
    n = len(prefix)
    nxt = {o[n] for o in options if len(o) > n and o[:n] == prefix}
    if any(o == prefix for o in options) or not nxt:
        nxt.add(eos)
    return sorted(nxt)


def through_stop(tokens: Sequence[int], stop_ids: set[int]) -> int:
    """How many of ``tokens`` a completion keeps: up to and including the first stop token (all, if none)."""
    return next((j + 1 for j, t in enumerate(tokens) if t in stop_ids), len(tokens))


def inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor, block: int = 256) -> torch.Tensor:
    """Per row of ``probs`` (rows, n), the first index whose cumulative probability reaches ``(1 - u) * total``:
    inverse-CDF sampling, one uniform ``u`` per row (rows, 1) instead of one per entry. ``1 - u`` lies in (0, 1], so
    the index found always has positive probability. A long row goes in two levels, first its blocks of ``block``
    entries, then the entries of the one block chosen: a GPU scans a vocabulary-long row slowly (~140 us for
    256 x 49,152 on an H200), its block sums and a single block quickly."""
    rows, width = probs.shape
    if width <= 4 * block:
        cdf = probs.cumsum(-1)
        return torch.searchsorted(cdf, (1.0 - uniform) * cdf[:, -1:]).squeeze(-1).clamp(max=width - 1)
    n = -(-width // block)
    blocks = (probs if width == n * block else F.pad(probs, (0, n * block - width))).view(rows, n, block)
    sums = blocks.sum(-1)
    cdf = sums.cumsum(-1)
    u = (1.0 - uniform) * cdf[:, -1:]
    b = torch.searchsorted(cdf, u).clamp(max=n - 1)  # the first block whose end reaches u: cdf[b - 1] < u
    inner = blocks.gather(1, b[:, :, None].expand(rows, 1, block)).squeeze(1).cumsum(-1)
    # what u leaves inside the block is positive (u > cdf[b - 1] as floats); it is capped at the block's own total,
    # which the block sums may round past, so the entry found always raises the block's running sum
    rest = torch.minimum(u - F.pad(cdf, (1, 0)).gather(1, b), inner[:, -1:])
    t = torch.searchsorted(inner, rest).clamp(max=block - 1)
    return (b * block + t).squeeze(-1).clamp(max=width - 1)


@dataclass
class Sampled:
    """One row's completion: token ids, their sampling log-probabilities, and the allowed ids at each step."""

    tokens: list[int]
    logprobs: list[float]
    allowed: list[list[int]] | None


def sample_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    *,
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens drawn from ``softmax(logits / T)`` (nucleus-truncated when top_p < 1; greedy when T = 0) and their
    log-probabilities under the untruncated distribution. ``uniform``: the rows' U(0, 1) draws, (rows, 1), if the
    caller made them (else drawn from ``generator``)."""
    logits = logits.float()
    logp = torch.log_softmax(logits if temperature in (0, 1) else logits / temperature, dim=-1)
    if temperature == 0:
        tokens = logits.argmax(-1)
    else:
        probs = logp.exp()
        if top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
        if uniform is None:
            uniform = torch.rand(len(probs), 1, device=probs.device, generator=generator)
        tokens = inverse_cdf(probs, uniform)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


def mask_disallowed(logits: torch.Tensor, allowed: list[list[int] | None]) -> torch.Tensor:
    """Logits with every disallowed token at -inf (rows without a constraint untouched); one scatter."""
    if all(a is None for a in allowed):
        return logits
    rows = [j for j, a in enumerate(allowed) for _ in (a or ())]
    cols = [t for a in allowed for t in (a or ())]
    keep = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    keep[torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)] = True
    free = [j for j, a in enumerate(allowed) if a is None]
    if free:
        keep[torch.tensor(free, device=logits.device)] = True
    return logits.float().masked_fill(~keep, float("-inf"))

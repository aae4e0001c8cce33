"""Advantage estimators and policy losses: pure, shape-checked functions.

- ``rae_advantages``: role-conditioned advantage estimation (SPIRAL, Liu et al. 2025): one moving-average
  baseline per (game, role); A = r - b_before, then b <- decay * b + (1 - decay) * mean(r of the batch).
- ``grpo_advantages``: group normalisation (GRPO, Shao et al. 2024): A = (r - mean_g) / (std_g + eps) within
  the samples of one ``samples=K`` turn; groups of one sample fall back to ``fallback`` (the RAE value).
- ``policy_loss``: the PPO clipped surrogate (Schulman et al. 2017) per token,
  -min(rho * A, clip(rho, 1 - eps, 1 + eps) * A) with rho = exp(logp - logp_sampled), which at rho = 1 has
  the REINFORCE gradient; summed over tokens and divided by a token count given by the caller
  (token-level normalisation, as DAPO). Optional KL penalty to a frozen reference with the k3 estimator
  exp(ref - logp) - (ref - logp) - 1 (Schulman 2020), and an optional entropy bonus with the score-function
  estimator coef * stopgrad(logp) * logp, whose gradient is coef * E[logp grad logp] = -coef * grad H.
  With the reference moved to the current policy every few steps (the magnet) and both terms on, this is
  magnetic mirror descent's RL form (Sokota et al. 2023, "A Unified Approach to Reinforcement Learning, Quantal
  Response Equilibria, and Two-Player Zero-Sum Games"): maximise E[A] - kl_coef KL(pi || magnet) + entropy_coef H(pi).
- ``mismatch_weights``: truncated importance sampling (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings
  You Off-Policy RL Training"; Ionides 2008): tokens drawn by a sampler q whose numbers differ from the learner's pi
  (bf16 products, another engine) are weighted w = min(pi_old / q, C), detached, so the estimate is that of pi_old's
  own samples wherever pi_old / q <= C (E_q[w f] = E_pi[f]), with its variance bounded by C.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch


def rae_advantages(
    rewards: Sequence[float], keys: Sequence[Hashable], baselines: dict[Hashable, float], decay: float
) -> tuple[list[float], dict[Hashable, float]]:
    """Advantages against the per-key baselines from before this batch, and the updated baselines."""
    if len(rewards) != len(keys):
        raise ValueError(f"{len(rewards)} rewards for {len(keys)} keys")
    advantages = [r - baselines.get(k, 0.0) for r, k in zip(rewards, keys)]
    updated = dict(baselines)
    for key in dict.fromkeys(keys):
        batch = [r for r, k in zip(rewards, keys) if k == key]
        mean = sum(batch) / len(batch)
        updated[key] = decay * baselines[key] + (1 - decay) * mean if key in baselines else mean
    return advantages, updated


def grpo_advantages(
    rewards: Sequence[float], groups: Sequence[Hashable], fallback: Sequence[float] | None = None, eps: float = 1e-6
) -> list[float]:
    """(r - group mean) / (group std + eps); a group of one takes ``fallback`` (or 0)."""
    if len(rewards) != len(groups):
        raise ValueError(f"{len(rewards)} rewards for {len(groups)} groups")
    members: dict[Hashable, list[float]] = {}
    for r, g in zip(rewards, groups):
        members.setdefault(g, []).append(r)
    out = []
    for i, (r, g) in enumerate(zip(rewards, groups)):
        values = members[g]
        if len(values) == 1:
            out.append(fallback[i] if fallback is not None else 0.0)
            continue
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5  # population std, as in GRPO code
        out.append((r - mean) / (std + eps))
    return out


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: float,
    tokens: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy-gradient loss over (batch, tokens), normalised by ``tokens`` tokens; ``weights`` (batch,
    tokens), detached, multiply each token's terms (``mismatch_weights``)."""
    if not logp.shape == old_logp.shape == mask.shape or advantages.shape != logp.shape[:1]:
        raise ValueError(
            f"shapes differ: logp {tuple(logp.shape)}, old {tuple(old_logp.shape)}, "
            f"mask {tuple(mask.shape)}, advantages {tuple(advantages.shape)}"
        )
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    per_token = -torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    stats = {"clip_frac": float(((ratio - 1).abs() > clip).to(logp.dtype).mul(mask).sum() / mask.sum().clamp(min=1))}
    if ref_logp is not None and kl_coef:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + kl_coef * kl
        stats["kl"] = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
    if entropy_coef:
        per_token = per_token + entropy_coef * logp.detach() * logp
    if weights is not None:
        per_token = per_token * weights.detach()
    loss = (per_token * mask).sum() / max(tokens, 1.0)
    return loss, stats


def mismatch_weights(learner_logp: torch.Tensor, sampler_logp: torch.Tensor, cap: float) -> torch.Tensor:
    """Truncated importance weights min(exp(learner - sampler), cap) per token, detached."""
    return torch.exp(learner_logp.detach() - sampler_logp.detach()).clamp(max=cap)

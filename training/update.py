"""From samples to a gradient step: advantages, the clipped policy-gradient update, and the learning-progress order.

Advantages (``Baselines.assign``): ``rae`` is SPIRAL's role-conditioned advantage, A = r - b(game, role) with one
moving-average baseline per (game, role) taken from before this step's update; ``grpo`` normalises within the
``samples=K`` groups of one turn (Shao et al. 2024), falling back to RAE for ungrouped samples. The loss is the
PPO-clipped policy gradient (Schulman et al. 2017) over ``ppo_epochs`` passes, token-level normalised over every
rank, plus an optional KL penalty to the frozen initial model (``training.losses``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext

import torch
from tqdm.auto import tqdm

from selfplay.agents.weights import note_update
from selfplay.games.core import LearningProgress
from selfplay.training.config import Update
from selfplay.training.distributed import gather, max_scalar, sum_scalar
from selfplay.training.learner import Learner
from selfplay.training.losses import grpo_advantages, mismatch_weights, policy_loss, rae_advantages
from selfplay.training.rollout import Sample, credit_progress
from selfplay.training.scoring import ScoreBatch, score_batch, sequence_logprobs
from selfplay.training.stats import UpdateStats


class Baselines:
    """RAE baselines, one per (game, role), measured over every rank's samples."""

    def __init__(self, decay: float, state: Mapping[str, float] | None = None):
        self.decay = decay
        self.values = {tuple(k.split("|")): v for k, v in (state or {}).items()}

    def assign(self, learner: Learner, samples: Sequence[Sample], kind: str, lam: float = 1.0) -> None:
        """Set each sample's advantage (``rae``, ``state`` or ``grpo``) from the baselines before this step, then
        move them. ``state`` keys the baseline by (game, role, opponent arm, prompt): a moving estimate of V(s), for
        games whose information states recur, so A estimates Q(s, a) - V(s) (the per-state baseline of tabular PG);
        with ``lam`` < 1 the return is the lambda-return over the role's later states (``lambda_returns``)."""
        keys = [baseline_key(s, kind) for s in samples]
        every = [(tuple(k), r) for k, r in gather(learner.accelerator, [(k, s.reward) for k, s in zip(keys, samples)])]
        _, moved = rae_advantages([r for _, r in every], [k for k, _ in every], self.values, self.decay)
        returns = (
            lambda_returns(samples, keys, self.values, lam)
            if kind == "state" and lam < 1
            else [s.reward for s in samples]
        )
        rae = [g - self.values.get(k, 0.0) for k, g in zip(keys, returns)]
        advantages = (
            grpo_advantages([s.reward for s in samples], [s.turn for s in samples], rae) if kind == "grpo" else rae
        )
        for s, a in zip(samples, advantages):
            s.advantage = a
        self.values = moved

    def state_dict(self) -> dict[str, float]:
        return {"|".join(k): v for k, v in self.values.items()}


def baseline_key(sample: Sample, kind: str) -> tuple[str, ...]:
    """(game, role), or with ``state`` (game, role, the opponent arm, a digest of the prompt the sample answered)."""
    if kind != "state":
        return sample.game_role
    return (*sample.game_role, sample.arm or "", hashlib.sha256(repr(sample.prompt_ids).encode()).hexdigest()[:16])


def lambda_returns(
    samples: Sequence[Sample], keys: Sequence[Hashable], values: Mapping[Hashable, float], lam: float
) -> list[float]:
    """TD(lambda) returns of each role's moves in an episode (Sutton 1988; GAE, Schulman et al. 2016, with gamma 1
    and reward only at the end): G_t = (1 - lam) V(s_t+1) + lam G_t+1, G_last = r, where V(s_t+1) is the state
    baseline of the role's next state; where that state has no estimate yet G_t+1 stands in for it. Episodes whose
    turns have several samples, or whose moves were paid their own rewards, keep the Monte-Carlo return."""
    turns: dict[tuple, list[int]] = {}
    for i, s in enumerate(samples):
        turns.setdefault((s.turn[0], s.game_role), []).append(i)
    out = [s.reward for s in samples]
    for members in turns.values():
        members.sort(key=lambda i: samples[i].turn[1])
        if len({samples[i].turn[1] for i in members}) < len(members) or len({samples[i].reward for i in members}) > 1:
            continue  # samples=K turns branch (no single next state), or moves were paid their own rewards
        following = None  # (G, key) of the role's next move
        for i in reversed(members):
            if following is not None:
                g_next, key_next = following
                v = values.get(key_next)
                out[i] = g_next if v is None else (1 - lam) * v + lam * g_next
            following = (out[i], keys[i])
    return out


def _padded(lengths: Sequence[tuple[int, int]], a: int, b: int) -> int:
    """rows x (longest prompt + longest completion) of the run [a, b): its padded size."""
    return (b - a) * (max(p for p, _ in lengths[a:b]) + max(c for _, c in lengths[a:b])) if b > a else 0


def _greedy_ends(lengths: Sequence[tuple[int, int]], cap: int, limit: int | None = None) -> list[int] | None:
    """The ends of runs, each as long as its padded size stays within ``cap`` (a sample above it alone): the fewest
    such runs, since a run's padded size only grows as it extends; None once more than ``limit`` are needed."""
    ends, a = [], 0
    while a < len(lengths):
        b, top_p, top_c = a, 0, 0
        while b < len(lengths):
            p, c = max(top_p, lengths[b][0]), max(top_c, lengths[b][1])
            if (b + 1 - a) * (p + c) > cap and b > a:
                break
            top_p, top_c, b = p, c, b + 1
        ends.append(b)
        a = b
        if limit is not None and len(ends) > limit:
            return None
    return ends


def runs_within(lengths: Sequence[tuple[int, int]], budget: int) -> int:
    """The fewest micro-batches of (prompt, completion) lengths sorted by their sum whose padded sizes all stay
    within ``budget`` tokens (a sample larger than the budget goes alone); at least 1."""
    return max(1, len(_greedy_ends(lengths, budget)))


def balanced_runs(lengths: Sequence[tuple[int, int]], parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive runs [a, b) of (prompt, completion) lengths sorted by their sum that minimise the largest
    padded size, rows x (longest prompt + longest completion), the activation memory a micro-batch takes (binary
    search on that size, greedy runs; runs are empty only when there are fewer samples than parts)."""
    n = len(lengths)
    low, high = max((_padded(lengths, i, i + 1) for i in range(n)), default=0), _padded(lengths, 0, n)
    while low < high:
        mid = (low + high) // 2
        if _greedy_ends(lengths, mid, parts) is None:
            low = mid + 1
        else:
            high = mid
    ends = _greedy_ends(lengths, high, parts) or []
    while len(ends) < min(parts, n):  # fewer runs than parts: split the costliest (a split never costs more)
        starts = [0] + ends[:-1]
        k = max(
            (i for i in range(len(ends)) if ends[i] - starts[i] > 1), key=lambda i: _padded(lengths, starts[i], ends[i])
        )
        ends.insert(k, (starts[k] + ends[k]) // 2)
    ends += [n] * (parts - len(ends))
    return list(zip([0] + ends[:-1], ends))


def update(cfg: Update, learner: Learner, samples: Sequence[Sample], *, progress: bool = False) -> UpdateStats:
    """``ppo_epochs`` optimizer steps, each over the update's micro-batches (the same count on every rank):
    ``micro_batches`` of them, or with ``micro_batch_tokens`` the fewest whose padded sizes fit that many tokens
    (the largest count any rank needs).

    Loss = sum of token losses * world * G / tokens over all ranks, where G is the accumulation count accelerate
    and DeepSpeed divide each micro-batch's loss by, so after their mean over ranks every token weighs the same,
    however the batch is split. Micro-batches are runs of samples sorted by length, so each pads little, cut where
    the largest padded batch is smallest (:func:`balanced_runs`: the memory peak, not the sample count, is what a
    micro-batch must bound); the optimizer steps after the last one (gradients synchronised there only);
    ``progress`` shows a bar (main process) when there are several.
    """
    acc, model = learner.accelerator, learner.model
    model.train()
    tokens_local = float(sum(len(s.completion_ids) for s in samples))
    tokens_global = sum_scalar(acc, tokens_local)
    by_length = sorted(samples, key=lambda s: len(s.prompt_ids) + len(s.completion_ids))
    lengths = [(len(s.prompt_ids), len(s.completion_ids)) for s in by_length]
    count = cfg.micro_batches
    if cfg.micro_batch_tokens:
        count = int(max_scalar(acc, runs_within(lengths, cfg.micro_batch_tokens)))
    chunks = [by_length[a:b] for a, b in balanced_runs(lengths, count)]
    stats = UpdateStats(tokens=tokens_local, micro_batches=len(chunks))
    passes = cfg.ppo_epochs * len(chunks)
    bar = tqdm(
        total=passes,
        desc="update",
        unit="batch",
        leave=False,
        dynamic_ncols=True,
        disable=None if progress and acc.is_main_process and passes > 1 else True,
    )
    scale = acc.num_processes * acc.gradient_accumulation_steps  # undoes their division: the loss is normalised here
    first_pass: dict[int, torch.Tensor] = {}  # per micro-batch, the learner's log-probs before any step
    for epoch in range(cfg.ppo_epochs):
        for i, chunk in enumerate(chunks):
            with accumulating(acc, model, last=i == len(chunks) - 1):
                loss, parts, logp = _chunk_loss(cfg, learner, chunk, tokens_global, learner_old=first_pass.get(i))
                if epoch == 0 and cfg.ppo_epochs > 1 and logp is not None:
                    first_pass[i] = logp
                stats.flops += parts.pop("flops", 0.0)
                acc.backward(loss * scale)
                if acc.sync_gradients:
                    norm = acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    stats.grad_norm = float(norm) if norm is not None else 0.0
                    if not math.isfinite(stats.grad_norm) or not math.isfinite(float(loss.detach())):
                        # the same on every rank (gradients are synchronised), so every rank stops here together
                        raise RuntimeError(
                            f"the update's gradient norm is {stats.grad_norm:g} and its loss {float(loss.detach()):g}: "
                            f"the policy diverged (update.lr={cfg.lr:g}); stopped before applying it: lower update.lr"
                        )
                    note_update()  # engines holding copies of the weights (vLLM rollouts) resynchronise
                learner.optimizer.step()  # a no-op until the last micro-batch (accelerate reads sync_gradients)
                learner.scheduler.step() if acc.sync_gradients else None
                learner.optimizer.zero_grad()
            stats.add(parts, cfg.ppo_epochs)
            bar.update(1)
    bar.close()
    stats.mismatch_max = max_scalar(acc, stats.mismatch_max)  # every rank's largest (a collective: on every rank)
    return stats


@contextmanager
def accumulating(acc, model, last: bool) -> Iterator[None]:
    """One micro-batch of a gradient-accumulation round of any length: gradients are synchronised across ranks, and
    the optimizer, DeepSpeed's engine and the scheduler step, only at the ``last`` (accelerate's ``accumulate``
    counts a fixed number of micro-batches instead)."""
    acc.gradient_state._set_sync_gradients(last)
    try:
        with nullcontext() if last else acc.no_sync(model):
            yield
    finally:
        acc.gradient_state._set_sync_gradients(True)


def _chunk_loss(
    cfg: Update, learner: Learner, chunk: list[Sample], tokens_global: float, *, learner_old: torch.Tensor | None
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """One micro-batch's loss, its sums, and its learner log-probs (detached). ``learner_old``: the learner's
    log-probs of the first pass (None on the first pass, when this pass's are they)."""
    model, device, pad_id = learner.model, learner.accelerator.device, learner.tokenizer.pad_token_id
    if not chunk:  # a rank with nothing to learn still joins the collective backward, with a zero loss
        ids = torch.tensor([[pad_id, pad_id]], device=device)
        out = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=torch.zeros_like(ids),
            groups=[learner.policy.groups[0]],
            prompt_width=1,
        )
        return out.sum() * 0.0, {}, None
    batch = score_batch(chunk, pad_id=pad_id, device=device)
    logp = sequence_logprobs(model, batch)
    first = learner_old is None
    old, weights, parts = corrected_old(cfg, logp.detach() if first else learner_old, batch, first=first)
    ref = None
    if learner.reference is not None:
        with torch.no_grad():
            ref = sequence_logprobs(learner.reference, batch)
    mask = batch.completion_mask
    adv = torch.tensor([s.advantage for s in chunk], device=logp.device, dtype=logp.dtype)
    loss, extra = policy_loss(
        logp,
        old,
        adv,
        mask,
        clip=cfg.clip,
        tokens=tokens_global,
        ref_logp=ref,
        kl_coef=cfg.kl_coef,
        entropy_coef=cfg.entropy_coef,
        weights=weights,
    )
    n = float(mask.sum())
    flops = learner.policy.update_flops(
        batch.inputs["groups"], batch.inputs["input_ids"].shape[1], batch.output_rows(), reference=ref is not None
    )
    parts.update(
        loss_sum=float(loss.detach()) * tokens_global,
        clip_sum=extra["clip_frac"] * n,
        kl_sum=extra.get("kl", 0.0) * n,
        logp_sum=float((logp.detach() * mask).sum()),
        flops=flops,
    )
    return loss, parts, logp.detach()


def corrected_old(
    cfg: Update, learner_old: torch.Tensor, batch: ScoreBatch, *, first: bool
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, float]]:
    """The old log-probs of the PPO ratio and the per-token importance weights under ``cfg.correction`` (module
    ``training.losses``): ``none`` the sampler's, unweighted; ``recompute`` the learner's first-pass ones,
    unweighted; ``tis`` the learner's, weighted min(pi_learner / pi_sampler, tis_cap). On the first pass, also the
    mismatch sums: |learner - sampler| summed and at most, and the tokens whose weight reached the cap."""
    sampler, mask = batch.old_logprobs.detach(), batch.completion_mask.bool()
    parts: dict[str, float] = {}
    weights = mismatch_weights(learner_old, sampler, cfg.tis_cap) if cfg.correction == "tis" else None
    if first and mask.any():  # later passes share the first pass's learner log-probs: nothing new to measure
        gap = (learner_old - sampler).abs()[mask]
        parts.update(mismatch_sum=float(gap.sum()), mismatch_max=float(gap.max()))
        if weights is not None:
            parts["capped"] = float((weights[mask] >= cfg.tis_cap).sum())
    if cfg.correction == "none":
        return sampler, None, parts
    return learner_old, weights, parts


def update_with_progress(
    cfg: Update,
    learner: Learner,
    samples: Sequence[Sample],
    *,
    progress: LearningProgress,
    probe: Callable[[], dict[str, float]],
    infos: Mapping[str, dict],
) -> tuple[UpdateStats, dict[str, float], dict[str, float]]:
    """The learning-progress order: update every other role, measure ``progress.probe_role`` on the fixed probes
    before and after, pay ``progress.role``'s samples the gain of their key, then update that role (advantage =
    gain minus the mean gain over every rank's tasks). Returns the merged stats, the probes before and after."""
    before = probe()
    delayed = [s for s in samples if s.game_role[1] == progress.role]
    first = update(cfg, learner, [s for s in samples if s.game_role[1] != progress.role])
    after = probe()
    gains = {k: after[k] - before[k] for k in after}
    credit_progress(delayed, infos, gains, progress.key)
    total, n = (
        sum_scalar(learner.accelerator, sum(s.reward for s in delayed)),
        sum_scalar(learner.accelerator, len(delayed)),
    )
    for s in delayed:
        s.advantage = s.reward - total / max(n, 1.0)
    second = update(cfg, learner, delayed)
    return first.merged(second), before, after

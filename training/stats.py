"""What one training step measured, as typed sums that ranks add up (``distributed.reduce_sum``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from selfplay.arena.records import Episode
from selfplay.arena.stats import Tally


@dataclass
class UpdateStats:
    """Sums over the update's tokens (``loss_sum`` is already token-normalised over every rank)."""

    loss_sum: float = 0.0
    clip_sum: float = 0.0
    kl_sum: float = 0.0
    logp_sum: float = 0.0
    tokens: float = 0.0
    grad_norm: float = 0.0  # the last optimizer step's (summed over ranks: divide by the world size)
    flops: float = 0.0  # model FLOPs of every pass (``Policy.update_flops``)
    micro_batches: float = 0.0  # per optimizer step (the same on every rank: summed over ranks, divide by the world)
    # sampler vs learner log-probs of the sampled tokens, before any step: sum and largest of |difference| (the
    # largest is every rank's, so summed over ranks divide by the world), and tokens whose weight hit tis_cap
    mismatch_sum: float = 0.0
    mismatch_max: float = 0.0
    capped: float = 0.0

    def add(self, parts: dict[str, float], passes: int) -> None:
        """One micro-batch's sums: the loss terms averaged over the ``passes``, the mismatch (first pass only)
        added as is, its largest kept."""
        for name, value in parts.items():
            if name == "mismatch_max":
                self.mismatch_max = max(self.mismatch_max, value)
            elif name in ("mismatch_sum", "capped"):
                setattr(self, name, getattr(self, name) + value)
            else:
                setattr(self, name, getattr(self, name) + value / passes)

    def merged(self, other: UpdateStats) -> UpdateStats:
        """Two updates of one step (learning progress): sums add, the gradient norm is the larger."""
        return UpdateStats(
            self.loss_sum + other.loss_sum,
            self.clip_sum + other.clip_sum,
            self.kl_sum + other.kl_sum,
            self.logp_sum + other.logp_sum,
            self.tokens + other.tokens,
            max(self.grad_norm, other.grad_norm),
            self.flops + other.flops,
            max(self.micro_batches, other.micro_batches),
            self.mismatch_sum + other.mismatch_sum,
            max(self.mismatch_max, other.mismatch_max),
            self.capped + other.capped,
        )


@dataclass
class ArmStats:
    """Per curriculum arm: samples, summed reward and summed |advantage|."""

    n: dict[str, float] = field(default_factory=dict)
    reward: dict[str, float] = field(default_factory=dict)
    absadv: dict[str, float] = field(default_factory=dict)

    def add(self, arm: str, reward: float, advantage: float) -> None:
        self.n[arm] = self.n.get(arm, 0.0) + 1
        self.reward[arm] = self.reward.get(arm, 0.0) + reward
        self.absadv[arm] = self.absadv.get(arm, 0.0) + abs(advantage)

    def mean(self, what: str) -> dict[str, float]:
        """Mean ``reward`` or ``absadv`` per arm that had samples."""
        return {a: getattr(self, what)[a] / n for a, n in self.n.items() if n}


@dataclass
class StepStats:
    """Everything a step counts, summed on each rank and then over ranks."""

    episodes: float = 0.0
    gen_tokens: float = 0.0
    filtered: float = 0.0
    learner: dict[str, Tally] = field(
        default_factory=dict, metadata={"of": Tally}
    )  # per role: the learner's games there
    arms: ArmStats = field(default_factory=ArmStats)
    pool_games: dict[int, float] = field(default_factory=dict)  # per snapshot step
    pool_score: dict[int, float] = field(default_factory=dict)  # the learner's score against it (draws half)
    game: dict[str, float] = field(default_factory=dict)  # the game's context_stats
    update: UpdateStats = field(default_factory=UpdateStats)

    def count_episodes(self, episodes: list[Episode], roles, pool_step: int | None) -> None:
        """The learner's results per seat, and against the pool snapshot of ``pool_step``."""
        self.episodes += len(episodes)
        for role in roles:
            tally = self.learner.setdefault(role, Tally())
            for ep in episodes:
                if role in ep.learner_roles():
                    tally.add(ep, role)
        for ep in episodes:
            if pool_step is None or ep.meta.get("opponent") != "pool" or ep.status == "error":
                continue
            for role in ep.learner_roles():
                self.pool_games[pool_step] = self.pool_games.get(pool_step, 0.0) + 1
                self.pool_score[pool_step] = self.pool_score.get(pool_step, 0.0) + ep.score(role)

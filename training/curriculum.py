"""Curriculum policies: choose what to play next from the measured learning signal.

Each policy is a small component over named arms (task categories, difficulty levels, opponents): ``probabilities()``
gives the sampling distribution, ``choose(rng, n)`` draws n arms for the next batch, ``update(signal)`` takes the
measurement of the last batch per arm, ``state_dict()`` / ``load_state_dict()`` go into checkpoints.

- ``Uniform``: the baseline.
- ``SEC`` (Chen et al. 2025, "Self-Evolving Curriculum for LLM Reasoning"): a non-stationary bandit; reward of an
  arm = mean absolute advantage of its samples in the batch; TD(0) value update Q <- Q + alpha (r - Q); Boltzmann
  sampling p(arm) ~ exp(Q / tau).
- ``DUMP`` (Wang et al. 2025, "Automated Distribution-Level Curriculum Learning for RL-based LLM
  Post-training"): UCB over arms on the expected absolute advantage (mean over a sliding window) plus the
  exploration bonus c * sqrt(2 ln N / n_arm); arms never tried come first; sampling by softmax of the scores at
  temperature tau.
- ``difficulty_filter`` (Bae et al. 2025, "Online Difficulty Filtering for Reasoning Oriented RL"): keep the
  task groups whose sampled accuracy lies in [low, high].
- ``ALPGMMArms`` (Portelas et al. 2019, ``training.alp_gmm``): ALP-GMM over the arms' numeric values (the
  option's values, or ``positions``); each step's mean reward per arm is one episode of the teacher (its ALP the
  change from the arm's last reward), and a task drawn from the mixture plays the nearest arm.
- ``AdaRFT`` (Shi et al. 2025, "Efficient Reinforcement Finetuning via Adaptive Curriculum Learning"): a target
  difficulty that moves with the recent reward, T <- clip(T + eta * tanh(alpha * (R - beta)), lo, hi); the arm
  whose difficulty is closest to T is played.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from typing import Any


class Uniform:
    """Every arm equally often."""

    def __init__(self, arms: Sequence[str]):
        if not arms:
            raise ValueError("a curriculum needs at least one arm")
        self.arms = list(arms)

    def probabilities(self) -> dict[str, float]:
        return {a: 1 / len(self.arms) for a in self.arms}

    def choose(self, rng: random.Random, n: int) -> list[str]:
        """n arms drawn from ``probabilities()``."""
        probs = self.probabilities()
        return rng.choices(self.arms, weights=[probs[a] for a in self.arms], k=n)

    def update(self, signal: dict[str, float]) -> None:
        """Take one batch's signal per arm (the mean absolute advantage, or the reward for AdaRFT)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class SEC(Uniform):
    """Bandit with TD(0) values on the mean absolute advantage and Boltzmann sampling."""

    def __init__(self, arms: Sequence[str], alpha: float = 0.5, tau: float = 1.0):
        super().__init__(arms)
        if not 0 < alpha <= 1 or tau <= 0:
            raise ValueError(f"SEC needs 0 < alpha <= 1 and tau > 0, got alpha={alpha}, tau={tau}")
        self.alpha, self.tau = alpha, tau
        self.values = {a: 0.0 for a in self.arms}

    def probabilities(self) -> dict[str, float]:
        top = max(self.values.values())
        weights = {a: math.exp((v - top) / self.tau) for a, v in self.values.items()}
        total = sum(weights.values())
        return {a: w / total for a, w in weights.items()}

    def update(self, signal: dict[str, float]) -> None:
        for arm, reward in signal.items():
            self.values[arm] += self.alpha * (reward - self.values[arm])

    def state_dict(self) -> dict:
        return {"values": dict(self.values)}

    def load_state_dict(self, state: dict) -> None:
        self.values = dict(state["values"])


class DUMP(Uniform):
    """UCB on the windowed mean absolute advantage, softmax over the scores."""

    def __init__(self, arms: Sequence[str], c: float = 1.0, window: int = 100, tau: float = 0.1):
        super().__init__(arms)
        self.c, self.window, self.tau = c, window, tau
        self.history: dict[str, deque] = {a: deque(maxlen=window) for a in self.arms}
        self.counts = {a: 0 for a in self.arms}

    def scores(self) -> dict[str, float]:
        """Expected |advantage| + c sqrt(2 ln N / n); an untried arm scores infinity."""
        total = sum(self.counts.values())
        out = {}
        for a in self.arms:
            if not self.counts[a]:
                out[a] = math.inf
                continue
            mean = sum(self.history[a]) / len(self.history[a])
            out[a] = mean + self.c * math.sqrt(2 * math.log(max(total, 1)) / self.counts[a])
        return out

    def probabilities(self) -> dict[str, float]:
        scores = self.scores()
        untried = [a for a, s in scores.items() if s == math.inf]
        if untried:
            return {a: (1 / len(untried) if a in untried else 0.0) for a in self.arms}
        top = max(scores.values())
        weights = {a: math.exp((s - top) / self.tau) for a, s in scores.items()}
        total = sum(weights.values())
        return {a: w / total for a, w in weights.items()}

    def update(self, signal: dict[str, float]) -> None:
        for arm, value in signal.items():
            self.history[arm].append(value)
            self.counts[arm] += 1

    def state_dict(self) -> dict:
        return {"history": {a: list(h) for a, h in self.history.items()}, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.history = {a: deque(state["history"][a], maxlen=self.window) for a in self.arms}
        self.counts = dict(state["counts"])


class AdaRFT(Uniform):
    """Target difficulty following the reward; plays the arm whose difficulty is closest to the target."""

    def __init__(
        self,
        arms: Sequence[str],
        *,
        difficulty: dict[str, float],
        target: float | None = None,
        eta: float = 0.1,
        alpha: float = 2.0,
        beta: float = 0.5,
    ):
        super().__init__(arms)
        missing = [a for a in self.arms if a not in difficulty]
        if missing:
            raise ValueError(f"AdaRFT needs a difficulty for every arm; missing: {missing}")
        self.difficulty = dict(difficulty)
        self.low, self.high = min(difficulty.values()), max(difficulty.values())
        self.target = self.low if target is None else target
        self.eta, self.alpha, self.beta = eta, alpha, beta

    def probabilities(self) -> dict[str, float]:
        best = min(self.arms, key=lambda a: (abs(self.difficulty[a] - self.target), self.difficulty[a]))
        return {a: float(a == best) for a in self.arms}

    def update(self, signal: dict[str, float]) -> None:
        """``signal``: the batch's mean reward per arm; their mean moves the target."""
        if signal:
            reward = sum(signal.values()) / len(signal)
            step = self.eta * math.tanh(self.alpha * (reward - self.beta)) * (self.high - self.low)
            self.target = min(self.high, max(self.low, self.target + step))

    def state_dict(self) -> dict:
        return {"target": self.target}

    def load_state_dict(self, state: dict) -> None:
        self.target = state["target"]


def arm_positions(arms: Sequence[str]) -> dict[str, list[float]]:
    """Coordinates of arms named by their values (``2``, or ``add/2`` for several options): per option, the number
    itself, or a name's rank among that option's names in order of first appearance."""
    parts = [a.split("/") for a in arms]
    if len({len(p) for p in parts}) > 1:
        raise ValueError(f"curriculum arms {list(arms)} do not all name the same number of options")
    columns = []
    for values in zip(*parts):
        try:
            columns.append([float(v) for v in values])
        except ValueError:
            order = list(dict.fromkeys(values))
            columns.append([float(order.index(v)) for v in values])
    return {a: [c[i] for c in columns] for i, a in enumerate(arms)}


class ALPGMMArms(Uniform):
    """ALP-GMM (``training.alp_gmm``) over arms placed in a space by their values (``arm_positions``, or
    ``positions``: arm -> number or list of numbers): a drawn task plays the nearest arm (Euclidean, each coordinate
    scaled to [0, 1])."""

    def __init__(
        self,
        arms: Sequence[str],
        *,
        positions: dict[str, Any] | None = None,
        fit_rate: int = 20,
        random_share: float = 0.2,
        max_components: int = 4,
        seed: int = 0,
    ):
        super().__init__(arms)
        from selfplay.training.alp_gmm import ALPGMM

        positions = arm_positions(self.arms) if positions is None else positions
        missing = [a for a in self.arms if a not in positions]
        if missing:
            raise ValueError(f"ALP-GMM needs a position for every arm; missing: {missing}")
        self.positions = {
            a: [float(x) for x in (p if isinstance(p, (list, tuple)) else [p])]
            for a, p in ((a, positions[a]) for a in self.arms)
        }
        if len({len(p) for p in self.positions.values()}) > 1:
            raise ValueError(f"ALP-GMM positions must all have the same number of coordinates: {self.positions}")
        dims = range(len(next(iter(self.positions.values()))))
        self.low = [min(p[d] for p in self.positions.values()) for d in dims]
        self.high = [max(p[d] for p in self.positions.values()) for d in dims]
        self.high = [h if h > lo else lo + 1.0 for lo, h in zip(self.low, self.high)]
        self.teacher = ALPGMM(
            self.low, self.high, fit_rate=fit_rate, random_share=random_share, max_components=max_components, seed=seed
        )

    def _nearest(self, task: Sequence[float]) -> str:
        def distance(arm: str) -> float:
            return sum(((p - t) / (h - lo)) ** 2 for p, t, lo, h in zip(self.positions[arm], task, self.low, self.high))

        return min(self.arms, key=lambda a: (distance(a), self.positions[a]))

    def probabilities(self) -> dict[str, float]:
        """Estimated from 1,000 draws of a generator of its own (the teacher's state is not consumed)."""
        import numpy as np

        rng = np.random.default_rng(len(self.teacher.tasks))
        counts = {a: 0 for a in self.arms}
        for _ in range(1000):
            counts[self._nearest(self.teacher.sample(rng))] += 1
        return {a: c / 1000 for a, c in counts.items()}

    def choose(self, rng: random.Random, n: int) -> list[str]:
        import numpy as np

        draws = np.random.default_rng(rng.getrandbits(64))  # the same on every rank: rng is seeded per step
        return [self._nearest(self.teacher.sample(draws)) for _ in range(n)]

    def update(self, signal: dict[str, float]) -> None:
        """``signal``: the batch's mean reward per arm, one teacher episode each."""
        for arm, reward in signal.items():
            self.teacher.update(self.positions[arm], reward)

    def state_dict(self) -> dict:
        return self.teacher.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state)


def difficulty_filter(accuracies: Sequence[float], low: float = 0.2, high: float = 0.8) -> list[bool]:
    """Which task groups to keep: sampled accuracy within [low, high] (too easy and too hard teach nothing)."""
    if not 0 <= low <= high <= 1:
        raise ValueError(f"difficulty filter bounds must satisfy 0 <= low <= high <= 1, got [{low}, {high}]")
    return [low <= p <= high for p in accuracies]


POLICIES = {"uniform": Uniform, "sec": SEC, "dump": DUMP, "adarft": AdaRFT, "alp-gmm": ALPGMMArms}


def make_curriculum(name: str, arms: Sequence[str], **options) -> Uniform:
    """A policy by name (uniform | sec | dump | adarft | alp-gmm) with its options."""
    if name not in POLICIES:
        raise ValueError(f"unknown curriculum {name!r}: expected one of {', '.join(POLICIES)}")
    return POLICIES[name](arms, **options)

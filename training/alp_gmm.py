"""ALP-GMM: a teacher that samples task parameters where the learner's absolute learning progress is high.

Portelas, Colas, Hofmann and Oudeyer 2019, "Teacher algorithms for curriculum learning of Deep RL in continuously
parameterized environments" (CoRL). For each episode on task parameters p with reward r, the absolute learning
progress is ALP = |r - r'|, r' the reward of the nearest earlier task (Euclidean, parameters normalised to [0, 1]).
Every ``fit_rate`` episodes, Gaussian mixtures of 2..``max_components`` components with full covariance are fitted by
EM on (p, ALP) of the most recent ``fit_rate`` episodes, and the one with the lowest AIC (2k - 2 log L) is kept. A
task is then drawn by picking a component in proportion to its mean ALP and sampling p from it (clipped to the
bounds), except a share ``random_share`` of uniformly random tasks, and only random tasks until the first fit.
Defaults are the paper's: fit_rate 250, 20% random, 2-10 components.

Where it departs from the reference implementation (flowersteam/teachDeepRL): the mixtures are our own EM in numpy
(k-means++ start, a small ridge on the covariances), the nearest earlier task is found by a scan over the kept tasks
rather than a kd-tree, and integer parameters are rounded after sampling (``integer=True``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Mixture:
    """A fitted Gaussian mixture: weights (k,), means (k, d), covariances (k, d, d)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    log_likelihood: float

    @property
    def parameters(self) -> int:
        """Free parameters: k - 1 weights, k d means, k d (d + 1) / 2 covariance entries."""
        k, d = self.means.shape
        return k - 1 + k * d + k * d * (d + 1) // 2

    @property
    def aic(self) -> float:
        return 2 * self.parameters - 2 * self.log_likelihood


def _log_densities(x: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """log N(x_i | mean_j, cov_j) as an (n, k) array (all components at once, through their Cholesky factors)."""
    d = x.shape[1]
    chol = np.linalg.cholesky(covariances)  # (k, d, d)
    solved = np.linalg.solve(chol, (x[None] - means[:, None]).transpose(0, 2, 1))  # (k, d, n)
    log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)  # half the log-determinant, per component
    return (-0.5 * (solved**2).sum(1) - log_det[:, None] - 0.5 * d * math.log(2 * math.pi)).T


def fit_mixture(
    x: np.ndarray, k: int, rng: np.random.Generator, *, iterations: int = 100, ridge: float = 1e-4, tol: float = 1e-5
) -> Mixture:
    """EM for a k-component full-covariance Gaussian mixture on the rows of ``x`` (k-means++ start)."""
    n, d = x.shape
    centres = [x[rng.integers(n)]]
    for _ in range(1, k):  # k-means++: each next centre drawn in proportion to the squared distance to the nearest
        dist = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        total = dist.sum()
        centres.append(x[rng.choice(n, p=dist / total)] if total > 0 else x[rng.integers(n)])
    means = np.array(centres, dtype=float)
    spread = np.cov(x.T).reshape(d, d) + ridge * np.eye(d)
    covariances = np.repeat(spread[None], k, axis=0)
    weights = np.full(k, 1 / k)
    previous = -np.inf
    for _ in range(iterations):
        joint = _log_densities(x, means, covariances) + np.log(weights)
        top = joint.max(1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(joint - top).sum(1))
        likelihood = float(log_norm.sum())
        resp = np.exp(joint - log_norm[:, None])
        counts = resp.sum(0) + 1e-10
        weights = counts / n
        means = (resp.T @ x) / counts[:, None]
        for j in range(k):
            centred = x - means[j]
            covariances[j] = (resp[:, j, None] * centred).T @ centred / counts[j] + ridge * np.eye(d)
        if likelihood - previous < tol * abs(likelihood):
            break
        previous = likelihood
    joint = _log_densities(x, means, covariances) + np.log(weights)
    top = joint.max(1, keepdims=True)
    likelihood = float((top[:, 0] + np.log(np.exp(joint - top).sum(1))).sum())
    return Mixture(weights, means, covariances, likelihood)


class ALPGMM:
    """The teacher over a box of task parameters: ``sample()`` a task, ``update(task, reward)`` after its episode."""

    def __init__(
        self,
        low: Sequence[float],
        high: Sequence[float],
        *,
        fit_rate: int = 250,
        random_share: float = 0.2,
        max_components: int = 10,
        integer: bool = False,
        seed: int = 0,
    ):
        self.low, self.high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        if self.low.shape != self.high.shape or self.low.ndim != 1 or not (self.high > self.low).all():
            raise ValueError(
                f"ALP-GMM bounds low={list(low)}, high={list(high)}: expected two equal-length lists with "
                f"low < high in every dimension"
            )
        if fit_rate < 4 or not 0 <= random_share <= 1 or max_components < 2:
            raise ValueError(
                f"ALP-GMM fit_rate={fit_rate}, random_share={random_share}, max_components={max_components}:"
                f" expected fit_rate >= 4, 0 <= random_share <= 1, max_components >= 2"
            )
        self.fit_rate, self.random_share, self.max_components = fit_rate, random_share, max_components
        self.integer = integer
        self.rng = np.random.default_rng(seed)
        self.tasks: list[np.ndarray] = []  # normalised to [0, 1]
        self.rewards: list[float] = []
        self.alps: list[float] = []
        self.mixture: Mixture | None = None

    def _normal(self, task: Sequence[float]) -> np.ndarray:
        return (np.asarray(task, dtype=float) - self.low) / (self.high - self.low)

    def _task(self, unit: np.ndarray) -> list[float]:
        values = self.low + np.clip(unit, 0, 1) * (self.high - self.low)
        return [float(v) for v in (np.round(values) if self.integer else values)]

    def sample(self, rng: np.random.Generator | None = None) -> list[float]:
        """The next task's parameters: uniform before the first fit and a ``random_share`` of the time, else from a
        component drawn in proportion to its mean ALP. ``rng``: draw from it instead of the teacher's own."""
        rng = self.rng if rng is None else rng
        if self.mixture is None or rng.random() < self.random_share:
            return self._task(rng.random(len(self.low)))
        alp = np.clip(self.mixture.means[:, -1], 0, None)
        j = rng.choice(len(alp), p=alp / alp.sum()) if alp.sum() > 0 else rng.integers(len(alp))
        point = rng.multivariate_normal(self.mixture.means[j], self.mixture.covariances[j])
        return self._task(point[:-1])

    def update(self, task: Sequence[float], reward: float) -> float:
        """Record one episode; returns its ALP (0 for the first). Refits every ``fit_rate`` episodes."""
        unit = self._normal(task)
        alp = 0.0
        if self.tasks:
            nearest = int(np.argmin(((np.asarray(self.tasks) - unit) ** 2).sum(1)))
            alp = abs(float(reward) - self.rewards[nearest])
        self.tasks.append(unit)
        self.rewards.append(float(reward))
        self.alps.append(alp)
        if len(self.tasks) % self.fit_rate == 0:
            self.fit()
        return alp

    def fit(self) -> None:
        """Fit 2..max_components mixtures on the last ``fit_rate`` (task, ALP) points; keep the lowest AIC."""
        recent = np.column_stack([np.asarray(self.tasks[-self.fit_rate :]), np.asarray(self.alps[-self.fit_rate :])])
        top = min(self.max_components, max(2, len(recent) // 4))
        fits = [fit_mixture(recent, k, self.rng) for k in range(2, top + 1)]
        self.mixture = min(fits, key=lambda m: m.aic)

    def state_dict(self) -> dict:
        mixture = (
            None
            if self.mixture is None
            else {
                "weights": self.mixture.weights.tolist(),
                "means": self.mixture.means.tolist(),
                "covariances": self.mixture.covariances.tolist(),
                "log_likelihood": self.mixture.log_likelihood,
            }
        )
        return {
            "tasks": [t.tolist() for t in self.tasks],
            "rewards": self.rewards,
            "alps": self.alps,
            "mixture": mixture,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.tasks = [np.asarray(t) for t in state["tasks"]]
        self.rewards, self.alps = list(state["rewards"]), list(state["alps"])
        m = state.get("mixture")
        self.mixture = (
            None
            if m is None
            else Mixture(
                np.asarray(m["weights"]), np.asarray(m["means"]), np.asarray(m["covariances"]), m["log_likelihood"]
            )
        )
        self.rng.bit_generator.state = state["rng"]


class HypercubeToy:
    """The paper's toy environment: the unit square cut into ``cubes`` x ``cubes`` cells; an episode in a cell raises
    its competence by 1 (at most 100) only if it is the first cell or a lower neighbour (one step down in any
    dimension, diagonals included) is mastered (competence >= 75); the reward is the cell's competence / 100."""

    def __init__(self, cubes: int = 10, dims: int = 2):
        self.cubes, self.dims = cubes, dims
        self.competence = np.zeros((cubes,) * dims)

    def cell(self, task: Sequence[float]) -> tuple[int, ...]:
        return tuple(min(self.cubes - 1, max(0, int(v * self.cubes))) for v in task[: self.dims])

    def episode(self, task: Sequence[float]) -> float:
        cell = self.cell(task)
        if all(i == 0 for i in cell) or self._unlocked(cell):
            self.competence[cell] = min(100, self.competence[cell] + 1)
        return float(self.competence[cell] / 100)

    def _unlocked(self, cell: tuple[int, ...]) -> bool:
        from itertools import product

        for offsets in product((0, -1), repeat=self.dims):
            neighbour = tuple(max(0, i + o) for i, o in zip(cell, offsets))
            if neighbour != cell and self.competence[neighbour] >= 75:
                return True
        return False

    def mastered(self) -> float:
        """The share of cells mastered (competence above 75)."""
        return float((self.competence > 75).mean())


def toy_run(teacher: str, episodes: int, seed: int, cubes: int = 10) -> float:
    """The share of the toy environment's cells mastered after ``episodes`` under ``teacher`` (alp-gmm or uniform)."""
    env = HypercubeToy(cubes)
    if teacher == "uniform":
        rng = random.Random(seed)
        for _ in range(episodes):
            env.episode([rng.random(), rng.random()])
        return env.mastered()
    if teacher != "alp-gmm":
        raise ValueError(f"teacher {teacher!r}: expected alp-gmm or uniform")
    alp = ALPGMM([0.0, 0.0], [1.0, 1.0], seed=seed)
    for _ in range(episodes):
        task = alp.sample()
        alp.update(task, env.episode(task))
    return env.mastered()

"""The opponent pool: frozen snapshots of the learner, and how one is picked for a step.

``uniform`` picks any snapshot; ``prioritized`` is prioritized fictitious self-play (AlphaStar, Vinyals et
al. 2019) with the "hard" weighting f(x) = (1 - x)^2, x the learner's win rate against the snapshot, so
snapshots the learner still loses to are played more.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass
class Snapshot:
    step: int
    path: str
    games: int = 0
    learner_wins: float = 0.0  # draws count half

    @property
    def learner_win_rate(self) -> float:
        return self.learner_wins / self.games if self.games else 0.5


class OpponentPool:
    """Snapshots on disk (``RUN/pool/step_N.pt``), at most ``size`` kept, with the learner's record against each."""

    def __init__(self, directory: str | Path, size: int, sampling: str = "uniform"):
        self.directory, self.size, self.sampling = Path(directory), size, sampling
        self.snapshots: list[Snapshot] = []

    def add(self, step: int, state: dict[str, torch.Tensor], write: bool = True) -> None:
        """Store a snapshot (atomically; only the writing rank passes ``write``) and drop the oldest beyond size."""
        path = self.directory / f"step_{step:06d}.pt"
        if write:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)
        self.snapshots.append(Snapshot(step, str(path)))
        self.snapshots = self.snapshots[-self.size :]

    def choose(self, rng: random.Random) -> Snapshot | None:
        """A snapshot for this step, or None when the pool is empty."""
        if not self.snapshots:
            return None
        if self.sampling == "uniform":
            return rng.choice(self.snapshots)
        weights = [(1 - s.learner_win_rate) ** 2 + 1e-3 for s in self.snapshots]
        return rng.choices(self.snapshots, weights=weights)[0]

    def record(self, step: int, games: int, learner_wins: float) -> None:
        """Add results of the learner against the snapshot taken at ``step``."""
        for s in self.snapshots:
            if s.step == step:
                s.games += games
                s.learner_wins += learner_wins

    def state_dict(self) -> list[dict]:
        return [asdict(s) for s in self.snapshots]

    def load_state_dict(self, state: list[dict]) -> None:
        self.snapshots = [Snapshot(**s) for s in state]

"""The trainer's own state, beside the weights: what a checkpoint needs to resume exactly where a run stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainerState:
    """Steps done, training seconds, RAE baselines, evaluation history, and the rollout component's state
    (opponent pool, curriculum, the game's context options)."""

    step: int = 0
    seconds: float = 0.0  # training time (rollouts and updates; evaluation excluded)
    baselines: dict[str, float] = field(default_factory=dict)  # "game|role" -> moving-average reward
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation
    progress: list[dict[str, Any]] = field(default_factory=list)  # learning-progress probes per step
    rollouts: dict[str, Any] = field(default_factory=dict)  # Rollouts.state_dict()
    exact: dict[str, Any] = field(default_factory=dict)  # ExactTracker.state_dict(): the running average policy
    training: list[dict[str, Any]] = field(default_factory=list)  # per step: the mean training reward per role
    tasks: list[dict[str, Any]] = field(default_factory=list)  # per step: the collapse monitor's shares per writer
    samples: dict[str, int] = field(default_factory=dict)  # role -> completions trained on so far, every rank

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerState:
        """From ``trainer.json`` (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

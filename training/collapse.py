"""The proposer-collapse monitor: is a role that writes tasks (creator, teacher) still writing varied tasks at the
learner's frontier?

Per training step and task-writing role (``Game.written_task``): the share of distinct tasks, the share of
near-duplicates (a task whose character-trigram Jaccard similarity to another of the step's tasks is at least
``NEAR``, after lower-casing and folding white space), and the solve-rate histogram of its tasks: malformed, too easy
(every answer right), frontier (some right, some wrong), too hard (none right). A warning is raised when the distinct
share or the frontier share falls below the configured thresholds (``curriculum.collapse_distinct``,
``curriculum.collapse_frontier``). Every rank's tasks are gathered first, so distinctness spans the whole step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

NEAR = 0.8  # trigram Jaccard similarity at which two tasks count as near-duplicates
BINS = ("malformed", "too_easy", "frontier", "too_hard")


def _trigrams(text: str) -> set[str]:
    folded = re.sub(r"\s+", " ", text.lower()).strip()
    return {folded[i : i + 3] for i in range(max(1, len(folded) - 2))}


def near_duplicates(tasks: list[str], threshold: float = NEAR) -> int:
    """How many of ``tasks`` have another task (not the same text) at least ``threshold`` similar."""
    grams = [_trigrams(t) for t in tasks]
    count = 0
    for i, a in enumerate(grams):
        if any(
            j != i and tasks[j] != tasks[i] and len(a & b) / max(1, len(a | b)) >= threshold
            for j, b in enumerate(grams)
        ):
            count += 1
    return count


@dataclass
class TaskCounts:
    """One step's counts for one writing role (plain numbers, so ranks can sum them)."""

    tasks: float = 0.0  # every episode the role wrote a task in, malformed included
    distinct: float = 0.0  # distinct well-formed task texts
    near: float = 0.0  # well-formed tasks with a near-duplicate
    bins: dict[str, float] = field(default_factory=lambda: {b: 0.0 for b in BINS})

    def shares(self) -> dict[str, float]:
        formed = self.tasks - self.bins["malformed"]
        return {
            "distinct": self.distinct / max(1.0, formed),
            "near_duplicates": self.near / max(1.0, formed),
            **{b: v / max(1.0, self.tasks) for b, v in self.bins.items()},
        }


def written_tasks(game_cls: type, episodes: Iterable[Any]) -> list[tuple[str, str | None, float | None]]:
    """(writing role, task text or None when malformed, solve rate) of each finished training episode, whoever held
    the writing seat (the learner, a snapshot, a fixed agent)."""
    out = []
    for ep in episodes:
        written = game_cls.written_task(ep.meta.get("info") or {}) if ep.status != "error" else None
        if written is not None:
            out.append(written)
    return out


def step_counts(written: Iterable[tuple[str, str | None, float | None]]) -> dict[str, TaskCounts]:
    """Per writing role, one step's counts from its (role, task, solve rate) triples."""
    texts: dict[str, list[str]] = {}
    out: dict[str, TaskCounts] = {}
    for role, task, rate in written:
        counts = out.setdefault(role, TaskCounts())
        counts.tasks += 1
        if task is None:
            counts.bins["malformed"] += 1
            continue
        texts.setdefault(role, []).append(task)
        if rate is not None:
            counts.bins["too_easy" if rate >= 1 else "too_hard" if rate <= 0 else "frontier"] += 1
    for role, tasks in texts.items():
        out[role].distinct = float(len(set(tasks)))
        out[role].near = float(near_duplicates(tasks))
    return out


@dataclass
class CollapseMonitor:
    """Keeps each step's shares, gives their metrics and warnings."""

    distinct_min: float = 0.5
    frontier_min: float = 0.1
    history: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, step: int, counts: dict[str, TaskCounts]) -> tuple[dict[str, float], list[str]]:
        """Record one step; returns its metrics (``tasks/<role>/<share>``) and warning lines."""
        metrics, warnings = {}, []
        entry = {"step": step, "roles": {}}
        for role, c in counts.items():
            shares = c.shares()
            entry["roles"][role] = {**shares, "tasks": c.tasks}
            metrics.update({f"tasks/{role}/{k}": v for k, v in shares.items()})
            formed = c.tasks - c.bins["malformed"]
            if formed and shares["distinct"] < self.distinct_min:
                warnings.append(
                    f"proposer collapse? {role} wrote {int(c.distinct)} distinct tasks of {int(formed)} "
                    f"({shares['distinct']:.0%} < curriculum.collapse_distinct={self.distinct_min:g})"
                )
            if c.tasks and shares["frontier"] < self.frontier_min:
                warnings.append(
                    f"proposer collapse? {shares['frontier']:.0%} of {role}'s tasks are at the frontier "
                    f"(< curriculum.collapse_frontier={self.frontier_min:g}): malformed "
                    f"{shares['malformed']:.0%}, too easy {shares['too_easy']:.0%}, too hard "
                    f"{shares['too_hard']:.0%}"
                )
        entry["warnings"] = warnings
        if counts:
            self.history.append(entry)
        return metrics, warnings

"""Summaries of played episodes: wins, draws, losses, rewards and invalid actions per agent and role."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from arena.records import Episode


@dataclass
class Row:
    """Aggregates for one (agent, role)."""

    agent: str
    role: str
    games: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    errors: int = 0
    reward_sum: float = 0.0
    turns_sum: int = 0
    attempts: int = 0
    invalid: int = 0

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / max(1, self.games - self.errors)

    @property
    def invalid_rate(self) -> float:
        return self.invalid / max(1, self.attempts)

    @property
    def mean_turns(self) -> float:
        return self.turns_sum / max(1, self.games)


_COUNTERS = {"win": "wins", "draw": "draws", "loss": "losses"}


def summarize(episodes: Iterable[Episode]) -> list[Row]:
    """One row per (agent, role), plus an ``all`` row per agent across its roles."""
    rows: dict[tuple[str, str], Row] = {}
    for ep in episodes:
        for role, agent in ep.agents.items():
            for key in ((agent, role), (agent, "all")):
                row = rows.setdefault(key, Row(*key))
                row.games += 1
                row.turns_sum += ep.num_turns
                outcome = ep.outcome(role)
                if outcome == "error":
                    row.errors += 1
                else:
                    field = _COUNTERS[outcome]
                    setattr(row, field, getattr(row, field) + 1)
                    row.reward_sum += ep.rewards[role]
                mine = [s for s in ep.steps if s.role == role]
                row.attempts += len(mine)
                row.invalid += sum(s.failure is not None for s in mine)
    roles_seen = len({role for _, role in rows}) > 2  # more than one role besides "all"
    return sorted((r for r in rows.values() if roles_seen or r.role != "all"), key=lambda r: (r.agent, r.role == "all", r.role))


def format_table(rows: list[Row]) -> str:
    """A fixed-width text table of ``summarize`` rows."""
    header = f"{'agent':<22} {'role':<12} {'games':>6} {'win':>6} {'draw':>6} {'loss':>6} {'reward':>8} {'invalid':>8} {'turns':>6}"
    lines = [header, "-" * len(header)]
    for r in rows:
        n = max(1, r.games - r.errors)
        lines.append(f"{r.agent:<22} {r.role:<12} {r.games:>6} {r.wins / n:>6.1%} {r.draws / n:>6.1%} "
                     f"{r.losses / n:>6.1%} {r.mean_reward:>+8.3f} {r.invalid_rate:>8.1%} {r.mean_turns:>6.2f}"
                     + (f"  ({r.errors} errors)" if r.errors else ""))
    return "\n".join(lines)


def transcript(ep: Episode) -> str:
    """A readable transcript of one episode."""
    lines = [f"episode {ep.id}  game={ep.game} seed={ep.seed} status={ep.status}",
             "agents: " + ", ".join(f"{r}={a}" for r, a in ep.agents.items())]
    for s in ep.steps:
        tag = f"turn {s.turn} {s.role}" + (f" sample {s.sample}" if s.sample else "") + (f" retry {s.attempt}" if s.attempt else "")
        lines.append(f"\n--- {tag} ({s.agent})")
        lines.append("  sees: " + s.messages[-1]["content"].replace("\n", "\n        "))
        lines.append(f"  says: {s.text!r}")
        if s.failure:
            lines.append(f"  -> {s.failure}: {s.error}" + (f" [fallback: {s.fallback}]" if s.fallback else ""))
        if s.action is not None and s.action != s.text:
            lines.append(f"  -> action {s.action}")
    lines.append(f"\nrewards: {ep.rewards}" + (f"\nerror:\n{ep.error}" if ep.error else ""))
    return "\n".join(lines)

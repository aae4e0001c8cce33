"""Summaries of played episodes: wins, draws, losses, rewards and invalid actions per agent and role."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from selfplay.arena.records import SCORES, Episode


@dataclass
class Tally:
    """The one count of results for whoever played ``role`` in some episodes: wins, draws, losses, errors, reward,
    attempts and invalid attempts. The play table, training evaluation and rollout statistics, tournaments and
    reports all count with it; its fields are plain numbers, so ranks can sum it."""

    games: float = 0.0
    wins: float = 0.0
    draws: float = 0.0
    losses: float = 0.0
    errors: float = 0.0
    reward_sum: float = 0.0
    reward_sq: float = 0.0  # sum of squared rewards, for the interval
    turns_sum: float = 0.0
    attempts: float = 0.0
    invalid: float = 0.0
    ranged: float = 0.0  # decided games whose record states the game's reward range, and the sums of its ends
    range_low_sum: float = 0.0
    range_high_sum: float = 0.0

    def add(self, ep: Episode, role: str, reward: float | None = None) -> None:
        """Count ``ep`` from ``role``'s side (an errored episode counts as an error, with its attempts); ``reward``:
        the value counted instead of the role's reward (a self-play game's mean over the seats one agent held)."""
        self.games += 1
        self.turns_sum += ep.num_turns
        outcome = ep.outcome(role)
        if outcome == "error":
            self.errors += 1
        else:
            setattr(self, _COUNTERS[outcome], getattr(self, _COUNTERS[outcome]) + 1)
            value = ep.rewards[role] if reward is None else reward
            self.reward_sum += value
            self.reward_sq += value**2
            bounds = (ep.meta.get("outcome") or {}).get("range")
            if bounds:
                self.ranged += 1
                self.range_low_sum += bounds[0]
                self.range_high_sum += bounds[1]
        mine = [s for s in ep.steps if s.role == role and s.agent == ep.agents[role]]
        self.attempts += len(mine)
        self.invalid += sum(s.failure is not None for s in mine)

    @property
    def decided(self) -> float:
        """Games that ended with rewards (errors excluded)."""
        return self.games - self.errors

    def rate(self, count: float) -> float:
        return count / max(1.0, self.decided)

    @property
    def score(self) -> float:
        """Total rating score: wins + draws / 2 (``records.SCORES``)."""
        return self.wins * SCORES["win"] + self.draws * SCORES["draw"] + self.losses * SCORES["loss"]

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / max(1.0, self.decided)

    @property
    def reward_variance(self) -> float:
        """The sample variance of the reward (0 with fewer than two games)."""
        n = self.decided
        return max(0.0, (self.reward_sq - self.reward_sum**2 / n) / (n - 1)) if n > 1 else 0.0

    def reward_interval(self, z: float = 1.96) -> tuple[float, float]:
        """95% normal interval of the mean reward (mean +- z * sd / sqrt(n)). Where the records state the reward
        range it is clipped to it, and a sample without spread (every game the same reward: 20 losses, one game)
        gets Wilson's interval for that value scaled to the range, as if each game paid one end or the other (the
        widest spread a mean in that range allows), instead of a zero-width interval."""
        n, mean = self.decided, self.mean_reward
        bounds = self.reward_range
        if bounds and self.reward_variance <= 1e-12 * (bounds[1] - bounds[0]) ** 2:
            a, b = bounds
            lo, hi = wilson(min(1.0, max(0.0, (mean - a) / (b - a))) * n, round(n), z)
            return self.clip(a + lo * (b - a), a + hi * (b - a))
        half = z * math.sqrt(self.reward_variance / max(1.0, n))
        return self.clip(mean - half, mean + half)

    @property
    def reward_range(self) -> tuple[float, float] | None:
        """The game's reward range where every decided game's record states it (older records lack it)."""
        n = self.decided
        if n < 1 or self.ranged != n or self.range_high_sum <= self.range_low_sum:
            return None
        return self.range_low_sum / n, self.range_high_sum / n

    def clip(self, low: float, high: float) -> tuple[float, float]:
        """An interval of the mean reward cut to the reward range, where known."""
        bounds = self.reward_range
        return (max(low, bounds[0]), min(high, bounds[1])) if bounds else (low, high)

    @property
    def invalid_rate(self) -> float:
        return self.invalid / max(1.0, self.attempts)

    @property
    def mean_turns(self) -> float:
        return self.turns_sum / max(1.0, self.games)


_COUNTERS = {"win": "wins", "draw": "draws", "loss": "losses"}


def wilson(score: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a win rate (draws as halves)."""
    if n == 0:
        return 0.0, 1.0
    p = score / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)  # at p = 0 or 1 the bound is 0 or 1 up to rounding


def paired_difference(first: Sequence[float], second: Sequence[float], z: float = 1.96) -> tuple[float, float, float]:
    """Mean of ``second[i] - first[i]`` over items measured twice (the same problems before and after, or under two
    arms) and its normal-approximation interval from the differences' own spread: the pairing removes the items'
    difficulty from the error. (mean, low, high)."""
    if len(first) != len(second) or not first:
        raise ValueError(f"paired difference needs two equal, non-empty lists, got {len(first)} and {len(second)}")
    d = [b - a for a, b in zip(first, second)]
    n, mean = len(d), sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else float("inf")
    half = z * sd / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass
class Row:
    """One line of the play table: an agent in a role (or ``all`` its roles) and its tally."""

    agent: str
    role: str
    tally: Tally


def summarize(episodes: Iterable[Episode]) -> list[Row]:
    """One row per (agent, role), plus an ``all`` row per agent across its roles."""
    rows: dict[tuple[str, str], Row] = {}
    for ep in episodes:
        for role, agent in ep.agents.items():
            for key in ((agent, role), (agent, "all")):
                rows.setdefault(key, Row(*key, Tally())).tally.add(ep, role)
    roles_seen = len({role for _, role in rows}) > 2  # more than one role besides "all"
    return sorted(
        (r for r in rows.values() if roles_seen or r.role != "all"), key=lambda r: (r.agent, r.role == "all", r.role)
    )


def format_table(rows: list[Row], rates: str = "win") -> str:
    """A fixed-width text table of ``summarize`` rows, following the game's outcome model (``Outcome.rates``):
    win / draw / loss rates for win/lose games, the team success rate for cooperative ones, and always the mean
    reward with its 95% interval."""
    counts = {"win": f"{'win':>6} {'draw':>6} {'loss':>6} ", "success": f"{'success':>7} ", "reward": ""}[rates]
    header = (
        f"{'agent':<22} {'role':<12} {'games':>6} {counts}{'reward [95% interval]':>26} {'invalid':>8} {'turns':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        t = r.tally
        low, high = t.reward_interval()
        shown = {
            "win": f"{t.rate(t.wins):>6.1%} {t.rate(t.draws):>6.1%} {t.rate(t.losses):>6.1%} ",
            "success": f"{t.rate(t.wins):>7.1%} ",
            "reward": "",
        }[rates]
        reward = f"{t.mean_reward:+z.3f} [{low:+z.3f}, {high:+z.3f}]"
        lines.append(
            f"{r.agent:<22} {r.role:<12} {int(t.games):>6} {shown}{reward:>26} {t.invalid_rate:>8.1%} "
            f"{t.mean_turns:>6.2f}" + (f"  ({int(t.errors)} errors)" if t.errors else "")
        )
    return "\n".join(lines)


def error_summary(episodes: Iterable[Episode]) -> str | None:
    """None when no episode ended in an error; else their count and the last line of the first traceback (what
    ``play``, ``train``, ``tournament`` print before exiting non-zero)."""
    errors = [ep for ep in episodes if ep.status == "error"]
    if not errors:
        return None
    first = errors[0]
    last = next((line for line in reversed((first.error or "").strip().splitlines()) if line.strip()), "no traceback")
    return (
        f"{len(errors)} episode(s) ended in an error; the first (seed {first.seed}, episode {first.id[:12]}): "
        f"{last.strip()}"
    )


def transcript(ep: Episode) -> str:
    """A readable transcript of one episode."""
    lines = [
        f"episode {ep.id}  game={ep.game} seed={ep.seed} status={ep.status}",
        "agents: "
        + ", ".join(f"{r}={a}" for r, a in ep.agents.items())
        + (f"  (evaluation vs {ep.meta['eval']})" if ep.meta.get("eval") else ""),
    ]
    for s in ep.steps:
        tag = (
            f"turn {s.turn} {s.role}"
            + (f" sample {s.sample}" if s.sample else "")
            + (f" retry {s.attempt}" if s.attempt else "")
        )
        lines.append(f"\n--- {tag} ({s.agent})")
        if s.prompt:  # what the agent read (its observer's line where it had one), not only the game's chat
            lines.append(
                ("  reads: " if s.read is not None else "  sees: ")
                + s.prompt[-1]["content"].replace("\n", "\n        ")
            )
        lines.append(f"  says: {s.text!r}")
        if s.failure:
            lines.append(f"  -> {s.failure}: {s.error}" + (f" [fallback: {s.fallback}]" if s.fallback else ""))
        if s.action is not None and s.action != s.text:
            lines.append(f"  -> action {s.action}")
    lines.append(f"\nrewards: {ep.rewards}" + (f"\nerror:\n{ep.error}" if ep.error else ""))
    return "\n".join(lines)

"""What the arena plays: matches (a seed, who sits where, metadata) and the seatings that rotate agents through the
seats so each sits in every seat equally often."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Match:
    """One game to play: its seed, which agent (by name) plays each role, and free-form metadata.

    ``opening``: that many first turns are uniformly random legal moves (``game.random_action``) made by the
    arena, not by the agents, so training visits diverse positions (as opening books and random starts do).
    """

    seed: int
    agents: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)
    opening: int = 0


OPENING = "opening"  # the agent name recorded for random opening moves


def seatings(
    roles: Sequence[str], agent_names: Sequence[str], fixed: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """The seatings a seed is played in: ``fixed`` roles keep their agent, the other roles take ``agent_names`` in
    every cyclic rotation (distinct ones only), so over one round of seatings every agent sits in every free seat
    equally often. Two agents on two roles: the two seatings with the seats swapped."""
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed) - set(roles))
    if unknown:
        raise ValueError(f"seat(s) {unknown} are not roles of this game: expected among {', '.join(roles)}")
    free = [r for r in roles if r not in fixed]
    if len(agent_names) != len(free):
        raise ValueError(
            f"{len(agent_names)} agent(s) for {len(free)} free role(s) {tuple(free)}"
            + (f" ({', '.join(f'{r}={a}' for r, a in fixed.items())} fixed)" if fixed else "")
            + ": name one agent per role"
        )
    n = len(free)
    rotations = dict.fromkeys(tuple(agent_names[(i - k) % n] for i in range(n)) for k in range(max(1, n)))
    return [{r: fixed.get(r) or dict(zip(free, rotation))[r] for r in roles} for rotation in rotations]


def paired_matches(
    roles: Sequence[str],
    agent_names: Sequence[str],
    games: int,
    *,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    fixed: dict[str, str] | None = None,
) -> list[Match]:
    """``games`` matches in which each seed is played once per seating (``seatings``: fixed roles kept, the rest
    rotated), so every agent sits in every free seat equally often when ``games`` is a multiple of the number of
    seatings. With two roles, games 2i and 2i+1 share seed ``seed + i`` with the seats swapped."""
    seats = seatings(roles, agent_names, fixed)
    return [
        Match(seed + i // len(seats), dict(seats[i % len(seats)]), {**(meta or {}), "seating": i % len(seats)})
        for i in range(games)
    ]

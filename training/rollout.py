"""Rollout helpers: who plays whom this step, and which recorded steps become training samples."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arena.play import Match
from arena.records import Episode

LEARNER, POOL, SCRIPTED = "learner", "pool", "scripted"
OPPONENT = "opponent"  # the curriculum option whose arms are opponents: mirror, pool or a scripted agent spec


def scripted_name(spec: str) -> str:
    """Agent name of a scripted opponent that is a curriculum arm."""
    return f"{SCRIPTED}/{spec}"


def agent_name(kind: str, group: str) -> str:
    """Agent name of a group's learner or pool copy ("learner" when shared, "learner/<role>" otherwise)."""
    return kind if group == "policy" else f"{kind}/{group}"


def plan_matches(roles: Sequence[str], group_of, step: int, seed: int, first: int, count: int,
                 pool_prob: float, scripted_prob: float, pool_ready: bool,
                 arms: Mapping[int, tuple[str, Any]] | Sequence[tuple[str, Any]] | None = None,
                 opening: int = 0) -> list[Match]:
    """Matches ``first .. first+count-1`` of this step's global list (each rank plays its own slice).

    Game j is decided by its own RNG, so the global list is the same however it is split across ranks:
    mirror self-play (every role a learner), or the learner in seat ``j % len(roles)`` against a pool
    snapshot or the scripted opponent; with ``opening`` its first 0..opening turns (drawn per game) are random
    moves. ``arms[j]`` is the curriculum's (option, value) for game j: a game
    option, or with option ``opponent`` the opponent itself (``mirror``, ``pool`` or a scripted agent spec).
    """
    matches = []
    for j in range(first, first + count):
        rng = random.Random(f"{seed}/{step}/{j}")
        game_seed = rng.randrange(2**31)
        u = rng.random()
        if u < pool_prob:
            kind = POOL if pool_ready else LEARNER  # until the first snapshot, pool games are mirror games
        else:
            kind = SCRIPTED if u < pool_prob + scripted_prob else LEARNER
        scripted = SCRIPTED
        if arms and arms[j][0] == OPPONENT:
            value = str(arms[j][1])
            kind = LEARNER if value == "mirror" else (POOL if pool_ready else LEARNER) if value == POOL else SCRIPTED
            scripted = scripted_name(value)
        seat = roles[j % len(roles)]
        agents = {r: agent_name(LEARNER if kind == LEARNER or r == seat else kind, group_of(r))
                  for r in roles}
        if kind == SCRIPTED:
            agents = {r: a if r == seat else scripted for r, a in agents.items()}
        # meta step counts from 1: the training step this rollout feeds (as checkpoints count steps done)
        meta = {"step": step + 1, "index": j, "opponent": kind}
        if arms:  # the curriculum's category for game j: (option, value)
            option, value = arms[j]
            meta.update(arm=str(value), **({"game_options": {option: value}} if option != OPPONENT else {}))
        matches.append(Match(game_seed, agents, meta, rng.randint(0, opening) if opening else 0))
    return matches


@dataclass
class Sample:
    """One learner completion with what training needs."""

    group: str
    key: tuple[str, str]  # (game, role): the baseline it is measured against
    turn_group: tuple[str, int]  # (episode, turn): the GRPO group of a samples=K turn
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    reward: float
    allowed: list[list[int] | None] | None = None
    arm: str | None = None  # the curriculum category of its episode
    advantage: float = 0.0


def collect_samples(episodes: Sequence[Episode], group_of) -> list[Sample]:
    """Every learner attempt that produced tokens, with its reward (invalid ones carry the game's penalty)."""
    samples = []
    for ep in episodes:
        if ep.status == "error":
            continue
        for s in ep.steps:
            if s.agent.startswith(LEARNER) and s.completion_ids and s.reward is not None:
                samples.append(Sample(group_of(s.role), (ep.game, s.role), (ep.id, s.turn), s.prompt_ids,
                                      s.completion_ids, s.logprobs, s.reward, s.allowed, ep.meta.get("arm")))
    return samples


def learner_results(episodes: Sequence[Episode], opponent: str) -> tuple[int, float]:
    """Games against ``opponent`` and the learner's wins in them (draws count half)."""
    games, wins = 0, 0.0
    for ep in episodes:
        if ep.meta.get("opponent") != opponent or ep.status == "error":
            continue
        for role, name in ep.agents.items():
            if name.startswith(LEARNER):
                games += 1
                wins += {"win": 1.0, "draw": 0.5}.get(ep.outcome(role), 0.0)
    return games, wins


def filter_groups(samples: list[Sample], low: float, high: float) -> list[Sample]:
    """Online difficulty filtering (Bae et al. 2025): drop the samples=K groups whose accuracy (share of samples
    with a positive reward) lies outside [low, high]; samples outside such groups are kept."""
    from training.curriculum import difficulty_filter

    groups: dict[tuple[str, int], list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.turn_group, []).append(s)
    drop = set()
    for key, members in groups.items():
        if len(members) > 1:
            accuracy = sum(m.reward > 0 for m in members) / len(members)
            if not difficulty_filter([accuracy], low, high)[0]:
                drop.add(key)
    return [s for s in samples if s.turn_group not in drop]


def credit_progress(samples: Sequence[Sample], infos: Mapping[Any, dict], gains: Mapping[str, float], key) -> None:
    """Learning-progress credit: each sample's reward becomes the measured gain of its episode's key
    (``key(info)``); a sample whose key is None or unmeasured keeps its recorded reward (e.g. a malformed task)."""
    for s in samples:
        k = key(infos[s.turn_group[0]])
        if k in gains:
            s.reward = gains[k]

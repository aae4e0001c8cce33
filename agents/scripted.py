"""Scripted agents: uniformly random legal moves, and each game's own expert."""

from __future__ import annotations

import random

from agents.base import Completion, Request


class RandomAgent:
    """Plays ``game.random_action`` (uniform over legal actions) with its own seeded RNG."""

    def __init__(self, seed: int = 0, name: str = "random"):
        self.name = name
        self.rng = random.Random(seed)

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        return [[Completion(r.game.random_action(r.role, self.rng)) for _ in range(r.samples)] for r in requests]


class ExpertAgent:
    """Plays ``game.expert_action``: minimax, a Nash strategy or a heuristic, as the game defines it."""

    def __init__(self, seed: int = 0, name: str = "expert"):
        self.name = name
        self.rng = random.Random(seed)

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        return [[Completion(r.game.expert_action(r.role, self.rng)) for _ in range(r.samples)] for r in requests]

"""Scripted agents: uniformly random legal moves, and each game's own expert."""

from __future__ import annotations

import random

from selfplay.agents.base import Completion, Request


class ScriptedAgent:
    """Answers every request by calling the game's ``method(role, rng)`` with the agent's own seeded RNG."""

    method = ""

    def __init__(self, seed: int = 0, name: str | None = None):
        self.name = name or self.method.removesuffix("_action")
        self.rng = random.Random(seed)

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        return [[Completion(getattr(r.game, self.method)(r.role, self.rng)) for _ in range(r.samples)] for r in requests]


class RandomAgent(ScriptedAgent):
    """Plays ``game.random_action`` (uniform over legal actions)."""

    method = "random_action"


class ExpertAgent(ScriptedAgent):
    """Plays ``game.expert_action``: minimax, a Nash strategy or a heuristic, as the game defines it."""

    method = "expert_action"

"""Scripted agents: uniformly random legal moves, and each game's own expert."""

from __future__ import annotations

import random
import weakref
from typing import TYPE_CHECKING

from selfplay.agents.base import Completion, Request

if TYPE_CHECKING:
    from selfplay.games.core import Game


class ScriptedAgent:
    """Answers every request by calling the game's ``method(role, rng)``.

    The RNG is one stream per game and role, seeded from the agent's seed, the match's seed and the role: a baseline's
    k-th draw in a game is the same whichever other games share its batch, rank or evaluation round (common random
    numbers for paired comparisons). Requests without a match seed share the agent's own stream.
    """

    method = ""

    def __init__(self, seed: int = 0, name: str | None = None):
        self.name = name or self.method.removesuffix("_action")
        self.seed = seed
        self.rng = random.Random(seed)
        self.streams: dict[int, dict[str, random.Random]] = {}  # id(game) -> {role: Random}

    def stream(self, request: Request) -> random.Random:
        """The RNG this request draws from."""
        if request.seed is None:
            return self.rng
        key = id(request.game)  # by identity: games are dataclasses, equal when their states are
        per_game = self.streams.get(key)
        if per_game is None:
            try:
                weakref.finalize(request.game, self.streams.pop, key, None)  # forgotten with its game
            except TypeError:  # a game that takes no weak reference (__slots__): the agent's own stream
                return self.rng
            per_game = self.streams[key] = {}
        if request.role not in per_game:
            per_game[request.role] = random.Random(f"{self.seed}/{request.seed}/{request.role}")
        return per_game[request.role]

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        return [
            [Completion(getattr(r.game, self.method)(r.role, self.stream(r))) for _ in range(r.samples)]
            for r in requests
        ]


class RandomAgent(ScriptedAgent):
    """Plays ``game.random_action`` (uniform over legal actions)."""

    method = "random_action"

    def check_seat(self, game: Game, role: str) -> None:
        """ValueError when ``game`` (a disposable probe) neither defines ``random_action`` nor lists legal actions."""
        from selfplay.games.core import plays_random

        if not plays_random(game):
            raise ValueError(
                f"agent {self.name!r} plays a uniformly random legal action, but {game.name} lists "
                f"no legal actions (legal_actions() gives None) and defines no random_action: give the "
                f"game a random_action, or use another agent"
            )


class ExpertAgent(ScriptedAgent):
    """Plays ``game.expert_action``: minimax, a Nash strategy or a heuristic, as the game defines it."""

    method = "expert_action"

    def check_seat(self, game: Game, role: str) -> None:
        """ValueError when ``game`` does not define the method this agent plays (a game without an expert)."""
        from selfplay.games.core import Game

        if getattr(type(game), self.method, None) is getattr(Game, self.method, None):
            raise ValueError(
                f"agent {self.name!r} plays the game's {self.method}, but {game.name} defines none: "
                f"use random, or give the game an {self.method}"
            )

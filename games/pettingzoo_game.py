"""PettingZoo AEC environments as selfplay games: ``pettingzoo:classic.tictactoe_v3`` (a module under
``pettingzoo.``), anywhere a game name goes.

    selfplay check-game pettingzoo:classic.connect_four_v3
    selfplay play pettingzoo:classic.tictactoe_v3 --agents random random

Roles are the environment's ``possible_agents``; each turn is ``agent_selection``. What a role sees is its
observation rendered as text (the array's values row by row, and for the classic games' dict observations the
legal actions from the ``action_mask``); actions are the discrete action numbers in brackets, ``[4]``. The episode
seed goes to ``reset(seed=...)``; rewards are each agent's accumulated reward. PettingZoo games ship no expert.
Needs the optional packages: ``pip install -e .[pettingzoo]`` (the classic games draw their boards with pygame).
"""

from __future__ import annotations

import importlib
import random
import re
import warnings
from functools import cache
from typing import Any

from selfplay.games.core import Failure, Game, InvalidAction, Outcome, Turn, system, user
from selfplay.games.optional import optional_package

PREFIX = "pettingzoo:"


@cache
def pettingzoo_game(spec: str) -> type[Game]:
    """The selfplay game class of ``pettingzoo.<spec>`` (an AEC environment module with ``env()``)."""
    if not re.fullmatch(r"[a-z_]+\.[a-z0-9_]+", spec):
        raise ValueError(f"PettingZoo game {spec!r}: expected FAMILY.ENV_vN, e.g. classic.tictactoe_v3")
    optional_package("pettingzoo", "PettingZoo", "pettingzoo", "pettingzoo")
    try:
        with warnings.catch_warnings():  # PettingZoo 1.27 announces a registry that is not there yet
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module(f"pettingzoo.{spec}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("pettingzoo"):
            raise ValueError(f"PettingZoo has no environment {spec!r}") from None
        raise ValueError(
            f"PettingZoo's {spec} needs the package {exc.name!r}, which selfplay's extra does not "
            f"install: pip install {exc.name.partition('.')[0]} (PettingZoo's own extras list it)"
        ) from None
    except ImportError as exc:  # e.g. a family PettingZoo moved out ("MPE has been moved into its own package")
        raise ValueError(f"PettingZoo's {spec} cannot be imported: {exc}") from None
    if not callable(getattr(module, "env", None)):
        raise ValueError(f"pettingzoo.{spec} has no env(): expected an AEC environment module")
    try:
        env = module.env()
        env.reset(seed=0)
    except Exception as exc:  # noqa: BLE001 - e.g. hanabi_v5 raises ImportError from its constructor
        raise ValueError(f"PettingZoo's {spec} cannot start: {type(exc).__name__}: {exc}") from None
    roles = tuple(env.possible_agents)
    attributes = {
        "name": PREFIX + spec,
        "description": f"PettingZoo's {spec}",
        "roles": roles,
        "module": module,
        "zero_sum": False,
        "reward_range": (-1.0, 1.0),
        "outcome_inferred": True,
        "outcome": Outcome("general_sum", win_lose=True),
        "max_turns": 1000,
        "check_seeds": 30,
        "action_format": "one legal action number in brackets, like [3]",
    }
    return type(f"PettingZoo_{re.sub(r'[^0-9a-zA-Z]', '_', spec)}", (PettingZooGame,), attributes)


def _text(values: Any) -> str:
    """An observation array as text: nested lists, one line per top-level row."""
    items = values.tolist() if hasattr(values, "tolist") else values
    if isinstance(items, list) and items and isinstance(items[0], list):
        return "\n".join(str(row) for row in items)
    return str(items)


class PettingZooGame(Game):
    """Base of the generated PettingZoo classes (see the module docstring)."""

    module: Any = None

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.env = self.module.env()
        self.env.reset(seed=seed)
        self.totals = {r: 0.0 for r in self.roles}
        self._settle()

    def _settle(self) -> None:
        """Record each agent's accumulated reward, then let finished agents leave (AEC steps them with None)."""
        self.totals.update({a: float(v) for a, v in self.env._cumulative_rewards.items()})
        while self.env.agents and (
            self.env.terminations.get(self.env.agent_selection) or self.env.truncations.get(self.env.agent_selection)
        ):
            self.env.step(None)
            self.totals.update({a: float(v) for a, v in self.env._cumulative_rewards.items()})

    def turn(self) -> Turn | None:
        return Turn(self.env.agent_selection) if self.env.agents else None

    def _legal(self, role: str) -> list[int]:
        observation = self.env.observe(role)
        if isinstance(observation, dict) and "action_mask" in observation:
            return [i for i, ok in enumerate(observation["action_mask"]) if ok]
        return list(range(self.env.action_space(role).n))

    def observe(self, role: str) -> list:
        observation = self.env.observe(role)
        seen = observation["observation"] if isinstance(observation, dict) else observation
        legal = ", ".join(f"[{a}]" for a in self._legal(role)) if self.env.agents else "none"
        return [
            system(f"You are {role} in {self.description} (PettingZoo). Answer with {self.action_format}."),
            user(f"Your observation:\n{_text(seen)}\nLegal actions: {legal}."),
        ]

    def legal_actions(self, role: str) -> list[str]:
        return [f"[{a}]" for a in self._legal(role)]

    def parse(self, role: str, text: str) -> int:
        found = re.findall(r"\[\s*(\d+)\s*\]", text)
        if len(found) != 1:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected {self.action_format}, got {text[:60]!r}")
        action = int(found[0])
        if action not in self._legal(role):
            raise InvalidAction(Failure.ILLEGAL, f"[{action}] is not legal now")
        return action

    def step(self, role: str, actions: list) -> None:
        self.env.step(actions[0])
        self._settle()

    def rewards(self) -> dict[str, float]:
        return dict(self.totals)

    def random_action(self, role: str, rng: random.Random) -> str:
        return f"[{rng.choice(self._legal(role))}]"

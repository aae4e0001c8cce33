"""OpenSpiel games as selfplay games: ``openspiel:GAME`` or ``openspiel:GAME(param=value,...)``.

    selfplay check-game "openspiel:kuhn_poker"
    selfplay play "openspiel:goofspiel(num_cards=4)" --agents random random
    selfplay train configs/kuhn_poker_tiny.yaml game="openspiel:leduc_poker"

Anywhere a game name goes. Roles are ``player_0 .. player_{N-1}``; each sees OpenSpiel's information-state
string (or its observation string when the game has none) and its legal actions as bracketed words (OpenSpiel's
``action_to_string`` with player tags removed), e.g. ``[Pass]`` / ``[Bet]``. Chance nodes are resolved with the
episode's seeded RNG by OpenSpiel's own probabilities; simultaneous nodes become ``Turn.together``; rewards are
``state.returns()``, and OpenSpiel's utility type sets the outcome model (zero-sum, identical = cooperative,
general-sum; win/lose when the returns are -1/0/1). Where OpenSpiel can re-sample a state from an information
state (``resample_from_infostate``: Kuhn, Leduc, ...), the leak test by perturbation uses it. Needs the optional
``open_spiel`` package: ``pip install -e .[openspiel]``.
"""

from __future__ import annotations

import difflib
import itertools
import random
import re
from contextlib import contextmanager
from functools import cache
from typing import Any

from selfplay.games import exact
from selfplay.games.core import WIN_LOSE_RANGES as WIN_LOSE
from selfplay.games.core import Failure, Game, InvalidAction, Outcome, Turn, system, user
from selfplay.games.optional import optional_package

PREFIX = "openspiel:"
_TAG = re.compile(r"\[P\d+\]")


def _pyspiel():
    return optional_package("pyspiel", "OpenSpiel", "open_spiel", "openspiel")


def _label(text: str) -> str:
    """An OpenSpiel action string as one bracket-safe word or phrase."""
    text = _TAG.sub("", text).strip()
    return text.replace("[", "(").replace("]", ")") or "?"


@contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ code writes there directly) for the duration."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@cache
def openspiel_game(spec: str) -> type[Game]:
    """The selfplay game class of OpenSpiel's ``spec`` (``kuhn_poker``, ``goofspiel(num_cards=4)``, ...)."""
    pyspiel = _pyspiel()
    name = spec.partition("(")[0].strip()
    known = list(pyspiel.registered_names())
    if name not in known and name.startswith(("python_", "chat_game")):  # OpenSpiel's Python games register on import
        import open_spiel.python.games  # noqa: F401

        known = list(pyspiel.registered_names())
    if name not in known:  # asked before load_game, which prints all ~200 names to stderr and into its message
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "pyspiel.registered_names() lists them"
        raise ValueError(f"OpenSpiel has no game {name!r}; {hint}")
    try:
        with _quiet_stderr():  # a bad parameter is also printed to stderr by the C++ side: said once, below
            game = pyspiel.load_game(spec)
    except Exception as exc:  # noqa: BLE001 - pyspiel raises its own error types
        raise ValueError(f"OpenSpiel cannot load {spec!r}: {str(exc).splitlines()[0]}") from None
    info = game.get_type()
    if info.dynamics not in (pyspiel.GameType.Dynamics.SEQUENTIAL, pyspiel.GameType.Dynamics.SIMULTANEOUS):
        raise ValueError(
            f"OpenSpiel's {spec!r} is not supported: its dynamics are {info.dynamics.name.lower()} (a "
            f"mean-field game models a population, not players); selfplay plays sequential and "
            f"simultaneous-move games"
        )
    kinds = {
        pyspiel.GameType.Utility.ZERO_SUM: "zero_sum",
        pyspiel.GameType.Utility.CONSTANT_SUM: "constant_sum",
        pyspiel.GameType.Utility.IDENTICAL: "cooperative",
        pyspiel.GameType.Utility.GENERAL_SUM: "general_sum",
    }
    low, high = float(game.min_utility()), float(game.max_utility())
    kind = kinds.get(info.utility, "general_sum")
    roles = tuple(f"player_{i}" for i in range(game.num_players()))
    attributes = {
        "name": PREFIX + spec,
        "description": f"OpenSpiel's {info.long_name}",
        "roles": roles,
        "zero_sum": kind == "zero_sum",
        "reward_range": (low, high),
        "outcome_inferred": True,
        "outcome": Outcome(
            kind,
            win_lose=kind != "cooperative" and (low, high) in WIN_LOSE,
            total=float(game.utility_sum()) if kind == "constant_sum" else 0.0,
        ),
        "max_turns": max(1, game.max_game_length()) + 1,
        "check_seeds": 100,
        "action_format": "one legal action in square brackets, as listed",
        "spiel": game,
        "info_state": info.provides_information_state_string,
        "options_hint": "OpenSpiel parameters go in the name, e.g. openspiel:kuhn_poker(players=3)",
    }
    cls = type(f"OpenSpiel_{re.sub(r'[^0-9a-zA-Z]', '_', spec)}", (OpenSpielGame,), attributes)
    probe = cls()
    try:
        with _quiet_stderr():
            probe.reset(0)
            if not probe.state.is_terminal() and not probe.state.is_simultaneous_node():
                probe.legal_actions(probe.turn().role)
    except Exception as exc:  # noqa: BLE001 - e.g. crossword: "This game uses action structs only"
        raise ValueError(f"OpenSpiel's {spec!r} is not supported: {str(exc).splitlines()[0]}") from None
    if _small_enough(game):  # exact exploitability (games.exact) walks its whole tree
        cls.deals = OpenSpielGame.one_deal
        if attributes["outcome"].competitive and len(roles) == 2:  # CFR+ converges to an equilibrium there: an expert
            cls.expert_policy, cls.expert_action = OpenSpielGame.cfr_policy, OpenSpielGame.cfr_action
    return cls


EXACT_NODES = 50_000  # the largest OpenSpiel tree (chance nodes included) evaluated exactly: Leduc has 9,457


def _small_enough(game: Any) -> bool:
    """Whether a loaded OpenSpiel game (sequential or simultaneous: ``openspiel_game`` refuses the rest) can be
    evaluated exactly: its chance all at chance nodes (no internal rng_seed), and a tree of at most EXACT_NODES
    histories (a simultaneous node's children are the joint moves of the players who move there, as
    ``Turn.together`` plays them)."""
    if "rng_seed" in game.get_parameters():
        return False
    players = range(game.num_players())
    stack, count = [game.new_initial_state()], 0
    with _quiet_stderr():
        while stack:
            state = stack.pop()
            count += 1
            if count > EXACT_NODES:
                return False
            if state.is_terminal():
                continue
            try:
                if state.is_simultaneous_node():
                    moves = [state.legal_actions(p) or [0] for p in players]
                    for joint in itertools.product(*moves):
                        child = state.clone()
                        child.apply_actions(list(joint))
                        stack.append(child)
                    continue
                moves = [a for a, _ in state.chance_outcomes()] if state.is_chance_node() else state.legal_actions()
            except Exception:  # noqa: BLE001 - a node OpenSpiel cannot list: not enumerable here
                return False
            stack += [state.child(a) for a in moves]
    return True


CFR_WORK = 2_000_000  # node visits spent on an expert: 1,000 CFR+ iterations for Kuhn, ~200 for Leduc


def _cfr_expert(cls: type) -> exact.Policy:
    """CFR+'s average strategy over the game's exact tree, with a one-line note of its cost and exploitability."""
    import sys
    import time

    start = time.perf_counter()
    tree = exact.build_tree(cls)
    iterations = max(50, min(1000, CFR_WORK // len(tree.nodes)))
    policy = exact.cfr(tree, iterations)
    print(
        f"{cls.name}: expert = CFR+ average strategy after {iterations} iterations, exploitability "
        f"{exact.exploitability(tree, policy).exploitability:.4f} ({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
    )
    return policy


class OpenSpielGame(Game):
    """Base of the generated OpenSpiel classes (see the module docstring)."""

    spiel: Any = None
    info_state: bool = True
    enumerating: bool = False  # after reset_deal: chance nodes wait for apply_chance instead of being drawn

    def cfr_policy(self, role: str) -> dict[str, float]:
        """The expert of a small two-player zero-sum game: CFR+'s average strategy at ``role``'s information state,
        computed for the class on first use (games.exact.cfr; iterations by tree size, Leduc ~4 s)."""
        table = type(self).__dict__.get("_expert")
        if table is None:
            table = type(self)._expert = _cfr_expert(type(self))
        messages = tuple((m["role"], m["content"]) for m in self.observe(role))
        return dict(table[exact.InfoState(role, messages, ()).key])

    def cfr_action(self, role: str, rng: random.Random) -> str:
        probs = self.cfr_policy(role)
        return rng.choices(list(probs), weights=list(probs.values()))[0]

    def one_deal(self) -> list[tuple[float, Any]]:
        """``deals()`` of a small game: one empty deal, its chance left at chance nodes."""
        return [(1.0, None)]

    def reset_deal(self, deal: Any) -> None:
        self.seed_rng(0)
        self.state, self.history, self.enumerating = self.spiel.new_initial_state(), [], True

    def chance_outcomes(self) -> list[tuple[float, Any]] | None:
        if not self.enumerating or not self.state.is_chance_node():
            return None
        return [(p, a) for a, p in self.state.chance_outcomes()]

    def apply_chance(self, outcome: Any) -> None:
        self.history.append(f"chance:{self.state.action_to_string(outcome)}")
        self.state.apply_action(outcome)

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        spiel = self.spiel
        if "rng_seed" in spiel.get_parameters():  # chance drawn inside the game (negotiation, tarok): seed it too
            params = {**spiel.get_parameters(), "rng_seed": seed % 2_147_483_647}
            spiel = _pyspiel().load_game(spiel.get_type().short_name, params)
        self.state = spiel.new_initial_state()
        self.history: list[str] = []
        self._chance()

    def _chance(self) -> None:
        """Resolve chance nodes with the episode's RNG, by OpenSpiel's probabilities (left pending when enumerating)."""
        while self.state.is_chance_node() and not self.enumerating:
            outcomes = self.state.chance_outcomes()
            action = self.rng.choices([a for a, _ in outcomes], weights=[p for _, p in outcomes])[0]
            self.state.apply_action(action)

    def _seat(self, role: str) -> int:
        return self.roles.index(role)

    def turn(self) -> Turn | None:
        if self.state.is_terminal():
            return None
        if self.state.is_simultaneous_node():
            movers = [r for r in self.roles if self.state.legal_actions(self._seat(r))]
            return Turn.together(*movers)
        return Turn(self.roles[self.state.current_player()])

    def _actions(self, role: str) -> dict[str, int]:
        """Legal actions of ``role`` now: label -> action id (labels made unique with the id when they collide)."""
        seat = self._seat(role)
        ids = self.state.legal_actions(seat)
        labels = [_label(self.state.action_to_string(seat, a)) for a in ids]
        if len(set(labels)) < len(labels):
            labels = [f"{a}: {label}" for a, label in zip(ids, labels)]
        return dict(zip(labels, ids))

    def observe(self, role: str) -> list:
        seat = self._seat(role)
        if self.state.is_terminal():
            seen = "the game is over"
        else:
            seen = self.state.information_state_string(seat) if self.info_state else self.state.observation_string(seat)
        legal = ", ".join(f"[{a}]" for a in self._actions(role)) if not self.state.is_terminal() else "none"
        return [
            system(
                f"You are playing {self.description} (OpenSpiel) as {role}, one of {len(self.roles)} players. "
                f"Answer with {self.action_format}."
            ),
            user(f"What you know: {seen}\nLegal actions: {legal}."),
        ]

    def compact_observation(self, role: str) -> str:
        seat = self._seat(role)
        seen = self.state.information_state_string(seat) if self.info_state else self.state.observation_string(seat)
        return f"P{seat} {seen}:"

    def legal_actions(self, role: str) -> list[str]:
        return [f"[{a}]" for a in self._actions(role)]

    def parse(self, role: str, text: str) -> int:
        actions = self._actions(role)
        # the exact spelling first: chess's [Bxc4] (bishop) and [bxc4] (pawn) differ only in case
        named = [label for label in actions if f"[{label}]" in text] or [
            label for label in actions if f"[{label}]".lower() in text.lower()
        ]
        if len(named) > 1:  # "[Bet]" inside "[Bet 2]": prefer the longest label named
            longest = max(len(n) for n in named)
            named = [n for n in named if len(n) == longest]
        if len(named) != 1:
            inner = re.findall(r"\[([^\]]*)\]", text)
            if len(inner) == 1 and inner[0]:
                raise InvalidAction(
                    Failure.ILLEGAL, f"[{inner[0]}] is not legal now; legal: {', '.join(f'[{a}]' for a in actions)}"
                )
            raise InvalidAction(Failure.PARSE_ERROR, f"expected {self.action_format}, got {text[:60]!r}")
        return actions[named[0]]

    def step(self, role: str, actions: list) -> None:
        self.history.append(f"{role}:{self.state.action_to_string(self._seat(role), actions[0])}")
        self.state.apply_action(actions[0])
        self._chance()

    def step_together(self, actions: dict[str, int]) -> None:
        self.history += [f"{r}:{self.state.action_to_string(self._seat(r), a)}" for r, a in actions.items()]
        joint = [actions.get(r, 0) if self.state.legal_actions(i) else 0 for i, r in enumerate(self.roles)]
        self.state.apply_actions(joint)
        self._chance()

    def rewards(self) -> dict[str, float]:
        returns = self.state.returns()
        return {r: float(returns[i]) for i, r in enumerate(self.roles)}

    def truncation_rewards(self) -> dict[str, float]:
        """What each player has earned so far (OpenSpiel's returns hold the running total before the end), within
        ``reward_range`` (cliff walking's rewards are all negative, so a 0 would be outside it)."""
        low, high = self.reward_range
        returns = self.state.returns()
        return {r: min(high, max(low, float(returns[i]))) for i, r in enumerate(self.roles)}

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        cls = type(self)
        if getattr(cls, "_resample", None) is False:
            raise NotImplementedError(f"{self.name} cannot re-sample from an information state")
        try:
            with _quiet_stderr():  # OpenSpiel prints the exception itself before raising it
                self.state = self.state.resample_from_infostate(self._seat(role), rng.random)
            cls._resample = True
        except Exception as exc:  # noqa: BLE001 - OpenSpiel raises SpielError where it is not implemented
            cls._resample = False
            raise NotImplementedError(str(exc)) from None

    def info(self) -> dict:
        return {"history": self.history}

    def __deepcopy__(self, memo: dict) -> OpenSpielGame:
        """A copy with its own OpenSpiel state (``State.clone``) and RNG (the leak test copies games)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.state, twin.history = self.state.clone(), list(self.history)
        twin._rng = random.Random()
        twin._rng.setstate(self._rng.getstate())
        return twin

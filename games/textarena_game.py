"""TextArena environments as selfplay games: ``textarena:ENV_ID`` or ``textarena:ENV_ID(players=3, max_turns=500)``
(without ``players``: two where the environment accepts two, else the first count it starts with; ``max_turns``, the
turn limit where selfplay ends a game as a draw, 200 by default).

    selfplay check-game "textarena:TicTacToe-v0"
    selfplay play "textarena:KuhnPoker-v0" --agents random random
    selfplay train configs/quickstart.yaml game=textarena:TicTacToe-v0 eval_opponents=[random]

Anywhere a game name goes. Each role ``player_i`` is TextArena's player ``i`` and reads TextArena's own prompts
(every message addressed to it so far, tagged ``[GAME]`` or ``[Player j]``, as TextArena's observation wrappers
show them). An answer must hold a bracketed action (``[4]``, ``[Bet]``, ...); what is legal is TextArena's to
judge: an illegal move is re-prompted by TextArena within its error allowance and then loses, as in TextArena. The
random agent picks among the moves a prompt lists (``Available Moves: '[0]', '[1]'``). TextArena draws its chance
from Python's global ``random``, seeded once per episode; selfplay gives every game its own copy of that state, so
games played side by side stay reproducible. Rewards are TextArena's (wins, draws and losses). Needs the optional
``textarena`` package: ``pip install -e .[textarena]``.
"""

from __future__ import annotations

import importlib.util
import random
import re
from contextlib import contextmanager
from functools import cache
from typing import Any

from selfplay.games.core import Failure, Game, InvalidAction, Outcome, Turn, user
from selfplay.games.optional import optional_package

PREFIX = "textarena:"
_SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\((.*)\))?$")
SPEC_KEYS = ("players", "max_turns")  # what ENV_ID(key=N, ...) may set
MAX_TURNS = 200
_TOKEN = re.compile(r"\[[^\[\]]+\]")
_LISTED = re.compile(r"'(\[[^\[\]']+\])'")


def _textarena():
    return optional_package("textarena", "TextArena", "textarena", "textarena")


@cache
def textarena_game(spec: str) -> type[Game]:
    """The selfplay game class of TextArena's ``spec`` (an environment id, optionally ``(players=N)``)."""
    ta = _textarena()
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(
            f"TextArena game {spec!r}: expected ENV_ID or ENV_ID(players=N, max_turns=N), e.g. TicTacToe-v0"
        )
    env_id = match.group(1)
    params: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (match.group(2) or "").split(","))):
        key, _, value = part.partition("=")
        if key.strip() not in SPEC_KEYS or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(
                f"TextArena game {spec!r}: {part!r} is not a setting; expected "
                f"{' or '.join(f'{k}=N' for k in SPEC_KEYS)} with N >= 1"
            )
        params[key.strip()] = int(value)
    from textarena.envs.registration import ENV_REGISTRY

    if env_id not in ENV_REGISTRY:
        close = [n for n in ENV_REGISTRY if n.lower().startswith(env_id.lower()[:5])][:5]
        raise ValueError(
            f"TextArena has no environment {env_id!r}" + (f"; similar: {', '.join(close)}" if close else "")
        )
    players = params.get("players") or _players(ta, env_id)
    attributes = {
        "name": PREFIX + spec,
        "description": f"TextArena's {env_id}",
        "env_id": env_id,
        "ta": ta,
        "roles": tuple(f"player_{i}" for i in range(players)),
        "zero_sum": False,
        "reward_range": (-1.0, 1.0),
        "outcome_inferred": True,
        "outcome": Outcome("general_sum", win_lose=True),
        "max_turns": params.get("max_turns", MAX_TURNS),
        "options_hint": "TextArena settings go in the name, e.g. textarena:TicTacToe-v0(max_turns=50)",
        "check_seeds": 20,
        "action_format": "your move in square brackets, as the game describes",
    }
    return type(f"TextArena_{re.sub(r'[^0-9a-zA-Z]', '_', spec)}", (TextArenaGame,), attributes)


PLAYER_COUNTS = (2, 1, 3, 4, 5, 6, 8)  # tried in this order when the spec names none


def _players(ta: Any, env_id: str) -> int:
    """The number of players ``env_id`` plays with by default: two where it accepts two, else the first count its
    ``reset`` accepts (1 for puzzles like Sudoku-v0, 3 for ThreePlayerIPD-v0, 4 for Taboo-v0, ...)."""
    outside = random.getstate()
    first_error = None
    try:
        for count in PLAYER_COUNTS:
            try:
                with _no_downloads():
                    ta.make(env_id).reset(num_players=count, seed=0)
                return count
            except AssertionError as exc:  # TextArena asserts on the number of players
                first_error = first_error or exc
            except Exception as exc:  # noqa: BLE001 - an environment that cannot start at all (its own bug, a key)
                hint = (
                    " (NLTK data it needs is not installed, and selfplay downloads nothing at run time: "
                    "python -m nltk.downloader words averaged_perceptron_tagger_eng)"
                    if isinstance(exc, LookupError)
                    else ""
                )
                raise ValueError(f"TextArena's {env_id} cannot start: {_first_line(exc)}{hint}") from None
    finally:
        random.setstate(outside)
    raise ValueError(
        f"TextArena's {env_id} did not start with {', '.join(map(str, PLAYER_COUNTS))} players: "
        f"{_first_line(first_error)}"
    )


@contextmanager
def _no_downloads():
    """TextArena's word games call ``nltk.download`` when they start; selfplay downloads nothing at run time, so
    inside this the call does nothing and a missing corpus fails by name (LookupError) instead of reaching out."""
    if importlib.util.find_spec("nltk") is None:
        yield
        return
    import nltk

    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        yield
    finally:
        nltk.download = download


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (NLTK frames its message in lines of asterisks)."""
    said = [line.strip() for line in str(exc).splitlines() if line.strip(" *")]
    return f"{type(exc).__name__}: {said[0] if said else ''}"


class TextArenaGame(Game):
    """Base of the generated TextArena classes (see the module docstring)."""

    env_id: str = ""
    ta: Any = None

    @contextmanager
    def _own_random(self):
        """Run TextArena with this game's copy of the global ``random`` state."""
        outside = random.getstate()
        random.setstate(self._ta_random)
        try:
            yield
        finally:
            self._ta_random = random.getstate()
            random.setstate(outside)

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        outside = random.getstate()
        random.seed(seed)
        self._ta_random = random.getstate()
        random.setstate(outside)
        with _no_downloads():
            self.env = self.ta.make(self.env_id)
            with self._own_random():
                self.env.reset(num_players=len(self.roles), seed=seed)
        self.final: dict[str, float] | None = None
        self._finish_if_done()

    @property
    def _state(self):
        return self.env.state

    def _finish_if_done(self) -> None:
        if self.final is None and self._state.done:
            with self._own_random():
                closed = self.env.close()
            rewards = closed[0] if isinstance(closed, tuple) else closed
            self.final = {r: float(rewards.get(i, 0.0)) for i, r in enumerate(self.roles)}

    def turn(self) -> Turn | None:
        if self.final is not None:
            return None
        return Turn(self.roles[self._state.current_player_id])

    def observe(self, role: str) -> list:
        seat = self.roles.index(role)
        names = getattr(self._state, "role_mapping", {}) or {}
        lines = []
        for sender, message, *_ in self._state.observations.get(seat, []):
            tag = "GAME" if sender == self.ta.GAME_ID else names.get(sender, f"Player {sender}")
            lines.append(f"[{tag}] {message}")
        return [user("\n".join(lines))]

    def parse(self, role: str, text: str) -> str:
        if not _TOKEN.search(text):
            raise InvalidAction(Failure.PARSE_ERROR, f"expected {self.action_format}, got {text[:60]!r}")
        return text

    def step(self, role: str, actions: list) -> None:
        with self._own_random():
            self.env.step(actions[0])
        self._finish_if_done()

    def rewards(self) -> dict[str, float]:
        return dict(self.final)

    def random_action(self, role: str, rng: random.Random) -> str:
        """A move the prompt lists as available, else a bracketed token it mentions, else ``[0]``."""
        text = self.observe(role)[0]["content"]
        tail = text[text.rfind("[GAME]") :] if "[GAME]" in text else text
        listed = _LISTED.findall(tail) or _LISTED.findall(text) or _TOKEN.findall(tail)
        return rng.choice(listed) if listed else "[0]"

    def info(self) -> dict:
        return {"turns": int(getattr(self._state, "turn", 0))}

"""Small games and agents for tests: a samples=K game, broken games for the checker, scripted fakes."""

from __future__ import annotations

import random
from dataclasses import dataclass

from selfplay.agents.base import Completion, Request
from selfplay.games.core import Failure, Game, InvalidAction, InvalidPolicy, Turn, system, user
from selfplay.games.tictactoe import TicTacToe


@dataclass
class GuessGame(Game):
    """A setter picks a digit 0-3 (hidden); the guesser answers K times; each correct guess scores 1."""

    name = "guess"
    description = "test game: K guesses of a hidden digit"
    roles = ("setter", "guesser")
    zero_sum = False
    reward_range = (0.0, 1.0)
    max_turns = 2
    k: int = 4

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.secret: int | None = None
        self.guesses: list[int | None] = []

    def turn(self) -> Turn | None:
        if self.secret is None:
            return Turn("setter")
        return None if self.guesses else Turn("guesser", samples=self.k)

    def observe(self, role: str) -> list:
        shown = f"The secret is {self.secret}" if role == "setter" and self.secret is not None else "Guess 0-3"
        return [system("guessing game"), user(shown)]

    def parse(self, role: str, text: str) -> int:
        if not text.strip().isdigit() or int(text) > 3:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected a digit 0-3, got {text!r}")
        return int(text)

    def step(self, role: str, actions: list) -> list[float] | None:
        if role == "setter":
            self.secret = actions[0]
            return None
        self.guesses = actions
        return [float(a == self.secret) for a in actions]

    def rewards(self) -> dict[str, float]:
        hits = [g == self.secret for g in self.guesses]
        return {"setter": 1.0 - sum(hits) / len(hits), "guesser": sum(hits) / len(hits)}

    def legal_actions(self, role: str) -> list[str]:
        return ["0", "1", "2", "3"]

    def secrets(self, role: str) -> list[str]:
        return [f"The secret is {self.secret}"] if role == "setter" and self.secret is not None else []


class FreeGuess(GuessGame):
    """GuessGame answered in free text: no legal actions listed, no random_action."""

    name = "free_guess"

    def legal_actions(self, role: str) -> None:
        return None


@dataclass
class OptionalChoices(GuessGame):
    """GuessGame that lists its legal actions only with ``choices=True`` (free text otherwise)."""

    name = "optional_choices"
    choices: bool = False

    def legal_actions(self, role: str) -> list[str] | None:
        return super().legal_actions(role) if self.choices else None


class ScriptAgent:
    """Answers from a fixed list of texts, in order, recording every batch it was given."""

    def __init__(self, texts: list[str], name: str = "script"):
        self.name, self.texts, self.batches = name, list(texts), []

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        self.batches.append(requests)
        return [
            [Completion(self.texts.pop(0) if self.texts else "nonsense") for _ in range(r.samples)] for r in requests
        ]


class CrashingAgent:
    """Raises on every call."""

    name = "crasher"

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        raise RuntimeError("model server went away")


# -- deliberately broken games for the conformance checker ------------------------------------------
@dataclass
class NondeterministicTTT(TicTacToe):
    name = "broken_nondeterministic"

    def observe(self, role: str) -> list:
        return [*super().observe(role), user(f"noise {random.random()}")]  # global RNG: not seeded


@dataclass
class LeakyTTT(TicTacToe):
    name = "broken_leaky"

    def secrets(self, role: str) -> list[str]:
        return [f"secret of {role}"]

    def observe(self, role: str) -> list:
        other = self.roles[1 - self.roles.index(role)]
        return [*super().observe(role), user(f"psst: secret of {other}")]


@dataclass
class EndlessTTT(TicTacToe):
    name = "broken_endless"
    max_turns = 20

    def turn(self) -> Turn | None:
        return Turn(self.roles[self.moves % 2])

    def legal_actions(self, role: str) -> list[str]:
        return ["[1]"]

    def parse(self, role: str, text: str) -> int:
        return 0

    def step(self, role: str, actions: list) -> None:
        self.moves += 1


@dataclass
class GenerousTTT(TicTacToe):
    name = "broken_reward_range"

    def rewards(self) -> dict[str, float]:
        return {r: 5.0 * v for r, v in super().rewards().items()}


@dataclass
class GullibleTTT(TicTacToe):
    name = "broken_parse"

    def parse(self, role: str, text: str) -> int:
        return self.board.index(".") if "%" in text else super().parse(role, text)  # garbage passes as a move


@dataclass
class RetryTTT(TicTacToe):
    """TicTacToe with a configurable invalid-action policy."""

    name = "tictactoe_retry"
    invalid_policy = InvalidPolicy(retries=1, fallback="forfeit")


@dataclass
class ExplodingTTT(TicTacToe):
    """Raises inside step on seed 3 only."""

    name = "exploding"

    def step(self, role: str, actions: list) -> None:
        if self._seed == 3:
            raise RuntimeError("boom in step")
        super().step(role, actions)

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._seed = seed


@dataclass
class ExpertCrashTTT(TicTacToe):
    """The expert agent raises once the board has four marks (an agent crashing mid-game)."""

    name = "expert_crash"

    def expert_action(self, role: str, rng: random.Random) -> str:
        if self.moves >= 4:
            raise RuntimeError("expert lost its marbles")
        return super().expert_action(role, rng)


from selfplay.games.teacher_student import TeacherStudent  # noqa: E402


@dataclass
class OneTaskTeacher(TeacherStudent):
    """A teacher whose expert writes the same exercise every time: a collapsed proposer, for the monitor's test."""

    name = "one_task_teacher"

    def expert_action(self, role, rng):
        return "ANSWER: 7" if role == "student" else "SKILL: add\nQUESTION: 3 + 4\nANSWER: 7"

"""Arithmetic with graded difficulty: a task source (skill x digits) and a one-turn quiz game built on it.

Skills: ``add`` (carries), ``sub`` (borrows; never negative), ``mul`` (by a one-digit number), ``paren``
((a + b) * c). ``digits`` sets the size of the numbers. ``answer_format=slot`` is the format a small model can meet: the
assistant turn is pre-filled with "37 + 45 = " (``answer_slot``), the model writes the number, and every integer the
skill can produce is listed as a legal action (at most ``MAX_LISTED``), so constrained decoding spells only a number
(digits, then the end). The quiz asks the solver K times (a ``samples=K`` turn,
the group GRPO and difficulty filtering need); each answer scores 1 when exactly right. Curricula choose the
category through the game options (``curriculum_option=digits``, or ``skill``); a teacher/student game can draw
its held-out problems from ``make_task``.

Held-out problems: ``split=train`` never draws a problem that ``is_heldout`` reserves (a fixed fifth of every kind,
chosen by a hash of its text), ``split=heldout`` draws only those, ``split=all`` (the default) draws anything. A
training run on ``train`` problems measured on ``heldout`` ones is measured on problems it never saw, not only on
seeds it never drew (two-digit addition has just 8,100 problems: fresh seeds would repeat trained ones).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import ClassVar

from selfplay.games.core import Failure, Game, InvalidAction, Outcome, Turn, system, user
from selfplay.games.registry import register

SKILLS = ("add", "sub", "mul", "paren")
ANSWERS = ("line", "slot")
SPLITS = ("all", "train", "heldout")
HELDOUT_SHARE = 5  # one problem in this many is reserved for held-out evaluation
MAX_LISTED = 2000  # answer=slot lists every possible result as a legal action up to this many
_ANSWER = re.compile(r"ANSWER:\s*(-?\d+)")
_NUMBER = re.compile(r"\s*(-?\d+)")


def answer_bounds(skill: str, digits: int) -> tuple[int, int]:
    """The smallest and largest result ``make_task`` can give for ``skill`` and ``digits``."""
    low, high = 10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1
    return {
        "add": (2 * low, 2 * high),
        "sub": (0, high - low),
        "mul": (2 * low, 9 * high),
        "paren": (4 * low, 18 * high),
    }[skill]


def answer_values(skill: str, digits: int) -> range | None:
    """Every result ``make_task`` can give, when there are at most ``MAX_LISTED`` of them (listed as legal actions,
    so constrained decoding writes only a number); None when there are more."""
    low, high = answer_bounds(skill, digits)
    return range(low, high + 1) if high - low < MAX_LISTED else None


def is_heldout(question: str) -> bool:
    """Whether a problem is reserved for held-out evaluation: one in ``HELDOUT_SHARE`` by a hash of its text, the
    same on every machine."""
    return int.from_bytes(hashlib.sha256(question.encode()).digest()[:4], "little") % HELDOUT_SHARE == 0


def slot_number(text: str) -> int:
    """The number a slotted answer starts with ("82" after "37 + 45 = "); InvalidAction when it starts otherwise."""
    match = _NUMBER.match(text)
    if not match:
        raise InvalidAction(Failure.PARSE_ERROR, "expected the number")
    return int(match.group(1))


def slot_prompt(question: str) -> list:
    """What a solver reads in the slot format (the quiz, a creator's or a teacher's problem alike): the same words
    everywhere, so a held-out quiz measures the skill training practised."""
    return [system("Solve the problem. Answer with the number."), user(f"Compute {question}.")]


def make_task(skill: str, digits: int, rng: random.Random, split: str = "all") -> tuple[str, int]:
    """(question, answer) of one problem of ``skill`` with ``digits``-digit numbers, from ``split`` (all | train |
    heldout: redrawn until the problem is on that side of ``is_heldout``)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
    while True:
        question, answer = _draw(skill, digits, rng)
        if split == "all" or is_heldout(question) == (split == "heldout"):
            return question, answer


def _draw(skill: str, digits: int, rng: random.Random) -> tuple[str, int]:
    low, high = 10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1
    a, b = rng.randint(low, high), rng.randint(low, high)
    if skill == "add":
        return f"{a} + {b}", a + b
    if skill == "sub":
        a, b = max(a, b), min(a, b)
        return f"{a} - {b}", a - b
    if skill == "mul":
        c = rng.randint(2, 9)
        return f"{a} * {c}", a * c
    if skill == "paren":
        c = rng.randint(2, 9)
        return f"({a} + {b}) * {c}", (a + b) * c
    raise ValueError(f"unknown skill {skill!r}: expected one of {', '.join(SKILLS)}")


def distractors(answer: int, choices: int, rng: random.Random) -> list[int]:
    """``choices`` shuffled candidates: the answer and near misses (off by 1, 2 or 10, as slips are), never negative."""
    near = [answer + d for d in (-1, 1, -2, 2, -10, 10, -11, 11, 20) if answer + d >= 0]
    candidates = [answer, *rng.sample(near, choices - 1)]
    rng.shuffle(candidates)
    return candidates


@register
@dataclass
class Arithmetic(Game):
    name = "arithmetic"
    hidden_information = False  # one role; the answer follows from the question it sees
    description = "One-turn arithmetic quiz by skill and digits, K answers per question; 1 per exact answer."
    roles = ("solver",)
    zero_sum = False
    outcome = Outcome("general_sum", win_lose=False)  # the fraction of K answers that are right: an amount
    reward_range = (0.0, 1.0)
    max_turns = 1
    action_format: ClassVar[str] = "one line 'ANSWER: <integer>'"
    skill: str = "add"
    digits: int = 1
    samples: int = 4
    choices: int = 0  # > 0: multiple choice among this many candidates (legal actions, for constrained decoding)
    answer_format: str = "line"  # line: 'ANSWER: <integer>' | slot: the number alone after a pre-filled "37 + 45 = "
    split: str = "all"  # all | train (never a held-out problem) | heldout (only those): see is_heldout

    def __post_init__(self) -> None:
        if self.skill not in SKILLS:
            raise ValueError(f"arithmetic skill={self.skill!r}: expected one of {', '.join(SKILLS)}")
        if not 1 <= self.digits <= 9 or self.samples < 1:
            raise ValueError(
                f"arithmetic digits={self.digits}, samples={self.samples}: expected 1-9 digits, samples >= 1"
            )
        if not 0 <= self.choices <= 6 or self.choices == 1:
            raise ValueError(f"arithmetic choices={self.choices}: expected 0 (free answer) or 2-6 candidates")
        if self.answer_format not in ANSWERS:
            raise ValueError(f"arithmetic answer_format={self.answer_format!r}: expected one of {', '.join(ANSWERS)}")
        if self.split not in SPLITS:
            raise ValueError(f"arithmetic split={self.split!r}: expected one of {', '.join(SPLITS)}")

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.question, self.answer = make_task(self.skill, self.digits, self.rng, self.split)
        self.candidates = distractors(self.answer, self.choices, self.rng) if self.choices else []
        self.scores: list[float] | None = None

    def turn(self) -> Turn | None:
        return Turn("solver", samples=self.samples) if self.scores is None else None

    @property
    def slotted(self) -> bool:
        return self.answer_format == "slot"

    def observe(self, role: str) -> list:
        if self.slotted and not self.candidates:
            return slot_prompt(self.question)
        listed = f" Choices: {', '.join(map(str, self.candidates))}." if self.candidates else ""
        how = "the number" if self.slotted else self.action_format
        return [system(f"Solve the problem. Answer with {how}."), user(f"Compute {self.question}.{listed}")]

    def answer_slot(self, role: str) -> str | None:
        return f"{self.question} = " if self.slotted else None

    def legal_actions(self, role: str) -> list[str] | None:
        if self.slotted:
            values = self.candidates or answer_values(self.skill, self.digits)
            return [str(v) for v in values] if values else None
        return [f"ANSWER: {c}" for c in self.candidates] or None

    def parse(self, role: str, text: str) -> int:
        match = (_NUMBER.match(text) if self.slotted else None) or _ANSWER.search(text)
        if not match:
            raise InvalidAction(
                Failure.PARSE_ERROR, "expected the number" if self.slotted else f"expected {self.action_format}"
            )
        return int(match.group(1))

    def step(self, role: str, actions: list) -> list[float]:
        self.scores = [float(a is not None and a == self.answer) for a in actions]
        return self.scores

    def rewards(self) -> dict[str, float]:
        return {"solver": sum(self.scores) / len(self.scores)}

    def random_action(self, role: str, rng: random.Random) -> str:
        value = rng.choice(self.candidates) if self.candidates else self.answer + rng.choice([-10, -1, 0, 0, 1, 10])
        if self.slotted:
            low, high = answer_bounds(self.skill, self.digits)
            return str(min(high, max(low, value)))
        return f"ANSWER: {value}"

    def expert_action(self, role: str, rng: random.Random) -> str:
        return str(self.answer) if self.slotted else f"ANSWER: {self.answer}"

    def info(self) -> dict:
        return {"skill": self.skill, "digits": self.digits, "question": self.question, "answer": self.answer}

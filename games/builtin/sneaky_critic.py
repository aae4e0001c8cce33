"""Sneaky generator vs critic (SPC: "Evolving Self-Play Critic via Adversarial Games", Chen et al. 2025).

A task is a chain of arithmetic steps, each exactly checkable ("Step 2: 49 * 3 = 147", operating on the previous
result). The generator sees the correct solution and a step number k (from the seeded RNG) and rewrites step k
to be wrong but plausible. The checker confirms the new step is wrong (bad arithmetic, or an operand that is not
the previous result); if it is in fact correct, the generator loses. The critic sees the solution with step k
replaced and names the wrong step. Zero-sum: +1 to whoever wins, -1 to the other.

With ``formats=structured`` (what a small model can meet from its first step) the generator chooses the step and its
wrong result among the legal actions ("STEP 3: 150": step 3's result replaced by 150, off by 1, 2 or 10 from the
right one), so every answer is a valid corruption; a uniformly random choice is the random-corruption ablation.

Departure from SPC: steps are arithmetic, checked exactly, not natural-language reasoning judged by a model; the
critic names the first wrong step rather than labelling every step. The expert generator makes a small
plausible slip (off by one or ten, a carried digit); the expert critic checks every step, so the critic's win
rate against the expert generator on evaluation seeds is its held-out accuracy.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from selfplay.games.core import Failure, Game, InvalidAction, Outcome, Turn, system, user
from selfplay.games.registry import register

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_STEP = re.compile(r"(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)")
_PICK = re.compile(r"\[\s*step\s+(\d+)\s*\]", re.IGNORECASE)
_CHOICE = re.compile(r"STEP\s+(\d+):\s*(-?\d+)")
SLIPS = (-10, -2, -1, 1, 2, 10)  # how far a structured generator's wrong result is from the right one
FORMATS = ("free", "structured")


def make_chain(rng: random.Random, steps: int) -> list[tuple[int, str, int, int]]:
    """A correct chain of (a, op, b, result), each step starting from the previous result."""
    value, chain = rng.randint(10, 99), []
    for _ in range(steps):
        op = rng.choice("+-*")
        b = rng.randint(2, 9) if op == "*" else rng.randint(10, 99)
        chain.append((value, op, b, OPS[op](value, b)))
        value = chain[-1][3]
    return chain


def step_is_correct(step: tuple[int, str, int, int], previous: int | None) -> bool:
    """Exact check: the arithmetic holds and the step starts from the previous result."""
    a, op, b, c = step
    return OPS[op](a, b) == c and (previous is None or a == previous)


def render(step: tuple[int, str, int, int]) -> str:
    a, op, b, c = step
    return f"{a} {op} {b} = {c}"


@register
@dataclass
class SneakyCritic(Game):
    name = "sneaky_critic"
    description = "SPC: a sneaky generator corrupts one arithmetic step, a critic must find it; zero-sum +1/-1."
    roles = ("generator", "critic")
    max_turns = 2
    steps: int = 4  # length of each solution chain
    formats: str = "free"  # free: 'STEP: a op b = c' | structured: 'STEP k: v' chosen among the legal slips

    def __post_init__(self) -> None:
        if not 2 <= self.steps <= 12:
            raise ValueError(f"sneaky_critic steps={self.steps}: expected 2 to 12")
        if self.formats not in FORMATS:
            raise ValueError(f"sneaky_critic formats={self.formats!r}: expected one of {', '.join(FORMATS)}")

    @property
    def action_format(self) -> str:  # type: ignore[override]
        return "generator: one line 'STEP: a op b = c'; critic: [step N] naming the wrong step"

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.chain = make_chain(self.rng, self.steps)
        self.target = self.rng.randrange(self.steps)  # the step the generator rewrites (0-based)
        self.shown: list[tuple[int, str, int, int]] | None = None
        self.sneaky_but_correct = False
        self.pick: int | None = None

    def turn(self) -> Turn | None:
        if self.shown is None:
            return Turn("generator")
        return Turn("critic") if self.pick is None and not self.sneaky_but_correct else None

    @property
    def structured(self) -> bool:
        return self.formats == "structured"

    def observe(self, role: str) -> list:
        if role == "generator" and self.structured:
            lines = "\n".join(f"Step {i + 1}: {render(s)}" for i, s in enumerate(self.chain))
            return [
                system(
                    "You are the sneaky generator. Choose one step of this correct solution and a wrong result "
                    "for it that a checker would miss. Answer with one of the choices, like 'STEP 2: 150'."
                ),
                user(f"Solution:\n{lines}"),
            ]
        if role == "generator":
            lines = "\n".join(f"Step {i + 1}: {render(s)}" for i, s in enumerate(self.chain))
            return [
                system(
                    "You are the sneaky generator. Rewrite one step of a correct solution so that it is "
                    "wrong but looks right. Answer with one line 'STEP: a op b = c'."
                ),
                user(f"Solution:\n{lines}\n\nRewrite step {self.target + 1}."),
            ]
        lines = "\n".join(f"Step {i + 1}: {render(s)}" for i, s in enumerate(self.shown or []))
        return [
            system(
                "You are the critic. Exactly one step of this solution is wrong (each step starts from "
                "the previous result). Answer with [step N]."
            ),
            user(f"Solution:\n{lines}"),
        ]

    def parse(self, role: str, text: str):
        if role == "generator" and self.structured:
            match = _CHOICE.search(text)
            legal = self.legal_actions(role)
            if not match or f"STEP {match.group(1)}: {match.group(2)}" not in legal:
                raise InvalidAction(Failure.PARSE_ERROR, f"expected one of the choices, like {legal[0]!r}")
            return int(match.group(1)) - 1, int(match.group(2))
        if role == "generator":
            match = _STEP.search(text)
            if not match:
                raise InvalidAction(Failure.PARSE_ERROR, "expected 'STEP: a op b = c' with integers and + - *")
            return int(match.group(1)), match.group(2), int(match.group(3)), int(match.group(4))
        match = _PICK.search(text)
        if not match or not 1 <= int(match.group(1)) <= self.steps:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected [step N] with N from 1 to {self.steps}")
        return int(match.group(1)) - 1

    def step(self, role: str, actions: list) -> None:
        if role == "generator" and self.structured:  # the generator chose the step: it becomes the target
            self.target, wrong = actions[0]
            a, op, b, _ = self.chain[self.target]
            actions = [(a, op, b, wrong)]
        if role == "generator":
            self.shown = list(self.chain)
            self.shown[self.target] = actions[0]
            previous = self.chain[self.target - 1][3] if self.target else None
            self.sneaky_but_correct = step_is_correct(actions[0], previous)  # the checker: it must be wrong
        else:
            self.pick = actions[0]

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The critic is never told which step was rewritten; before the rewrite it sees no solution at all."""
        if role != "critic":
            return  # the generator sees the correct chain and its target: nothing is hidden from it
        if self.shown is None:
            self.chain = make_chain(rng, self.steps)
        self.target = rng.randrange(self.steps)

    def rewards(self) -> dict[str, float]:
        critic_wins = self.sneaky_but_correct or self.pick == self.target
        return {"generator": -1.0 if critic_wins else 1.0, "critic": 1.0 if critic_wins else -1.0}

    def legal_actions(self, role: str) -> list[str] | None:
        if role == "critic":
            return [f"[step {i + 1}]" for i in range(self.steps)]
        if self.structured:
            return [f"STEP {i + 1}: {s[3] + d}" for i, s in enumerate(self.chain) for d in SLIPS]
        return None

    def random_action(self, role: str, rng: random.Random) -> str:
        if role == "critic":
            return rng.choice(self.legal_actions(role))
        if self.structured:
            return rng.choice(self.legal_actions(role))
        a, op, b, c = self.chain[self.target]
        return f"STEP: {a} {op} {b} = {c + rng.choice([-10, -1, 0, 1, 10])}"  # sometimes not wrong at all

    def expert_action(self, role: str, rng: random.Random) -> str:
        if role == "critic":
            previous = None
            for i, s in enumerate(self.shown):
                if not step_is_correct(s, previous):
                    return f"[step {i + 1}]"
                previous = s[3]
            return "[step 1]"
        a, op, b, c = self.chain[self.target]
        if self.structured:
            return f"STEP {self.target + 1}: {c + rng.choice(SLIPS)}"
        return f"STEP: {a} {op} {b} = {c + rng.choice([-10, -2, -1, 1, 2, 10])}"

    def info(self) -> dict:
        return {
            "target_step": self.target + 1,
            "caught": self.pick == self.target,
            "sneaky_step_was_correct": self.sneaky_but_correct,
        }


@register
@dataclass
class CriticQuiz(SneakyCritic):
    """The critic's held-out quiz: the game itself slips one step of each seeded chain (off by 1, 2 or 10, the expert
    generator's slips), and the critic alone names it; 1 when right. The critic reads word for word what it reads in
    ``sneaky_critic``, so ``evaluation.quiz_game=critic_quiz`` measures the skill the game trains."""

    name = "critic_quiz"
    description = "Name the one wrong step of an arithmetic chain (the sneaky critic's held-out quiz); 1 when right."
    roles = ("critic",)
    zero_sum = False
    outcome = Outcome("general_sum", win_lose=False)
    reward_range = (0.0, 1.0)
    max_turns = 1
    hidden_information = False  # one role: what it is not shown (the target) is the answer, not another's secret

    def reset(self, seed: int) -> None:
        super().reset(seed)
        a, op, b, c = self.chain[self.target]
        self.shown = list(self.chain)
        self.shown[self.target] = (a, op, b, c + self.rng.choice(SLIPS))

    def turn(self) -> Turn | None:
        return Turn("critic") if self.pick is None else None

    def rewards(self) -> dict[str, float]:
        return {"critic": float(self.pick == self.target)}

"""Creator / solver: one role writes a verifiable task, the other answers it K times; code runs in the sandbox.

Task kinds (option ``task``):
- ``puzzle``: a programming puzzle as in "Language Models Can Teach Themselves to Program Better" (Haluptzok
  et al. 2023): the creator writes ``def f(x): ... return <bool>`` and a ``SOLUTION:`` with f(SOLUTION) True
  (so every accepted puzzle is solvable); the solver answers an x, correct when f(x) is True.
- ``output`` / ``input``: Absolute Zero's deduction and abduction (Zhao et al. 2025): the creator writes a
  program ``def f(x)`` and an ``INPUT:``; the solver predicts f(INPUT) (``output``), or finds any x with
  f(x) == f(INPUT) (``input``).
- ``arithmetic``: the structured format a 135M model meets from its first step: the creator chooses a problem
  among the legal actions ("37 + 45": two ``digits``-digit operands, + or -, never negative), constrained decoding
  spells only those; the solver answers in a slot ("37 + 45 = ", the number alone), reading word for word the
  arithmetic quiz's prompt. The creator is never offered a held-out problem (``arithmetic.is_heldout``), so the
  quiz's ``split=heldout`` problems measure the solver on problems no creator wrote. A uniformly random creator
  (``random``) is the ablation: uniform over the task grammar. No code runs.

Rewards: the solver's sample is 1 when verified correct, else 0. The creator's is the learnability of its task
from the K outcomes, p = mean success: Absolute Zero's 1 - p when 0 < p < 1 else 0 (``creator_reward=azr``), or
R-Zero's 1 - 2|p - 1/2| (``rzero``). A malformed task (unparsable, crashing, non-deterministic, or a puzzle whose
SOLUTION fails) scores ``malformed_penalty`` and ends the game. ``repeat_penalty`` is subtracted when the task
repeats one of the last ``repeat_window`` tasks of this process. With ``pseudo_label=true`` (``output`` kind) the
reference is the majority answer of the K samples instead of f(INPUT) (SeRL, TTRL): recorded in the episode's
``meta.info`` as such, since a wrong majority rewards a shared mistake.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import random
import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, ClassVar

from selfplay.games.arithmetic import is_heldout, slot_number, slot_prompt
from selfplay.games.core import Failure, InvalidAction, InvalidPolicy, WriterAnswerer, system, user
from selfplay.games.registry import register
from selfplay.games.sandbox import Limits, returned, run_calls, run_code, run_many

TASKS = ("puzzle", "output", "input", "arithmetic")
CREATOR_REWARDS = ("azr", "rzero")
_CODE = re.compile(r"```(?:python)?\s*\n(.*?)```", re.DOTALL)
_PROBLEM = re.compile(r"\s*(\d+) ([+-]) (\d+)\s*$")
_FIELD = re.compile(r"^(SOLUTION|INPUT|ANSWER):\s*(.+)$", re.MULTILINE)
LIMITS = Limits(timeout_s=2.0, cpu_s=1, memory_mb=256, output_bytes=8192)

# A small bank of tasks: the expert creator's repertoire and the random creator's raw material.
BANK = [
    ("def f(x):\n    return x * x == 49 and x < 0", "-7"),
    ("def f(x):\n    return isinstance(x, str) and x[::-1] == x and len(x) == 5", "'level'"),
    ("def f(x):\n    return sum(x) == 10 and len(x) == 3 and all(v > 2 for v in x)", "[3, 3, 4]"),
    ("def f(x):\n    return x % 7 == 3 and x % 5 == 1 and 0 < x < 100", "66"),
    ("def f(x):\n    return sorted(x) == [1, 2, 3] and x[0] == 3", "[3, 1, 2]"),
    ("def f(x):\n    return x.upper() == 'ABC' and x != 'ABC'", "'abc'"),
]


@functools.cache
def creatable(digits: int) -> tuple[str, ...]:
    """The arithmetic kind's grammar: "a + b" and "a - b" (a >= b) with ``digits``-digit operands, held-out problems
    (``arithmetic.is_heldout``) left out."""
    low, high = (10, 99) if digits == 2 else (0, 9)
    return tuple(
        q
        for a in range(low, high + 1)
        for op in "+-"
        for b in range(low, high + 1)
        if (op == "+" or a >= b) and not is_heldout(q := f"{a} {op} {b}")
    )


@functools.cache
def creatable_set(digits: int) -> frozenset[str]:
    return frozenset(creatable(digits))


def eval_problem(question: str) -> int:
    """The value of an arithmetic-kind problem, "37 + 45" or "45 - 37"."""
    a, op, b = question.split()
    return int(a) + int(b) if op == "+" else int(a) - int(b)


def learnability(p: float, kind: str = "azr") -> float:
    """Creator reward from the solver's success rate p: AZR 1 - p on (0, 1) else 0; R-Zero 1 - 2|p - 1/2|."""
    if kind == "azr":
        return 1.0 - p if 0.0 < p < 1.0 else 0.0
    return 1.0 - 2.0 * abs(p - 0.5)


def literal(text: str) -> Any:
    """A Python literal, or InvalidAction."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise InvalidAction(
            Failure.PARSE_ERROR, f"{text.strip()[:60]!r} is not a Python literal ({type(exc).__name__})"
        ) from None


@register
@dataclass
class CreatorSolver(WriterAnswerer):
    name = "creator_solver"
    description = "Creator writes a verifiable Python task (puzzle / AZR triple), solver answers K times; sandboxed."
    roles = ("creator", "solver")
    zero_sum = False
    reward_range = (-1.0, 1.0)
    max_turns = 2
    check_seeds: ClassVar[int] = 12
    task_fields: ClassVar[tuple[str, ...]] = ("task", "code", "given", "question")  # what the creator wrote
    # (the collapse monitor's fingerprint)
    invalid_policy = InvalidPolicy(retries=0, fallback="forfeit", penalty=-1.0)
    task: str = "puzzle"  # puzzle | output | input
    samples: int = 4  # the solver's K answers
    creator_reward: str = "azr"  # azr | rzero
    malformed_penalty: float = -1.0
    repeat_penalty: float = 0.0  # subtracted from the creator's reward for a recently seen task (0: off)
    repeat_window: int = 64
    pseudo_label: bool = False  # output kind: majority vote of the K answers as the label
    digits: int = 2  # arithmetic kind: the operands' size (1 or 2)

    recent: ClassVar[deque] = deque(maxlen=256)  # task fingerprints of this process, for repeat_penalty

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"creator_solver task={self.task!r}: expected one of {', '.join(TASKS)}")
        if self.creator_reward not in CREATOR_REWARDS:
            raise ValueError(f"creator_solver creator_reward={self.creator_reward!r}: expected azr or rzero")
        if self.samples < 1:
            raise ValueError(f"creator_solver samples={self.samples}: expected >= 1")
        if self.digits not in (1, 2):
            raise ValueError(
                f"creator_solver digits={self.digits}: expected 1 or 2 (the arithmetic kind lists every "
                "problem as a legal action)"
            )
        if self.arithmetic:
            self.hidden_information = False  # the solver's answer follows from the question it reads; nothing hidden
        if self.pseudo_label and self.task != "output":
            raise ValueError("creator_solver pseudo_label=true needs task=output (a vote over predicted outputs)")

    @property
    def action_format(self) -> str:  # type: ignore[override]
        if self.arithmetic:
            return f"creator: one of the listed problems, like '{self._example}'; solver: the number"
        field = "SOLUTION" if self.task == "puzzle" else "INPUT"
        return (
            f"creator: a ```python block defining f(x), then a line '{field}: <python literal>'; "
            "solver: a line 'ANSWER: <python literal>'"
        )

    # -- flow ----------------------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.start_task()
        self.code: str | None = None
        self.given: Any = None  # the creator's SOLUTION or INPUT
        self.reference: Any = None  # f(INPUT), the expected output
        self.label_source = "execution"
        self.question: str | None = None  # the arithmetic kind's problem

    @property
    def task_ready(self) -> bool:
        return self.code is not None or self.question is not None

    # -- the arithmetic kind: chosen problems, a slotted answer ----------------------------------------------
    @property
    def arithmetic(self) -> bool:
        return self.task == "arithmetic"

    @property
    def _example(self) -> str:
        return "37 + 45" if self.digits == 2 else "3 + 5"

    def legal_actions(self, role: str) -> list[str] | None:
        if not self.arithmetic:
            return None
        if role == "creator":
            return list(creatable(self.digits))
        if self.question is None:
            return None
        top = 2 * (10**self.digits - 1)
        return [str(v) for v in range(top + 1)] if "+" in self.question else [str(v) for v in range(top // 2 + 1)]

    def answer_slot(self, role: str) -> str | None:
        return f"{self.question} = " if self.arithmetic and role == "solver" and self.question else None

    def _parse_arithmetic(self, role: str, text: str) -> Any:
        if role == "solver":
            return slot_number(text)
        match = _PROBLEM.match(text)
        if not match or match.group(0).strip() not in creatable_set(self.digits):
            raise InvalidAction(
                Failure.PARSE_ERROR, f"expected one of the listed problems, like '{self._example}', got {text[:40]!r}"
            )
        return match.group(0).strip()

    def observe(self, role: str) -> list:
        if self.arithmetic and role == "solver":
            return slot_prompt(self.question or "")
        if self.arithmetic:
            return [
                system(
                    "You create arithmetic problems for a solver. Good problems are solved sometimes, not "
                    f"always and not never. Answer with one problem: two {self.digits}-digit numbers and + or "
                    f"-, like '{self._example}'."
                ),
                user("Write a problem."),
            ]
        if role == "creator":
            goal = {
                "puzzle": "a puzzle: f(x) returns True for some x that is hard but possible to find. "
                "Give one such x as SOLUTION.",
                "output": "a program f(x) and an INPUT; the solver will predict f(INPUT).",
                "input": "a program f(x) and an INPUT; the solver will find an x with f(x) == f(INPUT).",
            }[self.task]
            return [
                system(
                    "You create tasks for a solver. Good tasks are solved sometimes, not always and not "
                    f"never. Answer with {self.action_format}."
                ),
                user(f"Write {goal}"),
            ]
        ask = {
            "puzzle": "Find x such that f(x) returns True.",
            "output": f"What does f({self.given!r}) return?",
            "input": f"Find x such that f(x) == {self.reference!r}.",
        }[self.task]
        return [
            system("You solve programming tasks. Answer with one line 'ANSWER: <python literal>'."),
            user(f"```python\n{self.code or ''}\n```\n{ask}"),
        ]

    def parse(self, role: str, text: str) -> Any:
        if self.arithmetic:
            return self._parse_arithmetic(role, text)
        fields = {k: v for k, v in _FIELD.findall(text)}
        if role == "solver":
            if "ANSWER" not in fields:
                raise InvalidAction(Failure.PARSE_ERROR, "expected a line 'ANSWER: <python literal>'")
            return literal(fields["ANSWER"])
        code = _CODE.search(text)
        field = "SOLUTION" if self.task == "puzzle" else "INPUT"
        if not code or field not in fields:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected a ```python block and a line '{field}: ...'")
        return code.group(1).strip(), fields[field]

    def step(self, role: str, actions: list) -> list[float] | None:
        if role == "creator":
            if actions[0] is None:
                self._reject("no task")
            elif self.arithmetic:
                self.question = actions[0]
                self.reference = eval_problem(self.question)
                self._remember(self.question)
            else:
                self._accept_task(*actions[0])
            return None
        self.outcomes = self._verify(actions)
        return self.outcomes

    def rewards(self) -> dict[str, float]:
        if self.malformed is not None:
            return self.forfeit_rewards("creator")
        p = self.success_rate()
        creator = learnability(p, self.creator_reward) - (self.repeat_penalty if self._repeated else 0.0)
        return {"creator": max(self.reward_range[0], creator), "solver": p}

    def info(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "code": self.code,
            "given": repr(self.given),
            "question": self.question,
            "malformed": self.malformed,
            "reference": repr(self.reference),
            "label_source": self.label_source,
            "solve_rate": self.success_rate() if self.outcomes else None,
        }

    # -- scripted agents ----------------------------------------------------------------------------------
    def random_action(self, role: str, rng: random.Random) -> str:
        if self.arithmetic:  # the creator uniform over the grammar (the ablation); a solver near the answer
            if role == "creator":
                return rng.choice(creatable(self.digits))
            return str(max(0, self.reference + rng.choice([-10, -1, 0, 0, 1, 10])))
        if role == "creator":
            code, solution = rng.choice(BANK)
            return self._task_text(code, solution if rng.random() < 0.8 else "undefined_name")  # sometimes malformed
        return f"ANSWER: {rng.choice(['0', '1', '-7', '66', repr('abc'), '[1, 2, 3]', '[3, 1, 2]', repr('level')])}"

    def expert_action(self, role: str, rng: random.Random) -> str:
        if self.arithmetic:  # the solver computes; the creator knows no better than the grammar
            return str(self.reference) if role == "solver" else rng.choice(creatable(self.digits))
        if role == "creator":
            return self._task_text(*rng.choice(BANK))
        if self.task == "output":
            return f"ANSWER: {self.reference!r}"  # it runs the program in its head, perfectly
        target = "f(x) is True" if self.task == "puzzle" else f"f(x) == {self.reference!r}"
        search = (
            "cands = list(range(-100, 101)) + ['abc', 'level', 'radar', 'abcba'] + "
            "[[a, b, c] for a in range(1, 9) for b in range(1, 9) for c in range(1, 9)]\n"
            f"def ok(x):\n    try:\n        return {target}\n    except Exception:\n        return False\n"
            "found = next((c for c in cands if ok(c)), 0)"
        )
        result = run_code(f"{self.code}\n{search}", "found", LIMITS)
        return f"ANSWER: {result.value!r}" if result.ok else "ANSWER: 0"

    def _task_text(self, code: str, given: str) -> str:
        return f"```python\n{code}\n```\n{'SOLUTION' if self.task == 'puzzle' else 'INPUT'}: {given}"

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The solver sees the program and its question, never the creator's SOLUTION (puzzle), the expected output
        (output) or the INPUT that produced the target (input); the creator sees nothing of the solver's."""
        if role != "solver" or self.code is None:
            return  # the arithmetic kind hides nothing: the solver's answer follows from the question it reads
        other = rng.choice([0, 1, -7, 66, "abc", [1, 2, 3], "level"])
        if self.task == "output":
            self.reference = other
        else:
            self.given = other

    def secrets(self, role: str) -> list[str]:
        return [f"SOLUTION: {self.given!r}"] if role == "creator" and self.task == "puzzle" and self.given else []

    # -- verification in the sandbox ----------------------------------------------------------------------
    @property
    def _repeated(self) -> bool:
        return self._fingerprint in list(self.recent)[-self.repeat_window - 1 : -1]

    def _accept_task(self, code: str, given_text: str) -> None:
        try:
            given = literal(given_text)
        except InvalidAction as exc:
            return self._reject(exc.message)
        first, second = run_many([(code, f"f({given!r})")] * 2, LIMITS, workers=2)  # two runs: determinism
        if not first.ok:
            return self._reject(f"f({given!r}) failed: {first.status} {first.error}")
        if (second.status, second.value) != (first.status, first.value):
            return self._reject("f is not deterministic")
        if self.task == "puzzle" and first.value is not True:
            return self._reject(f"f(SOLUTION) returned {first.value!r}, not True")
        self.code, self.given = code, given
        self.reference = None if self.task == "puzzle" else first.value
        self._remember(f"{code}|{given!r}")

    def _remember(self, task: str) -> None:
        self._fingerprint = hashlib.sha1(f"{self.task}|{task}".encode()).hexdigest()
        self.recent.append(self._fingerprint)

    def _reject(self, reason: str) -> None:
        self.malformed = reason

    def _verify(self, answers: list) -> list[float]:
        if self.arithmetic or self.task == "output":
            reference = self.reference
            if self.pseudo_label:
                votes = Counter(repr(a) for a in answers if a is not None)
                reference = ast.literal_eval(votes.most_common(1)[0][0]) if votes else None
                self.label_source = "majority vote"
            return [float(a is not None and a == reference) for a in answers]
        # f(answer) runs in the sandbox; what it returned is compared here with the target, which never goes in
        target = True if self.task == "puzzle" else self.reference
        calls = [f"f({a!r})" for a in answers if a is not None]
        results = iter(run_calls(self.code, calls, LIMITS, workers=min(4, max(1, len(calls)))) if calls else [])
        return [0.0 if a is None else float(returned(next(results), target)) for a in answers]

"""Teacher / student (in the spirit of DataEnvGym, Khan et al. 2024, and tutoring curricula): the teacher sees the
student's recent results per arithmetic skill and writes an exercise with its answer; the student answers K times.

The exercise must be plain integer arithmetic (+ - * and parentheses) whose stated ANSWER is right, else the
teacher scores ``malformed_penalty``. The student scores 1 per exact answer. The teacher's reward here is the
cheaper proxy of the issue: exercises the student solves about half the time, 1 - 2|p - 1/2| with p the student's
success over its K answers (``teacher_reward=proxy``, the default). With ``teacher_reward=progress`` the teacher
is rewarded by learning progress, as the issue asks: the trainer updates the student first, measures its accuracy
on ``probe_size`` fixed held-out problems per skill (the arithmetic quiz, greedy) before and after that update, and
gives each exercise the gain on its skill (a ``LearningProgress`` spec, see ``learning_progress``); the episode
records 0 for the teacher in that mode, the trainer logs the gains as ``progress/<skill>``.
With ``formats=structured`` (what a small model can meet from its first step) the teacher picks a skill and a size
among the legal actions ("SKILL: add DIGITS: 2"), the game draws the operands, and the student answers in an answer
slot ("37 + 45 = ", constrained to the numbers the skill can produce), reading the held-out quiz's words; its
exercises are ``split=train`` problems and its probes held-out ones (``arithmetic.is_heldout``).
The student's recent results come from the trainer: after each step it calls ``context_stats`` on the step's
episodes, sums them over ranks, and passes ``context_options`` of the sums to the next step's games
(``student_results``), and keeps them in checkpoints.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from selfplay.games.arithmetic import (
    SKILLS,
    Arithmetic,
    answer_bounds,
    answer_values,
    make_task,
    slot_number,
    slot_prompt,
)
from selfplay.games.core import Failure, InvalidAction, LearningProgress, WriterAnswerer, system, user
from selfplay.games.creator_solver import learnability
from selfplay.games.registry import register

_FIELD = re.compile(r"^(SKILL|QUESTION|ANSWER):\s*(.+?)\s*$", re.MULTILINE)
_CHOICE = re.compile(r"SKILL:\s*(\w+)\s+DIGITS:\s*(\d+)")
FORMATS = ("free", "structured")
LEVELS = (1, 2, 3)  # the sizes a structured teacher chooses among
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def evaluate(expression: str) -> int:
    """The value of an integer + - * expression with parentheses; ValueError for anything else."""

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) < 10**9:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise ValueError(f"only integers, + - * and parentheses are allowed, found {type(node).__name__}")

    try:
        return value(ast.parse(expression, mode="eval").body)
    except SyntaxError as exc:
        raise ValueError(f"not an expression: {expression[:40]!r}") from exc


@register
@dataclass
class TeacherStudent(WriterAnswerer):
    name = "teacher_student"
    hidden_information = False  # the student's answer key follows from the question it is shown
    description = "Teacher writes an arithmetic exercise for the student's weak skill; student answers K times."
    roles = ("teacher", "student")
    zero_sum = False
    reward_range = (-1.0, 1.0)
    max_turns = 2
    task_fields: ClassVar[tuple[str, ...]] = ("skill", "question")  # what the teacher wrote (collapse monitor)
    action_format: ClassVar[str] = (
        "teacher: lines 'SKILL: <skill>', 'QUESTION: <expression>', 'ANSWER: <integer>'; student: 'ANSWER: <integer>'"
    )
    samples: int = 4
    malformed_penalty: float = -1.0
    student_results: dict[str, list[float]] = field(default_factory=dict)  # skill -> [solved, tried], from the trainer
    teacher_reward: str = (
        "proxy"  # proxy (1 - 2|p - 1/2|) | progress (the student's held-out gain, measured by the trainer)
    )
    probe_size: int = 16  # held-out problems per skill for the progress reward
    probe_digits: int = 2  # their size
    formats: str = "free"  # free: written exercises and 'ANSWER:' lines | structured: chosen categories, a slot

    def __post_init__(self) -> None:
        if self.teacher_reward not in ("proxy", "progress"):
            raise ValueError(f"teacher_student teacher_reward={self.teacher_reward!r}: expected proxy or progress")
        if self.formats not in FORMATS:
            raise ValueError(f"teacher_student formats={self.formats!r}: expected one of {', '.join(FORMATS)}")
        if self.probe_size < 1 or not 1 <= self.probe_digits <= 9:
            raise ValueError(
                f"teacher_student probe_size={self.probe_size}, probe_digits={self.probe_digits}: "
                "expected probe_size >= 1 and 1-9 digits"
            )

    @classmethod
    def learning_progress(cls, options: dict[str, Any]) -> LearningProgress | None:
        """With ``teacher_reward=progress``: the teacher is paid the student's held-out gain on the exercise's skill."""
        game = cls(**options)
        if game.teacher_reward != "progress":
            return None
        slot = {"answer_format": "slot", "split": "heldout"} if game.structured else {}
        probes = {
            skill: [
                ({"skill": skill, "digits": game.probe_digits, **slot}, 30_000_000 + i) for i in range(game.probe_size)
            ]
            for skill in SKILLS
        }
        return LearningProgress(
            "teacher",
            "student",
            lambda **o: Arithmetic(samples=1, **o),
            probes,
            lambda info: info.get("skill") if info.get("malformed") is None else None,
        )

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.start_task()
        self.exercise: tuple[str, str, int] | None = None  # skill, question, answer
        self.level = self.probe_digits  # a structured teacher's chosen size

    @property
    def task_ready(self) -> bool:
        return self.exercise is not None

    @property
    def structured(self) -> bool:
        return self.formats == "structured"

    def answer_slot(self, role: str) -> str | None:
        return f"{self.exercise[1]} = " if self.structured and role == "student" and self.exercise else None

    def legal_actions(self, role: str) -> list[str] | None:
        if not self.structured:
            return None
        if role == "teacher":  # the kinds whose every answer can be listed, so the student's are constrained too
            return [f"SKILL: {s} DIGITS: {d}" for s in SKILLS for d in LEVELS if answer_values(s, d)]
        if self.exercise is None:
            return None
        values = answer_values(self.exercise[0], self.level)
        return [str(v) for v in values] if values else None

    def observe(self, role: str) -> list:
        if role == "teacher" and self.structured:
            return [
                system(
                    "You are a teacher. Choose the kind of exercise that helps the student most: a weak skill, "
                    "at a size the student solves about half the time. Answer with one of the listed choices, "
                    "like 'SKILL: add DIGITS: 2'."
                ),
                user(
                    f"Skills: {', '.join(SKILLS)}; sizes: {', '.join(map(str, LEVELS))} digits.\n"
                    f"The student's recent results: {self._results_text()}."
                ),
            ]
        if role == "teacher":
            return [
                system(
                    "You are a teacher. Write one exercise that helps the student most: aim at a weak skill "
                    f"and at a level the student solves about half the time. Answer with {self.action_format}."
                ),
                user(f"Skills: {', '.join(SKILLS)}.\nThe student's recent results: {self._results_text()}."),
            ]
        if self.structured and self.exercise:
            return slot_prompt(self.exercise[1])  # word for word the held-out quiz's
        task = f"Compute {self.exercise[1]}." if self.exercise else "No exercise yet."
        return [system(f"Solve the problem. Answer with {Arithmetic.action_format}."), user(task)]  # as the probes

    def parse(self, role: str, text: str) -> Any:
        if self.structured:
            return self._parse_structured(role, text)
        fields = dict(_FIELD.findall(text))
        if role == "student":
            if not re.fullmatch(r"-?\d+", fields.get("ANSWER", "")):
                raise InvalidAction(Failure.PARSE_ERROR, "expected a line 'ANSWER: <integer>'")
            return int(fields["ANSWER"])
        if not {"SKILL", "QUESTION", "ANSWER"} <= set(fields):
            raise InvalidAction(Failure.PARSE_ERROR, f"expected {self.action_format}")
        return fields["SKILL"].lower(), fields["QUESTION"], fields["ANSWER"]

    def _parse_structured(self, role: str, text: str) -> Any:
        if role == "student":
            return slot_number(text)
        match = _CHOICE.search(text)
        if not match or f"SKILL: {match.group(1)} DIGITS: {match.group(2)}" not in self.legal_actions("teacher"):
            raise InvalidAction(
                Failure.PARSE_ERROR, f"expected one of the choices, like 'SKILL: add DIGITS: 2', got {text[:60]!r}"
            )
        return match.group(1), int(match.group(2))

    def step(self, role: str, actions: list) -> list[float] | None:
        if role == "teacher" and self.structured:
            if actions[0] is None:
                self.malformed = "no choice"
                return None
            skill, self.level = actions[0]
            question, answer = make_task(skill, self.level, self.rng, "train")  # the teacher chose, the game draws
            self.exercise = (skill, question, answer)
            return None
        if role == "teacher":
            self._check_exercise(actions[0])
            return None
        self.outcomes = [float(a is not None and a == self.exercise[2]) for a in actions]
        return self.outcomes

    def rewards(self) -> dict[str, float]:
        if self.malformed is not None:
            return self.forfeit_rewards("teacher")
        p = self.success_rate()
        return {"teacher": learnability(p, "rzero") if self.teacher_reward == "proxy" else 0.0, "student": p}

    def info(self) -> dict:
        skill, question, answer = self.exercise or (None, None, None)
        return {
            "skill": skill,
            "question": question,
            "answer": answer,
            "malformed": self.malformed,
            **({"digits": self.level} if self.structured else {}),
            "solved": sum(self.outcomes) if self.outcomes else None,
            "tried": len(self.outcomes) if self.outcomes else None,
            "solve_rate": self.success_rate() if self.outcomes else None,
        }

    # -- scripted agents ----------------------------------------------------------------------------------
    def random_action(self, role: str, rng: random.Random) -> str:
        if self.structured:  # a uniformly random choice: the uniform teacher of the ablation, a guessing student
            if role == "teacher":
                return rng.choice(self.legal_actions(role))
            low, high = answer_bounds(self.exercise[0], self.level)
            return str(min(high, max(low, self.exercise[2] + rng.choice([-1, 0, 0, 1, 10]))))
        if role == "student":
            return f"ANSWER: {self.exercise[2] + rng.choice([-1, 0, 0, 1, 10])}"
        skill = rng.choice(SKILLS)
        question, answer = make_task(skill, rng.randint(1, 3), rng)
        return f"SKILL: {skill}\nQUESTION: {question}\nANSWER: {answer + (1 if rng.random() < 0.1 else 0)}"

    def expert_action(self, role: str, rng: random.Random) -> str:
        if role == "student":
            return str(self.exercise[2]) if self.structured else f"ANSWER: {self.exercise[2]}"
        untried = [s for s in SKILLS if s not in self.student_results or not self.student_results[s][1]]
        skill = (
            untried[0]
            if untried
            else min(SKILLS, key=lambda s: self.student_results[s][0] / self.student_results[s][1])
        )
        if self.structured:
            return f"SKILL: {skill} DIGITS: 2"
        question, answer = make_task(skill, 2, rng)
        return f"SKILL: {skill}\nQUESTION: {question}\nANSWER: {answer}"

    # -- the trainer's context hook: the student's results per skill, summed over a step's episodes ----------
    @classmethod
    def context_stats(cls, infos: list[dict[str, Any]]) -> dict[str, float]:
        """Per skill: the student's solved and tried answers in these episodes' infos."""
        stats = {f"{k}|{s}": 0.0 for s in SKILLS for k in ("solved", "tried")}
        for info in infos:
            if info.get("skill") in SKILLS and info.get("tried"):
                stats[f"solved|{info['skill']}"] += info["solved"]
                stats[f"tried|{info['skill']}"] += info["tried"]
        return stats

    @classmethod
    def context_options(cls, totals: dict[str, float]) -> dict[str, Any]:
        """Game options for the next step: ``student_results`` from summed ``context_stats``."""
        return {
            "student_results": {
                s: [totals[f"solved|{s}"], totals[f"tried|{s}"]] for s in SKILLS if totals.get(f"tried|{s}")
            }
        }

    # -- checks -------------------------------------------------------------------------------------------
    def _check_exercise(self, exercise: tuple[str, str, str] | None) -> None:
        if exercise is None:
            self.malformed = "no exercise"
            return
        skill, question, answer = exercise
        if skill not in SKILLS:
            self.malformed = f"unknown skill {skill!r}"
            return
        try:
            value = evaluate(question)
        except ValueError as exc:
            self.malformed = str(exc)
            return
        if not re.fullmatch(r"-?\d+", answer) or int(answer) != value:
            self.malformed = f"the stated answer {answer!r} is wrong ({question} = {value})"
            return
        self.exercise = (skill, question, value)

    def _results_text(self) -> str:
        if not self.student_results:
            return "none yet"
        return ", ".join(
            f"{s} {int(solved)}/{int(tried)} solved" for s, (solved, tried) in sorted(self.student_results.items())
        )

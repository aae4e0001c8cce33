"""The answer slot: a game pre-fills the start of the model's turn ("37 + 45 = "), the model writes only the number
(constrained to the numbers the skill can produce), and what it read, its prompt ids and its training samples all
include the slot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.agents.specs import build_agent
from selfplay.arena.matches import Match
from selfplay.arena.play import play
from selfplay.games.arithmetic import Arithmetic, answer_bounds, make_task
from selfplay.games.conformance import check_game

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("skill", ["add", "sub", "mul", "paren"])
def test_the_bounds_hold_every_result_and_the_slot_format_conforms(skill):
    import random

    low, high = answer_bounds(skill, 2)
    rng = random.Random(0)
    results = [make_task(skill, 2, rng)[1] for _ in range(2000)]
    assert low <= min(results) and max(results) <= high
    assert check_game(Arithmetic, range(20), {"skill": skill, "digits": 2, "answer_format": "slot"}).ok


def test_the_slot_game_asks_for_the_number_alone():
    game = Arithmetic(digits=2, answer_format="slot")
    game.reset(3)
    assert game.answer_slot("solver") == f"{game.question} = "
    legal = game.legal_actions("solver")
    assert str(game.answer) in legal and legal == [str(v) for v in range(20, 199)]
    assert game.parse("solver", "82") == 82 and game.parse("solver", " 82 is the sum") == 82
    assert Arithmetic(digits=2).answer_slot("solver") is None  # the line format keeps 'ANSWER: <integer>'
    with pytest.raises(ValueError, match="answer_format='box'"):
        Arithmetic(answer_format="box")


def test_a_model_continues_the_slot_and_records_it(tmp_path):
    agent = build_agent("tiny:constrained=true,max_new_tokens=4", seed=0)
    game = lambda: Arithmetic(digits=2, answer_format="slot", samples=2)  # noqa: E731
    [episode] = play(game, [Match(5, {"solver": "m"})], {"m": agent}, progress=False)
    probe = game()
    probe.reset(5)
    slot_ids = agent.tokenizer.encode(probe.answer_slot("solver"), add_special_tokens=False)
    for step in episode.steps:
        assert step.failure is None and step.text.strip().isdigit()  # constrained: a number, every time
        assert step.prompt_ids[-len(slot_ids) :] == slot_ids  # the slot ends the prompt the model continued
        assert step.read[-1] == {"role": "assistant", "content": probe.answer_slot("solver")}


def test_training_on_the_slot_format(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfplay.train",
            "game=arithmetic",
            "model=tiny",
            "weights=shared",
            "observer=chat",
            "constrained=true",
            "max_new_tokens=4",
            "scripted_prob=0",
            "game_options={digits: 2, answer_format: slot}",
            "steps=2",
            "games_per_step=8",
            "evaluation.games=4",
            "progress=false",
            "update.advantage=grpo",
            f"out={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "invalid solver=0%" in result.stdout


def test_structured_teacher_and_slotted_student():
    from selfplay.games.teacher_student import TeacherStudent

    game = TeacherStudent(formats="structured", samples=2)
    game.reset(4)
    legal = game.legal_actions("teacher")
    assert len(legal) == 10 and "SKILL: sub DIGITS: 3" in legal and "SKILL: mul DIGITS: 3" not in legal
    game.step("teacher", [game.parse("teacher", "SKILL: add DIGITS: 2")])
    skill, question, answer = game.exercise
    assert (
        skill == "add"
        and game.answer_slot("student") == f"{question} = "
        and str(answer) in game.legal_actions("student")
    )
    assert game.step("student", [answer, answer + 1]) == [1.0, 0.0] and game.info()["digits"] == 2
    assert check_game(TeacherStudent, range(30), {"formats": "structured"}).ok
    progress = TeacherStudent.learning_progress({"formats": "structured", "teacher_reward": "progress"})
    options, _ = progress.probes["add"][0]
    assert options["answer_format"] == "slot"  # the probes ask as the student is asked


def test_structured_generator_chooses_the_step_and_a_wrong_result():
    from selfplay.games.sneaky_critic import SneakyCritic

    game = SneakyCritic(formats="structured", steps=3)
    game.reset(2)
    legal = game.legal_actions("generator")
    assert len(legal) == 3 * 6
    wrong = game.chain[1][3] + 10
    game.step("generator", [game.parse("generator", f"STEP 2: {wrong}")])
    assert game.target == 1 and game.shown[1][3] == wrong and not game.sneaky_but_correct
    game.step("critic", [game.parse("critic", "[step 2]")])
    assert game.rewards() == {"generator": -1.0, "critic": 1.0}
    assert check_game(SneakyCritic, range(30), {"formats": "structured"}).ok


def test_a_tiny_model_writes_only_valid_moves_in_the_structured_formats():
    agent = build_agent("tiny:constrained=true,max_new_tokens=12", seed=1)
    from selfplay.games.sneaky_critic import SneakyCritic
    from selfplay.games.teacher_student import TeacherStudent

    for make in (lambda: TeacherStudent(formats="structured", samples=2), lambda: SneakyCritic(formats="structured")):
        roles = make().roles
        episodes = play(make, [Match(s, {r: "m" for r in roles}) for s in range(6)], {"m": agent}, progress=False)
        assert all(s.failure is None for ep in episodes for s in ep.steps), make().name

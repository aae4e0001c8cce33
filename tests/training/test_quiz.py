"""The held-out quiz (evaluation.quiz_*), the sample budget it is plotted against, and curriculum arms over several
options at once (the ALP-GMM teacher's skill x size)."""

import json
from pathlib import Path

import pytest

from selfplay.arena.records import open_store
from selfplay.arena.stats import paired_difference
from selfplay.training.binding import bind_game
from selfplay.training.config import load_config
from selfplay.training.curriculum import ALPGMMArms, arm_positions
from selfplay.training.names import arm_name, arm_options
from tests.training.test_train import run

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
QUIZ = (
    "{add1: {skill: add, digits: 1, answer_format: slot, split: heldout}, sub1: {skill: sub, digits: 1, "
    "answer_format: slot, split: heldout}}"
)


def bound(*overrides):
    config = load_config(CONFIGS / "creator_solver_arithmetic_tiny.yaml", list(overrides))
    bind_game(config)
    return config


def test_paired_difference_by_hand():
    # differences 1, 0, 0, 0: mean 1/4, sample sd 1/2, half width 1.96 * 0.5 / 2
    mean, low, high = paired_difference([0, 0, 1, 1], [1, 0, 1, 1])
    assert (mean, low, high) == pytest.approx((0.25, 0.25 - 0.49, 0.25 + 0.49))
    with pytest.raises(ValueError, match="equal"):
        paired_difference([1, 0], [1])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["evaluation.quiz_game=tictactoe"], "one-role game"),
        (["evaluation.quiz_game=no_such_game"], "quiz_game"),
        (["evaluation.quiz_sets={bad: {skill: division}}"], "quiz_sets.bad"),
        (["evaluation.quiz_role=creator", "opponents.seats={creator: random}"], "quiz_role"),
        (["evaluation.quiz_game=''"], "quiz_sets' is set"),
    ],
)
def test_quiz_config_errors_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        bound(*overrides)


def test_quiz_role_defaults_to_the_learner_role_of_the_quizs_name():
    assert bound().evaluation.quiz_role == "solver"  # not the creator, which learns too: its weights never answer
    assert bound("opponents.seats={creator: random}").evaluation.quiz_role == "solver"
    with pytest.raises(ValueError, match="name which of teacher, student answers it"):
        bind_game(load_config(CONFIGS / "teacher_student_structured_tiny.yaml", ["evaluation.quiz_role=''"]))


def test_arms_over_several_options():
    assert arm_options("skill,digits", ["add", 2]) == {"skill": "add", "digits": 2}
    assert arm_options("digits", 3) == {"digits": 3} and arm_name(["add", 2]) == "add/2" and arm_name(3) == "3"
    with pytest.raises(ValueError, match="one value to each"):
        arm_options("skill,digits", ["add"])
    config = load_config(CONFIGS / "teacher_student_alp_gmm_tiny.yaml", [])
    bind_game(config)
    assert config.curriculum.arms[0] == ["add", 1]
    with pytest.raises(ValueError, match="one value to each"):
        bind_game(load_config(CONFIGS / "teacher_student_alp_gmm_tiny.yaml", ["curriculum.arms=[[add, 1], [sub]]"]))
    with pytest.raises(ValueError, match="skill='div'|div"):
        bind_game(load_config(CONFIGS / "teacher_student_alp_gmm_tiny.yaml", ["curriculum.arms=[[div, 1]]"]))


def test_alp_gmm_places_named_arms_on_a_grid():
    positions = arm_positions(["add/1", "add/2", "sub/1", "mul/3"])
    assert positions == {"add/1": [0.0, 1.0], "add/2": [0.0, 2.0], "sub/1": [1.0, 1.0], "mul/3": [2.0, 3.0]}
    arms = ALPGMMArms(list(positions), fit_rate=4, seed=0)
    assert arms._nearest([0.1, 1.9]) == "add/2" and arms._nearest([2.0, 2.6]) == "mul/3"
    for _ in range(6):  # add/2 keeps changing, the rest stay put: learning progress only there
        arms.update({"add/1": 0.5, "add/2": 0.0, "sub/1": 0.5, "mul/3": 0.5})
        arms.update({"add/1": 0.5, "add/2": 1.0, "sub/1": 0.5, "mul/3": 0.5})
    p = arms.probabilities()
    assert p["add/2"] == max(p.values()) and p["mul/3"] < 0.1  # uniform would give each 1/4


def test_a_run_quizzes_before_and_after_and_counts_its_samples(tmp_path):
    out = tmp_path / "run"
    result = run(
        [
            "game=creator_solver",
            "game_options={task: arithmetic, digits: 1, samples: 3}",
            "weights=clone",
            "observer=chat",
            "steps=2",
            "games_per_step=4",
            "scripted_prob=0",
            "pool_prob=0",
            "evaluation.before=true",
            "evaluation.every=0",
            "evaluation.games=2",
            "evaluation.opponents=[expert]",
            "checkpoint_every=2",
            "evaluation.quiz_game=arithmetic",
            f"evaluation.quiz_sets={QUIZ}",
            "evaluation.quiz_games=7",
            "evaluation.quiz_role=solver",
        ],
        out,
        base=["model=tiny", "constrained=true", "progress=false", "max_new_tokens=4", "lr=0.01"],
    )
    history = json.loads((out / "summary.json").read_text())["history"]
    assert [h["step"] for h in history] == [0, 2]
    for h in history:
        assert set(h["quiz"]) == {"add1", "sub1"}
        for r in h["quiz"].values():
            assert r["n"] == 7 and len(r["outcomes"]) == 7 and set(r["outcomes"]) <= {0.0, 1.0}
            assert r["accuracy"] == pytest.approx(sum(r["outcomes"]) / 7)
    # every training game: one creator sample and three solver samples
    assert history[-1]["samples"] == {"creator": 8, "solver": 24} and history[0]["samples"] == {}
    assert "quiz add1" in result.stdout and "held-out problems, paired" in result.stdout
    assert (out / "quiz.png").is_file() and "## Held-out quiz" in (out / "report.md").read_text()
    rows = json.loads((out / "summary.json").read_text())["before_after"]
    assert rows["quiz/add1"]["n"] == 7
    quizzed = [ep for ep in open_store(out).episodes() if ep.meta.get("quiz")]
    assert not quizzed  # the quiz is measured, not recorded among the run's episodes


def test_a_curriculum_arm_sets_several_options(tmp_path):
    out = tmp_path / "run"
    run(
        [
            "game=arithmetic",
            "game_options={samples: 2, answer_format: slot, split: train}",
            "curriculum.policy=uniform",
            "curriculum.option=skill,digits",
            "curriculum.arms=[[add, 1], [sub, 2]]",
            "steps=1",
            "games_per_step=8",
            "observer=chat",
            "evaluation.every=0",
            "evaluation.games=2",
            "evaluation.opponents=[expert]",
            "checkpoint_every=1",
        ],
        out,
        base=["model=tiny", "constrained=true", "progress=false", "max_new_tokens=4", "lr=0.01"],
    )
    seen = {
        (ep.meta["arm"], ep.meta["info"]["skill"], ep.meta["info"]["digits"])
        for ep in open_store(out).episodes()
        if "eval" not in ep.meta
    }
    assert seen <= {("add/1", "add", 1), ("sub/2", "sub", 2)} and len(seen) == 2

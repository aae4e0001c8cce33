"""Each asymmetric role family trains end to end (two steps, tiny model, through the arena), and the recorded
rewards follow the game's rules when checked by hand from the recorded steps."""

import json

import pytest

from selfplay.arena.records import open_store
from selfplay.games.creator_solver import learnability
from tests.training.test_train import TINY, run

BASE = [o for o in TINY if not o.startswith("game_options")]


@pytest.mark.parametrize("weights", ["lora", "clone"])
def test_creator_solver_two_steps(tmp_path, weights):
    out = tmp_path / "run"
    run(
        [
            "game=creator_solver",
            "game_options={task: output, samples: 3}",
            f"weights={weights}",
            "steps=2",
            "games_per_step=6",
            "scripted_prob=0.5",
            "scripted_opponent=expert",
            "advantage=grpo",
            "max_new_tokens=12",
            "evaluation.every=0",
            "evaluation.games=2",
            "evaluation.opponents=[expert]",
            "checkpoint_every=2",
        ],
        out,
        base=BASE,
    )
    episodes = [ep for ep in open_store(out).episodes() if "eval" not in ep.meta]
    assert len(episodes) == 12 and {ep.meta["step"] for ep in episodes} == {1, 2}
    checked = 0
    for ep in episodes:
        creator = [s for s in ep.steps if s.role == "creator"]
        solver = [s for s in ep.steps if s.role == "solver"]
        if ep.status == "forfeit" or ep.meta["info"]["malformed"] is not None:
            assert ep.rewards["creator"] == -1.0 and ep.rewards["solver"] == 0.0 and not solver
            continue
        outcomes = [s.reward if s.failure is None else 0.0 for s in solver]
        assert all(s.reward == -1.0 for s in solver if s.failure)  # invalid answers carry the penalty
        assert ep.rewards["solver"] == pytest.approx(sum(outcomes) / 3)
        assert ep.rewards["creator"] == pytest.approx(learnability(sum(outcomes) / 3))
        assert creator[0].failure is None
        checked += 1
    assert checked > 0  # the expert creator's games reach the solver


def test_sneaky_critic_two_steps(tmp_path):
    out = tmp_path / "run"
    run(
        [
            "game=sneaky_critic",
            "weights=clone",
            "steps=2",
            "games_per_step=8",
            "scripted_prob=0.5",
            "scripted_opponent=expert",
            "max_new_tokens=8",
            "evaluation.every=0",
            "evaluation.games=4",
            "evaluation.opponents=[expert]",
            "checkpoint_every=2",
        ],
        out,
        base=BASE,
    )
    for ep in open_store(out).episodes():
        assert sum(ep.rewards.values()) == 0 and set(ep.rewards.values()) <= {-1.0, 1.0}
        info = ep.meta.get("info")
        if ep.status == "done":
            caught = info["caught"] or info["sneaky_step_was_correct"]
            assert ep.rewards["critic"] == (1.0 if caught else -1.0)
        elif ep.status == "forfeit":  # an unparsable answer loses
            loser = next(s.role for s in ep.steps if s.fallback == "forfeit")
            assert ep.rewards[loser] == -1.0


def test_curriculum_over_digits_with_difficulty_filtering(tmp_path):
    out = tmp_path / "run"
    run(
        [
            "game=arithmetic",
            "game_options={samples: 4}",
            "curriculum.policy=dump",
            "curriculum.option=digits",
            "curriculum.arms=[1,2,3]",
            "filter_low=0.2",
            "filter_high=0.8",
            "steps=2",
            "games_per_step=8",
            "scripted_prob=0",
            "max_new_tokens=6",
            "evaluation.every=0",
            "evaluation.games=2",
            "evaluation.opponents=[random]",
            "checkpoint_every=2",
        ],
        out,
        base=BASE,
    )
    episodes = [ep for ep in open_store(out).episodes() if "eval" not in ep.meta]
    assert all(ep.options["digits"] == int(ep.meta["arm"]) == ep.meta["info"]["digits"] for ep in episodes)
    import json

    state = json.loads((out / "checkpoints/step_000002/trainer.json").read_text())
    assert sum(state["rollouts"]["curriculum"]["counts"].values()) >= 2  # DUMP saw its arms measured
    assert [h["step"] for h in state["rollouts"]["curriculum_history"]] == [1, 2]
    assert (out / "curriculum.png").exists()


def test_teacher_student_two_steps_passes_the_student_results_on(tmp_path):
    out = tmp_path / "run"
    run(
        [
            "game=teacher_student",
            "weights=lora",
            "steps=2",
            "games_per_step=8",
            "scripted_prob=1.0",
            "scripted_opponent=expert",
            "max_new_tokens=8",
            "evaluation.every=0",
            "evaluation.games=2",
            "evaluation.opponents=[expert]",
            "checkpoint_every=2",
        ],
        out,
        base=BASE,
    )
    episodes = [ep for ep in open_store(out).episodes() if "eval" not in ep.meta]
    first = [ep for ep in episodes if ep.meta["step"] == 1]
    second = [ep for ep in episodes if ep.meta["step"] == 2]
    assert all("student_results" not in ep.options for ep in first)
    from selfplay.games.teacher_student import TeacherStudent

    expected = TeacherStudent.context_options(
        TeacherStudent.context_stats([ep.meta.get("info") or {} for ep in first])
    )["student_results"]
    assert expected and all(ep.options.get("student_results") == expected for ep in second)
    for ep in episodes:  # the proxy reward, re-derived from the recorded student answers
        info = ep.meta.get("info", {})
        if ep.status == "done" and info.get("malformed") is None:
            p = info["solved"] / info["tried"]
            assert ep.rewards == {"teacher": pytest.approx(1 - 2 * abs(p - 0.5)), "student": pytest.approx(p)}


def _accuracy(ep):
    return sum(s.reward > 0 for s in ep.steps) / len(ep.steps)


@pytest.mark.parametrize("refill", [0, 2])
def test_difficulty_filtering_refills_the_batch(tmp_path, refill):
    """Bae et al.'s balanced filtering: play more rounds while fewer than games_per_step groups survive."""
    out = tmp_path / "run"
    run(
        [
            "game=arithmetic",
            "game_options={samples: 4, choices: 4}",
            "filter_low=0.2",
            "filter_high=0.8",
            f"filter_refill={refill}",
            "steps=3",
            "games_per_step=8",
            "scripted_prob=0",
            "max_new_tokens=12",
            "evaluation.every=0",
            "evaluation.games=2",
            "evaluation.opponents=[]",
            "checkpoint_every=3",
        ],
        out,
        base=BASE,
    )
    episodes = [ep for ep in open_store(out).episodes() if "eval" not in ep.meta]
    refilled = 0
    for step in (1, 2, 3):
        mine = sorted((ep for ep in episodes if ep.meta["step"] == step), key=lambda ep: ep.meta["index"])
        rounds = [mine[i : i + 8] for i in range(0, len(mine), 8)]
        assert len(mine) % 8 == 0 and 1 <= len(rounds) <= refill + 1
        assert len({ep.seed for ep in mine}) == len(mine)  # refill games are new questions
        kept = [sum(0.2 <= _accuracy(ep) <= 0.8 for ep in r) for r in rounds]
        for i in range(len(rounds) - 1):  # another round only while the kept groups fell short
            assert sum(kept[: i + 1]) < 8
        if len(rounds) < refill + 1:
            assert sum(kept) >= 8
        refilled += len(rounds) > 1
    assert refilled == 0 if refill == 0 else refilled > 0


def test_opponents_as_arms_and_held_out_evaluation(tmp_path):
    out = tmp_path / "run"
    run(
        [
            "game=tictactoe",
            "curriculum.policy=sec",
            "curriculum.option=opponent",
            "curriculum.arms=[mirror, random, expert]",
            "steps=2",
            "games_per_step=12",
            "evaluation.every=0",
            "evaluation.games=6",
            "evaluation.opponents=[random]",
            "evaluation.heldout=true",
            "checkpoint_every=2",
        ],
        out,
    )
    episodes = [ep for ep in open_store(out).episodes() if "eval" not in ep.meta]
    for ep in episodes:
        arm, agents = ep.meta["arm"], set(ep.agents.values())
        assert agents == {"learner"} if arm == "mirror" else agents == {"learner", f"scripted/{arm}"}
        assert "game_options" not in ep.meta
    state = json.loads((out / "checkpoints/step_000002/trainer.json").read_text())
    assert set(state["rollouts"]["curriculum"]["values"]) == {"mirror", "random", "expert"}
    assert any(v != 0 for v in state["rollouts"]["curriculum"]["values"].values())
    heldout = state["history"][-1]["heldout"]
    held = [ep for ep in open_store(out).episodes() if ep.meta.get("eval") == "heldout"]
    assert len(held) == 6 and all(set(ep.agents.values()) == {"learner"} for ep in held)
    for role in ("player_0", "player_1"):
        assert heldout[role]["all"] == pytest.approx(sum(ep.rewards[role] for ep in held) / 6)


def test_held_out_evaluation_per_arm_of_a_task_game(tmp_path):
    out = tmp_path / "run"
    run(
        [
            "game=arithmetic",
            "game_options={samples: 2, choices: 4}",
            "curriculum.policy=uniform",
            "curriculum.option=skill",
            "curriculum.arms=[add, mul]",
            "steps=1",
            "games_per_step=4",
            "scripted_prob=0",
            "max_new_tokens=12",
            "evaluation.games=5",
            "evaluation.opponents=[]",
            "evaluation.heldout=true",
            "checkpoint_every=1",
        ],
        out,
        base=BASE,
    )
    held = [ep for ep in open_store(out).episodes() if ep.meta.get("eval") == "heldout"]
    assert sorted(ep.meta["info"]["skill"] for ep in held) == ["add"] * 5 + ["mul"] * 5
    summary = json.loads((out / "summary.json").read_text())["history"][-1]["heldout"]["solver"]
    for skill in ("add", "mul"):
        mine = [ep.rewards["solver"] for ep in held if ep.meta["info"]["skill"] == skill]
        assert summary[skill] == pytest.approx(sum(mine) / 5)
    assert summary["all"] == pytest.approx(sum(ep.rewards["solver"] for ep in held) / 10)
    assert "Held-out evaluation" in (out / "report.md").read_text() and (out / "heldout.png").exists()


def test_progress_credit_gives_each_task_its_skill_gain():
    from selfplay.games.teacher_student import TeacherStudent
    from selfplay.training.rollout import Sample, credit_progress

    spec = TeacherStudent.learning_progress({"teacher_reward": "progress", "probe_size": 3})
    assert spec.role == "teacher" and all(len(p) == 3 for p in spec.probes.values())
    infos = {
        "a": {"skill": "add", "malformed": None},
        "b": {"skill": "mul", "malformed": None},
        "c": {"skill": None, "malformed": "no exercise"},
    }
    samples = [
        Sample("policy", ("teacher_student", "teacher"), (ep, 0), [1], [2], [0.0], reward)
        for ep, reward in (("a", 0.0), ("b", 0.0), ("c", -1.0))
    ]
    credit_progress(samples, infos, {"add": 0.25, "mul": -0.125, "sub": 0.5}, spec.key)
    assert [s.reward for s in samples] == [0.25, -0.125, -1.0]  # the malformed task keeps its penalty
    assert TeacherStudent.learning_progress({}) is None  # the proxy by default
    with pytest.raises(ValueError, match="teacher_reward='gain'"):
        TeacherStudent(teacher_reward="gain")


def test_teacher_progress_reward_measures_the_student_before_and_after_each_update(tmp_path):
    out = tmp_path / "run"
    run(
        [
            "game=teacher_student",
            "game_options={teacher_reward: progress, probe_size: 4, probe_digits: 1}",
            "weights=lora",
            "steps=2",
            "games_per_step=8",
            "scripted_prob=0.5",
            "scripted_opponent=expert",
            "max_new_tokens=8",
            "evaluation.every=0",
            "evaluation.games=2",
            "evaluation.opponents=[expert]",
            "checkpoint_every=1",
            "lr=0.05",
        ],
        out,
        base=BASE,
    )
    state = json.loads((out / "checkpoints/step_000002/trainer.json").read_text())
    first, second = state["progress"]
    assert (first["step"], second["step"]) == (1, 2)
    assert set(first["before"]) == {"add", "sub", "mul", "paren"}
    # greedy probes of the same student adapter (the teacher update touches only its own): an exact measurement
    assert second["before"] == first["after"]
    for ep in open_store(out).episodes():
        if "eval" not in ep.meta and ep.meta.get("info", {}).get("malformed") is None and ep.status == "done":
            assert ep.rewards["teacher"] == 0.0  # recorded as 0; the trainer pays the measured gain

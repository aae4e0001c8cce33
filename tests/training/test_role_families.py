"""Each asymmetric role family trains end to end (two steps, tiny model, through the arena), and the recorded
rewards follow the game's rules when checked by hand from the recorded steps."""

import pytest

from arena.records import open_store
from games.creator_solver import learnability
from tests.training.test_train import TINY, run

BASE = [o for o in TINY if not o.startswith("game_options")]


@pytest.mark.parametrize("weights", ["lora", "clone"])
def test_creator_solver_two_steps(tmp_path, weights):
    out = tmp_path / "run"
    run(["game=creator_solver", "game_options={task: output, samples: 3}", f"weights={weights}", "steps=2",
         "games_per_step=6", "scripted_prob=0.5", "scripted_opponent=expert", "advantage=grpo", "max_new_tokens=12",
         "eval_every=0", "eval_games=2", "eval_opponents=[expert]", "checkpoint_every=2"], out, base=BASE)
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
    run(["game=sneaky_critic", "weights=clone", "steps=2", "games_per_step=8", "scripted_prob=0.5",
         "scripted_opponent=expert", "max_new_tokens=8", "eval_every=0", "eval_games=4", "eval_opponents=[expert]",
         "checkpoint_every=2"], out, base=BASE)
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
    run(["game=arithmetic", "game_options={samples: 4}", "curriculum=dump", "curriculum_option=digits",
         "curriculum_arms=[1,2,3]", "filter_low=0.2", "filter_high=0.8", "steps=2", "games_per_step=8",
         "scripted_prob=0", "max_new_tokens=6", "eval_every=0", "eval_games=2", "eval_opponents=[random]",
         "checkpoint_every=2"], out, base=BASE)
    episodes = [ep for ep in open_store(out).episodes() if "eval" not in ep.meta]
    assert all(ep.options["digits"] == int(ep.meta["arm"]) == ep.meta["info"]["digits"] for ep in episodes)
    import json

    state = json.loads((out / "checkpoints/step_000002/trainer.json").read_text())
    assert sum(state["curriculum"]["counts"].values()) >= 2  # DUMP saw its arms measured
    assert [h["step"] for h in state["curriculum_history"]] == [1, 2]
    assert (out / "curriculum.png").exists()


def test_teacher_student_two_steps_passes_the_student_results_on(tmp_path):
    out = tmp_path / "run"
    run(["game=teacher_student", "weights=lora", "steps=2", "games_per_step=8", "scripted_prob=1.0",
         "scripted_opponent=expert", "max_new_tokens=8", "eval_every=0", "eval_games=2", "eval_opponents=[expert]",
         "checkpoint_every=2"], out, base=BASE)
    episodes = [ep for ep in open_store(out).episodes() if "eval" not in ep.meta]
    first = [ep for ep in episodes if ep.meta["step"] == 1]
    second = [ep for ep in episodes if ep.meta["step"] == 2]
    assert all("student_results" not in ep.options for ep in first)
    from games.teacher_student import TeacherStudent

    expected = TeacherStudent.context_options(TeacherStudent.context_stats(first))["student_results"]
    assert expected and all(ep.options.get("student_results") == expected for ep in second)
    for ep in episodes:  # the proxy reward, re-derived from the recorded student answers
        info = ep.meta.get("info", {})
        if ep.status == "done" and info.get("malformed") is None:
            p = info["solved"] / info["tried"]
            assert ep.rewards == {"teacher": pytest.approx(1 - 2 * abs(p - 0.5)), "student": pytest.approx(p)}

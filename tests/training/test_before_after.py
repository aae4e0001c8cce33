import pytest

from selfplay.training.metrics import before_after


def _entry(step, mean, half, win=None, exact=None):
    evaluation = {
        "random": {
            "mean_reward": mean,
            "mean_reward_ci": [mean - half, mean + half],
            "games": 100,
            **({"win": win} if win is not None else {}),
        }
    }
    return {
        "step": step,
        "win_lose": win is not None,
        "evaluation": evaluation,
        **({"exact": {"exploitability": exact}} if exact is not None else {}),
    }


def test_the_change_and_its_interval_by_hand():
    # standard errors 0.1 each: change 0.5 +- 1.96 * sqrt(0.02) = 0.5 +- 0.2772
    out = before_after([_entry(0, 0.0, 0.196, win=0.3, exact=0.4583), _entry(8, 0.5, 0.196, win=0.6, exact=0.25)])
    row = out["rows"]["random"]
    assert row["change"] == pytest.approx(0.5)
    assert row["change_ci"] == pytest.approx([0.2228, 0.7772], abs=1e-4)
    assert (row["win_before"], row["win_after"]) == (0.3, 0.6)
    assert "(better)" in out["lines"][0] and "win 30.0% -> 60.0%" in out["lines"][0]
    assert out["rows"]["exploitability"] == {"before": 0.4583, "after": 0.25}


def test_overlapping_estimates_say_no_clear_change_and_no_step_zero_says_nothing():
    out = before_after([_entry(0, 0.0, 0.3), _entry(8, 0.1, 0.3)])
    assert "(no clear change)" in out["lines"][0] and "win" not in out["lines"][0]
    assert before_after([_entry(4, 0.0, 0.3), _entry(8, 0.1, 0.3)]) is None
    assert before_after([_entry(0, 0.0, 0.3)]) is None


def test_a_cooperative_run_compares_its_team_value_with_the_best():
    first, last = _entry(0, 3.0, 0.5, exact=1.7), _entry(4, 3.5, 0.5, exact=1.6)
    first["exact"]["team_value"] = 3.7
    last["exact"].update(team_value=3.9, team_optimum=10.0)
    out = before_after([first, last])
    assert out["rows"]["team_value"] == {"before": 3.7, "after": 3.9, "optimum": 10.0}
    assert "team value in self-play (exact; the best joint policy's 10.0000) 3.7000 -> 3.9000" in out["lines"]


def test_the_change_uses_the_standard_errors_as_evaluated_not_a_clipped_intervals_width():
    """A mean of 0.9 on a 0..1 range has its interval clipped at 1 ([0.704, 1.0]): its width would understate the
    standard error (0.1), so the change's interval reads ``mean_reward_se``."""
    first, last = _entry(0, 0.5, 0.196), _entry(8, 0.9, 0.196)
    last["evaluation"]["random"]["mean_reward_ci"] = [0.704, 1.0]
    for entry in (first, last):
        entry["evaluation"]["random"]["mean_reward_se"] = 0.1
    row = before_after([first, last])["rows"]["random"]
    assert row["change_ci"] == pytest.approx([0.4 - 0.2772, 0.4 + 0.2772], abs=1e-4)
    assert row["after_ci"] == [0.704, 1.0]

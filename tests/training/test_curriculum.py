import math
import random

import pytest

from selfplay.training.curriculum import DUMP, SEC, AdaRFT, Uniform, difficulty_filter, make_curriculum


def test_sec_td0_values_and_boltzmann_probabilities():
    sec = SEC(["easy", "hard"], alpha=0.5, tau=0.5)
    sec.update({"easy": 0.2, "hard": 0.8})
    sec.update({"hard": 0.4})
    assert sec.values == {"easy": 0.1, "hard": pytest.approx(0.4)}  # 0.5*0.8 = 0.4, then 0.4 + 0.5*(0.4-0.4)
    p = sec.probabilities()
    expected = math.exp(0.4 / 0.5) / (math.exp(0.1 / 0.5) + math.exp(0.4 / 0.5))
    assert p["hard"] == pytest.approx(expected)


def test_dump_tries_every_arm_then_follows_ucb():
    dump = DUMP(["a", "b", "c"], c=1.0, tau=0.1)
    assert dump.probabilities() == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    dump.update({"a": 0.5, "b": 0.1})
    assert dump.probabilities()["c"] == 1.0  # the untried arm first
    dump.update({"c": 0.2})
    scores = dump.scores()
    bonus = math.sqrt(2 * math.log(3) / 1)
    assert scores == {"a": pytest.approx(0.5 + bonus), "b": pytest.approx(0.1 + bonus), "c": pytest.approx(0.2 + bonus)}
    assert max(dump.probabilities(), key=dump.probabilities().get) == "a"


def test_difficulty_filter_decisions():
    assert difficulty_filter([0.0, 0.2, 0.5, 0.8, 1.0]) == [False, True, True, True, False]
    assert difficulty_filter([0.1, 0.3], low=0.1, high=0.2) == [True, False]
    with pytest.raises(ValueError, match="bounds"):
        difficulty_filter([0.5], low=0.9, high=0.1)


def test_adarft_moves_the_target_with_the_reward():
    ada = AdaRFT(["d1", "d2", "d3"], difficulty={"d1": 1, "d2": 2, "d3": 3}, eta=0.5, alpha=2.0, beta=0.5)
    assert ada.probabilities()["d1"] == 1.0
    ada.update({"d1": 1.0})  # easy: the target rises by 0.5 * tanh(1) * (3 - 1)
    assert ada.target == pytest.approx(1 + 0.5 * math.tanh(1.0) * 2)
    assert ada.probabilities()["d2"] == 1.0
    for _ in range(10):
        ada.update({"d2": 0.0})
    assert ada.target == 1.0  # clipped at the easiest


@pytest.mark.parametrize(
    "name, options",
    [("uniform", {}), ("sec", {"alpha": 0.3}), ("dump", {"c": 0.5}), ("adarft", {"difficulty": {"x": 1, "y": 2}})],
)
def test_state_round_trips_exactly(name, options):
    first = make_curriculum(name, ["x", "y"], **options)
    rng = random.Random(0)
    for _ in range(5):
        first.update({arm: rng.random() for arm in first.choose(rng, 3)})
    second = make_curriculum(name, ["x", "y"], **options)
    second.load_state_dict(first.state_dict())
    assert second.probabilities() == first.probabilities()
    assert second.choose(random.Random(7), 20) == first.choose(random.Random(7), 20)


def test_unknown_policy_is_named():
    with pytest.raises(ValueError, match="unknown curriculum 'magic'"):
        make_curriculum("magic", ["a"])
    with pytest.raises(ValueError, match="at least one arm"):
        Uniform([])

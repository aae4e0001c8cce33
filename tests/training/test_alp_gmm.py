"""ALP-GMM (Portelas et al. 2019): the mixture fit, the learning-progress signal, the paper's toy environment
against uniform sampling, and the curriculum policy over arms."""

import random

import numpy as np
import pytest

from selfplay.training.alp_gmm import ALPGMM, HypercubeToy, _log_densities, fit_mixture, toy_run
from selfplay.training.curriculum import make_curriculum


def test_the_density_matches_the_formula_and_em_recovers_a_known_mixture():
    cov = np.array([[[2.0, 0.5], [0.5, 1.0]]])
    point = np.array([1.0, 2.0])
    direct = -0.5 * point @ np.linalg.inv(cov[0]) @ point - 0.5 * np.log(np.linalg.det(cov[0])) - np.log(2 * np.pi)
    assert _log_densities(point[None], np.zeros((1, 2)), cov)[0, 0] == pytest.approx(direct, abs=1e-12)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (400, 2)), rng.normal(6, 0.5, (200, 2))])
    fit = fit_mixture(x, 2, rng)
    order = np.argsort(fit.means[:, 0])
    assert fit.weights[order] == pytest.approx([2 / 3, 1 / 3], abs=0.02)
    assert fit.means[order] == pytest.approx(np.array([[0, 0], [6, 6]]), abs=0.15)
    assert fit.parameters == 1 + 4 + 6 and fit.aic == pytest.approx(2 * 11 - 2 * fit.log_likelihood)


def test_alp_is_the_reward_change_from_the_nearest_earlier_task():
    teacher = ALPGMM([0, 0], [10, 10], fit_rate=100)
    assert teacher.update([1, 1], 0.2) == 0.0  # nothing earlier
    assert teacher.update([9, 9], 0.9) == pytest.approx(0.7)  # nearest is (1, 1)
    assert teacher.update([1.5, 1], 0.5) == pytest.approx(0.3)  # nearest is (1, 1) again
    assert teacher.update([8, 9], 0.9) == pytest.approx(0.0)  # nearest is (9, 9)
    assert teacher.mixture is None and all(0 <= v <= 10 for v in teacher.sample())


def test_on_the_toy_environment_alp_gmm_masters_clearly_more_cubes_than_uniform():
    # the paper's 10 x 10 hypercubes that unlock through their lower neighbours; the same episodes for both teachers
    alp = [toy_run("alp-gmm", 8000, seed) for seed in range(3)]
    uniform = [toy_run("uniform", 8000, seed) for seed in range(3)]
    assert min(alp) >= 0.08 and max(uniform) <= 0.03 and min(alp) > 3 * max(uniform), (alp, uniform)


def test_the_toy_unlocks_through_neighbours_only():
    env = HypercubeToy(cubes=3)
    assert env.episode([0.5, 0.5]) == 0.0  # the middle cell is locked until a lower neighbour is mastered
    for _ in range(76):
        env.episode([0.1, 0.1])
    assert env.competence[0, 0] == 76 and env.episode([0.5, 0.5]) == 0.01  # unlocked through the diagonal
    assert env.mastered() == pytest.approx(1 / 9)


def test_the_curriculum_policy_moves_to_the_arm_that_is_being_learned():
    policy = make_curriculum("alp-gmm", ["1", "2", "3", "4"], fit_rate=20, random_share=0.0, seed=0)
    rng = random.Random(0)
    assert set(policy.choose(rng, 50)) == {"1", "2", "3", "4"}  # uniform before the first fit
    for step in range(40):  # arm 3 improves step after step; the others stay flat
        policy.update({"1": 0.9, "2": 0.1, "3": min(1.0, 0.02 * step), "4": 0.0})
    probabilities = policy.probabilities()
    assert max(probabilities, key=probabilities.get) == "3" and probabilities["3"] > 0.5, probabilities
    restored = make_curriculum("alp-gmm", ["1", "2", "3", "4"], fit_rate=20, random_share=0.0, seed=5)
    restored.load_state_dict(policy.state_dict())
    assert restored.choose(random.Random(1), 20) == policy.choose(random.Random(1), 20)


def test_bad_bounds_are_refused_by_name():
    with pytest.raises(ValueError, match="low < high"):
        ALPGMM([0, 1], [1, 1])
    with pytest.raises(ValueError, match="fit_rate=2"):
        ALPGMM([0], [1], fit_rate=2)

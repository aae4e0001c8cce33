import random

from selfplay.arena.ratings import (
    Result,
    bootstrap,
    bradley_terry,
    cycles,
    dominance_graph,
    openskill_ratings,
    rank_upper_bounds,
)

TRUE = {"a": 0.0, "b": 60.0, "c": 150.0, "d": -120.0, "e": 300.0, "f": -250.0}


def simulate(seed: int, rounds: int = 10):
    """Every pair plays ``rounds`` paired units (two games each) with known Bradley-Terry strengths."""
    rng = random.Random(seed)
    results, names = [], list(TRUE)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = 1 / (1 + 10 ** ((TRUE[b] - TRUE[a]) / 400))
            for u in range(rounds):
                for _ in range(2):
                    results.append(Result(a, b, 1.0 if rng.random() < p else 0.0, (a, b, u)))
    return results


def spearman(x, y):
    rank = lambda v: {k: i for i, k in enumerate(sorted(v, key=v.get))}  # noqa: E731
    rx, ry = rank(x), rank(y)
    n = len(x)
    return 1 - 6 * sum((rx[k] - ry[k]) ** 2 for k in x) / (n * (n * n - 1))


def test_fit_recovers_known_strengths():
    fit = bradley_terry(simulate(0, rounds=60), anchor="a", prior=0.0)
    assert spearman(fit, TRUE) >= 0.95
    assert all(abs(fit[k] - TRUE[k]) < 60 for k in TRUE)


def test_bootstrap_intervals_cover_about_95_percent():
    covered = total = 0
    for seed in range(40):
        results = simulate(seed, rounds=10)
        intervals = bootstrap(results, anchor="a", rounds=100, seed=seed, prior=0.0)
        for k in TRUE:
            if k != "a":
                low, high = intervals[k]
                covered += low <= TRUE[k] <= high
                total += 1
    coverage = covered / total
    print(f"coverage of 95% intervals: {coverage:.3f} over {total}")
    assert 0.88 <= coverage <= 0.99


def test_perfect_records_stay_finite_and_ranks_follow_intervals():
    results = [Result("expert", "random", 1.0, i) for i in range(20)] + [
        Result("expert", "mid", 0.5, i) for i in range(20)
    ]
    fit = bradley_terry(results, anchor="random")
    assert 0 < fit["expert"] < 2000 and fit["random"] == 0.0
    ranks = rank_upper_bounds({"x": (100, 200), "y": (-50, 90), "z": (0, 150)})
    assert ranks == {"x": 1, "y": 2, "z": 1}


def test_rock_paper_scissors_is_reported_as_a_cycle():
    beats = {("rock", "scissors"), ("scissors", "paper"), ("paper", "rock")}
    results = [
        Result(a, b, 1.0 if (a, b) in beats else 0.0, (a, b, i))
        for a, b in [("rock", "scissors"), ("scissors", "paper"), ("paper", "rock")]
        for i in range(20)
    ]
    found = cycles(dominance_graph(results))
    assert len(found) == 1 and sorted(found[0]) == ["paper", "rock", "scissors"]
    transitive = [Result("a", "b", 1.0, i) for i in range(20)] + [Result("b", "c", 1.0, i) for i in range(20)]
    assert cycles(dominance_graph(transitive)) == []


def test_openskill_orders_a_clear_winner_first():
    skill = openskill_ratings([Result("strong", "weak", 1.0) for _ in range(30)])
    assert skill["strong"][0] > skill["weak"][0]

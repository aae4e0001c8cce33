"""Ratings from game results: Bradley-Terry on the Elo scale with paired-bootstrap intervals, ranks with
uncertainty, a significance-based dominance graph with its cycles, and OpenSkill as a second view.

Bradley-Terry (Bradley & Terry 1952): P(i beats j) = 1 / (1 + 10^((R_j - R_i) / 400)). Maximum likelihood by
the MM algorithm (Hunter 2004, "MM algorithms for generalized Bradley-Terry models"), draws counted as half a
win for each side. A weak prior of ``prior`` virtual draws per played pair keeps perfect records finite.
Intervals: percentile bootstrap that resamples whole units (a seed played with seats swapped is one unit).
"Rank (upper bound)" as in Chatbot Arena: 1 + the number of agents whose interval lies entirely above.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import networkx as nx

from selfplay.arena.stats import wilson  # noqa: F401 - the rate interval, used here and re-exported

ELO = 400 / math.log(10)


@dataclass(frozen=True)
class Result:
    """One game between two participants: ``score`` is a's (1 win, 0.5 draw, 0 loss); ``unit`` groups paired games."""

    a: str
    b: str
    score: float
    unit: Hashable = None


def bradley_terry(
    results: Sequence[Result],
    anchor: str | None = None,
    *,
    prior: float = 0.5,
    iterations: int = 2000,
    tol: float = 1e-10,
) -> dict[str, float]:
    """Maximum-likelihood Elo ratings; ``anchor`` is pinned to 0 (else the mean is 0)."""
    names = sorted({r.a for r in results} | {r.b for r in results})
    if anchor is not None and anchor not in names:
        raise ValueError(f"anchor {anchor!r} played no game: expected one of {', '.join(names)}")
    wins: dict[str, float] = defaultdict(float)
    games: dict[tuple[str, str], float] = defaultdict(float)
    for r in results:
        wins[r.a] += r.score
        wins[r.b] += 1 - r.score
        games[(r.a, r.b)] += 1
        games[(r.b, r.a)] += 1
    for a, b in list(games):
        if a < b:  # prior: virtual draws on each played pair
            games[(a, b)] += 2 * prior
            games[(b, a)] += 2 * prior
            wins[a] += prior
            wins[b] += prior
    strength = {n: 1.0 for n in names}
    for _ in range(iterations):
        new = {}
        for i in names:
            denom = sum(n / (strength[i] + strength[j]) for (a, j), n in games.items() if a == i)
            new[i] = max(wins[i] / denom, 1e-9) if denom > 0 else strength[i]  # floor: a winless record stays finite
        scale = math.exp(sum(math.log(v) for v in new.values()) / len(new))
        new = {k: v / scale for k, v in new.items()}
        delta = max(abs(math.log(new[k]) - math.log(strength[k])) for k in names)
        strength = new
        if delta < tol:
            break
    ratings = {k: ELO * math.log(v) for k, v in strength.items()}
    shift = ratings[anchor] if anchor is not None else sum(ratings.values()) / len(ratings)
    return {k: v - shift for k, v in ratings.items()}


def bootstrap(
    results: Sequence[Result], anchor: str | None = None, *, rounds: int = 200, seed: int = 0, prior: float = 0.5
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals from refits on units (paired games) drawn with replacement."""
    units: dict[Hashable, list[Result]] = defaultdict(list)
    for i, r in enumerate(results):
        units[r.unit if r.unit is not None else ("game", i)].append(r)
    keys = list(units)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        drawn = [r for _ in keys for r in units[keys[rng.randrange(len(keys))]]]
        names = {r.a for r in drawn} | {r.b for r in drawn}
        fit = bradley_terry(drawn, anchor if anchor in names else None, prior=prior, iterations=300, tol=1e-7)
        for k, v in fit.items():
            samples[k].append(v)
    out = {}
    for k, values in samples.items():
        values.sort()
        out[k] = (values[int(0.025 * (len(values) - 1))], values[int(math.ceil(0.975 * (len(values) - 1)))])
    return out


def rank_upper_bounds(intervals: dict[str, tuple[float, float]]) -> dict[str, int]:
    """1 + the number of agents statistically better (their lower bound above this agent's upper bound)."""
    return {
        a: 1 + sum(lo_b > hi_a for b, (lo_b, _) in intervals.items() if b != a) for a, (_, hi_a) in intervals.items()
    }


def pair_scores(results: Sequence[Result]) -> dict[tuple[str, str], tuple[float, int]]:
    """(score of a against b, games) for every ordered pair that met."""
    table: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for r in results:
        table[(r.a, r.b)][0] += r.score
        table[(r.a, r.b)][1] += 1
        table[(r.b, r.a)][0] += 1 - r.score
        table[(r.b, r.a)][1] += 1
    return {k: (v[0], int(v[1])) for k, v in table.items()}


def dominance_graph(results: Sequence[Result]) -> nx.DiGraph:
    """Edge a -> b when a's score rate against b has a 95% Wilson interval entirely above one half."""
    graph = nx.DiGraph()
    graph.add_nodes_from({r.a for r in results} | {r.b for r in results})
    for (a, b), (score, n) in pair_scores(results).items():
        low, _ = wilson(score, n)
        if low > 0.5:
            graph.add_edge(a, b, rate=score / n, games=n)
    return graph


def cycles(graph: nx.DiGraph, limit: int = 20) -> list[list[str]]:
    """Dominance cycles (a beats b beats ... beats a), shortest first."""
    found = []
    for cycle in nx.simple_cycles(graph):
        found.append(cycle)
        if len(found) >= limit:
            break
    return sorted(found, key=len)


def openskill_ratings(results: Sequence[Result]) -> dict[str, tuple[float, float]]:
    """(mu, sigma) from the OpenSkill Plackett-Luce model, rating the games in order."""
    from openskill.models import PlackettLuce

    model = PlackettLuce()
    players: dict[str, object] = {}
    for r in results:
        for name in (r.a, r.b):
            players.setdefault(name, model.rating(name=name))
        if r.score == 0.5:
            ranks = [1, 1]
        else:
            ranks = [1, 2] if r.score > 0.5 else [2, 1]
        (pa,), (pb,) = model.rate([[players[r.a]], [players[r.b]]], ranks=ranks)
        players[r.a], players[r.b] = pa, pb
    return {k: (p.mu, p.sigma) for k, p in players.items()}

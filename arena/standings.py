"""A tournament's standings from its episodes: per-seat and pairwise tallies, the ratings with their intervals
(Bradley-Terry Elo for competitive games, the team reward for cooperative ones), and one row per participant."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from selfplay.arena.ratings import (
    Result,
    bootstrap,
    bradley_terry,
    cycles,
    dominance_graph,
    openskill_ratings,
    pair_scores,
    rank_upper_bounds,
)
from selfplay.arena.records import Episode
from selfplay.arena.stats import Tally


def results_of(episodes: list[Episode], fixed: dict[str, str] | None = None, by_seat: bool = False) -> list[Result]:
    """Rating results from recorded tournament games: every pair of rotated seats held by different participants
    is one comparison (1 higher reward, 0.5 equal, 0 lower), so games of three or more players rate by Bradley-Terry
    on pairwise comparisons; errored games are left out. ``by_seat``: the entities are ``agent@role`` (per-seat
    ratings) rather than agents."""
    name = (lambda ep, r: f"{ep.agents[r]}@{r}") if by_seat else (lambda ep, r: ep.agents[r])  # noqa: E731
    out = []
    for ep in episodes:
        if ep.status == "error" or "unit" not in ep.meta:
            continue
        seats = [r for r in ep.agents if r not in (fixed or {})]
        for i, ra in enumerate(seats):
            for rb in seats[i + 1 :]:
                if ep.agents[ra] != ep.agents[rb]:
                    out.append(Result(name(ep, ra), name(ep, rb), ep.pairwise(ra, rb), ep.meta["unit"]))
    return out


def per_role_ratings(episodes: list[Episode], fixed: dict[str, str], centre: float) -> dict[str, dict[str, float]]:
    """Ratings of each agent in each seat: BT over (agent@role) entities on the pairwise comparisons of every game,
    centred on ``centre`` (the mean of the overall ratings, so both tables share one scale)."""
    results = results_of(episodes, fixed, by_seat=True)
    fit = bradley_terry(results) if results else {}
    fit = {k: v + centre for k, v in fit.items()}
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for entity, rating in fit.items():
        agent, role = entity.rsplit("@", 1)
        table[agent][role] = rating
    return dict(table)


def seat_tallies(episodes: list[Episode], fixed: dict[str, str]) -> dict[str, dict[str, Tally]]:
    """Per participant: a ``Tally`` per seat and ``all`` (mean reward, interval, success/win counts)."""
    out: dict[str, dict[str, Tally]] = defaultdict(dict)
    for ep in episodes:
        for role, agent in ep.agents.items():
            if role in fixed:
                continue
            for key in (role, "all"):
                out[agent].setdefault(key, Tally()).add(ep, role)
    return dict(out)


def pair_reward_tallies(episodes: list[Episode], fixed: dict[str, str]) -> dict[tuple[str, str], Tally]:
    """The row participant's reward in the games it played with the column participant at the table."""
    out: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for ep in episodes:
        seats = {r: a for r, a in ep.agents.items() if r not in fixed}
        for role, agent in seats.items():
            for other in set(seats.values()) - {agent}:
                out[(agent, other)].add(ep, role)
    return dict(out)


def self_play_tallies(episodes: list[Episode], fixed: dict[str, str]) -> dict[str, Tally]:
    """Per participant, its self-play games (every free seat its own): one value per game, the mean reward over the
    seats it held (the team reward in a cooperative game)."""
    out: dict[str, Tally] = defaultdict(Tally)
    for ep in episodes:
        seats = [r for r in ep.agents if r not in fixed]
        value = None if ep.status == "error" else sum(ep.rewards[r] for r in seats) / len(seats)
        out[ep.agents[seats[0]]].add(ep, seats[0], reward=value)
    return dict(out)


def team_ratings(episodes: list[Episode], own: dict[str, Tally], fixed: dict[str, str], names: list[str]):
    """Cooperative games: each participant's team reward in self-play with its 95% interval (its mean team reward with
    the others where it played no self-play game), and per pair of participants the mean team reward of the games
    they played together (as ``pair_scores`` gives scores), self-play on the diagonal."""
    tallies = seat_tallies(episodes, fixed)
    source = {n: own[n] if n in own else tallies[n]["all"] for n in names if n in own or n in tallies}
    ratings = {n: t.mean_reward for n, t in source.items()}
    intervals = {n: t.reward_interval() for n, t in source.items()}
    together: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for ep in episodes:
        if ep.status == "error":
            continue
        team = sum(ep.rewards.values()) / len(ep.rewards)
        players = {a for r, a in ep.agents.items() if r not in fixed}
        for a in players:
            for b in players:
                if a != b:
                    together[(a, b)][0] += team
                    together[(a, b)][1] += 1
    for n, t in own.items():
        together[(n, n)] = [t.reward_sum, t.decided]
    return ratings, intervals, {k: (v[0], int(v[1])) for k, v in together.items() if v[1]}


def invalid_rates(episodes: list[Episode]) -> dict[str, float]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for ep in episodes:
        for role, agent in ep.agents.items():
            tallies[agent].add(ep, role)
    return {a: t.invalid_rate for a, t in tallies.items()}


@dataclass
class Rated:
    """The ratings of a tournament's participants and what goes with them."""

    ratings: dict[str, float]
    intervals: dict[str, tuple[float, float]]  # 95%
    skill: dict[str, tuple[float, float]]  # OpenSkill (mu, sigma); NaN for cooperative games
    scores: dict[tuple[str, str], tuple[float, int]]  # (row's score against column, games)
    graph: object  # the dominance graph (networkx)
    loops: list[list[str]] = field(default_factory=list)  # dominance cycles
    per_role: dict[str, dict[str, float]] = field(default_factory=dict)  # per-seat ratings


def rate(
    episodes: list[Episode],
    own: dict[str, Tally],
    results: list[Result],
    *,
    fixed: dict[str, str],
    played: list[str],
    anchor: str | None,
    rounds: int,
    seed: int,
    team: bool,
) -> Rated:
    """Bradley-Terry Elo on pairwise results with bootstrap intervals over ``rounds`` paired resamples, or for a
    cooperative game the team reward in self-play (``own``) with its interval."""
    if team:
        ratings, intervals, scores = team_ratings(episodes, own, fixed, played)
        return Rated(ratings, intervals, {n: (float("nan"), float("nan")) for n in played}, scores, dominance_graph([]))
    ratings = bradley_terry(results, anchor)
    # intervals from mean-centred refits, shifted onto the anchor's scale: the anchor keeps its own uncertainty
    # (pinning it in every refit would give it a zero-width interval and distort the rank bounds)
    shift = bradley_terry(results)[anchor] if anchor else 0.0
    intervals = {
        k: (low - shift, high - shift) for k, (low, high) in bootstrap(results, None, rounds=rounds, seed=seed).items()
    }
    graph = dominance_graph(results)
    per_role = per_role_ratings(episodes, fixed, sum(ratings.values()) / len(ratings))
    return Rated(ratings, intervals, openskill_ratings(results), pair_scores(results), graph, cycles(graph), per_role)


def rating_rows(
    order: list[str],
    rated: Rated,
    tallies: dict[str, dict[str, Tally]],
    *,
    own: dict[str, Tally],
    episodes: list[Episode],
    steps: dict[str, int],
    exact: dict[str, dict[str, float]] | None,
    team: bool,
) -> list[dict]:
    """One row per participant, best first: rating and interval, rank bound, games, self-play and cross-play mean
    rewards, per-seat rewards, invalid-action rate, training step, exact figures."""
    ranks, invalid, exact = rank_upper_bounds(rated.intervals), invalid_rates(episodes), exact or {}
    rows = []
    for n in order:
        all_seats, mine = tallies[n]["all"] if n in tallies else Tally(), own.get(n)
        rows.append(
            {
                "self_play": reward_summary(mine, decided=True) if mine else None,
                "cross_play": reward_summary(all_seats, decided=True),
                "agent": n,
                "elo": rated.ratings[n],
                "low": rated.intervals[n][0],
                "high": rated.intervals[n][1],
                "rank_ub": ranks[n],
                "games": int(all_seats.games if n in tallies else 0) + int(mine.games if mine else 0),
                "openskill_mu": rated.skill[n][0],
                "openskill_sigma": rated.skill[n][1],
                "invalid_rate": invalid.get(n, 0.0),
                "step": steps.get(n),
                "per_role": rated.per_role.get(n, {}),
                "exploitability": exact.get(n, {}).get("exploitability"),
                "team_value": exact.get(n, {}).get("team_value"),
                "mean_reward": all_seats.mean_reward,
                "reward_ci": list(all_seats.reward_interval()),
                "success": (mine or all_seats).rate((mine or all_seats).wins) if team else None,
                "reward_per_role": {r: reward_summary(t) for r, t in tallies[n].items() if r != "all"},
            }
        )
    return rows


def reward_summary(tally: Tally, decided: bool = False) -> dict:
    """A tally's mean reward, its 95% interval and its games (decided ones only, with ``decided``), for JSON."""
    return {
        "mean": tally.mean_reward,
        "ci": list(tally.reward_interval()),
        "games": int(tally.decided if decided else tally.games),
    }


def ranking_basis(team: bool, self_played: bool, kind: str) -> str:
    """One sentence: what the ranking is based on (printed with the table, in summary.json and in the reports)."""
    if team and self_played:
        return (
            "Cooperative game: ranked by each agent's team reward in self-play (it holds every seat, the measure of "
            "a team); 'with others' is its mean team reward in cross-play with the other agents, shown beside."
        )
    if team:
        return (
            "Cooperative game: ranked by the mean team reward of the games each agent played with the others "
            "(cross-play only: no self-play games were played, --self-play no)."
        )
    return "Ranked by Bradley-Terry on cross-play (agents against each other)" + (
        "; the self-play column is each agent's mean reward when it holds every seat, shown beside, not ranked."
        if self_played
        else f"; self-play was not played ({kind.replace('_', '-')} game: --self-play yes adds it)."
    )

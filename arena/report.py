"""The tournament report: rating table with intervals, win-rate heatmap, rating against training step,
per-role ratings, invalid-action rates, dominance cycles, transcripts; as report.md, a self-contained
report.html (plots embedded), summary.json and matches.csv."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfplay.arena.ratings import (
    Result,
    bootstrap,
    bradley_terry,
    cycles,
    dominance_graph,
    openskill_ratings,  # noqa: E402
    pair_scores,
    rank_upper_bounds,
)
from selfplay.arena.records import Episode  # noqa: E402
from selfplay.arena.stats import Tally, transcript  # noqa: E402
from selfplay.games.core import outcome_of  # noqa: E402


def _per_role(episodes: list[Episode], fixed: dict[str, str], centre: float) -> dict[str, dict[str, float]]:
    """Ratings of each agent in each seat: BT over (agent@role) entities on the pairwise comparisons of every game,
    centred on ``centre`` (the mean of the overall ratings, so both tables share one scale)."""
    from selfplay.arena.tournament import results_of  # the one definition of a pairwise comparison

    results = results_of(episodes, fixed, by_seat=True)
    fit = bradley_terry(results) if results else {}
    fit = {k: v + centre for k, v in fit.items()}
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for entity, rating in fit.items():
        agent, role = entity.rsplit("@", 1)
        table[agent][role] = rating
    return dict(table)


def _tallies(episodes: list[Episode], fixed: dict[str, str]) -> dict[str, dict[str, Tally]]:
    """Per participant: a ``Tally`` per seat and ``all`` (mean reward, interval, success/win counts)."""
    out: dict[str, dict[str, Tally]] = defaultdict(dict)
    for ep in episodes:
        for role, agent in ep.agents.items():
            if role in fixed:
                continue
            for key in (role, "all"):
                out[agent].setdefault(key, Tally()).add(ep, role)
    return dict(out)


def _pair_rewards(episodes: list[Episode], fixed: dict[str, str]) -> dict[tuple[str, str], Tally]:
    """The row participant's reward in the games it played with the column participant at the table."""
    out: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for ep in episodes:
        seats = {r: a for r, a in ep.agents.items() if r not in fixed}
        for role, agent in seats.items():
            for other in set(seats.values()) - {agent}:
                out[(agent, other)].add(ep, role)
    return dict(out)


def _self_play(episodes: list[Episode], fixed: dict[str, str]) -> dict[str, Tally]:
    """Per participant, its self-play games (every free seat its own): one value per game, the mean reward over the
    seats it held (the team reward in a cooperative game)."""
    out: dict[str, Tally] = defaultdict(Tally)
    for ep in episodes:
        seats = [r for r in ep.agents if r not in fixed]
        value = None if ep.status == "error" else sum(ep.rewards[r] for r in seats) / len(seats)
        out[ep.agents[seats[0]]].add(ep, seats[0], reward=value)
    return dict(out)


def _team_ratings(episodes: list[Episode], own: dict[str, Tally], fixed: dict[str, str], names: list[str]):
    """Cooperative games: each participant's team reward in self-play with its 95% interval (its mean team reward with
    the others where it played no self-play game), and per pair of participants the mean team reward of the games
    they played together (as ``pair_scores`` gives scores), self-play on the diagonal."""
    tallies = _tallies(episodes, fixed)
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


def _invalid_rates(episodes: list[Episode]) -> dict[str, float]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for ep in episodes:
        for role, agent in ep.agents.items():
            tallies[agent].add(ep, role)
    return {a: t.invalid_rate for a, t in tallies.items()}


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plots(order, ratings, intervals, scores, steps, scale: str = "Elo") -> dict[str, bytes]:
    plots = {}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.2))
    y = range(len(order))[::-1]
    # the interval as drawn from its ends: with few games a bootstrap interval need not contain the point estimate
    ax.hlines(list(y), [intervals[n][0] for n in order], [intervals[n][1] for n in order], color="C0")
    ax.plot([ratings[n] for n in order], list(y), "o", color="C0")
    ax.set_yticks(list(y), order)
    ax.set_xlabel("Elo (Bradley-Terry), 95% bootstrap interval" if scale == "Elo" else f"{scale}, 95% interval")
    ax.grid(axis="x", alpha=0.3)
    plots["ratings.png"] = png_bytes(fig)

    fig, ax = plt.subplots(figsize=(1.0 * len(order) + 2, 0.8 * len(order) + 1.5))
    matrix = [
        [scores[(a, b)][0] / scores[(a, b)][1] if (a, b) in scores else float("nan") for b in order] for a in order
    ]
    values = [v for row in matrix for v in row if v == v] or [0.0, 1.0]
    im = ax.imshow(
        matrix,
        cmap="RdYlGn",
        vmin=0 if scale == "Elo" else min(values),
        vmax=1 if scale == "Elo" else max(values) + 1e-9,
    )
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            if (a, b) in scores:
                s, n = scores[(a, b)]
                ax.text(j, i, f"{s / n:.2f}\n({n})", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.set_yticks(range(len(order)), order)
    ax.set_title(
        "score of row against column (games)"
        if scale == "Elo"
        else "mean team reward of row with column (games)"
        + ("; diagonal: self-play" if any((n, n) in scores for n in order) else "")
    )
    fig.colorbar(im, ax=ax, fraction=0.04)
    plots["winrate.png"] = png_bytes(fig)

    if steps:
        ordered = sorted(steps, key=steps.get)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        xs = [steps[n] for n in ordered]
        ax.plot(xs, [ratings[n] for n in ordered], "o-", label="checkpoint")
        ax.fill_between(xs, [intervals[n][0] for n in ordered], [intervals[n][1] for n in ordered], alpha=0.25)
        for n in order:
            if n not in steps:
                ax.axhline(ratings[n], ls="--", lw=1, color="gray")
                ax.text(xs[0], ratings[n], f" {n}", va="bottom", fontsize=8, color="gray")
        ax.set_xlabel("training step")
        ax.set_ylabel(scale)
        ax.grid(alpha=0.3)
        plots["progress.png"] = png_bytes(fig)
    return plots


def _rate(episodes, own, results, fixed, played, anchor, rounds, seed, team) -> tuple:
    """(ratings, intervals, OpenSkill, pair scores, dominance graph, cycles, per-seat ratings): Bradley-Terry Elo on
    pairwise results, or for a cooperative game the team reward in self-play (``own``) with its interval."""
    if team:
        ratings, intervals, scores = _team_ratings(episodes, own, fixed, played)
        return (
            ratings,
            intervals,
            {n: (float("nan"), float("nan")) for n in played},
            scores,
            dominance_graph([]),
            [],
            {},
        )
    ratings = bradley_terry(results, anchor)
    # intervals from mean-centred refits, shifted onto the anchor's scale: the anchor keeps its own uncertainty
    # (pinning it in every refit would give it a zero-width interval and distort the rank bounds)
    shift = bradley_terry(results)[anchor] if anchor else 0.0
    intervals = {k: (low - shift, high - shift) for k, (low, high) in bootstrap(results, None, rounds, seed).items()}
    graph = dominance_graph(results)
    return (
        ratings,
        intervals,
        openskill_ratings(results),
        pair_scores(results),
        graph,
        cycles(graph),
        _per_role(episodes, fixed, sum(ratings.values()) / len(ratings)),
    )


def _ranking_basis(team: bool, self_played: bool, kind: str) -> str:
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


def _text_table(rows: list[dict], scale: str, team: bool) -> list[str]:
    """The console ranking table."""
    mirrored = any(r.get("self_play") for r in rows)
    ci = lambda d: f"{d['mean']:+z.3f} [{d['ci'][0]:+z.3f}, {d['ci'][1]:+z.3f}]"  # noqa: E731
    header = (
        f"{'rank':>4} {'agent':<22} {scale:>24} {'95% interval':>19} {'games':>6} "
        + (
            f"{'with others [95%]':>24} {'success':>8} "
            if team
            else f"{'openskill':>14} {'mean reward [95%]':>24} " + (f"{'self-play [95%]':>24} " if mirrored else "")
        )
        + f"{'invalid':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        value = (
            f"{r['elo']:>+z24.3f} [{r['low']:>+z7.3f}, {r['high']:>+z7.3f}]"
            if team
            else f"{r['elo']:>+z24.0f} [{r['low']:>+z7.0f}, {r['high']:>+z7.0f}]"
        )
        if team:
            extra = f"{ci(r['cross_play']) if r['cross_play']['games'] else '-':>24} {r['success']:>8.1%} "
        else:
            extra = (
                f"{r['openskill_mu']:>7.1f}±{r['openskill_sigma']:<5.1f} "
                f"{r['mean_reward']:>+z8.3f} [{r['reward_ci'][0]:+z.3f}, {r['reward_ci'][1]:+z.3f}] "
            )
            if mirrored:
                extra += f"{ci(r['self_play']) if r.get('self_play') else '-':>24} "
        lines.append(
            f"{r['rank_ub']:>4} {r['agent']:<22} {value} {r['games']:>6} {extra}{r['invalid_rate']:>8.1%}"
            + (f"  exploitability {r['exploitability']:.4f}" if r["exploitability"] is not None else "")
            + (f"  team value {r['team_value']:.4f}" if r.get("team_value") is not None else "")
        )
    return lines


def write_report(
    out: Path,
    game_cls,
    episodes: list[Episode],
    results: list[Result],
    names: list[str],
    anchor: str | None,
    rounds: int,
    steps: dict[str, int],
    seed: int = 0,
    exact: dict[str, dict[str, float]] | None = None,
    fixed: dict[str, str] | None = None,
    team_optimum: float | None = None,
) -> dict:
    """Rate, plot and write every report file into ``out``; return the summary (with a text ``table``).

    Ratings follow the game's outcome model: Bradley-Terry Elo on pairwise results for competitive games; for a
    cooperative game (every role shares one reward) the mean team reward with its 95% interval."""
    out.mkdir(parents=True, exist_ok=True)
    fixed = fixed or {}
    outcome = outcome_of(game_cls)
    team = outcome.kind == "cooperative"
    played = sorted({a for ep in episodes if ep.status != "error" for r, a in ep.agents.items() if r not in fixed})
    if len(played) < 2 or (not team and not results):
        raise ValueError("no completed games between two participants: nothing to rate")
    anchor = anchor if anchor in played and not team else None
    own = _self_play([ep for ep in episodes if ep.meta.get("selfplay")], fixed)
    cross = [ep for ep in episodes if not ep.meta.get("selfplay")]  # the per-seat and pairwise tables
    ratings, intervals, skill, scores, graph, loops, per_role = _rate(
        cross, own, results, fixed, played, anchor, rounds, seed, team
    )
    ranks = rank_upper_bounds(intervals)
    tallies = _tallies(cross, fixed)
    invalid = _invalid_rates(episodes)
    games = {
        n: int(tallies[n]["all"].games if n in tallies else 0) + int(own[n].games if n in own else 0) for n in played
    }
    order = sorted(played, key=lambda n: -ratings[n])
    scale = ("team reward in self-play" if own else "mean team reward") if team else "Elo"
    plots = _plots(order, ratings, intervals, scores, {n: s for n, s in steps.items() if n in played}, scale)
    for name, data in plots.items():
        (out / name).write_bytes(data)

    seats = [r for r in game_cls.roles if r not in fixed]
    rows = []
    for n in order:
        all_seats = tallies[n]["all"] if n in tallies else Tally()
        mine = own.get(n)
        rows.append(
            {
                "self_play": {"mean": mine.mean_reward, "ci": list(mine.reward_interval()), "games": int(mine.decided)}
                if mine
                else None,
                "cross_play": {
                    "mean": all_seats.mean_reward,
                    "ci": list(all_seats.reward_interval()),
                    "games": int(all_seats.decided),
                },
                "agent": n,
                "elo": ratings[n],
                "low": intervals[n][0],
                "high": intervals[n][1],
                "rank_ub": ranks[n],
                "games": games[n],
                "openskill_mu": skill[n][0],
                "openskill_sigma": skill[n][1],
                "invalid_rate": invalid.get(n, 0.0),
                "step": steps.get(n),
                "per_role": per_role.get(n, {}),
                "exploitability": (exact or {}).get(n, {}).get("exploitability"),
                "team_value": (exact or {}).get(n, {}).get("team_value"),
                "mean_reward": all_seats.mean_reward,
                "reward_ci": list(all_seats.reward_interval()),
                "success": (mine or all_seats).rate((mine or all_seats).wins) if team else None,
                "reward_per_role": {
                    r: {"mean": t.mean_reward, "ci": list(t.reward_interval()), "games": int(t.games)}
                    for r, t in tallies[n].items()
                    if r != "all"
                },
            }
        )
    lines = _text_table(rows, scale, team)
    ranking = _ranking_basis(team, bool(own), outcome.kind)
    if team:
        warning = (
            "Self-play and cross-play can rank agents differently: a convention a team shares with itself "
            "need not help a partner that lacks it."
        )
    else:
        warning = (
            f"Non-transitive: {len(loops)} dominance cycle(s), e.g. {' > '.join(loops[0] + [loops[0][0]])}; "
            "a single ranking misleads here."
            if loops
            else "No significant dominance cycle: the ranking is consistent."
        )
    summary = {
        "game": game_cls.name,
        "outcome": outcome.kind,
        "rating": scale,
        "ranking": ranking,
        "anchor": anchor,
        "fixed_seats": fixed,
        "bootstrap_rounds": rounds,
        "ratings": rows,
        "pairs": {f"{a}|{b}": {"score": s, "games": n} for (a, b), (s, n) in scores.items()},
        "dominance_edges": [[a, b] for a, b in graph.edges],
        "cycles": loops,
        "warning": warning,
        "table": "\n".join(lines) + "\n\n" + warning + ("" if team else "\n" + ranking),
    }
    if team_optimum is not None:
        summary["team_optimum"] = team_optimum
        summary["table"] += f"\nThe best joint policy's team value: {team_optimum:.4f} (exact)."
    pair_rewards = {} if outcome.win_lose or team else _pair_rewards(cross, fixed)
    pair_rewards.update({} if outcome.win_lose or team else {(n, n): t for n, t in own.items()})
    summary["pair_rewards"] = {
        f"{a}|{b}": {"mean": t.mean_reward, "ci": list(t.reward_interval()), "games": int(t.games)}
        for (a, b), t in pair_rewards.items()
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _write_csv(out / "matches.csv", episodes)
    links = _write_transcripts(out, episodes)
    view = _View(
        game_cls.name,
        seats,
        rows,
        order,
        scores,
        loops,
        warning,
        plots,
        links,
        anchor,
        rounds,
        team,
        fixed,
        pair_rewards,
        team_optimum,
        ranking,
    )
    (out / "report.md").write_text(_markdown(view))
    (out / "report.html").write_text(_html(view))
    return summary


def _write_csv(path: Path, episodes: list[Episode]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "pairing", "seed", "agents", "rewards", "status", "turns"])
        for ep in episodes:
            writer.writerow(
                [
                    ep.id,
                    ep.meta.get("pairing"),
                    ep.seed,
                    json.dumps(ep.agents),
                    json.dumps(ep.rewards),
                    ep.status,
                    ep.num_turns,
                ]
            )


def _write_transcripts(out: Path, episodes: list[Episode], per_pairing: int = 2) -> dict[str, str]:
    folder = out / "transcripts"
    folder.mkdir(exist_ok=True)
    by_pairing: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        by_pairing[ep.meta.get("pairing", "?")].append(ep)
    links = {}
    for pairing, eps in sorted(by_pairing.items()):
        name = pairing.replace("|", "_vs_").replace("/", "_").replace(":", "_") + ".md"
        text = "\n\n".join(f"```\n{transcript(ep)}\n```" for ep in eps[:per_pairing])
        (folder / name).write_text(f"# {pairing.replace('|', ' vs ')}\n\n{text}\n")
        links[pairing] = f"transcripts/{name}"
    return links


@dataclass
class _View:
    """What the markdown and HTML reports show."""

    game: str
    seats: list[str]  # the rated (rotated) roles
    rows: list[dict]
    order: list[str]
    scores: dict
    loops: list
    warning: str
    plots: dict[str, bytes]
    links: dict[str, str]
    anchor: str | None
    rounds: int
    team: bool
    fixed: dict[str, str]
    pair_rewards: dict = None  # amounts (chips): the row's mean reward against the column, with its interval
    team_optimum: float | None = None  # cooperative games evaluated exactly: the best joint policy's team value
    ranking: str = ""  # what the ranking is based on, in one sentence

    @property
    def self_played(self) -> bool:
        return any(r.get("self_play") for r in self.rows)

    @property
    def cross_note(self) -> str:
        """Where self-play games were played, the per-seat table counts only the games with other participants."""
        return (
            ", in the games played with other participants (self-play is in the ranking and on the diagonal)"
            if self.self_played
            else ""
        )

    @property
    def valued(self) -> bool:
        """Whether the exact table shows team values (a cooperative game whose best joint policy was found)."""
        return self.team_optimum is not None and any(r.get("team_value") is not None for r in self.rows)

    def exact_table(self) -> tuple[list[str], list[list[str]]]:
        """Each exactly known participant's exploitability, and its team value in self-play where ``valued``."""
        exact = [r for r in self.rows if r.get("exploitability") is not None]
        return (
            ["agent", "exploitability", *(["team value in self-play"] if self.valued else [])],
            [
                [r["agent"], f"{r['exploitability']:.4f}", *([f"{r['team_value']:.4f}"] if self.valued else [])]
                for r in exact
            ],
        )

    def reward_matrix(self) -> tuple[list[str], list[list[str]]]:
        """Mean reward of the row participant in games with the column participant, 95% interval, games."""

        def cell(a: str, b: str) -> str:
            t = self.pair_rewards.get((a, b))
            if t is None:
                return "–"
            low, high = t.reward_interval()
            return f"{t.mean_reward:+z.3f} [{low:+z.3f}, {high:+z.3f}] ({int(t.games)})"

        return ["", *self.order], [[a, *(cell(a, b) for b in self.order)] for a in self.order]

    @property
    def method(self) -> str:
        if self.team:
            return (
                f"{self.ranking} Every role shares the team reward; intervals are normal 95% intervals; success "
                f"is the team success rate of the same games. Rank is the upper bound: 1 + the number of agents "
                f"statistically better."
            )
        return (
            f"{self.ranking} Bradley-Terry ratings on the Elo scale (anchor: {self.anchor or 'mean = 0'}) fitted to pairwise "
            f"comparisons (in each game, each pair of rotated seats: higher reward wins, equal rewards draw), 95% "
            f"intervals from {self.rounds} bootstrap rounds over paired games (each seed played in every "
            f"seating; refits centred on the mean, then shifted so the anchor's estimate is 0). Rank is the upper "
            f"bound: 1 + the number of agents statistically better."
        )

    @property
    def fixed_note(self) -> str:
        return (
            (
                "Fixed seats (not rated): "
                + ", ".join(f"{r} = {a.split('=', 1)[1]}" for r, a in self.fixed.items())
                + "."
            )
            if self.fixed
            else ""
        )

    def headline(self) -> tuple[list[str], list[list[str]]]:
        """The ranking table's header and cells."""
        ci = lambda d: (
            f"{d['mean']:+z.3f} [{d['ci'][0]:+z.3f}, {d['ci'][1]:+z.3f}] ({d['games']})" if d and d["games"] else "–"
        )  # noqa: E731
        if self.team:
            first = "team reward in self-play" if self.self_played else "mean team reward"
            head = [
                "rank",
                "agent",
                first,
                "95% interval",
                *(["with others [95%] (games)"] if self.self_played else []),
                "success",
                "games",
                "invalid",
            ]
            body = [
                [
                    str(r["rank_ub"]),
                    r["agent"],
                    f"{r['elo']:+z.3f}",
                    f"[{r['low']:+z.3f}, {r['high']:+z.3f}]",
                    *([ci(r["cross_play"])] if self.self_played else []),
                    f"{r['success']:.1%}",
                    str(r["games"]),
                    f"{r['invalid_rate']:.1%}",
                ]
                for r in self.rows
            ]
            return head, body
        head = [
            "rank",
            "agent",
            "Elo",
            "95% interval",
            "games",
            "mean reward [95%]",
            *(["self-play [95%] (games)"] if self.self_played else []),
            "OpenSkill μ±σ",
            "invalid",
            *(f"Elo as {r}" for r in self.seats),
        ]
        body = [
            [
                str(r["rank_ub"]),
                r["agent"],
                f"{r['elo']:+z.0f}",
                f"[{r['low']:+z.0f}, {r['high']:+z.0f}]",
                str(r["games"]),
                f"{r['mean_reward']:+z.3f} [{r['reward_ci'][0]:+z.3f}, {r['reward_ci'][1]:+z.3f}]",
                *([ci(r.get("self_play"))] if self.self_played else []),
                f"{r['openskill_mu']:.1f}±{r['openskill_sigma']:.1f}",
                f"{r['invalid_rate']:.1%}",
                *(f"{r['per_role'].get(role, float('nan')):+z.0f}" for role in self.seats),
            ]
            for r in self.rows
        ]
        return head, body

    def rewards(self) -> tuple[list[str], list[list[str]]]:
        """Mean reward per seat with 95% intervals."""
        head = ["agent", "all seats", *self.seats]
        cell = lambda d: f"{d['mean']:+z.3f} [{d['ci'][0]:+z.3f}, {d['ci'][1]:+z.3f}] ({d['games']})"  # noqa: E731
        body = [
            [
                r["agent"],
                f"{r['mean_reward']:+z.3f} [{r['reward_ci'][0]:+z.3f}, {r['reward_ci'][1]:+z.3f}]",
                *(cell(r["reward_per_role"][s]) if s in r["reward_per_role"] else "–" for s in self.seats),
            ]
            for r in self.rows
        ]
        return head, body

    def matrix_note(self) -> str:
        return (
            "Mean team reward of the row agent playing with the column agent, games in parentheses; the diagonal "
            "is each agent with itself (self-play)."
            if self.team
            else "Score of the row agent against the column agent (pairwise comparisons, draws count half), "
            "comparisons in parentheses."
        )

    def cell(self, a: str, b: str) -> str:
        if (a, b) not in self.scores:
            return "–"
        s, n = self.scores[(a, b)]
        return f"{s / n:.2f} ({n})"


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(row) + " |" for row in body]


def _markdown(v: _View) -> str:
    md = [f"# Tournament report: {v.game}", "", v.method, ""] + ([v.fixed_note, ""] if v.fixed else [])
    md += _md_table(*v.headline())
    exact = [r for r in v.rows if r.get("exploitability") is not None]
    if exact:
        md += [
            "",
            "## Exact exploitability",
            "",
            "NashConv / number of players of each participant whose policy is "
            "known exactly (the uniform random agent, a stated expert, model agents with constrained decoding read "
            "off at every information state), all seats playing it: what a player gains per game by best-responding "
            "alone, on average over the seats; 0 is an equilibrium.",
            "",
        ]
        if v.valued:  # cooperative: exploitability 0 can be a babbling equilibrium; the team value says how good it is
            md += [
                f"Cooperative game: a Nash equilibrium can fall short of the best joint policy, whose team value is "
                f"{v.team_optimum:.4f} (exact); each participant's team value is its expected team reward when it "
                "plays every seat.\n"
            ]
        head, body = v.exact_table()
        md += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]  # figures aligned right
        md += ["| " + " | ".join(row) + " |" for row in body]
    md += [
        "",
        f"**{v.warning}**",
        "",
        "![ratings](ratings.png)",
        "",
        "## Mean reward per seat",
        "",
        f"Each participant's mean reward in each seat with its 95% interval (games in parentheses){v.cross_note}.",
        "",
    ]
    md += _md_table(*v.rewards())
    if v.pair_rewards:
        md += [
            "",
            "## Mean reward against each opponent",
            "",
            "The row participant's mean reward in the games it "
            "played with the column participant (both seats), with its 95% interval (games in parentheses); on the diagonal, its "
            "mean reward over the seats when it holds every seat (self-play).",
            "",
        ]
        md += _md_table(*v.reward_matrix())
    md += [
        "",
        "## Score matrix",
        "",
        v.matrix_note(),
        "",
        "| | " + " | ".join(v.order) + " |",
        "|---|" + "---|" * len(v.order),
    ]
    md += [f"| {a} | " + " | ".join(v.cell(a, b) for b in v.order) + " |" for a in v.order]
    md += ["", "![win rates](winrate.png)", ""]
    if "progress.png" in v.plots:
        md += ["## Rating against training step", "", "![progress](progress.png)", ""]
    if v.loops:
        md += ["## Dominance cycles", ""] + [f"- {' > '.join(c + [c[0]])}" for c in v.loops] + [""]
    md += ["## Transcripts", ""] + [f"- [{p.replace('|', ' vs ')}]({link})" for p, link in v.links.items()]
    return "\n".join(md) + "\n"


def _html_table(head: list[str], body: list[list[str]]) -> str:
    esc = html.escape
    return (
        "<table><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in body)
        + "</table>"
    )


def _html(v: _View) -> str:
    esc = html.escape
    img = lambda name: f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(v.plots[name]).decode()}">'  # noqa: E731
    matrix = _html_table(["", *v.order], [[a, *(v.cell(a, b) for b in v.order)] for a in v.order])
    transcripts = "".join(
        f'<li><a href="{esc(link)}">{esc(p.replace("|", " vs "))}</a></li>' for p, link in v.links.items()
    )
    progress = f"<h2>Rating against training step</h2>{img('progress.png')}" if "progress.png" in v.plots else ""
    exact = [r for r in v.rows if r.get("exploitability") is not None]
    exact_html = (
        "<h2>Exact exploitability</h2><p>NashConv / number of players of each participant whose policy is "
        "known exactly; 0 is an equilibrium."
        + (
            f" Cooperative game: an equilibrium can fall short of the best joint policy, whose team value is "
            f"{v.team_optimum:.4f}."
            if v.valued
            else ""
        )
        + "</p>"
        + _html_table(*v.exact_table())
        if exact
        else ""
    )
    fixed = f"<p>{esc(v.fixed_note)}</p>" if v.fixed else ""
    pair_html = (
        (
            "<h2>Mean reward against each opponent</h2><p>The row participant's mean reward in the games it played "
            "with the column participant (both seats), with its 95% interval (games in parentheses); on the diagonal, its mean "
            "reward over the seats when it holds every seat (self-play).</p>" + _html_table(*v.reward_matrix())
        )
        if v.pair_rewards
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Tournament: {esc(v.game)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}img{{max-width:100%}}
.warn{{padding:.6em;background:#fff4d6;border:1px solid #e8c66a}}</style></head><body>
<h1>Tournament report: {esc(v.game)}</h1>
<p>{esc(v.method)}</p>{fixed}
{_html_table(*v.headline())}{exact_html}
<p class="warn">{esc(v.warning)}</p>{img("ratings.png")}
<h2>Mean reward per seat</h2><p>Each participant's mean reward in each seat with its 95% interval (games in parentheses){esc(v.cross_note)}.</p>
{_html_table(*v.rewards())}{pair_html}
<h2>Score matrix</h2><p>{esc(v.matrix_note())}</p>{matrix}{img("winrate.png")}
{progress}<h2>Transcripts</h2><ul>{transcripts}</ul><p>All games: matches.csv; numbers: summary.json.</p></body></html>
"""

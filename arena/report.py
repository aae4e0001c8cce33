"""The tournament report: rating table with intervals, win-rate heatmap, rating against training step,
per-role ratings, invalid-action rates, dominance cycles, transcripts; as report.md, a self-contained
report.html (plots embedded), summary.json and matches.csv."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from selfplay.arena.ratings import Result
from selfplay.arena.records import Episode
from selfplay.arena.report_html import html_page
from selfplay.arena.report_pages import ReportView, draw_plots, markdown_page, text_table
from selfplay.arena.standings import (
    Rated,
    pair_reward_tallies,
    ranking_basis,
    rate,
    rating_rows,
    reward_summary,
    seat_tallies,
    self_play_tallies,
)
from selfplay.arena.stats import transcript
from selfplay.games.core import outcome_of


def write_report(
    out: Path,
    game_cls,
    episodes: list[Episode],
    results: list[Result],
    *,
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
    cooperative game (every role shares one reward) the mean team reward with its 95% interval. ``steps``: each
    checkpoint participant's training step; ``exact``: each participant's exact exploitability (small games)."""
    out.mkdir(parents=True, exist_ok=True)
    fixed = fixed or {}
    outcome = outcome_of(game_cls)
    team = outcome.kind == "cooperative"
    played = sorted({a for ep in episodes if ep.status != "error" for r, a in ep.agents.items() if r not in fixed})
    if len(played) < 2 or (not team and not results):
        raise ValueError("no completed games between two participants: nothing to rate")
    anchor = anchor if anchor in played and not team else None
    own = self_play_tallies([ep for ep in episodes if ep.meta.get("selfplay")], fixed)
    cross = [ep for ep in episodes if not ep.meta.get("selfplay")]  # the per-seat and pairwise tables
    rated = rate(cross, own, results, fixed=fixed, played=played, anchor=anchor, rounds=rounds, seed=seed, team=team)
    order = sorted(played, key=lambda n: -rated.ratings[n])
    scale = ("team reward in self-play" if own else "mean team reward") if team else "Elo"
    plots = draw_plots(order, rated, {n: s for n, s in steps.items() if n in played}, scale)
    for name, data in plots.items():
        (out / name).write_bytes(data)
    rows = rating_rows(
        order, rated, seat_tallies(cross, fixed), own=own, episodes=episodes, steps=steps, exact=exact, team=team
    )
    summary = _summary(game_cls.name, outcome, rated, rows, scale=scale, own=own, anchor=anchor, fixed=fixed)
    summary["bootstrap_rounds"] = rounds
    if team_optimum is not None:
        summary["team_optimum"] = team_optimum
        summary["table"] += f"\nThe best joint policy's team value: {team_optimum:.4f} (exact)."
    amounts = not (outcome.win_lose or team)  # the row's mean reward against each column, for amounts (chips)
    pairs = {**pair_reward_tallies(cross, fixed), **{(n, n): t for n, t in own.items()}} if amounts else {}
    summary["pair_rewards"] = {f"{a}|{b}": reward_summary(t) for (a, b), t in pairs.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _write_csv(out / "matches.csv", episodes)
    view = ReportView(
        game=game_cls.name, seats=[r for r in game_cls.roles if r not in fixed], rows=rows, order=order,
        scores=rated.scores, loops=rated.loops, warning=summary["warning"], plots=plots,
        links=_write_transcripts(out, episodes), anchor=anchor, rounds=rounds, team=team, fixed=fixed,
        pair_rewards=pairs, team_optimum=team_optimum, ranking=summary["ranking"],
    )  # fmt: skip
    (out / "report.md").write_text(markdown_page(view))
    (out / "report.html").write_text(html_page(view))
    return summary


def _summary(game: str, outcome, rated: Rated, rows: list[dict], *, scale: str, own: dict, anchor, fixed) -> dict:
    """summary.json's ratings part, with the console table, the ranking basis and the warning that goes with it."""
    team = outcome.kind == "cooperative"
    ranking = ranking_basis(team, bool(own), outcome.kind)
    if team:
        warning = (
            "Self-play and cross-play can rank agents differently: a convention a team shares with itself "
            "need not help a partner that lacks it."
        )
    elif rated.loops:
        loop = rated.loops[0]
        warning = (
            f"Non-transitive: {len(rated.loops)} dominance cycle(s), e.g. {' > '.join(loop + [loop[0]])}; "
            "a single ranking misleads here."
        )
    else:
        warning = "No significant dominance cycle: the ranking is consistent."
    return {
        "game": game,
        "outcome": outcome.kind,
        "rating": scale,
        "ranking": ranking,
        "anchor": anchor,
        "fixed_seats": fixed,
        "ratings": rows,
        "pairs": {f"{a}|{b}": {"score": s, "games": n} for (a, b), (s, n) in rated.scores.items()},
        "dominance_edges": [[a, b] for a, b in rated.graph.edges],
        "cycles": rated.loops,
        "warning": warning,
        "table": "\n".join(text_table(rows, scale, team)) + "\n\n" + warning + ("" if team else "\n" + ranking),
    }


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

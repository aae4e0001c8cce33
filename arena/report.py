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
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfplay.arena.ratings import (Result, bootstrap, bradley_terry, cycles, dominance_graph, openskill_ratings,  # noqa: E402
                           pair_scores, rank_upper_bounds)
from selfplay.arena.records import Episode  # noqa: E402
from selfplay.arena.stats import Tally, transcript  # noqa: E402


def _per_role(episodes: list[Episode], roles, centre: float) -> dict[str, dict[str, float]]:
    """Ratings of each agent in each seat: BT over (agent@role) entities, centred on ``centre`` (the mean of
    the overall ratings, so both tables share one scale)."""
    results = []
    for ep in episodes:
        if ep.status == "error" or "unit" not in ep.meta:
            continue
        a, b = (f"{ep.agents[r]}@{r}" for r in roles)
        results.append(Result(a, b, ep.score(roles[0]), ep.meta["unit"]))
    fit = bradley_terry(results) if results else {}
    fit = {k: v + centre for k, v in fit.items()}
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for entity, rating in fit.items():
        agent, role = entity.rsplit("@", 1)
        table[agent][role] = rating
    return dict(table)


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


def _plots(order, ratings, intervals, scores, steps) -> dict[str, bytes]:
    plots = {}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.2))
    y = range(len(order))[::-1]
    ax.errorbar([ratings[n] for n in order], list(y),
                xerr=[[ratings[n] - intervals[n][0] for n in order], [intervals[n][1] - ratings[n] for n in order]],
                fmt="o", capsize=4)
    ax.set_yticks(list(y), order)
    ax.set_xlabel("Elo (Bradley-Terry), 95% bootstrap interval")
    ax.grid(axis="x", alpha=0.3)
    plots["ratings.png"] = png_bytes(fig)

    fig, ax = plt.subplots(figsize=(1.0 * len(order) + 2, 0.8 * len(order) + 1.5))
    matrix = [[scores[(a, b)][0] / scores[(a, b)][1] if (a, b) in scores else float("nan") for b in order] for a in order]
    im = ax.imshow(matrix, cmap="RdYlGn", vmin=0, vmax=1)
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            if (a, b) in scores:
                s, n = scores[(a, b)]
                ax.text(j, i, f"{s / n:.2f}\n({n})", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.set_yticks(range(len(order)), order)
    ax.set_title("score of row against column (games)")
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
        ax.set_ylabel("Elo")
        ax.grid(alpha=0.3)
        plots["progress.png"] = png_bytes(fig)
    return plots


def write_report(out: Path, game_cls, episodes: list[Episode], results: list[Result], names: list[str],
                 anchor: str | None, rounds: int, steps: dict[str, int], seed: int = 0,
                 exploitability: dict[str, float] | None = None) -> dict:
    """Rate, plot and write every report file into ``out``; return the summary (with a text ``table``)."""
    out.mkdir(parents=True, exist_ok=True)
    played = sorted({r.a for r in results} | {r.b for r in results})
    if len(played) < 2:
        raise ValueError("no completed games between two participants: nothing to rate")
    anchor = anchor if anchor in played else None
    ratings = bradley_terry(results, anchor)
    # intervals from mean-centred refits, shifted onto the anchor's scale: the anchor keeps its own uncertainty
    # (pinning it in every refit would give it a zero-width interval and distort the rank bounds)
    shift = bradley_terry(results)[anchor] if anchor else 0.0
    intervals = {k: (low - shift, high - shift) for k, (low, high) in bootstrap(results, None, rounds, seed).items()}
    ranks = rank_upper_bounds(intervals)
    skill = openskill_ratings(results)
    scores = pair_scores(results)
    graph = dominance_graph(results)
    loops = cycles(graph)
    per_role = _per_role(episodes, game_cls.roles, sum(ratings.values()) / len(ratings))
    invalid = _invalid_rates(episodes)
    games = {n: sum(r.a == n or r.b == n for r in results) for n in played}
    order = sorted(played, key=lambda n: -ratings[n])
    plots = _plots(order, ratings, intervals, scores, {n: s for n, s in steps.items() if n in played})
    for name, data in plots.items():
        (out / name).write_bytes(data)

    rows = [{"agent": n, "elo": ratings[n], "low": intervals[n][0], "high": intervals[n][1], "rank_ub": ranks[n],
             "games": games[n], "openskill_mu": skill[n][0], "openskill_sigma": skill[n][1],
             "invalid_rate": invalid.get(n, 0.0), "step": steps.get(n),
             "per_role": per_role.get(n, {}), "exploitability": (exploitability or {}).get(n)} for n in order]
    header = f"{'rank':>4} {'agent':<22} {'elo':>7} {'95% interval':>17} {'games':>6} {'openskill':>14} {'invalid':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['rank_ub']:>4} {r['agent']:<22} {r['elo']:>+7.0f} [{r['low']:>+6.0f}, {r['high']:>+6.0f}] "
                     f"{r['games']:>6} {r['openskill_mu']:>7.1f}±{r['openskill_sigma']:<5.1f} {r['invalid_rate']:>8.1%}"
                     + (f"  exploitability {r['exploitability']:.4f}" if r["exploitability"] is not None else ""))
    warning = (f"Non-transitive: {len(loops)} dominance cycle(s), e.g. {' > '.join(loops[0] + [loops[0][0]])}; "
               "a single ranking misleads here." if loops else "No significant dominance cycle: the ranking is consistent.")
    summary = {"game": game_cls.name, "anchor": anchor, "bootstrap_rounds": rounds, "ratings": rows,
               "pairs": {f"{a}|{b}": {"score": s, "games": n} for (a, b), (s, n) in scores.items()},
               "dominance_edges": [[a, b] for a, b in graph.edges], "cycles": loops, "warning": warning,
               "table": "\n".join(lines) + "\n\n" + warning}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _write_csv(out / "matches.csv", episodes)
    links = _write_transcripts(out, episodes)
    (out / "report.md").write_text(_markdown(game_cls, rows, order, scores, loops, warning, plots, links, anchor, rounds))
    (out / "report.html").write_text(_html(game_cls, rows, order, scores, warning, plots, links, anchor, rounds))
    return summary


def _write_csv(path: Path, episodes: list[Episode]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "pairing", "seed", "agents", "rewards", "status", "turns"])
        for ep in episodes:
            writer.writerow([ep.id, ep.meta.get("pairing"), ep.seed, json.dumps(ep.agents), json.dumps(ep.rewards),
                             ep.status, ep.num_turns])


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


def _markdown(game_cls, rows, order, scores, loops, warning, plots, links, anchor, rounds) -> str:
    md = [f"# Tournament report: {game_cls.name}", "",
          f"Bradley-Terry ratings on the Elo scale (anchor: {anchor or 'mean = 0'}), 95% intervals from {rounds} "
          "bootstrap rounds over paired games (each seed played with seats swapped; refits centred on the mean, "
          "then shifted so the anchor's estimate is 0). Rank is the upper bound: 1 + "
          "the number of agents statistically better.", "",
          "| rank | agent | Elo | 95% interval | games | OpenSkill μ±σ | invalid | " +
          " | ".join(f"Elo as {r}" for r in game_cls.roles) + " |",
          "|---:|---|---:|---|---:|---|---:|" + "---:|" * len(game_cls.roles)]
    for r in rows:
        roles = " | ".join(f"{r['per_role'].get(role, float('nan')):+.0f}" for role in game_cls.roles)
        md.append(f"| {r['rank_ub']} | {r['agent']} | {r['elo']:+.0f} | [{r['low']:+.0f}, {r['high']:+.0f}] | "
                  f"{r['games']} | {r['openskill_mu']:.1f}±{r['openskill_sigma']:.1f} | {r['invalid_rate']:.1%} | {roles} |")
    exact = [r for r in rows if r.get("exploitability") is not None]
    if exact:
        md += ["", "## Exact exploitability", "", "NashConv / 2 of each participant whose policy is known exactly (the "
               "uniform random agent, a stated expert, model agents with constrained decoding read off at every "
               "information state): what a best-responding opponent wins per game on average over the seats; 0 is "
               "an equilibrium.", "", "| agent | exploitability |", "|---|---:|"]
        md += [f"| {r['agent']} | {r['exploitability']:.4f} |" for r in exact]
    md += ["", f"**{warning}**", "", "![ratings](ratings.png)", "", "## Score matrix", "",
           "Score of the row agent against the column agent (draws count half), games in parentheses.", "",
           "| | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    for a in order:
        cells = [f"{scores[(a, b)][0] / scores[(a, b)][1]:.2f} ({scores[(a, b)][1]})" if (a, b) in scores else "–"
                 for b in order]
        md.append(f"| {a} | " + " | ".join(cells) + " |")
    md += ["", "![win rates](winrate.png)", ""]
    if "progress.png" in plots:
        md += ["## Rating against training step", "", "![progress](progress.png)", ""]
    if loops:
        md += ["## Dominance cycles", ""] + [f"- {' > '.join(c + [c[0]])}" for c in loops] + [""]
    md += ["## Transcripts", ""] + [f"- [{p.replace('|', ' vs ')}]({link})" for p, link in links.items()]
    return "\n".join(md) + "\n"


def _html(game_cls, rows, order, scores, warning, plots, links, anchor, rounds) -> str:
    esc = html.escape
    img = lambda name: f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(plots[name]).decode()}">'  # noqa: E731
    head = "".join(f"<th>Elo as {esc(r)}</th>" for r in game_cls.roles)
    body = "".join(
        f"<tr><td>{r['rank_ub']}</td><td>{esc(r['agent'])}</td><td>{r['elo']:+.0f}</td>"
        f"<td>[{r['low']:+.0f}, {r['high']:+.0f}]</td><td>{r['games']}</td>"
        f"<td>{r['openskill_mu']:.1f}±{r['openskill_sigma']:.1f}</td><td>{r['invalid_rate']:.1%}</td>"
        + "".join(f"<td>{r['per_role'].get(role, float('nan')):+.0f}</td>" for role in game_cls.roles) + "</tr>"
        for r in rows)
    matrix = "".join(
        f"<tr><th>{esc(a)}</th>" + "".join(
            f"<td>{scores[(a, b)][0] / scores[(a, b)][1]:.2f} ({scores[(a, b)][1]})</td>" if (a, b) in scores
            else "<td>–</td>" for b in order) + "</tr>" for a in order)
    transcripts = "".join(f'<li><a href="{esc(link)}">{esc(p.replace("|", " vs "))}</a></li>' for p, link in links.items())
    progress = f"<h2>Rating against training step</h2>{img('progress.png')}" if "progress.png" in plots else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Tournament: {esc(game_cls.name)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}img{{max-width:100%}}
.warn{{padding:.6em;background:#fff4d6;border:1px solid #e8c66a}}</style></head><body>
<h1>Tournament report: {esc(game_cls.name)}</h1>
<p>Bradley-Terry ratings on the Elo scale (anchor: {esc(anchor or 'mean = 0')}), 95% intervals from {rounds} bootstrap
rounds over paired games (refits centred on the mean, then shifted so the anchor's estimate is 0). Rank is the upper
bound: 1 + the number of agents statistically better.</p>
<table><tr><th>rank</th><th>agent</th><th>Elo</th><th>95% interval</th><th>games</th><th>OpenSkill μ±σ</th><th>invalid</th>{head}</tr>{body}</table>
<p class="warn">{esc(warning)}</p>{img('ratings.png')}
<h2>Score matrix</h2><p>Score of the row agent against the column agent (draws count half), games in parentheses.</p>
<table><tr><th></th>{''.join(f'<th>{esc(b)}</th>' for b in order)}</tr>{matrix}</table>{img('winrate.png')}
{progress}<h2>Transcripts</h2><ul>{transcripts}</ul><p>All games: matches.csv; numbers: summary.json.</p></body></html>
"""

"""The tournament report as one self-contained HTML page (plots embedded)."""

from __future__ import annotations

import base64
import html

from selfplay.arena.report_pages import PAIR_REWARDS_NOTE, ReportView


def html_table(head: list[str], body: list[list[str]]) -> str:
    esc = html.escape
    return (
        "<table><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in body)
        + "</table>"
    )


def html_page(v: ReportView) -> str:
    esc = html.escape
    img = lambda name: f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(v.plots[name]).decode()}">'  # noqa: E731
    matrix = html_table(["", *v.order], [[a, *(v.cell(a, b) for b in v.order)] for a in v.order])
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
        + html_table(*v.exact_table())
        if exact
        else ""
    )
    fixed = f"<p>{esc(v.fixed_note)}</p>" if v.fixed else ""
    pair_html = (
        (f"<h2>Mean reward against each opponent</h2><p>{PAIR_REWARDS_NOTE}</p>" + html_table(*v.reward_matrix()))
        if v.pair_rewards
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Tournament: {esc(v.game)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}img{{max-width:100%}}
.warn{{padding:.6em;background:#fff4d6;border:1px solid #e8c66a}}</style></head><body>
<h1>Tournament report: {esc(v.game)}</h1>
<p>{esc(v.method)}</p>{fixed}
{html_table(*v.headline())}{exact_html}
<p class="warn">{esc(v.warning)}</p>{img("ratings.png")}
<h2>Mean reward per seat</h2><p>Each participant's mean reward in each seat with its 95% interval (games in parentheses){esc(v.cross_note)}.</p>
{html_table(*v.rewards())}{pair_html}
<h2>Score matrix</h2><p>{esc(v.matrix_note())}</p>{matrix}{img("winrate.png")}
{progress}<h2>Transcripts</h2><ul>{transcripts}</ul><p>All games: matches.csv; numbers: summary.json.</p></body></html>
"""

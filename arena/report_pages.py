"""The tournament report's pages: the console table, the plots, report.md and a self-contained report.html."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfplay.arena.standings import Rated  # noqa: E402


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def draw_plots(order: list[str], rated: Rated, steps: dict[str, int], scale: str = "Elo") -> dict[str, bytes]:
    """ratings.png (each rating with its interval), winrate.png (row against column) and, for checkpoints,
    progress.png (rating against training step), as PNG bytes by file name."""
    plots = {"ratings.png": _ratings_plot(order, rated, scale), "winrate.png": _score_matrix_plot(order, rated, scale)}
    if steps:
        plots["progress.png"] = _progress_plot(order, rated, steps, scale)
    return plots


def _ratings_plot(order: list[str], rated: Rated, scale: str) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.2))
    y = range(len(order))[::-1]
    # the interval as drawn from its ends: with few games a bootstrap interval need not contain the point estimate
    ax.hlines(list(y), [rated.intervals[n][0] for n in order], [rated.intervals[n][1] for n in order], color="C0")
    ax.plot([rated.ratings[n] for n in order], list(y), "o", color="C0")
    ax.set_yticks(list(y), order)
    ax.set_xlabel("Elo (Bradley-Terry), 95% bootstrap interval" if scale == "Elo" else f"{scale}, 95% interval")
    ax.grid(axis="x", alpha=0.3)
    return png_bytes(fig)


def _score_matrix_plot(order: list[str], rated: Rated, scale: str) -> bytes:
    scores = rated.scores
    fig, ax = plt.subplots(figsize=(1.0 * len(order) + 2, 0.8 * len(order) + 1.5))
    matrix = [
        [scores[(a, b)][0] / scores[(a, b)][1] if (a, b) in scores else float("nan") for b in order] for a in order
    ]
    values = [v for row in matrix for v in row if v == v] or [0.0, 1.0]
    elo = scale == "Elo"
    im = ax.imshow(matrix, cmap="RdYlGn", vmin=0 if elo else min(values), vmax=1 if elo else max(values) + 1e-9)
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            if (a, b) in scores:
                s, n = scores[(a, b)]
                ax.text(j, i, f"{s / n:.2f}\n({n})", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.set_yticks(range(len(order)), order)
    diagonal = "; diagonal: self-play" if any((n, n) in scores for n in order) else ""
    ax.set_title(
        "score of row against column (games)" if elo else "mean team reward of row with column (games)" + diagonal
    )
    fig.colorbar(im, ax=ax, fraction=0.04)
    return png_bytes(fig)


def _progress_plot(order: list[str], rated: Rated, steps: dict[str, int], scale: str) -> bytes:
    ordered = sorted(steps, key=steps.get)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = [steps[n] for n in ordered]
    ax.plot(xs, [rated.ratings[n] for n in ordered], "o-", label="checkpoint")
    ax.fill_between(xs, [rated.intervals[n][0] for n in ordered], [rated.intervals[n][1] for n in ordered], alpha=0.25)
    for n in order:
        if n not in steps:
            ax.axhline(rated.ratings[n], ls="--", lw=1, color="gray")
            ax.text(xs[0], rated.ratings[n], f" {n}", va="bottom", fontsize=8, color="gray")
    ax.set_xlabel("training step")
    ax.set_ylabel(scale)
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def text_table(rows: list[dict], scale: str, team: bool) -> list[str]:
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


@dataclass
class ReportView:
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


def md_table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(row) + " |" for row in body]


def markdown_page(v: ReportView) -> str:
    """report.md: the headline table, exact figures, per-seat and pairwise rewards, the score matrix, cycles and
    links to transcripts."""
    md = [f"# Tournament report: {v.game}", "", v.method, ""] + ([v.fixed_note, ""] if v.fixed else [])
    md += md_table(*v.headline())
    md += _markdown_exact(v)
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
    md += md_table(*v.rewards())
    if v.pair_rewards:
        md += ["", "## Mean reward against each opponent", "", PAIR_REWARDS_NOTE, ""]
        md += md_table(*v.reward_matrix())
    md += ["", "## Score matrix", "", v.matrix_note(), "", "| | " + " | ".join(v.order) + " |"]
    md += ["|---|" + "---|" * len(v.order)]
    md += [f"| {a} | " + " | ".join(v.cell(a, b) for b in v.order) + " |" for a in v.order]
    md += ["", "![win rates](winrate.png)", ""]
    if "progress.png" in v.plots:
        md += ["## Rating against training step", "", "![progress](progress.png)", ""]
    if v.loops:
        md += ["## Dominance cycles", ""] + [f"- {' > '.join(c + [c[0]])}" for c in v.loops] + [""]
    md += ["## Transcripts", ""] + [f"- [{p.replace('|', ' vs ')}]({link})" for p, link in v.links.items()]
    return "\n".join(md) + "\n"


PAIR_REWARDS_NOTE = (
    "The row participant's mean reward in the games it played with the column participant (both seats), with its 95% "
    "interval (games in parentheses); on the diagonal, its mean reward over the seats when it holds every seat "
    "(self-play)."
)


def _markdown_exact(v: ReportView) -> list[str]:
    """The exact-exploitability section, for participants whose policy is known exactly."""
    if not any(r.get("exploitability") is not None for r in v.rows):
        return []
    md = [
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
    return md + ["| " + " | ".join(row) + " |" for row in body]

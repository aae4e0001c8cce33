"""The training report: ``RUN/report.md`` with ``progress.png`` (the learner's evaluation and Elo at each
evaluation step), the learner's mean reward per seat, held-out accuracy (``heldout.png``) and, with a
curriculum, each arm's sampling probability and mean |advantage| (``curriculum.png``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfplay.arena.report_pages import png_bytes  # noqa: E402


def _heldout_section(run_dir: Path, history: list[dict]) -> list[str]:
    """``RUN/heldout.png`` and a table: the learner's mean reward per role and arm on the held-out seeds."""
    series = sorted({(role, arm) for h in history for role, arms in h["heldout"].items() for arm in arms})
    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [h["step"] for h in history]
    for role, arm in series:
        ax.plot(
            steps,
            [h["heldout"].get(role, {}).get(arm, float("nan")) for h in history],
            "o-" if arm == "all" else ".--",
            label=f"{role} / {arm}",
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out mean reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    (run_dir / "heldout.png").write_bytes(png_bytes(fig))
    lines = [
        "",
        "## Held-out evaluation",
        "",
        "![heldout](heldout.png)",
        "",
        "| step | seconds | " + " | ".join(f"{r} / {a}" for r, a in series) + " |",
        "|---:|---:|" + "---:|" * len(series),
    ]
    for h in history:
        cells = [f"{h['heldout'].get(r, {}).get(a, float('nan')):.3f}" for r, a in series]
        lines.append(f"| {h['step']} | {h.get('seconds', float('nan')):.0f} | " + " | ".join(cells) + " |")
    return lines


def _quiz_section(run_dir: Path, history: list[dict], role: str) -> list[str]:
    """``RUN/quiz.png`` and a table: held-out quiz accuracy per set against the samples ``role`` trained on, with
    Wilson 95% intervals."""
    from selfplay.arena.stats import wilson

    keys = sorted({k for h in history for k in h["quiz"]})
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = [h.get("samples", {}).get(role, 0) for h in history]
    for key in keys:
        points = [(x, h["quiz"][key]) for x, h in zip(xs, history) if key in h["quiz"]]
        ci = [wilson(sum(r["outcomes"]), r["n"]) for _, r in points]
        ax.plot([x for x, _ in points], [r["accuracy"] for _, r in points], "o-", label=key)
        ax.fill_between([x for x, _ in points], [c[0] for c in ci], [c[1] for c in ci], alpha=0.2)
    ax.set_xlabel(f"{role} samples trained on")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    (run_dir / "quiz.png").write_bytes(png_bytes(fig))
    lines = [
        "",
        "## Held-out quiz",
        "",
        f"Accuracy on held-out problems (greedy, the same at every evaluation) against "
        f"the {role}'s training samples; 95% Wilson intervals.",
        "",
        "![quiz](quiz.png)",
        "",
        f"| step | {role} samples | " + " | ".join(keys) + " |",
        "|---:|---:|" + "---:|" * len(keys),
    ]
    for x, h in zip(xs, history):
        cells = []
        for key in keys:
            r = h["quiz"].get(key)
            low, high = wilson(sum(r["outcomes"]), r["n"]) if r else (float("nan"), float("nan"))
            cells.append(f"{r['accuracy']:.3f} [{low:.2f}, {high:.2f}]" if r else "")
        lines.append(f"| {h['step']} | {x} | " + " | ".join(cells) + " |")
    return lines


def write_training_report(
    run_dir: Path,
    history: list[dict],
    *,
    curriculum: list[dict] | None = None,
    training: list[dict] | None = None,
    tasks: list[dict] | None = None,
    quiz_role: str = "",
    precision: str = "",
) -> None:
    """``RUN/progress.png`` and ``RUN/report.md``: the learner's evaluation at each evaluation step (win rates and
    Elo for win/lose games; mean reward with 95% intervals and exact exploitability otherwise); with a curriculum,
    ``RUN/curriculum.png``: each arm's sampling probability and mean |advantage| over steps. ``training``: the mean
    training (self-play) reward per role at each step, its own panel."""
    run_dir = Path(run_dir)
    (run_dir / "progress.png").write_bytes(_progress_plot(history, training or []))
    lines = ["# Training report", "", "![progress](progress.png)", "", *_evaluation_table(history)]
    seats = sorted({(o, r) for h in history for o, e in h["evaluation"].items() for r in e.get("reward", {})})
    if seats:  # e.g. the solver's accuracy on the expert creator's tasks, the critic's on the sneaky generator's
        lines += [
            "",
            "Learner's mean reward per seat (the same held-out games at every evaluation):",
            "",
            "| step | " + " | ".join(f"{r} vs {o}" for o, r in seats) + " |",
            "|---:|" + "---:|" * len(seats),
        ]
        for h in history:
            lines.append(
                f"| {h['step']} | "
                + " | ".join(
                    f"{h['evaluation'].get(o, {}).get('reward', {}).get(r, float('nan')):+z.3f}" for o, r in seats
                )
                + " |"
            )
    quizzed = [h for h in history if h.get("quiz")]
    if quizzed:
        lines += _quiz_section(run_dir, quizzed, quiz_role or "learner")
    if any("heldout" in h for h in history):
        lines += _heldout_section(run_dir, [h for h in history if "heldout" in h])
    if curriculum:
        (run_dir / "curriculum.png").write_bytes(_curriculum_plot(curriculum))
        lines += ["", "## Curriculum", "", "![curriculum](curriculum.png)"]
    if tasks:
        (run_dir / "tasks.png").write_bytes(_tasks_plot(tasks))
        lines += _tasks_section(tasks)
    lines += _mismatch_section(training or [], precision)
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")


def _mismatch_section(training: list[dict], precision: str) -> list[str]:
    """The sampler/learner mismatch at the first, median-mismatch, worst and last steps."""
    steps = [t for t in training if t.get("mismatch")]
    if not steps:
        return []
    by_mean = sorted(steps, key=lambda t: t["mismatch"]["mean"])
    picks = {
        "first": steps[0],
        "median": by_mean[len(by_mean) // 2],
        "largest": max(steps, key=lambda t: t["mismatch"]["max"]),
        "last": steps[-1],
    }
    lines = [
        "",
        "## Sampler and learner",
        "",
        f"{precision}. |log-probability of a sampled token under the sampler - under the learner before its update|, "
        f"per step, over {len(steps)} steps (every step's in TensorBoard, mismatch/*, and trainer.json):",
        "",
        "| | step | mean | largest | tokens at the weight cap |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in picks.items():
        m = t["mismatch"]
        lines.append(f"| {name} | {t['step']} | {m['mean']:.2e} | {m['max']:.2e} | {m['capped']:.1%} |")
    return lines


def _tasks_section(tasks: list[dict]) -> list[str]:
    """The proposer-collapse monitor's section: what it measures, the plot, the last step's shares, the warnings."""
    last = tasks[-1]
    lines = [
        "",
        "## Tasks written (proposer-collapse monitor)",
        "",
        "Per step and task-writing role: the share of distinct tasks, of near-duplicates (character-trigram "
        "similarity >= 0.8 to another task of the step), and how the answers fared on them: malformed, too easy "
        "(all right), frontier (some right), too hard (none right).",
        "",
        "![tasks](tasks.png)",
        "",
        "| role | tasks (last step) | distinct | near-duplicates | malformed | too easy | frontier | too hard |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for role, v in last["roles"].items():
        lines.append(
            f"| {role} | {int(v['tasks'])} | "
            + " | ".join(
                f"{v[k]:.0%}" for k in ("distinct", "near_duplicates", "malformed", "too_easy", "frontier", "too_hard")
            )
            + " |"
        )
    warned = [(t["step"], w) for t in tasks for w in t.get("warnings", [])]
    if warned:
        lines += [
            "",
            f"Warnings at {len({s for s, _ in warned})} of {len(tasks)} steps; the last: step {warned[-1][0]}: "
            f"{warned[-1][1]}",
        ]
    return lines


def _tasks_plot(tasks: list[dict]) -> bytes:
    """Left: distinct and near-duplicate shares per writer over steps; right: its solve-rate bins, stacked."""
    roles = sorted({r for t in tasks for r in t["roles"]})
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    steps = [t["step"] for t in tasks]
    for role in roles:
        values = [t["roles"].get(role) for t in tasks]
        axes[0].plot(steps, [v["distinct"] if v else float("nan") for v in values], ".-", label=f"{role}: distinct")
        axes[0].plot(
            steps,
            [v["near_duplicates"] if v else float("nan") for v in values],
            "x--",
            label=f"{role}: near-duplicates",
        )
    axes[0].set_ylabel("share of well-formed tasks")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_title("variety")
    role = roles[0]
    bottom = [0.0] * len(tasks)
    for name in ("malformed", "too_easy", "frontier", "too_hard"):
        heights = [(t["roles"].get(role) or {}).get(name, 0.0) for t in tasks]
        axes[1].bar(steps, heights, bottom=bottom, label=name.replace("_", " "))
        bottom = [b + h for b, h in zip(bottom, heights)]
    axes[1].set_ylabel(f"share of {role}'s tasks")
    axes[1].set_title(f"how the answers fared ({role})")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def _progress_plot(history: list[dict], training: list[dict]) -> bytes:
    """Panels side by side: win + draw rate, or mean reward with its interval, per evaluation opponent; the learner's
    Elo, or the exact exploitability, where there is one; the training (self-play) reward per role at each step."""
    steps, opponents = [h["step"] for h in history], list(history[-1]["evaluation"])
    win_lose = history[-1].get("win_lose", True)
    elo = [h["evaluation"][opponents[0]].get("learner_elo") if opponents else None for h in history]
    exact = [h.get("exact") for h in history]
    rated = bool(opponents) and all(elo) or any(exact)
    count = 1 + rated + bool(training)
    fig, axes = plt.subplots(1, count, figsize=(5.5 * count, 3.6), squeeze=False)
    left, *rest = axes[0]
    for name in opponents:
        rows = [h["evaluation"].get(name) for h in history]
        if win_lose:
            left.plot(steps, [r["win_or_draw"] if r else float("nan") for r in rows], "o-", label=f"vs {name}")
            continue
        means = [r["mean_reward"] if r else float("nan") for r in rows]
        left.errorbar(
            steps,
            means,
            yerr=[
                [m - r["mean_reward_ci"][0] if r else 0 for m, r in zip(means, rows)],
                [r["mean_reward_ci"][1] - m if r else 0 for m, r in zip(means, rows)],
            ],
            fmt="o-",
            capsize=3,
            label=f"vs {name}",
        )
    left.set_ylabel("win + draw rate (both seats)" if win_lose else "mean reward over seats, 95% interval")
    left.set_title("evaluation")
    if win_lose:
        left.set_ylim(-0.02, 1.02)
    if rated:
        _rating_panel(rest.pop(0), steps, elo if opponents and all(elo) else None, exact)
    if training:
        panel = rest.pop(0)
        roles = sorted({r for t in training for r in t["reward"]})
        for role in roles:
            panel.plot(
                [t["step"] for t in training], [t["reward"].get(role, float("nan")) for t in training], ".-", label=role
            )
        panel.set_ylabel("mean training reward (all opponents)")
        panel.set_title("training games")
    for ax in axes[0]:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()  # no panel's label runs into its neighbour
    return png_bytes(fig)


def _rating_panel(right, steps: list[int], elo: list[dict] | None, exact: list[dict | None]) -> None:
    """The learner's Elo with its interval where every evaluation rated it, else the exact exploitability of the
    current and the average policy."""
    if elo:
        right.plot(steps, [e["elo"] for e in elo], "o-")
        right.fill_between(steps, [e["low"] for e in elo], [e["high"] for e in elo], alpha=0.25)
        right.set_ylabel(f"learner Elo ({elo[0]['anchor']} = 0)")
    else:
        right.plot(steps, [x["exploitability"] if x else float("nan") for x in exact], "o-", label="current policy")
        right.plot(
            steps,
            [x.get("average", float("nan")) if x else float("nan") for x in exact],
            "s--",
            label="average policy",
        )
        right.set_ylabel(f"exploitability (NashConv / {next(x for x in exact if x).get('players', 2)})")
        right.set_ylim(bottom=0)
    right.set_title("rating" if elo else "distance to equilibrium (exact)")


def _evaluation_table(history: list[dict]) -> list[str]:
    """The markdown table of the evaluations, as the game's outcome model reads."""
    opponents = list(history[-1]["evaluation"])
    if history[-1].get("win_lose", True):
        lines = [
            "| step | " + " | ".join(f"vs {o}: win / draw / loss" for o in opponents) + " | Elo [95%] |",
            "|---:|" + "---|" * len(opponents) + "---|",
        ]
        for h in history:
            e = h["evaluation"][opponents[0]].get("learner_elo") if opponents else None
            cells = [
                f"{h['evaluation'][o]['win']:.2f} / {h['evaluation'][o]['draw']:.2f} / {h['evaluation'][o]['loss']:.2f}"
                if o in h["evaluation"]
                else "–"
                for o in opponents
            ]
            rating = f"{e['elo']:+z.0f} [{e['low']:+z.0f}, {e['high']:+z.0f}]" if e else "–"
            lines.append(f"| {h['step']} | " + " | ".join(cells) + f" | {rating} |")
        return lines
    games = int(history[-1]["evaluation"][opponents[0]]["games"]) if opponents else 0
    lines = [
        f"The learner's mean reward over its seats against each baseline, with its 95% interval ({games} fixed "
        "evaluation games each); exploitability is exact (NashConv / number of players) where the game can be "
        "enumerated.",
        "",
        "| step | "
        + " | ".join(f"vs {o}: mean reward [95%]" for o in opponents)
        + " | exploitability | average policy |",
        "|---:|" + "---|" * len(opponents) + "---:|---:|",
    ]
    team = next((x["exact"] for x in reversed(history) if "team_value" in (x.get("exact") or {})), None)
    if team:  # cooperative: the exact team value in self-play, against the best joint policy's
        best = f" (the best joint policy's: {team['team_optimum']:.4f})" if "team_optimum" in team else ""
        lines[0] += (
            f" The team value is the exact expected team reward in self-play{best}: a Nash equilibrium of a "
            "cooperative game can fall short of the best."
        )
        lines[2], lines[3] = lines[2] + " team value |", lines[3] + "---:|"
    for h in history:
        x = h.get("exact")
        cells = [
            f"{h['evaluation'][o]['mean_reward']:+z.3f} [{h['evaluation'][o]['mean_reward_ci'][0]:+z.3f}, "
            f"{h['evaluation'][o]['mean_reward_ci'][1]:+z.3f}]"
            + (f", team success {h['evaluation'][o]['success']:.0%}" if "success" in h["evaluation"][o] else "")
            if o in h["evaluation"]
            else "–"
            for o in opponents
        ]
        ex = (f"{x['exploitability']:.4f}", f"{x['average']:.4f}" if "average" in x else "–") if x else ("–", "–")
        value = (f" {x['team_value']:.4f} |" if x and "team_value" in x else " – |") if team else ""
        lines.append(f"| {h['step']} | " + " | ".join(cells) + f" | {ex[0]} | {ex[1]} |{value}")
    return lines


def _curriculum_plot(curriculum: list[dict]) -> bytes:
    """Each arm's sampling probability and mean |advantage| over steps."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    xs = [c["step"] for c in curriculum]
    for arm in curriculum[-1]["p"]:
        left.plot(xs, [c["p"][arm] for c in curriculum], label=arm)
        right.plot(
            xs,
            [c["absadv"].get(arm) if c["absadv"].get(arm) is not None else float("nan") for c in curriculum],
            "o",
            ms=3,
            label=arm,
        )
    left.set_ylabel("sampling probability")
    right.set_ylabel("mean |advantage|")
    for ax in (left, right):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(title="arm")
    return png_bytes(fig)

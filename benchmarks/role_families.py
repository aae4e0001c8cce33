"""Role families that teach, measured: each family's recipe and its ablations side by side, on held-out problems.

    python benchmarks/role_families.py creator --seeds 3 --minutes 30     # learned creator vs random creator
    python benchmarks/role_families.py critic --seeds 3 --minutes 30      # learned generator vs random corruption
    python benchmarks/role_families.py teacher --seeds 3 --minutes 30     # learned vs ALP-GMM vs uniform teacher
    python benchmarks/role_families.py creator --model tiny --minutes 10  # the tiny recipes
    python benchmarks/role_families.py creator --steps 100 --arms learned random update.lr=2e-4   # any override

Each arm is one recipe in configs/ plus its switch (``opponents.seats`` for a scripted creator, generator or
teacher; the ALP-GMM teacher's own recipe), trained for the same number of steps, so on the same number of
solver / critic / student samples (printed: ``samples``); ``--minutes`` is a cap on each run's training time
(``run.max_minutes``) that can end an arm early with fewer samples, said in the table. Every run answers the
same held-out quiz (``evaluation.quiz_*``: problems no training game draws, the same seeds for every arm and
seed; greedy) before training and at the end. Per arm, pooled over seeds: accuracy before and after with Wilson
95% intervals, the change with a paired interval (the same problems before and after), and the difference of
each arm from the last one (the ablation baseline), paired by problem. These intervals count the quiz's
problems; with several seeds the per-seed changes show the run-to-run spread beside them.

Runs are subprocesses (``python -m selfplay.train``) writing to OUT/FAMILY-MODEL/ARM/seed-S; a finished run is
reused (``--fresh`` retrains). Writes OUT/FAMILY-MODEL/table.md, results.json and accuracy.png (held-out accuracy
against samples, one line per arm and seed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.args import positive, positive_float  # noqa: E402
from benchmarks.threads import cpu_model  # noqa: E402
from selfplay.arena.stats import paired_difference, wilson  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {  # family -> (role measured, {arm: (recipe stem, overrides)}); the last arm is the ablation baseline
    "creator": (
        "solver",
        {
            "learned": ("creator_solver_arithmetic", []),
            "random": ("creator_solver_arithmetic", ["opponents.seats={creator: random}"]),
        },
    ),
    "critic": (
        "critic",
        {
            "learned": ("sneaky_critic_structured", []),
            "random": ("sneaky_critic_structured", ["opponents.seats={generator: random}"]),
        },
    ),
    "teacher": (
        "student",
        {
            "learned": ("teacher_student_structured", []),
            "alp-gmm": ("teacher_student_alp_gmm", ["evaluation.quiz_role=solver"]),
            "uniform": ("teacher_student_structured", ["opponents.seats={teacher: random}"]),
        },
    ),
}


def recipe(stem: str, model: str) -> Path:
    return ROOT / "configs" / (f"{stem}_tiny.yaml" if model == "tiny" else f"{stem}.yaml")


def train_arm(
    stem: str, model: str, seed: int, out: Path, steps: int | None, minutes: float | None, overrides: list[str]
) -> float:
    """Train one arm and seed in a subprocess (its log in OUT/train.log); return the wall time."""
    args = [
        sys.executable,
        "-m",
        "selfplay.train",
        str(recipe(stem, model)),
        f"run.seed={seed}",
        f"run.out={out}",
        "run.resume=never",
        "run.progress=false",
        *([f"run.steps={steps}"] if steps else []),
        *([f"run.max_minutes={minutes}"] if minutes else []),
        *overrides,
    ]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (out.parent / f"{out.name}.log").open("w") as log:
        done = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"training failed ({' '.join(args)}): see {out.parent / f'{out.name}.log'}")
    return time.perf_counter() - start


def quiz_outcomes(entry: dict) -> list[float]:
    """Every quiz problem's outcome of one evaluation, the sets in name order (the teacher's 10 kinds pooled)."""
    return [x for key in sorted(entry["quiz"]) for x in entry["quiz"][key]["outcomes"]]


def load(run: Path) -> dict:
    """A finished run's first and last quiz, the quiz role's samples, steps and training seconds, and the accuracy
    curve."""
    history = json.loads((run / "summary.json").read_text())["history"]
    quizzed = [h for h in history if h.get("quiz")]
    first, last = quizzed[0], quizzed[-1]
    if first["step"] != 0:
        raise SystemExit(f"{run}: no quiz before training (evaluation.before must be true)")
    sampled = last.get("samples", {})
    config = json.loads((run / "config.json").read_text())
    planned, role = config["run"]["steps"], config["evaluation"]["quiz_role"]  # the solver in the ALP-GMM arm
    return {
        "before": quiz_outcomes(first),
        "after": quiz_outcomes(last),
        "steps": last["step"],
        "planned": planned,
        "seconds": last.get("seconds", 0.0),
        "samples": sampled.get(role, 0),
        "per_set": {k: (first["quiz"][k]["accuracy"], v["accuracy"]) for k, v in last["quiz"].items()},
        "curve": [(h.get("samples", {}).get(role, 0), sum(quiz_outcomes(h)) / len(quiz_outcomes(h))) for h in quizzed],
    }


def choices(run: Path, parts: int = 4) -> dict[str, list[float]]:
    """What the training games asked, by kind (``add2``) and by quarter of the run: the share of each kind among
    each quarter's training games (the teacher's choices over time; the ALP-GMM and uniform arms' alike)."""
    from selfplay.arena.records import read_store

    episodes = [ep for ep in read_store(run).episodes(with_steps=False) if "eval" not in ep.meta]
    last = max((ep.meta["step"] for ep in episodes), default=1)
    counts: dict[str, list[int]] = {}
    totals = [0] * parts
    for ep in episodes:
        info = ep.meta.get("info") or {}
        if info.get("skill") is None:
            continue
        part = min(parts - 1, (ep.meta["step"] - 1) * parts // last)
        counts.setdefault(f"{info['skill']}{info.get('digits', '')}", [0] * parts)[part] += 1
        totals[part] += 1
    return {k: [c / t if t else 0.0 for c, t in zip(v, totals)] for k, v in sorted(counts.items())}


def fmt(p: float, ci: tuple[float, float]) -> str:
    return f"{p:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def table(family: str, model: str, results: dict[str, list[dict]]) -> list[str]:
    """The comparison as markdown lines."""
    arms = list(results)
    base = arms[-1]
    lines = [
        f"role family: {family}, model: {model}, seeds: {len(results[base])}, CPU: {cpu_model()}",
        "",
        "| arm | samples | steps | train min | accuracy before | accuracy after | change [95%] | per seed | "
        f"after - {base} [95%] |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        runs = results[arm]
        before = [x for r in runs for x in r["before"]]
        after = [x for r in runs for x in r["after"]]
        change = paired_difference(before, after)
        per_seed = ", ".join(f"{(sum(r['after']) - sum(r['before'])) / len(r['after']):+.3f}" for r in runs)
        versus = ""
        if arm != base:
            other = [x for r in results[base] for x in r["after"]]
            d = paired_difference(other, after)
            versus = f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"
        samples = sum(r["samples"] for r in runs) // len(runs)
        steps = "/".join(str(r["steps"]) for r in runs)
        lines.append(
            f"| {arm} | {samples} | {steps} | {sum(r['seconds'] for r in runs) / 60 / len(runs):.1f} | "
            f"{fmt(sum(before) / len(before), wilson(sum(before), len(before)))} | "
            f"{fmt(sum(after) / len(after), wilson(sum(after), len(after)))} | "
            f"{change[0]:+.3f} [{change[1]:+.3f}, {change[2]:+.3f}] | {per_seed} | {versus} |"
        )
    short = [
        f"{arm} seed {i} ({r['steps']} of {r['planned']})"
        for arm in arms
        for i, r in enumerate(results[arm])
        if r["steps"] < r["planned"]
    ]
    if short:
        lines += ["", f"Stopped by the time cap before their planned steps (fewer samples): {', '.join(short)}."]
    sets = sorted(results[base][0]["per_set"])
    if len(sets) > 1:
        lines += [
            "",
            "Per quiz set, mean over seeds (before -> after):",
            "",
            "| arm | " + " | ".join(sets) + " |",
            "|---|" + "---:|" * len(sets),
        ]
        for arm in arms:
            cells = []
            for key in sets:
                b = sum(r["per_set"][key][0] for r in results[arm]) / len(results[arm])
                a = sum(r["per_set"][key][1] for r in results[arm]) / len(results[arm])
                cells.append(f"{b:.2f} -> {a:.2f}")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if family == "teacher":
        lines += [
            "",
            "What the student was asked, share of training games by kind, per quarter of the run (seed 0):",
            "",
        ]
        for arm in arms:
            shares = results[arm][0].get("choices") or {}
            lines.append(f"- {arm}: " + "; ".join(f"{k} " + "/".join(f"{x:.0%}" for x in v) for k, v in shares.items()))
    return lines


def plot(path: Path, results: dict[str, list[dict]], role: str) -> None:
    """Held-out accuracy against samples, one line per arm and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (arm, runs) in enumerate(results.items()):
        for j, r in enumerate(runs):
            xs, ys = zip(*r["curve"])
            ax.plot(xs, ys, "o-", color=f"C{i}", alpha=0.8, label=arm if j == 0 else None)
    ax.set_xlabel(f"{role} samples trained on")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2", help="the recipes' model")
    parser.add_argument("--seeds", type=positive, default=1)
    parser.add_argument(
        "--steps", type=positive, default=None, help="training steps per run (the sample budget; default: the recipe's)"
    )
    parser.add_argument("--minutes", type=positive_float, default=None, help="cap on each run's training minutes")
    parser.add_argument("--arms", nargs="+", default=None, help="a subset of the family's arms, in order")
    parser.add_argument("--out", default="runs/role-families")
    parser.add_argument("--fresh", action="store_true", help="retrain runs that already finished")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every arm")
    args = parser.parse_intermixed_args(argv)
    role, arms = FAMILIES[args.family]
    unknown = [a for a in args.arms or [] if a not in arms]
    if unknown:
        parser.error(f"unknown arm(s) {unknown} for {args.family}: expected some of {', '.join(arms)}")
    chosen = {a: arms[a] for a in (args.arms or arms)}
    out = Path(args.out) / f"{args.family}-{args.model}"
    print(f"{args.family} ({args.model}): arms {', '.join(chosen)}; seeds {args.seeds}; CPU {cpu_model()}", flush=True)
    results: dict[str, list[dict]] = {}
    for arm, (stem, overrides) in chosen.items():
        for seed in range(args.seeds):
            run = out / arm / f"seed-{seed}"
            if args.fresh or not (run / "summary.json").is_file():
                wall = train_arm(stem, args.model, seed, run, args.steps, args.minutes, [*overrides, *args.overrides])
                print(f"  {arm} seed {seed}: trained in {wall / 60:.1f} min ({run})", flush=True)
            results.setdefault(arm, []).append(
                {**load(run), **({"choices": choices(run)} if args.family == "teacher" else {})}
            )
    lines = table(args.family, args.model, results)
    print("\n" + "\n".join(lines))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(out / "accuracy.png", results, role)
    print(f"\nwritten: {out}/table.md, results.json, accuracy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a curriculum buy anything? Uniform vs SEC vs online difficulty filtering on a tiny model, CPU.

    python benchmarks/curriculum.py                       # 3 policies x 2 seeds, 100 steps each (about 25 min)
    python benchmarks/curriculum.py --seeds 0 1 2 --steps 150 --target 0.45
    python benchmarks/curriculum.py --task tictactoe      # opponents as arms: uniform vs SEC (about 8 min)

``--task tictactoe``: TicTacToe (compact board, constrained decoding, 128 games per step) where the arms are the
opponents (mirror self-play, random, expert); the measure is win+draw against the random agent (greedy, both seats,
200 games every 5 steps), default target 0.75, 40 steps. Filtering needs samples=K groups, so it is not run there.

``--task arithmetic`` (default): the arithmetic quiz as four-way multiple choice (constrained decoding) with the skill as the arm
(add, sub, mul, paren on one-digit numbers: categories of different difficulty), 32 questions per step, GRPO
groups of 8 answers.
Every ``eval_every`` steps the learner answers 100 fixed held-out questions per skill greedily. Prints, per run,
the held-out accuracy curve (mean over skills), the steps and training seconds (evaluation excluded) to reach
``--target``, and writes ``OUT/curriculum_comparison.png``; each run directory keeps its report.md with the
curriculum's per-arm probabilities.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import positive  # noqa: E402
from selfplay.training.config import load_config  # noqa: E402
from selfplay.training.train import train  # noqa: E402

COMMON = [
    "game=arithmetic",
    "game_options={choices: 4, samples: 8, digits: 1}",
    "model=tiny",
    "constrained=true",
    "advantage=grpo",
    "lr=3e-3",
    "games_per_step=32",
    "max_new_tokens=12",
    "scripted_prob=0",
    "evaluation.opponents=[]",
    "evaluation.heldout=true",
    "evaluation.games=100",
    "evaluation.temperature=0",
    "evaluation.every=10",
    "checkpoint_every=1000",
    "progress=false",
    "resume=never",
    "curriculum.option=skill",
    "curriculum.arms=[add, sub, mul, paren]",
]
TICTACTOE = [
    "game=tictactoe",
    "model=tiny",
    "constrained=true",
    "game_options.compact=true",
    "games_per_step=128",
    "lr=3e-3",
    "evaluation.every=5",
    "evaluation.games=200",
    "evaluation.temperature=0",
    "evaluation.opponents=[random]",
    "checkpoint_every=1000",
    "progress=false",
    "resume=never",
    "curriculum.option=opponent",
    "curriculum.arms=[mirror, random, expert]",
]
POLICIES = {
    "uniform": ["curriculum.policy=uniform"],
    "sec": ["curriculum.policy=sec", "curriculum.params={alpha: 0.5, tau: 0.1}"],
    "filter": ["curriculum.policy=uniform", "filter_low=0.2", "filter_high=0.8", "filter_refill=2"],
}
TASKS = {
    "arithmetic": (COMMON, ["uniform", "sec", "filter"], 100, 0.4),
    "tictactoe": (TICTACTOE, ["uniform", "sec"], 40, 0.75),
}


def score(task: str, entry: dict) -> float:
    """The measure of one evaluation: held-out accuracy over skills, or win+draw vs random."""
    return entry["heldout"]["solver"]["all"] if task == "arithmetic" else entry["evaluation"]["random"]["win_or_draw"]


def reached(task: str, history: list[dict], target: float) -> tuple[int | None, float | None]:
    """First evaluation step (and training seconds) at which the measure is >= target."""
    for h in history:
        if score(task, h) >= target:
            return h["step"], h["seconds"]
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), default="arithmetic")
    parser.add_argument("--policies", nargs="+", choices=list(POLICIES), help="default: all that apply to the task")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=positive, help="default 100 (arithmetic), 40 (tictactoe)")
    parser.add_argument("--target", type=float, help="measure to reach (default 0.4 accuracy, 0.75 win+draw)")
    parser.add_argument("--out", default="runs/curriculum-benchmark")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides for every run")
    args = parser.parse_intermixed_args()
    common, policies, steps, target = TASKS[args.task]
    policies, steps, target = args.policies or policies, args.steps or steps, args.target or target
    out = Path(args.out)
    results: dict[str, list[list[dict]]] = {}
    for name in policies:
        for seed in args.seeds:
            run = out / f"{name}-seed{seed}"
            config = load_config(
                Path(__file__).parents[1] / "configs/tictactoe_quick.yaml",
                [*common, *POLICIES[name], f"seed={seed}", f"steps={steps}", f"out={run}", *args.overrides],
            )
            train(config)
            results.setdefault(name, []).append(json.loads((run / "summary.json").read_text())["history"])

    measure = "held-out accuracy (mean over skills; chance 0.25)" if args.task == "arithmetic" else "win+draw vs random"
    print(f"\n{args.task}: {measure}, target {target}")
    print(f"{'policy':<8} {'seed':>4} {'steps to target':>16} {'seconds':>8}  curve (step: accuracy)")
    for name, runs in results.items():
        for seed, history in zip(args.seeds, runs):
            step, seconds = reached(args.task, history, target)
            curve = " ".join(f"{h['step']}:{score(args.task, h):.2f}" for h in history)
            print(
                f"{name:<8} {seed:>4} {step if step else 'not reached':>16} "
                f"{f'{seconds:.0f}' if seconds else '-':>8}  {curve}"
            )
        finals = [score(args.task, h[-1]) for h in runs]
        detail = ""
        if args.task == "arithmetic":
            per_arm = {
                a: statistics.mean(h[-1]["heldout"]["solver"][a] for h in runs) for a in ("add", "sub", "mul", "paren")
            }
            detail = "; per skill " + ", ".join(f"{a} {v:.2f}" for a, v in per_arm.items())
        print(
            f"{name:<8} final mean {statistics.mean(finals):.3f} over {len(runs)} seeds{detail}; "
            f"{statistics.mean(h[-1]['seconds'] for h in runs):.0f}s training per run"
        )

    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, runs), color in zip(results.items(), ("C0", "C1", "C2", "C3")):
        for i, history in enumerate(runs):
            ax.plot(
                [h["step"] for h in history],
                [score(args.task, h) for h in history],
                "o-",
                color=color,
                alpha=0.8,
                label=name if i == 0 else None,
            )
    ax.axhline(target, color="grey", ls="--", lw=1)
    ax.set_xlabel("training step")
    ax.set_ylabel(measure)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(out / "curriculum_comparison.png", dpi=110, bbox_inches="tight")
    print(f"plot: {out / 'curriculum_comparison.png'}")


if __name__ == "__main__":
    main()

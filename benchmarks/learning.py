"""Does self-play training learn? Two measured curves, on CPU.

    python benchmarks/learning.py            # tiny model, TicTacToe vs random and expert opponents: win+draw vs random
    python benchmarks/learning.py --smollm2  # SmolLM2-135M-Instruct, short run: invalid-move rate per step

The tiny run is the recipe configs/tictactoe_tiny.yaml. It decodes only legal moves (``constrained=true``; the
constrained policy is what is trained) on the compact board prompt (each cell after its number), so what it must
learn is strategy. Its opponents are drawn
uniformly from the random and the minimax expert agent (a uniform curriculum over opponent arms): the random one
is beaten by attacking, the expert punishes every missed block. Sixteen clipped-ratio passes per batch
(``ppo_epochs=16``) at lr 1e-3 decaying on a cosine to 3e-4; per-state baselines (by opponent) with TD(0.5) returns;
an entropy bonus of 0.05, without which the policy freezes on losing moves (README).
The SmolLM2 run decodes freely, so what it first learns is the answer format. Prints the curve and the wall
time; the run directory keeps the episodes, checkpoints, TensorBoard logs and report.md.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import positive  # noqa: E402
from selfplay.training.config import load_config  # noqa: E402
from selfplay.training.train import train  # noqa: E402

SMOLLM2 = [
    "model=smollm2",
    "games_per_step=16",
    "scripted_prob=0.5",
    "lr=5e-5",
    "max_new_tokens=6",
    "evaluation.every=100",
    "evaluation.games=32",
    "evaluation.opponents=[random]",
    "checkpoint_every=100",
    "progress=false",
]


def invalid_curve(run_dir: Path) -> list[tuple[int, float, int]]:
    """(step, learner invalid-attempt rate, attempts) from the recorded rollouts."""
    db = sqlite3.connect(run_dir / "episodes.sqlite")
    rows = db.execute(
        "SELECT json_extract(e.meta, '$.step'), json_extract(s.data, '$.failure') IS NOT NULL "
        "FROM episodes e JOIN steps s ON s.episode_id = e.id WHERE json_extract(e.meta, '$.eval') IS NULL "
        "AND json_extract(s.data, '$.agent') LIKE 'learner%'"
    ).fetchall()
    steps: dict[int, list[int]] = {}
    for step, bad in rows:
        steps.setdefault(step, []).append(bad)
    return [(s, sum(v) / len(v), len(v)) for s, v in sorted(steps.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smollm2", action="store_true", help="the SmolLM2 invalid-move run instead of the tiny one")
    parser.add_argument("--steps", type=positive, help="training steps (default 500 tiny, 12 smollm2)")
    parser.add_argument("--out", help="run directory (default runs/learning-tiny or runs/learning-smollm2)")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides")
    args = parser.parse_intermixed_args()
    name = "smollm2" if args.smollm2 else "tiny"
    steps = args.steps or (12 if args.smollm2 else 500)
    out = Path(args.out or f"runs/learning-{name}")
    recipe, overrides = ("tictactoe_quick", SMOLLM2) if args.smollm2 else ("tictactoe_tiny", ["progress=false"])
    config = load_config(
        Path(__file__).parents[1] / f"configs/{recipe}.yaml",
        [*overrides, f"steps={steps}", f"out={out}", "resume=never", *args.overrides],
    )
    start = time.perf_counter()
    train(config)
    wall = time.perf_counter() - start
    history = json.loads((out / "summary.json").read_text())["history"]
    print(
        f"\n{name} on {config.game}: {steps} steps, {config.rollout.games_per_step} games per step, wall time {wall:.0f}s"
    )
    if args.smollm2:
        print(f"{'step':>5} {'invalid':>8} {'attempts':>9}")
        for step, rate, n in invalid_curve(out):
            print(f"{step:>5} {rate:>8.1%} {n:>9}")
    print(
        f"{'step':>5} {'win+draw vs random':>19} {'per seat':>13} {'vs expert':>10} {'per seat':>13} {'Elo [95%]':>22}"
    )
    for h in history:
        ev = h["evaluation"]
        elo = next(iter(ev.values()))["learner_elo"]
        cols = []
        for name in ("random", "expert"):
            r = ev.get(name)
            seats = " ".join(f"{s['win'] + s['draw']:.2f}" for s in (r or {}).get("seats", {}).values())
            cols.append(f"{r['win_or_draw'] if r else float('nan'):>10.3f} {seats:>13}")
        print(
            f"{h['step']:>5} {cols[0]:>33} {cols[1]:>24} {elo['elo']:>+z8.0f} [{elo['low']:+z.0f}, {elo['high']:+z.0f}]"
        )


if __name__ == "__main__":
    main()

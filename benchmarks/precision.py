"""A recipe trained in float32 and with bfloat16 products, seed by seed, alternating: the same results, in less time?

    python benchmarks/precision.py configs/quickstart.yaml --seeds 3
    python benchmarks/precision.py configs/kuhn_poker_tiny.yaml --seeds 3 steps=100 evaluation.every=50

Each (seed, dtype) run is ``selfplay train RECIPE dtype=D run.seed=S`` in its own process, the order of the two
dtypes alternating by seed. Per run: seconds per training step (median; rollouts and updates, evaluation excluded),
the last evaluation's mean reward per opponent with its 95% interval, the exact exploitability where the game has
one, and the mean sampler/learner mismatch over the steps. Then per dtype, pooled over seeds: the median step time,
the mean of each figure, and the step-time ratio. ``--dtypes`` names the two (default float32 and bfloat16; on a
CPU without bfloat16 arithmetic the second is slower, not faster). Extra ``key=value`` arguments go to every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import positive  # noqa: E402
from benchmarks.threads import cpu_model  # noqa: E402


def run(recipe: str, dtype: str, seed: int, overrides: list[str], out: Path) -> dict:
    """One training run; its step times, last evaluation and mismatch, from its last checkpoint and summary."""
    command = [sys.executable, "-m", "selfplay.cli", "train", recipe, f"dtype={dtype}", f"run.seed={seed}"]
    command += [f"run.out={out}", "run.progress=false", *overrides]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    last = sorted((out / "checkpoints").iterdir())[-1]
    training = json.loads((last / "trainer.json").read_text())["training"]
    history = json.loads((out / "summary.json").read_text())["history"]
    final = history[-1]
    return {
        "dtype": dtype,
        "seed": seed,
        "step_s": [t["seconds"]["rollout"] + t["seconds"]["update"] for t in training],
        "reward": {o: e["mean_reward"] for o, e in final["evaluation"].items()},
        "interval": {o: e["mean_reward_ci"] for o, e in final["evaluation"].items()},
        "exploitability": (final.get("exact") or {}).get("exploitability"),
        "mismatch": statistics.mean([t["mismatch"]["mean"] for t in training if "mismatch" in t] or [0.0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*", help="key=value, to every run")
    parser.add_argument("--seeds", type=positive, default=3)
    parser.add_argument("--dtypes", nargs=2, default=["float32", "bfloat16"], choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--out", help="also write every run here (JSON)")
    args = parser.parse_args()
    print(f"# {args.recipe} {' '.join(args.overrides)}; cpu ({cpu_model()}); seeds 0-{args.seeds - 1}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            for dtype in args.dtypes if seed % 2 == 0 else reversed(args.dtypes):
                r = run(args.recipe, dtype, seed, args.overrides, Path(folder, f"{dtype}-{seed}"))
                runs.append(r)
                shown = ", ".join(f"vs {o} {v:+.3f} [{r['interval'][o][0]:+.3f}, {r['interval'][o][1]:+.3f}]"
                                  for o, v in r["reward"].items())  # fmt: skip
                exploit = f"; exploitability {r['exploitability']:.4f}" if r["exploitability"] is not None else ""
                print(
                    f"{dtype:<9} seed {seed}: {statistics.median(r['step_s']):.2f} s/step; {shown}{exploit}; "
                    f"mismatch {r['mismatch']:.2e}",
                    flush=True,
                )
    medians = {}
    print()
    for dtype in args.dtypes:
        mine = [r for r in runs if r["dtype"] == dtype]
        medians[dtype] = statistics.median(s for r in mine for s in r["step_s"])
        opponents = mine[0]["reward"]
        rewards = ", ".join(f"vs {o} {statistics.mean(r['reward'][o] for r in mine):+.3f}" for o in opponents)
        exploits = [r["exploitability"] for r in mine if r["exploitability"] is not None]
        exploit = f"; exploitability {statistics.mean(exploits):.4f}" if exploits else ""
        print(f"{dtype:<9} {medians[dtype]:.2f} s/step (median); mean over seeds: {rewards}{exploit}")
    a, b = args.dtypes
    print(f"step time {a} / {b}: {medians[a] / medians[b]:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(runs))


if __name__ == "__main__":
    main()

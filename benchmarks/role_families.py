"""Measured effect of each role family with SmolLM2-135M-Instruct (CPU by default): before and after a short run.

    python benchmarks/role_families.py critic      # sneaky generator / critic: the critic's held-out accuracy
    python benchmarks/role_families.py solver      # creator / solver: the solver's accuracy on held-out puzzles
    python benchmarks/role_families.py teacher     # teacher-chosen vs random curriculum: the student's held-out gain
    python benchmarks/role_families.py critic --steps 20 games_per_step=32   # longer; any key=value override

critic / solver: the family's shared-weights recipe with ``eval_before=true``; the held-out set is the evaluation
against the expert, whose tasks (the sneaky generator's wrong steps, the expert creator's puzzles) are the same
seeds at every evaluation, so step 0 and the last step answer the same problems. The critic's accuracy is the share
of those games it wins, (reward + 1) / 2; the solver's is its mean reward (exact answers).
teacher: two runs of the teacher/student recipe with ``teacher_reward=progress``, whose probes are the student's
held-out accuracy per skill (16 fixed problems per skill, greedy) before and after every update: the learner as
teacher and student (teacher-chosen curriculum) vs the learner as student of a random scripted teacher (random
skill and size) in every game of a second run (``curriculum_option=opponent``, arm ``random``; in half of those games
the learner sits in the teacher's seat facing a random student, as the arena alternates seats).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import positive  # noqa: E402
from selfplay.training.config import load_config  # noqa: E402
from selfplay.training.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["progress=false", "resume=never", "eval_before=true", "checkpoint_every=1000"]
FAMILIES = {
    "critic": ("sneaky_critic_shared.yaml", "critic", ["games_per_step=16", "eval_games=64", "eval_opponents=[expert]"]),
    "solver": ("creator_solver_shared.yaml", "solver", ["games_per_step=8", "eval_games=32", "eval_opponents=[expert]",
                                                       "max_new_tokens=64"]),
}


def run(recipe: str, steps: int, out: Path, overrides: list[str]) -> tuple[list[dict], dict, float]:
    """Train; return the evaluation history, the final trainer state and the wall time."""
    config = load_config(ROOT / "configs" / recipe, [*SHORT, f"steps={steps}", f"eval_every={steps}", f"out={out}",
                                                     *overrides])
    start = time.perf_counter()
    train(config)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    state = json.loads(sorted((out / "checkpoints").glob("step_*/trainer.json"))[-1].read_text())
    return summary["history"], state, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=["critic", "solver", "teacher"])
    parser.add_argument("--steps", type=positive, default=6)
    parser.add_argument("--out", default="runs/role-families")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides")
    args = parser.parse_intermixed_args()
    out = Path(args.out)
    if args.family in FAMILIES:
        recipe, seat, extra = FAMILIES[args.family]
        history, _, wall = run(recipe, args.steps, out / args.family, [*extra, *args.overrides])
        print(f"\n{args.family}: {recipe}, {args.steps} steps, wall time {wall:.0f}s")
        print(f"{'step':>5} {'held-out games':>15} {seat + ' reward':>16} {'accuracy':>9} {'invalid':>8}")
        for h in history:
            ev = h["evaluation"]["expert"]
            reward = ev["reward"].get(seat, float("nan"))
            accuracy = (reward + 1) / 2 if args.family == "critic" else reward
            print(f"{h['step']:>5} {int(ev['games'] / 2):>15} {reward:>+z16.3f} {accuracy:>9.3f} {ev['invalid_rate']:>8.1%}")
        return
    common = ["game_options={samples: 4, teacher_reward: progress, probe_size: 16, probe_digits: 1}",
              "games_per_step=16", "eval_games=8", "eval_opponents=[expert]", *args.overrides]
    arms = {"teacher-chosen": ["scripted_prob=0"],
            "random": ["scripted_prob=0", "curriculum=uniform", "curriculum_option=opponent", "curriculum_arms=[random]"]}
    print()
    results = {}
    for name, extra in arms.items():
        _, state, wall = run("teacher_student_shared.yaml", args.steps, out / f"teacher-{name}", [*common, *extra])
        results[name] = (state["progress"], wall)
    for name, (progress, wall) in results.items():
        first, last = progress[0]["before"], progress[-1]["after"]
        mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
        print(f"{name:<15} student held-out accuracy {mean(first):.3f} -> {mean(last):.3f}  per skill: "
              + ", ".join(f"{k} {first[k]:.2f}->{last[k]:.2f}" for k in sorted(first)) + f"  ({wall:.0f}s)")


if __name__ == "__main__":
    main()

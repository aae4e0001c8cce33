"""Training on a busy CPU: torch's thread count when another process keeps a core busy.

    python benchmarks/threads.py                       # the quickstart, 3 steps, three ways
    python benchmarks/threads.py --recipe kuhn_poker_tiny --steps 20

Runs the recipe in one process three times, one after the other: with another process spinning on one core and
torch forced to every core (``SELFPLAY_THREADS`` = the cores), then with the default choice (``agents.threads``: the
idle cores), and once more on an idle machine with the default. Prints the CPU model, each run's wall time and its
mean rollout and update seconds per step (from the run's step lines)."""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP = re.compile(r"rollout ([0-9.]+)s update ([0-9.]+)s")


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def run(recipe: str, steps: int, threads: str | None, out: Path) -> tuple[float, float, float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SELFPLAY_THREADS")}
    if threads:
        env["SELFPLAY_THREADS"] = threads
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfplay.train",
            recipe,
            f"run.steps={steps}",
            "evaluation.every=0",
            "evaluation.before=false",
            "evaluation.games=8",
            "evaluation.exact=false",
            "progress=false",
            f"out={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    found = [tuple(map(float, m.groups())) for m in STEP.finditer(result.stdout)]
    rollout = sum(r for r, _ in found) / max(1, len(found))
    update = sum(u for _, u in found) / max(1, len(found))
    said = next((line for line in result.stderr.splitlines() if line.startswith("torch threads")), "")
    return seconds, rollout, update, said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: expected at least 1")
    cores = len(os.sched_getaffinity(0))
    print(f"# {args.recipe}, {args.steps} steps, {cpu_model()}, {cores} cores, {time.strftime('%Y-%m-%d')}")
    print(f"{'machine':<7} {'threads':<26} {'wall s':>7} {'rollout s/step':>15} {'update s/step':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        run(args.recipe, 1, None, Path(tmp) / "warm")  # converts the model once, outside the timings
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            for label, threads in ((f"forced to {cores}", str(cores)), ("default (idle cores)", None)):
                wall, rollout, update, said = run(args.recipe, args.steps, threads, Path(tmp) / label.split()[0])
                print(f"{'busy':<7} {label:<26} {wall:>7.1f} {rollout:>15.2f} {update:>14.2f}  {said}")
        finally:
            spinner.kill()
        time.sleep(1.0)
        wall, rollout, update, said = run(args.recipe, args.steps, None, Path(tmp) / "idle")
        print(f"{'idle':<7} {'default (idle cores)':<26} {wall:>7.1f} {rollout:>15.2f} {update:>14.2f}  {said}")


if __name__ == "__main__":
    main()

"""ALP-GMM against uniform sampling on the paper's toy environment (Portelas et al. 2019, section 4.1).

    python benchmarks/alp_gmm_toy.py                    # 20,000 episodes, 5 seeds, every 2,000 episodes
    python benchmarks/alp_gmm_toy.py --episodes 10000 --seeds 3

A 10 x 10 grid of cells on the unit square; an episode in a cell raises its competence only once a lower
neighbour is mastered, so a teacher must follow the frontier. Prints the share of cells mastered per teacher and
seed at every checkpoint, with the mean, and the CPU model. No LLM is involved.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.threads import cpu_model  # noqa: E402
from selfplay.training.alp_gmm import ALPGMM, HypercubeToy  # noqa: E402


def curve(teacher: str, episodes: int, every: int, seed: int) -> list[float]:
    """The share of mastered cells after every ``every`` episodes."""
    env, out = HypercubeToy(), []
    alp = ALPGMM([0.0, 0.0], [1.0, 1.0], seed=seed) if teacher == "alp-gmm" else None
    rng = random.Random(seed)
    for i in range(1, episodes + 1):
        task = alp.sample() if alp else [rng.random(), rng.random()]
        reward = env.episode(task)
        if alp:
            alp.update(task, reward)
        if i % every == 0:
            out.append(env.mastered())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20000)
    parser.add_argument("--every", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    if args.episodes < 1 or args.every < 1 or args.seeds < 1:
        parser.error("--episodes, --every and --seeds must be at least 1")
    print(
        f"# ALP-GMM vs uniform, toy environment 10x10, {args.episodes} episodes, {args.seeds} seeds, {cpu_model()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    marks = list(range(args.every, args.episodes + 1, args.every))
    print(f"{'teacher':<9} {'seed':>4} " + " ".join(f"{m:>6}" for m in marks) + "   (% cells mastered)")
    for teacher in ("uniform", "alp-gmm"):
        curves = []
        for seed in range(args.seeds):
            start = time.perf_counter()
            curves.append(curve(teacher, args.episodes, args.every, seed))
            print(
                f"{teacher:<9} {seed:>4} "
                + " ".join(f"{100 * v:>6.0f}" for v in curves[-1])
                + f"   {time.perf_counter() - start:.0f} s"
            )
        means = [statistics.mean(c[i] for c in curves) for i in range(len(marks))]
        print(f"{teacher:<9} {'mean':>4} " + " ".join(f"{100 * v:>6.1f}" for v in means))


if __name__ == "__main__":
    main()

"""Sandbox throughput: trivial executions per second, in parallel workers.

    python benchmarks/sandbox.py [--jobs 200] [--workers 2]
"""

import argparse
import time

from selfplay.games.sandbox import run_many

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    for workers in args.workers:
        start = time.perf_counter()
        results = run_many([("def f(x):\n    return x + 1", "f(1)")] * args.jobs, workers=workers)
        seconds = time.perf_counter() - start
        assert all(r.ok and r.value == 2 for r in results)
        print(f"workers={workers}: {args.jobs} trivial executions in {seconds:.2f}s = {args.jobs / seconds:.1f} per second")

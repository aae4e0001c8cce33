"""Sandbox throughput and latency: how fast isolated executions of untrusted code run.

    python benchmarks/sandbox.py                 # 2 workers, 2,000 trivial jobs
    python benchmarks/sandbox.py --workers 4 --jobs 5000

Prints: the isolation in use (``selfplay doctor``'s line), the cold start of the pool, the latency of one execution
(median and 95th percentile over serial ``run_code`` calls on a warm pool) and the throughput of ``run_many`` on
trivial jobs (``def f(x): return x * 2`` then ``f(i)``), checking every result.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import positive  # noqa: E402
from selfplay.games import sandbox  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=positive, default=2, help="pool size (default 2: one per core here)")
    parser.add_argument("--jobs", type=positive, default=2000, help="trivial jobs for the throughput run")
    parser.add_argument("--serial", type=positive, default=200, help="serial executions for the latency")
    args = parser.parse_args()
    print(sandbox.isolation_report()[1])
    start = time.perf_counter()
    sandbox.run_many([("x = 1", "x")] * args.workers, workers=args.workers)
    print(f"pool of {args.workers} isolated workers started in {time.perf_counter() - start:.2f}s")
    latencies = []
    for i in range(args.serial):
        t = time.perf_counter()
        r = sandbox.run_code("def f(x):\n    return x * 2", f"f({i})")
        latencies.append(time.perf_counter() - t)
        assert (r.status, r.value) == ("OK", 2 * i), r
    latencies.sort()
    print(
        f"latency of one execution: median {1000 * statistics.median(latencies):.1f} ms, "
        f"p95 {1000 * latencies[int(0.95 * (len(latencies) - 1))]:.1f} ms ({args.serial} serial run_code calls)"
    )
    jobs = [("def f(x):\n    return x * 2", f"f({i})") for i in range(args.jobs)]
    t = time.perf_counter()
    results = sandbox.run_many(jobs, workers=args.workers)
    seconds = time.perf_counter() - t
    bad = [i for i, r in enumerate(results) if (r.status, r.value) != ("OK", 2 * i)]
    assert not bad, f"{len(bad)} wrong results, e.g. job {bad[0]}: {results[bad[0]]}"
    print(
        f"throughput: {args.jobs} trivial executions in {seconds:.2f}s = {args.jobs / seconds:.0f} per second "
        f"({args.workers} workers, every result checked)"
    )


if __name__ == "__main__":
    main()

"""How many threads torch uses on a CPU: as many as there are idle cores, so a run on a machine where another
process is busy does not oversubscribe it.

OpenMP threads wait for each other at every operation; when one of two threads shares its core with another busy
process, every matrix product waits for the slower one. Measured on a 2-core machine with one core kept busy by
another process (docs/benchmarks.md): 2 threads were several times slower than 1. ``OMP_NUM_THREADS`` or
``SELFPLAY_THREADS`` set by the user always win."""

from __future__ import annotations

import os
import sys
import time

ENV = "SELFPLAY_THREADS"


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (else the machine's count), shared among the processes of a
    ``accelerate launch`` on this machine (``LOCAL_WORLD_SIZE``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, cores // local)


def busy_cores(seconds: float = 0.25) -> float:
    """How many cores other processes keep busy now, from /proc/stat over ``seconds`` (0 where it cannot be read)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    if total1 <= total0:
        return 0.0
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def choose(cores: int | None = None, busy: float | None = None) -> tuple[int, str]:
    """(threads, why): the user's ``SELFPLAY_THREADS`` or ``OMP_NUM_THREADS`` when set, else the usable cores less
    those other processes keep busy (at least 1)."""
    for name in (ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                threads = int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected a whole number of threads >= 1") from None
            if threads < 1:
                raise ValueError(f"{name}={value!r}: expected a whole number of threads >= 1")
            return threads, f"{name}={threads}"
    cores = usable_cores() if cores is None else cores
    if busy is None:  # the other processes' load: this machine's busy cores less this launch's own share
        busy = busy_cores() * usable_cores() / max(1, os.cpu_count() or 1)
    threads = max(1, min(cores, round(cores - busy)))
    if threads == cores:
        return threads, f"{cores} idle cores"
    return threads, (
        f"{threads} of {cores} cores: other processes keep ~{busy:.1f} busy (set {ENV}=N or "
        f"OMP_NUM_THREADS=N to choose)"
    )


_APPLIED: list[int] = []


def apply_once() -> int:
    """``apply`` the first time it is called in this process; the same count afterwards."""
    if not _APPLIED:
        _APPLIED.append(apply())
    return _APPLIED[0]


def apply(verbose: bool = True) -> int:
    """Set torch's thread count by ``choose`` (CPU runs only matter; a GPU run's host threads too) and say why when it
    is fewer than the cores."""
    import torch

    threads, why = choose()
    torch.set_num_threads(threads)
    chosen = any(os.environ.get(name, "").strip() for name in (ENV, "OMP_NUM_THREADS"))
    if verbose and threads < usable_cores() and not chosen:
        print(f"torch threads: {why}", file=sys.stderr, flush=True)  # stdout may be a protocol (serve's ready line)
    return threads

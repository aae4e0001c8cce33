"""Torch's thread count on a busy CPU: the idle cores, unless the user says otherwise."""

import pytest

from selfplay.agents import threads


def test_the_idle_cores_are_used(monkeypatch):
    for name in (threads.ENV, "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert threads.choose(cores=2, busy=0.1) == (2, "2 idle cores")
    count, why = threads.choose(cores=2, busy=1.0)
    assert count == 1 and "other processes keep ~1.0 busy" in why and "SELFPLAY_THREADS=N" in why
    assert threads.choose(cores=4, busy=3.9)[0] == 1 and threads.choose(cores=8, busy=2.2)[0] == 6


def test_the_user_decides_when_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose(cores=2, busy=1.0) == (3, "OMP_NUM_THREADS=3")
    monkeypatch.setenv(threads.ENV, "1")
    assert threads.choose(cores=2, busy=0.0) == (1, "SELFPLAY_THREADS=1")
    monkeypatch.setenv(threads.ENV, "zero")
    with pytest.raises(ValueError, match="SELFPLAY_THREADS='zero': expected a whole number"):
        threads.choose()


def test_processes_of_one_launch_share_the_cores(monkeypatch):
    import os

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.usable_cores() == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * cores))
    assert threads.usable_cores() == 1


def test_busy_cores_reads_the_machine():
    busy = threads.busy_cores(0.05)
    assert 0.0 <= busy <= (threads.os.cpu_count() or 1) + 1e-9

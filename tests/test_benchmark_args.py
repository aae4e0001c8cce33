"""The benchmark scripts refuse a bad value by name before loading any model."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.args import device, positive, positive_float

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text", ["0", "-3", "2.5", "many", ""])
def test_positive_refuses_what_is_not_a_whole_number_of_at_least_one(text):
    with pytest.raises(argparse.ArgumentTypeError, match="whole number of at least 1"):
        positive(text)


@pytest.mark.parametrize("text", ["0", "-1", "inf", "nan", "soon"])
def test_positive_float_refuses_what_is_not_a_finite_number_above_zero(text):
    with pytest.raises(argparse.ArgumentTypeError, match="above 0"):
        positive_float(text)


def test_good_values_pass_through():
    assert (positive("7"), positive_float("0.5"), device("cpu")) == (7, 0.5, "cpu")


def test_a_device_is_cpu_or_a_cuda_gpu_this_machine_has():
    with pytest.raises(argparse.ArgumentTypeError, match="expected cpu, cuda or cuda:N, got 'gpu'"):
        device("gpu")
    with pytest.raises(argparse.ArgumentTypeError, match="cuda:99"):
        device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="no CUDA GPU"):
            device("cuda")


def test_the_rollout_benchmark_names_its_bad_argument_and_exits_2():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rollout.py"), "--games", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "argument --games: expected a whole number of at least 1, got 0" in run.stderr
    assert "Traceback" not in run.stderr


def test_role_families_refuses_an_unknown_arm_by_name(capsys):
    from benchmarks.role_families import main

    with pytest.raises(SystemExit):
        main(["creator", "--arms", "teacherless"])
    assert "unknown arm(s) ['teacherless'] for creator: expected some of learned, random" in capsys.readouterr().err


def test_role_families_table_pairs_by_problem():
    from benchmarks.role_families import table

    def arm(after):
        return {
            "before": [0, 0, 1, 1],
            "after": after,
            "steps": 5,
            "planned": 10,
            "seconds": 60.0,
            "samples": 320,
            "per_set": {"add2": (0.5, sum(after) / 4)},
            "curve": [],
        }

    lines = table("creator", "tiny", {"learned": [arm([1, 0, 1, 1])], "random": [arm([0, 0, 1, 1])]})
    learned = next(line for line in lines if line.startswith("| learned"))
    # by hand: differences 1, 0, 0, 0 -> mean 0.25, sd 0.5, half width 1.96 * 0.5 / 2 = 0.49; the same against random
    assert "| 320 | 5 | 1.0 |" in learned and learned.count("+0.250 [-0.240, +0.740]") == 2
    assert "0.750 [" in learned and any("learned seed 0 (5 of 10)" in line for line in lines)

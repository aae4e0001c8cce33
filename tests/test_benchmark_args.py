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
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rollout.py"), "--games", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "argument --games: expected a whole number of at least 1, got 0" in run.stderr
    assert "Traceback" not in run.stderr

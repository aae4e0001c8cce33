"""The GPU decode floor that benchmarks/rollout.py prints beside each decode time, by hand."""

import pytest

from benchmarks.rollout import roofline_ms


def test_the_gpu_floor_of_a_decode_step_is_the_bytes_or_the_flops_whichever_is_longer():
    # SmolLM2-135M at 214 rows of 128 tokens: 269 MB of bf16 weights + 214 * 128 * 23,040 B of keys and values
    # = 900.1 MB at 3 TB/s = 0.300 ms, longer than 2 * 134.5M * 214 FLOPs at 8e14 (0.072 ms)
    assert roofline_ms(134.5e6, 214, 23040, 3.0e12, 8e14) == pytest.approx(0.3000372, rel=1e-6)
    # a huge batch on a slow card is bound by its FLOPs instead: 2 * 134.5M * 65536 / 1e13 = 1762.918 ms
    assert roofline_ms(134.5e6, 65536, 0, 3.0e12, 1e13) == pytest.approx(1762.9184, rel=1e-6)

"""The precision of a model's matrix products on a CPU: bfloat16 where the processor multiplies in it natively (AMX or
AVX512-BF16), float32 elsewhere.

Weights stay float32: the master copy the optimizer updates (its state float32 too, LoRA adapters included). Only
the products run in bfloat16, under torch's CPU autocast, and the same way wherever the model computes: the decoder
(prefill and decode, with prepacked bfloat16 weights, ``agents/packing.py``), teacher-forced scoring and the
learner's update (``agents/scoring.py``). The sampler's and the learner's log-probabilities then differ by rounding
only; the update measures that difference and corrects for it (``training/losses.py``).

``dtype=auto`` picks bfloat16 on such a CPU for models whose products are large enough to gain (hidden size at
least :data:`MIN_HIDDEN`; a 64-wide test model loses to the casts), and says once which it chose. ``float32`` keeps
the exact path (sampled log-probabilities equal to the learner's), ``bfloat16`` forces the mixed one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

DTYPES = ("auto", "float32", "bfloat16")
MIN_HIDDEN = 256  # below this width, bfloat16 products gain nothing on these CPUs (benchmarks/rollout.py --model tiny)
_ATTRIBUTE = "selfplay_compute_dtype"
_SAID: set[str] = set()


def cpu_bf16_feature() -> str | None:
    """The CPU feature that makes bfloat16 products fast here ("AMX" or "AVX512-BF16"), or None."""
    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    return "AVX512-BF16" if torch.cpu._is_avx512_bf16_supported() else None


def choose(requested: str, model: torch.nn.Module) -> torch.dtype:
    """The dtype of ``model``'s products for a requested ``auto`` / ``float32`` / ``bfloat16`` (CPU models only; a
    model on another device keeps float32 here: its launcher decides)."""
    if requested not in DTYPES:
        raise ValueError(f"unknown dtype {requested!r}: expected one of {', '.join(DTYPES)}")
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        return torch.float32
    if requested != "auto":
        return getattr(torch, requested)
    feature = cpu_bf16_feature()
    hidden = getattr(getattr(model, "config", None), "hidden_size", 0) or 0
    if feature is None:
        _say_once("float32 products: this CPU has neither AMX nor AVX512-BF16 (dtype=auto)")
        return torch.float32
    if hidden < MIN_HIDDEN:
        return torch.float32
    _say_once(f"bfloat16 products, float32 weights: this CPU has {feature} (dtype=auto; dtype=float32 for exact)")
    return torch.bfloat16


def _say_once(line: str) -> None:
    if line not in _SAID:
        _SAID.add(line)
        print(f"[selfplay] {line}", file=sys.stderr, flush=True)


def set_compute_dtype(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Record on ``model`` the dtype its products run in (read by :func:`computing`); returns the model."""
    setattr(model, _ATTRIBUTE, dtype)
    return model


def compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype ``model``'s products run in: what :func:`set_compute_dtype` recorded, else float32."""
    return getattr(model, _ATTRIBUTE, torch.float32)


@contextmanager
def computing(model: torch.nn.Module) -> Iterator[None]:
    """Within it, ``model``'s CPU products run in its compute dtype (CPU autocast for bfloat16; nothing otherwise)."""
    if compute_dtype(model) == torch.bfloat16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield

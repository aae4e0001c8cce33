"""The decoder's fixed-shape forwards (CUDA graphs on a GPU), kept by bucketed shape, least recently used out."""

from __future__ import annotations

from collections.abc import Callable

import torch

from selfplay.agents.device_io import power_of_two, round_up
from selfplay.agents.graph_step import StaticPrefill, StaticStep, prefill_bytes, step_bytes, supports


class GraphCache:
    """Fixed-shape prefill and decode forwards of one model, made on first use of a bucketed shape. Shapes are
    bucketed (rows to a power of two, columns to a multiple of 64) so graphs are reused across calls; each forward
    holds its own buffers, and the least recently used are dropped beyond ``limit_bytes`` (default: a quarter of the
    GPU's memory)."""

    def __init__(self, model: torch.nn.Module, graphs: bool | str = True):
        """``graphs``: True (on a GPU, for a model the fixed-shape forwards reproduce), False, or ``"always"``: also on
        a CPU, eagerly (tests)."""
        self.model, self.graphs, self.supported = model, graphs, supports(model)
        self.limit_bytes: int | None = None
        self.forwards: dict[tuple, object] = {}  # least recently used first

    def wanted(self, device: torch.device) -> bool:
        """Whether fixed-shape forwards apply on ``device``."""
        wanted = self.graphs == "always" or (self.graphs and device.type == "cuda")
        return bool(wanted) and self.supported

    def step(self, rows: int, length: int, device: torch.device):
        """The decode step for ``rows`` rows of ``length`` columns, or None where it does not apply."""
        if not self.wanted(device):
            return None
        key = (power_of_two(rows), round_up(length))
        return self._get(key, step_bytes(self.model, *key), lambda: StaticStep(self.model, *key))

    def prefill(self, rows: int, width: int, past: int, device: torch.device):
        """The prefill forward for ``rows`` segments of ``width`` tokens on ``past`` columns (the width bucketed to a
        power of two up to 64, beyond to a multiple of 64), or None where it does not apply or the shapes are too
        large to be worth a buffer (over 64k tokens of keys and values)."""
        if not self.wanted(device):
            return None
        r, w, p = power_of_two(rows), power_of_two(width) if width <= 64 else round_up(width), round_up(past)
        if r * (w + p) > 65536:
            return None
        key = ("prefill", r, w, p)
        return self._get(key, prefill_bytes(self.model, r, w, p), lambda: StaticPrefill(self.model, r, w, p))

    def _get(self, key: tuple, need: int, make: Callable[[], object]):
        forward = self.forwards.pop(key, None)
        if forward is None:
            if self.limit_bytes is None:
                device = next(self.model.parameters()).device
                cuda = device.type == "cuda"
                self.limit_bytes = torch.cuda.get_device_properties(device).total_memory // 4 if cuda else 1 << 62
            while self.forwards and sum(f.nbytes for f in self.forwards.values()) + need > self.limit_bytes:
                self.forwards.pop(next(iter(self.forwards)))
            forward = make()
        self.forwards[key] = forward  # most recently used last
        return forward

"""Linear layers with prepacked weights for the CPU's matrix kernels, while the weights are frozen.

MKL's sgemm, which ``F.linear`` calls on a CPU, reorders the weight into its blocked layout on every call; at the
small batches of decoding that reorder, not the arithmetic, bounds the layer (the weights stream from memory each
step). oneDNN's linear can take the weight already reordered (``torch.ops.mkldnn._reorder_linear_weight``, what
inductor's freezing pass does). Measured on the 2-core CPU of these machines (``benchmarks/rollout.py``): a
576x1536 layer at 32 rows 103 -> 167 GFLOP/s, the 49152-row output layer 77 -> 187. The products are the same, summed
in another order: outputs agree with ``F.linear`` to float32 rounding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def can_pack(module: torch.nn.Module) -> bool:
    """Whether ``module`` is a float32 ``nn.Linear`` on a CPU with oneDNN available."""
    weight = getattr(module, "weight", None)
    return (isinstance(module, torch.nn.Linear) and weight is not None and weight.device.type == "cpu"
            and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available())


def available_memory() -> int:
    """Bytes of physical memory available now (Linux); unbounded where the system does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class _Packed:
    """The forward of one linear layer with its weight reordered once; plain ``F.linear`` whenever autograd is
    needed or the weight changed in place since packing (its version counter moved)."""

    def __init__(self, module: torch.nn.Linear, rows: int):
        self.module = module
        self.weight = module.weight
        self.version = module.weight._version
        self.packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), rows)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        stale = m.weight is not self.weight or m.weight._version != self.version
        autograd = torch.is_grad_enabled() and (x.requires_grad or m.weight.requires_grad)
        if stale or autograd or x.dtype != torch.float32:
            return torch.nn.functional.linear(x, m.weight, m.bias)
        bias = None if m.bias is None else m.bias.detach()
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, bias, "none", [], "")


@contextmanager
def packed_linears(model: torch.nn.Module, rows: int = 32) -> Iterator[int]:
    """Within it, every linear layer of ``model`` that :func:`can_pack` multiplies by a prepacked copy of its weight
    (``rows``: the batch the layout is tuned for). Yields how many were packed; the copies are freed on leaving.
    Layers already packed by an enclosing call (two agents on one base model) are left to it; nothing is packed
    when the copies would take over a quarter of the memory available."""
    done: list[torch.nn.Module] = []
    todo = [m for m in model.modules() if can_pack(m) and not isinstance(m.__dict__.get("forward"), _Packed)]
    if sum(m.weight.numel() * 4 for m in todo) > available_memory() / 4:
        todo = []  # the copies would crowd the machine: plain layers
    try:
        for module in todo:
            try:
                packed = _Packed(module, rows)
            except RuntimeError:  # a CPU or build without oneDNN's reorder, a weight ZeRO-3 keeps elsewhere
                break
            module.forward = packed  # an instance attribute shadows the class's forward
            done.append(module)
        yield len(done)
    finally:
        for module in done:
            del module.forward

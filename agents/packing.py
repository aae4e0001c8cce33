"""Linear layers with prepacked weights for the CPU's matrix kernels, while the weights are frozen (LoRA layers with their
active adapter merged in).

MKL's sgemm, which ``F.linear`` calls on a CPU, reorders the weight into its blocked layout on every call; at the
small batches of decoding that reorder, not the arithmetic, bounds the layer (the weights stream from memory each
step). oneDNN's linear can take the weight already reordered (``torch.ops.mkldnn._reorder_linear_weight``, what
inductor's freezing pass does). Measured on the 2-core CPU of these machines (``benchmarks/rollout.py``): a
576x1536 layer at 32 rows 103 -> 167 GFLOP/s, the 49152-row output layer 77 -> 187. The products are the same, summed
in another order: outputs agree with ``F.linear`` to float32 rounding.

Under CPU autocast to bfloat16 (``agents/precision.py``) a layer multiplies by a bfloat16 copy instead, packed on first
use, as autocast's ``F.linear`` would (input cast to bfloat16, a bfloat16 output): at 32 rows a 576x1536 layer runs at
about 3.5x its float32 rate on an AVX512-BF16 CPU, and the copy takes half the bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def can_pack(module: torch.nn.Module) -> bool:
    """Whether ``module`` is a float32 ``nn.Linear`` on a CPU with oneDNN available."""
    weight = getattr(module, "weight", None)
    return (
        isinstance(module, torch.nn.Linear)
        and weight is not None
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
    )


def available_memory() -> int:
    """Bytes of physical memory available now (Linux); unbounded where the system does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _product(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x W^T + b`` with ``W`` reordered for oneDNN, in the packed weight's dtype."""
    if bias is not None:
        bias = bias.detach().to(packed.dtype)
    return torch.ops.mkldnn._linear_pointwise(x.to(packed.dtype).contiguous(), packed, bias, "none", [], "")


def _product_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype a packed product of ``x`` runs in: bfloat16 under CPU autocast to it, float32 for a float32 input
    outside autocast, None (plain ``F.linear``) otherwise."""
    if torch.is_autocast_enabled("cpu"):
        return torch.bfloat16 if torch.get_autocast_dtype("cpu") == torch.bfloat16 else None
    return torch.float32 if x.dtype == torch.float32 else None


class _Packed:
    """The forward of one linear layer with its weight reordered once; plain ``F.linear`` whenever autograd is
    needed or the weight changed in place since packing (its version counter moved)."""

    def __init__(self, module: torch.nn.Linear, rows: int):
        self.module, self.rows = module, rows
        self.weight = module.weight
        self.version = module.weight._version
        self.packed: dict[torch.dtype, torch.Tensor | None] = {}  # per product dtype, packed on first use

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        stale = m.weight is not self.weight or m.weight._version != self.version
        autograd = torch.is_grad_enabled() and (x.requires_grad or m.weight.requires_grad)
        dtype = _product_dtype(x)
        if stale or autograd or dtype is None:
            return torch.nn.functional.linear(x, m.weight, m.bias)
        if dtype not in self.packed:
            try:
                self.packed[dtype] = torch.ops.mkldnn._reorder_linear_weight(m.weight.detach().to(dtype), self.rows)
            except RuntimeError:  # a CPU or build without oneDNN's reorder, a weight ZeRO-3 keeps elsewhere
                self.packed[dtype] = None
        if self.packed[dtype] is None:
            return torch.nn.functional.linear(x, m.weight, m.bias)
        return _product(x, self.packed[dtype], m.bias)


def _lora(module: torch.nn.Module) -> bool:
    """Whether ``module`` is a PEFT LoRA linear layer over a packable base layer."""
    return (
        hasattr(module, "lora_A")
        and hasattr(module, "active_adapters")
        and can_pack(getattr(module, "base_layer", None))
    )


class _MergedLoRA:
    """The forward of a PEFT LoRA linear layer as one prepacked product with the active adapter merged in,
    ``W + scaling * B @ A`` (Hu et al. 2021: the merged layer computes the same map), packed once per adapter on first
    use. PEFT's own forward whenever anything else applies: autograd, no or several active adapters, adapters
    disabled or merged by PEFT, dropout in training mode, a LoRA variant (DoRA), per-row adapter names, or any of the
    weights changed in place since it was merged."""

    def __init__(self, module: torch.nn.Module, rows: int):
        self.module, self.rows = module, rows
        self.original = type(module).forward.__get__(module)
        self.merged: dict[tuple, tuple[tuple, torch.Tensor]] = {}  # (adapter, dtype) -> (weights, packed weight)

    def _weights(self, adapter: str) -> tuple:
        m = self.module
        ws = (m.base_layer.weight, m.lora_A[adapter].weight, m.lora_B[adapter].weight)
        return tuple((id(w), w._version) for w in ws)

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        m = self.module
        active = [a for a in m.active_adapters if a in m.lora_A]
        adapter = active[0] if len(active) == 1 else None
        dtype = _product_dtype(x)
        plain = (
            adapter is not None
            and not args
            and not kwargs
            and not m.disable_adapters
            and not m.merged
            and dtype is not None
            and not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in m.parameters())))
            and adapter not in getattr(m, "lora_variant", {})
            and not (m.training and getattr(m.lora_dropout[adapter], "p", 0.0))
        )
        if not plain:
            return self.original(x, *args, **kwargs)
        key = self._weights(adapter)
        if (adapter, dtype) not in self.merged or self.merged[adapter, dtype][0] != key:
            try:
                with torch.no_grad(), torch.autocast("cpu", enabled=False):  # merged in float32, then rounded once
                    a, b = m.lora_A[adapter].weight, m.lora_B[adapter].weight
                    weight = (m.base_layer.weight + m.scaling[adapter] * (b @ a)).to(dtype)
                    self.merged[adapter, dtype] = key, torch.ops.mkldnn._reorder_linear_weight(weight, self.rows)
            except RuntimeError:  # no oneDNN reorder here, or a weight ZeRO-3 keeps elsewhere: PEFT's forward
                return self.original(x, *args, **kwargs)
        return _product(x, self.merged[adapter, dtype][1], m.base_layer.bias)


@contextmanager
def packed_linears(model: torch.nn.Module, rows: int = 32) -> Iterator[int]:
    """Within it, every linear layer of ``model`` that :func:`can_pack` multiplies by a prepacked copy of its weight
    (``rows``: the batch the layout is tuned for), and every PEFT LoRA layer by a prepacked copy with its active
    adapter merged in (:class:`_MergedLoRA`). Yields how many were packed; the copies are freed on leaving.
    Layers already packed by an enclosing call (two agents on one base model) are left to it; nothing is packed
    when the copies would take over a quarter of the memory available."""
    done: list[torch.nn.Module] = []
    taken = (_Packed, _MergedLoRA)
    lora = [m for m in model.modules() if _lora(m) and not isinstance(m.__dict__.get("forward"), taken)]
    inside = {id(sub) for m in lora for sub in m.modules()}  # a LoRA layer's base and adapters: merged instead
    todo = [
        m
        for m in model.modules()
        if can_pack(m) and id(m) not in inside and not isinstance(m.__dict__.get("forward"), taken)
    ]
    adapters = max((len(m.lora_A) for m in lora), default=0)  # a merged copy per adapter, made when first used
    size = sum(m.weight.numel() * 4 for m in todo) + adapters * sum(m.base_layer.weight.numel() * 4 for m in lora)
    if size > available_memory() / 4:
        todo, lora = [], []  # the copies would crowd the machine: plain layers
    try:
        for module in lora:
            module.forward = _MergedLoRA(module, rows)
            done.append(module)
        for module in todo:
            module.forward = _Packed(module, rows)  # an instance attribute shadows the class's forward
            done.append(module)
        yield len(done)
    finally:
        for module in done:
            del module.forward

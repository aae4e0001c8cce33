"""Host-to-device helpers of the decoder: bucketed sizes, one-copy uploads, left padding."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import torch


def power_of_two(n: int) -> int:
    """The least power of two >= ``n`` (a bucketed shape)."""
    return 1 << (n - 1).bit_length()


def round_up(n: int, of: int = 64) -> int:
    """The least multiple of ``of`` >= ``n`` (a bucketed shape)."""
    return -(-n // of) * of


def upload(host: torch.Tensor | list, device: torch.device) -> torch.Tensor:
    """A host tensor (or list of ints) on ``device``; on a GPU through pinned memory, asynchronously: a copy from
    pageable memory waits for every kernel queued before it, so the host could never run ahead of the GPU."""
    if not isinstance(host, torch.Tensor):
        host = long_tensor(host)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def upload_all(hosts: list[torch.Tensor | list], device: torch.device) -> list[torch.Tensor]:
    """Several int64 host tensors (or lists of ints) on ``device`` in one transfer: one pinned buffer, one copy
    (each transfer costs the host tens of microseconds, more than moving these few kilobytes)."""
    tensors = [h if isinstance(h, torch.Tensor) else long_tensor(h) for h in hosts]
    if device.type != "cuda":
        return [t.to(device) for t in tensors]
    flat = upload(torch.cat([t.reshape(-1) for t in tensors]), device)
    return [piece.view(t.shape) for piece, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def long_tensor(values: Sequence[int] | array) -> torch.Tensor:
    """A 1-D int64 tensor of ``values``, through a typed array (a few times faster than ``torch.tensor`` of a list)."""
    values = values if isinstance(values, array) else array("q", values)
    return torch.frombuffer(values, dtype=torch.long) if len(values) else torch.zeros(0, dtype=torch.long)


def left_padded(rows: list[list[int]], width: int, fill: int = 0) -> torch.Tensor:
    """``rows`` left-padded with ``fill`` to ``width`` columns, as one tensor."""
    flat: list[int] = []
    pad = [fill] * width
    for r in rows:  # list extends, then one conversion: the fastest way from Python lists
        flat += pad[: width - len(r)]
        flat += r
    return long_tensor(flat).view(len(rows), width)

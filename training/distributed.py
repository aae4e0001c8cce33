"""Distributed helpers, kept at the edge: the accelerator, ZeRO-3 gathering, rank slices and cross-rank sums.

The same loop runs on one process or many; only these helpers know about ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, gather_object

T = TypeVar("T")


def make_accelerator(
    micro_batches: int,
    max_grad_norm: float,
    dtype: str,
    *,
    find_unused: bool,
    trackers: Sequence[str] = (),
    run_dir: str | Path | None = None,
) -> Accelerator:
    """Accelerator for the launch config in use; DeepSpeed gets the batch sizes it cannot infer (no dataloader).
    ``trackers`` go to accelerate's ``log_with`` (TensorBoard writes to ``run_dir/tensorboard``)."""
    from accelerate.tracking import TensorBoardTracker

    log_with = [TensorBoardTracker("tensorboard", str(run_dir)) if t == "tensorboard" else t for t in trackers]
    mixed = "bf16" if torch.cuda.is_available() and dtype in ("auto", "bfloat16") else "no"
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=find_unused)]
    if not torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        handlers.append(InitProcessGroupKwargs(backend="gloo"))  # DeepSpeed on CPU: accelerate needs the backend named
        no_jit_ops()
    # several processes launched on a machine without a GPU (torchrun, as accelerate's multi-GPU launcher starts them):
    # DDP over gloo on the CPU; without cpu=True accelerate would make each process a lone single-process run
    cpu_ranks = (
        not torch.cuda.is_available()
        and int(os.environ.get("WORLD_SIZE", "1")) > 1
        and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() != "true"
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=micro_batches,
        mixed_precision=mixed,
        kwargs_handlers=handlers,
        log_with=log_with or None,
        project_dir=str(run_dir) if run_dir else None,
        cpu=cpu_ranks,
    )
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
        plugin.deepspeed_config["train_batch_size"] = micro_batches * accelerator.num_processes
        plugin.deepspeed_config["gradient_accumulation_steps"] = micro_batches
        plugin.deepspeed_config["gradient_clipping"] = max_grad_norm
        if int(plugin.zero_stage) == 3:  # checkpoints export the policy as plain HF weights: gathered on save
            plugin.deepspeed_config.setdefault("zero_optimization", {})["stage3_gather_16bit_weights_on_model_save"] = (
                True
            )
    return accelerator


def no_jit_ops() -> None:
    """Keep DeepSpeed on CPU from JIT-compiling its shared-memory all-reduce (``deepspeed_shm_comm``: minutes of C++
    on every new machine, CI included): marked incompatible, DeepSpeed's communication falls back to gloo's exact
    all-reduce. Nothing else here needs a compiled op (the optimizer is torch's AdamW)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def zero_stage(accelerator: Accelerator) -> int:
    """The DeepSpeed ZeRO stage in use (0 without DeepSpeed)."""
    plugin = accelerator.state.deepspeed_plugin
    return int(plugin.zero_stage) if plugin is not None else 0


@contextmanager
def full_parameters(accelerator: Accelerator, model: torch.nn.Module):
    """Under ZeRO-3, gather the parameters once for a whole rollout phase (not once per decoded token).

    ZeRO-3's per-module fetch hooks are taken off while gathered (as TRL does for generation): generation then
    runs no collective at all, so ranks whose games end at different lengths never wait on each other.
    """
    if zero_stage(accelerator) != 3:
        yield
        return
    import deepspeed

    offload = model.optimizer.parameter_offload
    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        for p in offload.module.parameters():
            p.ds_active_sub_modules.clear()
        for hook in offload.forward_hooks + offload.backward_hooks:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)


def rank_slice(total: int, world: int, rank: int) -> tuple[int, int]:
    """(first, count) of this rank's share of ``total`` items."""
    per, extra = divmod(total, world)
    first = rank * per + min(rank, extra)
    return first, per + (1 if rank < extra else 0)


def sum_scalar(accelerator: Accelerator, value: float) -> float:
    """``value`` summed over ranks."""
    if accelerator.num_processes == 1:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(tensor, reduction="sum")[0])


def max_scalar(accelerator: Accelerator, value: float) -> float:
    """The largest ``value`` over ranks."""
    if accelerator.num_processes == 1:
        return float(value)
    return float(accelerator.gather(torch.tensor([float(value)], dtype=torch.float64, device=accelerator.device)).max())


def flatten(obj: Any, prefix: tuple = ()) -> dict[tuple, float]:
    """A dataclass of numbers, dicts of numbers or of dataclasses, and nested dataclasses as {path: number}."""
    out: dict[tuple, float] = {}
    for f in fields(obj):
        value, path = getattr(obj, f.name), (*prefix, f.name)
        if is_dataclass(value):
            out.update(flatten(value, path))
        elif isinstance(value, dict):
            for key, item in value.items():
                out.update(flatten(item, (*path, key)) if is_dataclass(item) else {(*path, key): float(item)})
        else:
            out[path] = float(value)
    return out


def unflatten(template: T, flat: dict[tuple, float], prefix: tuple = ()) -> T:
    """The inverse of ``flatten`` into a new object of ``template``'s type. A dict field takes every key present;
    a dict of dataclasses declares their type as ``metadata={"of": Type}``."""
    values = {}
    for f in fields(template):
        value, path = getattr(template, f.name), (*prefix, f.name)
        if is_dataclass(value):
            values[f.name] = unflatten(value, flat, path)
        elif isinstance(value, dict):
            keys = dict.fromkeys(k[len(path)] for k in flat if len(k) > len(path) and k[: len(path)] == path)
            item = f.metadata.get("of")
            values[f.name] = {k: unflatten(item(), flat, (*path, k)) if item else flat[(*path, k)] for k in keys}
        else:
            values[f.name] = flat.get(path, 0.0)
    return type(template)(**values)


def reduce_sum(accelerator: Accelerator, obj: T) -> T:
    """A dataclass of sums, summed over ranks key by key (ranks may have seen different dict keys)."""
    if accelerator.num_processes == 1:
        return obj
    total: dict[tuple, float] = {}
    for part in gather_object([flatten(obj)]):
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return unflatten(obj, total)


def gather(accelerator: Accelerator, items: list) -> list:
    """Every rank's items, concatenated in rank order."""
    return gather_object(items) if accelerator.num_processes > 1 else list(items)


def record_weight_hashes(accelerator: Accelerator, model, run_dir: Path, step: int) -> None:
    """Append every rank's hash of its full weights to ``RUN/weight_hashes.jsonl`` (equal when ranks agree)."""
    digest = hashlib.sha256()
    with full_parameters(accelerator, model):
        for name, p in sorted(accelerator.unwrap_model(model).named_parameters()):
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().numpy().tobytes())
    hashes = gather_object([digest.hexdigest()])
    if accelerator.is_main_process:
        with open(run_dir / "weight_hashes.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "hashes": hashes}) + "\n")

"""Checkpoints written atomically: a kill while saving never leaves a "latest" that cannot be loaded.

Each checkpoint (layout in ``arena.rundir``) holds ``state/`` (accelerate: the trainable weights only, optimizer,
scheduler, RNG of every rank), ``policy/`` (``save_pretrained``: loadable by plain transformers / peft),
``trainer.json`` (``TrainerState``), ``base.json`` (the base model's spec and a hash of its frozen weights) and
the ``COMPLETE`` marker. Frozen weights are never stored in ``state/``: with ``weights=lora`` a checkpoint holds
the adapters and their optimizer state, and resuming reloads the base from its spec and checks its hash.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from accelerate import Accelerator

from selfplay.agents.checkpoints import frozen_sha256
from selfplay.arena import rundir
from selfplay.training.distributed import zero_stage
from selfplay.training.learner import Learner
from selfplay.training.state import TrainerState


def frozen_hash(learner: Learner) -> str:
    """SHA-256 over the frozen parameters' names and values (the base under LoRA; empty otherwise). Under ZeRO-3 the
    parameters are gathered first (a collective: every rank calls this), since a shard is not the weights."""
    if zero_stage(learner.accelerator) != 3:
        return frozen_sha256(learner.policy.named_parameters())
    import deepspeed

    frozen = [p for p in learner.policy.parameters() if not p.requires_grad]
    with deepspeed.zero.GatheredParameters(frozen):
        return frozen_sha256(learner.policy.named_parameters())


def install_hooks(accelerator: Accelerator) -> None:
    """Make accelerate's ``save_state`` keep only trainable weights (the frozen base is reloaded from its spec)."""

    def trainable_only(models, weights, output_dir) -> None:
        for i, (model, state) in enumerate(zip(models, weights)):
            keep = {n for n, p in model.named_parameters() if p.requires_grad}
            weights[i] = {k: v for k, v in state.items() if k in keep}

    accelerator.register_save_state_pre_hook(trainable_only)


def save(
    learner: Learner,
    run_dir: Path,
    step: int,
    state: TrainerState,
    *,
    base_spec: str,
    keep: int,
    seed: int = 0,
    dtype: str = "float32",
) -> Path | None:
    """Write the checkpoint of ``step`` into a staging directory on every rank, then publish it atomically."""
    accelerator = learner.accelerator
    stage = rundir.staging_dir(run_dir, step)
    kwargs = {"exclude_frozen_parameters": True} if accelerator.state.deepspeed_plugin is not None else {}
    accelerator.save_state(str(stage / "state"), **kwargs)
    # every rank must be done writing (its RNG state, its ZeRO partition) before rank 0 renames the staging folder
    accelerator.wait_for_everyone()
    full = accelerator.get_state_dict(learner.model) if zero_stage(accelerator) == 3 else None
    frozen = frozen_hash(learner)  # on every rank: under ZeRO-3 it gathers
    final = None
    if accelerator.is_main_process:
        policy = learner.policy
        policy.save_pretrained(stage / "policy", state_dict=full)
        for folder in [stage / "policy", *(stage / "policy" / r for r in policy.roles if policy.mode != "shared")]:
            if folder.is_dir():  # each saved model or adapter loads on its own, tokenizer included
                learner.tokenizer.save_pretrained(folder)
        # the base model's spec and seed rebuild it (``hf:CHECKPOINT`` loads the adapters over it); the hash checks it
        (stage / "base.json").write_text(
            json.dumps(
                {"model": base_spec, "seed": seed, "dtype": dtype, "weights": policy.mode, "frozen_sha256": frozen},
                indent=1,
            )
        )
        final = _publish(run_dir, step, state, keep)
    accelerator.wait_for_everyone()
    return final


def _publish(run_dir: Path, step: int, state: TrainerState, keep: int) -> Path:
    """Write ``trainer.json`` and the marker into the staging dir, rename it into place, prune old ones."""
    stage, final = rundir.staging_dir(run_dir, step), rundir.checkpoint_dir(run_dir, step)
    (stage / "trainer.json").write_text(json.dumps(state.to_json(), indent=1))
    (stage / rundir.MARKER).write_text("ok\n")
    if final.exists():
        shutil.rmtree(final)
    stage.rename(final)
    for old in rundir.list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resume_point(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``auto`` (the latest complete one, if any), ``never``, or a path."""
    if resume == "never":
        return None
    if resume == "auto":
        return rundir.latest_checkpoint(run_dir)
    path = Path(resume)
    if not rundir.is_complete(path):
        raise FileNotFoundError(f"resume={resume!r} is not a complete checkpoint directory (no {rundir.MARKER} marker)")
    return path


def load(learner: Learner, checkpoint: Path) -> TrainerState:
    """Restore the trainable weights, optimizer, scheduler and RNG; check the frozen base; return the trainer state."""
    accelerator = learner.accelerator
    base = checkpoint / "base.json"
    if base.exists():
        expected = json.loads(base.read_text())["frozen_sha256"]
        if expected != frozen_hash(learner):
            raise ValueError(
                f"checkpoint {checkpoint} was trained on other frozen base weights than the model "
                f"loaded now (frozen_sha256 differs); resume with the same model spec"
            )
    strict = {"load_module_strict": False} if accelerator.state.deepspeed_plugin is not None else {"strict": False}
    accelerator.load_state(str(checkpoint / "state"), **strict)
    return TrainerState.from_json(json.loads((checkpoint / "trainer.json").read_text()))

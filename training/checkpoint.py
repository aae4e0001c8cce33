"""Checkpoints written atomically: a kill while saving never leaves a "latest" that cannot be loaded.

Layout: ``RUN/checkpoints/step_000010/`` holds ``state/`` (accelerate: weights, optimizer, scheduler, RNG
of every rank), ``policy/`` (``save_pretrained``: loadable by plain transformers / peft), ``trainer.json``
(step, baselines, opponent pool, evaluation history) and the ``COMPLETE`` marker. Everything is written
into ``.step_000010.tmp`` first and renamed into place when complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

MARKER = "COMPLETE"


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def staging_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f".step_{step:06d}.tmp"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step_*") if (p / MARKER).exists()) if root.is_dir() else []
    return done[-1] if done else None


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """All complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if (p / MARKER).exists()) if root.is_dir() else []


def finish(run_dir: str | Path, step: int, trainer_state: dict[str, Any], keep: int) -> Path:
    """Write ``trainer.json`` and the marker into the staging dir, rename it into place, prune old ones."""
    stage, final = staging_dir(run_dir, step), checkpoint_dir(run_dir, step)
    (stage / "trainer.json").write_text(json.dumps(trainer_state, indent=1))
    (stage / MARKER).write_text("ok\n")
    if final.exists():
        shutil.rmtree(final)
    stage.rename(final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint)
    if not (path / MARKER).exists():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {MARKER} marker)")
    return json.loads((path / "trainer.json").read_text())

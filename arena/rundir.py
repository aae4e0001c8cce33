"""The layout of a run directory, read by training (which writes it) and tournaments (which rate its checkpoints).

    RUN/episodes.sqlite          every episode (arena.records)
    RUN/config.json              the resolved training config
    RUN/checkpoints/step_000010/ state/ (accelerate: trainable weights, optimizer, scheduler, RNG of every rank),
                                 policy/ (loadable by plain transformers / peft), trainer.json, base.json (LoRA:
                                 the frozen base by spec and hash), COMPLETE
    RUN/pool/step_000010.pt      opponent-pool snapshots
    RUN/summary.json, report.md, progress.png, tensorboard/

A checkpoint is written into ``checkpoints/.step_000010.tmp`` and renamed into place once complete.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "COMPLETE"
EPISODES = "episodes.sqlite"


def make_run_dir(path: str | Path, what: str) -> Path:
    """Create the directory ``path`` (and its parents); ValueError naming ``what`` (a key or flag) if it cannot be."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{what}: cannot create {str(path)!r}: {exc.strerror}") from None
    return Path(path)


def checkpoints_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return checkpoints_root(run_dir) / f"step_{step:06d}"


def staging_dir(run_dir: str | Path, step: int) -> Path:
    return checkpoints_root(run_dir) / f".step_{step:06d}.tmp"


def checkpoint_step(path: str | Path) -> int:
    """The step a checkpoint directory holds (``step_000010`` -> 10)."""
    return int(Path(path).name.split("_")[1])


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """All complete checkpoints of a run, oldest first."""
    root = checkpoints_root(run_dir)
    return sorted(p for p in root.glob("step_*") if (p / MARKER).exists()) if root.is_dir() else []


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    done = list_checkpoints(run_dir)
    return done[-1] if done else None


def is_complete(checkpoint: str | Path) -> bool:
    return (Path(checkpoint) / MARKER).exists()


def pool_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "pool"

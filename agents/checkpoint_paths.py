"""Where a training checkpoint keeps its weights: the ``policy/`` folder, one per role for LoRA and clone runs, and
how the run sampled (``config.json``). Paths only: nothing here loads a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def model_dir(path: str | Path) -> bool:
    """A Hugging Face model directory: a ``config.json`` that names a model type (a training run's own
    ``config.json``, its recipe, does not)."""
    config = Path(path) / "config.json"
    try:
        found = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and ("model_type" in found or "architectures" in found)


def checkpoint_policy(path: str | Path) -> Path | None:
    """The folder ``hf:PATH`` loads for a checkpoint or its ``policy/``: a plain model (shared weights) or the
    per-role weights; None when ``path`` is neither."""
    path = Path(path)
    if (path / "policy").is_dir() and (model_dir(path / "policy") or policy_dir(path) is not None):
        return path / "policy"
    if model_dir(path) or policy_dir(path) is not None:
        return path
    return None


RUN_SAMPLING = ("constrained", "observer", "max_new_tokens", "top_p")  # how a run's policy played, from config.json


def run_sampling(path: str | Path) -> dict[str, Any]:
    """How the training run holding the checkpoint ``path`` (``RUN/checkpoints/step_N`` or its ``policy/``) sampled
    in its evaluation, from ``RUN/config.json``: constrained decoding, observer, token budget, top_p and the
    evaluation temperature. {} for a path outside a run, or a run without a readable config."""
    path = Path(path).resolve()
    run = next(
        (
            p.parent.parent
            for p in (path, *path.parents)
            if p.parent.name == "checkpoints" and p.name.startswith("step_")
        ),
        None,
    )
    try:
        config = json.loads((run / "config.json").read_text())
        sampling, evaluation = config["sampling"], config.get("evaluation") or {}
    except (TypeError, OSError, ValueError, KeyError):
        return {}
    out = {k: sampling[k] for k in RUN_SAMPLING if k in sampling}
    temperature = evaluation.get("temperature")
    out["temperature"] = sampling.get("temperature", 1.0) if temperature is None else temperature
    return out


def one_model(path: str | None) -> str | None:
    """``path``, or the ``policy/`` of a training checkpoint it names; a LoRA or clone checkpoint (one set of weights
    per role) is not one model and is refused by name."""
    if path is None or not Path(path).is_dir():
        return path
    if policy_dir(path) is not None:
        raise ValueError(
            f"{path} holds one adapter or model per role (a lora or clone run): it is not one model; "
            f"play it as an agent (hf:{path}), or train from its base model (base.json)"
        )
    return str(checkpoint_policy(path) or path)


def policy_dir(path: str | Path) -> Path | None:
    """The ``policy/`` folder of a checkpoint given the checkpoint or the folder itself, when it holds per-role
    weights (LoRA adapters or clones); None otherwise (a plain model directory, or not a checkpoint)."""
    path = Path(path)
    policy = path / "policy" if (path / "policy").is_dir() else path  # a checkpoint, or its policy/ itself
    return policy if policy.is_dir() and not model_dir(policy) and role_dirs(policy) else None


def role_dirs(policy: Path) -> dict[str, Path]:
    """{role: folder} of the per-role adapters or clones under ``policy``."""
    return {
        d.name: d
        for d in sorted(policy.iterdir())
        if d.is_dir() and ((d / "adapter_config.json").exists() or model_dir(d))
    }


def base_json(policy: Path) -> dict:
    found = policy.parent / "base.json"
    if not found.exists():
        raise FileNotFoundError(f"{policy} holds LoRA adapters but {found} is missing: it names the frozen base model")
    base = json.loads(found.read_text())
    if "seed" not in base:  # checkpoints written before base.json kept the seed: the run's config has it
        config = policy.parent.parent.parent / "config.json"
        base["seed"] = json.loads(config.read_text())["run"]["seed"] if config.exists() else 0
    return base

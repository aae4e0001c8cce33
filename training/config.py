"""The training recipe schema: one typed, flat config per run, loaded from YAML with ``key=value`` overrides.

Unknown keys and wrong types are rejected with the key's name. Every field has a one-line doc.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.weights import WEIGHT_MODES

CHOICES = {
    "weights": WEIGHT_MODES,
    "advantage": ("rae", "grpo"),
    "pool_sampling": ("uniform", "prioritized"),
    "resume": None,  # free text: auto | never | a checkpoint path
}


@dataclass
class TrainConfig:
    # -- what is played ------------------------------------------------------------------------------
    game: str = "tictactoe"  # registered game name, module:Class or file.py:Class
    game_options: dict[str, Any] = field(default_factory=dict)  # game constructor options, e.g. {dice: 3}
    model: str = "tiny"  # agent spec of the learner's base model: tiny | smollm2 | hf:PATH
    weights: str = "shared"  # shared (one model, all roles) | lora (one adapter per role) | clone (one copy per role)
    lora_r: int = 8  # LoRA rank (weights=lora)
    lora_alpha: int = 16  # LoRA alpha (weights=lora)
    # -- sampling ------------------------------------------------------------------------------------
    temperature: float = 1.0  # sampling temperature of the learner
    top_p: float = 1.0  # nucleus sampling of the learner
    max_new_tokens: int = 8  # longest completion per turn
    constrained: bool = False  # decode only legal actions (games that list them)
    # -- rollouts and opponents ------------------------------------------------------------------------
    steps: int = 50  # training steps (rollout + update each)
    games_per_step: int = 32  # games per step on each rank
    concurrency: int = 256  # games live at once per rank
    pool_prob: float = 0.0  # share of games against a frozen snapshot from the opponent pool (else mirror)
    pool_size: int = 5  # most snapshots kept in the pool
    pool_sampling: str = "uniform"  # uniform | prioritized (by the learner's loss rate against each snapshot)
    snapshot_every: int = 10  # steps between snapshots into the pool
    scripted_prob: float = 0.0  # share of games against a scripted opponent
    scripted_opponent: str = "random"  # the scripted opponent's spec (random | expert)
    random_opening: int = 0  # training games open with 0..N random moves (drawn per game): diverse positions; evaluation starts at the start
    # -- curriculum -------------------------------------------------------------------------------------
    curriculum: str = "none"  # none | uniform | sec | dump | adarft: how each game's category is chosen
    curriculum_option: str = ""  # the game option whose values are the arms (e.g. digits, skill), or opponent (arms: mirror, pool, agent specs)
    curriculum_arms: list[Any] = field(default_factory=list)  # the values of that option
    curriculum_params: dict[str, Any] = field(default_factory=dict)  # policy options, e.g. {alpha: 0.5, tau: 1.0}
    filter_low: float = 0.0  # online difficulty filtering: drop samples=K groups with accuracy below this
    filter_high: float = 1.0  # ... or above this (0 and 1: keep everything)
    filter_refill: int = 2  # extra rounds of games per step while filtering left fewer groups than games_per_step
    # -- the update ------------------------------------------------------------------------------------
    advantage: str = "rae"  # rae (per-role moving-average baseline, SPIRAL) | grpo (normalise within samples=K groups)
    baseline_decay: float = 0.95  # decay of the per-(game, role) baseline (rae)
    ppo_epochs: int = 1  # passes over each batch; > 1 uses the clipped ratio against the sampling log-probs
    clip: float = 0.2  # PPO ratio clip range
    kl_coef: float = 0.0  # weight of the KL penalty to the frozen initial model (0 disables it)
    lr: float = 1e-4  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping
    warmup_steps: int = 0  # linear learning-rate warm-up
    micro_batches: int = 1  # gradient-accumulation micro-batches per update (the same count on every rank)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16
    # -- evaluation, checkpoints, logging ---------------------------------------------------------------
    eval_every: int = 10  # steps between evaluations (0: only at the end)
    eval_games: int = 32  # games per evaluation opponent (both seats)
    eval_opponents: list[str] = field(default_factory=lambda: ["random", "expert"])  # scripted baselines
    eval_before: bool = False  # also evaluate at step 0, before the first update (the curves' starting point)
    eval_heldout: bool = False  # also play eval_games fixed held-out seeds per curriculum arm, the learner in every role
    eval_temperature: float | None = None  # sampling temperature in evaluation (None: as in training; 0: greedy)
    checkpoint_every: int = 10  # steps between checkpoints
    keep_checkpoints: int = 2  # most recent checkpoints kept
    resume: str = "auto"  # auto (latest complete checkpoint, if any) | never | path to a checkpoint
    out: str = "runs/train"  # run directory: episodes, checkpoints, TensorBoard logs, report
    seed: int = 0  # base seed (every rank and step derives its own)
    progress: bool = True  # progress bars
    check_sync: bool = False  # after every update, hash the weights on each rank and record them (debugging)


def _one_line(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    first = str(exc).splitlines()[0]
    return f"config key {key!r}: {first}" if key else first


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a recipe YAML and dotted ``key=value`` overrides into a validated ``TrainConfig``."""
    schema = OmegaConf.structured(TrainConfig)
    try:
        layers = [schema]
        if path is not None:
            if not Path(path).is_file():
                raise FileNotFoundError(f"config file {str(path)!r} does not exist")
            layers.append(OmegaConf.load(path))
        for item in overrides or []:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not key=value")
        layers.append(OmegaConf.from_dotlist(list(overrides or [])))
        merged = OmegaConf.merge(*layers)
        config: TrainConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ValueError(_one_line(exc)) from None
    for key, allowed in CHOICES.items():
        if allowed and getattr(config, key) not in allowed:
            raise ValueError(f"config key {key!r}: {getattr(config, key)!r} is not one of {', '.join(allowed)}")
    if config.curriculum != "none" and (not config.curriculum_option or not config.curriculum_arms):
        raise ValueError(f"config key 'curriculum': {config.curriculum!r} needs curriculum_option and curriculum_arms")
    if config.curriculum not in ("none", "uniform", "sec", "dump", "adarft"):
        raise ValueError(f"config key 'curriculum': {config.curriculum!r} is not one of none, uniform, sec, dump, adarft")
    if not 0 <= config.filter_low <= config.filter_high <= 1:
        raise ValueError(f"config keys 'filter_low'/'filter_high': need 0 <= low <= high <= 1, got "
                         f"{config.filter_low}, {config.filter_high}")
    for key, what in (("filter_refill", "extra rounds"), ("random_opening", "random opening moves")):
        if getattr(config, key) < 0:
            raise ValueError(f"config key {key!r}: {getattr(config, key)} is negative; expected {what} >= 0")
    for key in ("pool_prob", "scripted_prob"):
        if not 0 <= getattr(config, key) <= 1:
            raise ValueError(f"config key {key!r}: {getattr(config, key)} is not a probability in [0, 1]")
    if config.pool_prob + config.scripted_prob > 1:
        raise ValueError(f"config keys 'pool_prob' + 'scripted_prob' = {config.pool_prob + config.scripted_prob} exceed 1")
    for key in ("steps", "games_per_step", "micro_batches", "ppo_epochs", "max_new_tokens", "pool_size"):
        if getattr(config, key) < 1:
            raise ValueError(f"config key {key!r}: {getattr(config, key)} must be >= 1")
    return config


def describe() -> str:
    """Every key with its default and its one-line doc (for ``selfplay train --help``)."""
    source = Path(__file__).read_text().splitlines()
    docs = {}
    for line in source:
        stripped = line.strip()
        if ":" in stripped and "#" in stripped and not stripped.startswith("#"):
            docs[stripped.split(":")[0]] = stripped.split("#", 1)[1].strip()
    return "\n".join(f"  {f.name:<22} {docs.get(f.name, '')}" for f in fields(TrainConfig))

"""The training recipe schema: one typed dataclass per section, each field carrying its help text, choices and range.

A recipe has a few top-level keys (what is played, by which model) and one section per phase: ``sampling``,
``rollout``, ``opponents``, ``curriculum``, ``update``, ``evaluation``, ``run``. ``training.config`` loads and checks
recipes against these; ``selfplay.reference`` writes the docs' config reference from the same metadata.

This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from selfplay.agents.base import WEIGHT_MODES
from selfplay.agents.fields import documented
from selfplay.agents.sampling import recipe_section

_f = documented  # the config fields' helper: help, choices, range and old name in metadata

CURRICULA = ("none", "uniform", "sec", "dump", "adarft", "alp-gmm")


Sampling = recipe_section()  # SamplingConfig's learner settings: each declared once, in agents/sampling.py


@dataclass
class Rollout:
    """How many games each step plays."""

    games_per_step: int = _f(32, "games per step on each rank", low=1)
    concurrency: int = _f(256, "games live at once per rank", low=1)
    random_opening: int = _f(
        0, "training games open with 0..N random moves (drawn per game); evaluation starts at the start", low=0
    )


@dataclass
class Opponents:
    """Whom the learner plays besides itself."""

    pool_prob: float = _f(
        0.0, "share of games against a frozen snapshot from the opponent pool (else mirror)", low=0.0, high=1.0
    )
    pool_size: int = _f(5, "most snapshots kept in the pool", low=1)
    pool_sampling: str = _f(
        "uniform",
        "how a snapshot is picked (prioritized: by the learner's loss rate)",
        choices=("uniform", "prioritized"),
    )
    snapshot_every: int = _f(10, "steps between snapshots into the pool", low=1)
    scripted_prob: float = _f(0.0, "share of games against a scripted opponent", low=0.0, high=1.0)
    scripted_opponent: str = _f(
        "random",
        "the scripted opponent's agent spec (random | expert), or average: the "
        "learner's exact average policy (fictitious self-play; small games)",
    )
    seats: dict[str, str] = _f(
        None,
        "roles held by a fixed agent in every game, training and evaluation, e.g. {judge: expert}; never trained",
        factory=dict,
    )


@dataclass
class Curriculum:
    """What category each game is drawn from, and which task groups are kept."""

    policy: str = _f("none", "how each game's category is chosen", choices=CURRICULA, alias="curriculum")
    option: str = _f(
        "",
        "the game option whose values are the arms (e.g. digits; several at once: skill,digits with "
        "arms like [add, 2]), or opponent (arms: mirror, pool, "
        "agent specs)",
        alias="curriculum_option",
    )
    arms: list[Any] = _f(None, "the values of that option", alias="curriculum_arms", factory=list)
    params: dict[str, Any] = _f(
        None, "policy options, e.g. {alpha: 0.5, tau: 1.0}", alias="curriculum_params", factory=dict
    )
    filter_low: float = _f(
        0.0, "online difficulty filtering: drop samples=K groups with accuracy below this", low=0.0, high=1.0
    )
    filter_high: float = _f(1.0, "... or above this (0 and 1: keep everything)", low=0.0, high=1.0)
    filter_refill: int = _f(
        2, "extra rounds of games per step while filtering left fewer groups than games_per_step", low=0
    )
    collapse_distinct: float = _f(
        0.5,
        "proposer-collapse warning: a task-writing role's share of distinct tasks in a step below this",
        low=0.0,
        high=1.0,
    )
    collapse_frontier: float = _f(
        0.1,
        "proposer-collapse warning: the share of its tasks at the solver's frontier "
        "(solved sometimes, not always) below this",
        low=0.0,
        high=1.0,
    )


@dataclass
class Update:
    """How samples become a gradient step."""

    advantage: str = _f(
        "rae",
        "rae: per-role moving-average baseline (SPIRAL); state: one per (role, opponent arm, "
        "prompt), for games whose states recur (poker); grpo: normalise within samples=K groups",
        choices=("rae", "state", "grpo"),
    )
    baseline_decay: float = _f(0.95, "decay of the per-(game, role) baseline (rae)", low=0.0, high=1.0)
    gae_lambda: float = _f(
        1.0,
        "state: the lambda of TD(lambda) returns over the role's later states (1: the Monte-Carlo return)",
        low=0.0,
        high=1.0,
    )
    ppo_epochs: int = _f(
        1, "passes over each batch; > 1 clips the ratio to the first pass (or, correction=none, the sampler)", low=1
    )
    clip: float = _f(0.2, "PPO ratio clip range", low=0.0)
    correction: str = _f(
        "tis",
        "the sampler/learner mismatch (bf16 products): tis weighs each token by min(learner / sampler probability, "
        "tis_cap) and takes the ratio against the learner's own log-probs; recompute takes the learner's as the old "
        "log-probs, unweighted; none takes the sampler's (all three agree in float32)",
        choices=("tis", "recompute", "none"),
    )
    tis_cap: float = _f(2.0, "correction=tis: the largest importance weight (truncated IS, Yao et al. 2025)", low=1.0)
    kl_coef: float = _f(0.0, "weight of the KL penalty to the reference (the magnet in MMD; 0 disables it)", low=0.0)
    magnet_every: int = _f(
        0,
        "MMD: move the KL reference (the magnet) to the current policy every N steps (0: it stays the initial model)",
        low=0,
    )
    entropy_coef: float = _f(0.0, "entropy bonus (MMD's regulariser; 0 disables it)", low=0.0)
    lr: float = _f(1e-4, "AdamW learning rate", above=0.0)
    weight_decay: float = _f(0.0, "AdamW weight decay", low=0.0)
    max_grad_norm: float = _f(1.0, "gradient clipping", low=0.0)
    warmup_steps: int = _f(0, "training steps of linear learning-rate warm-up", low=0)
    lr_schedule: str = _f(
        "constant",
        "after warm-up: constant, or linear / cosine decay to lr_floor * lr at the last step",
        choices=("constant", "linear", "cosine"),
    )
    lr_floor: float = _f(0.1, "the decayed learning rate at the last step, as a share of lr", low=0.0, high=1.0)
    micro_batches: int = _f(
        1,
        "gradient-accumulation micro-batches per update (the same count on every rank), cut "
        "where the largest padded one, the memory peak, is smallest",
        low=1,
    )
    micro_batch_tokens: int = _f(
        0,
        "size micro-batches to memory instead: the fewest per update whose padded size, "
        "rows x (longest prompt + completion), stays within this many tokens (a longer "
        "sample alone); 0: exactly micro_batches",
        low=0,
    )
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass")


@dataclass
class Evaluation:
    """The fixed evaluation set: the learner against scripted baselines in every seat."""

    every: int = _f(10, "steps between evaluations (0: only at the end)", low=0, alias="eval_every")
    games: int = _f(
        32, "games per evaluation opponent (every seat; no evaluation: opponents=[])", low=1, alias="eval_games"
    )
    opponents: list[str] | None = _f(
        None,
        "agents the learner is evaluated with: scripted baselines, or mirror (also self; the "
        "learner in every seat: self-play, the measure of cooperative games) "
        "(default: mirror for cooperative games, random, and expert when the game "
        "has one)",
        alias="eval_opponents",
    )
    before: bool = _f(False, "also evaluate at step 0, before the first update", alias="eval_before")
    heldout: bool = _f(
        False, "also play `games` held-out seeds per curriculum arm, the learner in every role", alias="eval_heldout"
    )
    quiz_game: str = _f(
        "",
        "a held-out quiz at every evaluation: a one-role game (e.g. arithmetic) the learner answers "
        "alone, greedy, on fixed seeds of its own, one set of problems per quiz_sets entry",
    )
    quiz_sets: dict[str, Any] = _f(
        None,
        "the quiz's sets: name -> that game's options, e.g. {add2: {skill: add, "
        "digits: 2, answer_format: slot, split: heldout}}",
        factory=dict,
    )
    quiz_games: int = _f(100, "problems per quiz set", low=1)
    quiz_role: str = _f(
        "",
        "the learner role whose weights answer the quiz (default: the learner role of the quiz "
        "game's role name, or the only learner role)",
    )
    temperature: float | None = _f(
        None, "sampling temperature in evaluation (None: as in training; 0: greedy)", low=0.0, alias="eval_temperature"
    )
    exact: bool = _f(
        True,
        "exact exploitability (NashConv / players) of the current and the average policy at each "
        "evaluation (small games that list their chance, with constrained decoding)",
        alias="eval_exact",
    )


@dataclass
class Run:
    """Length, seed, outputs, checkpoints."""

    steps: int = _f(50, "training steps (rollout + update each)", low=1)
    max_minutes: float = _f(
        0.0,
        "stop after this much training time (rollouts and updates) with a final evaluation and checkpoint; 0: no limit",
        low=0.0,
    )
    seed: int = _f(0, "base seed (every rank and step derives its own)")
    out: str = _f("runs/train", "run directory: episodes, checkpoints, TensorBoard logs, report")
    resume: str = _f(
        "auto",
        "auto (latest complete checkpoint, if any) | never (start over: the directory's earlier "
        "checkpoints and episodes are removed) | path to a checkpoint",
    )
    checkpoint_every: int = _f(10, "steps between checkpoints", low=1)
    keep_checkpoints: int = _f(2, "most recent checkpoints kept", low=1)
    progress: bool = _f(True, "progress bars (on a terminal; a log file gets the per-step lines only)")
    trackers: list[str] = _f(
        None,
        "experiment trackers, through accelerate's log_with: tensorboard (RUN/tensorboard), "
        "wandb, mlflow, trackio (each when installed); [] for none",
        factory=lambda: ["tensorboard"],
    )
    check_sync: bool = _f(False, "after every update, hash the weights on each rank and record them (debugging)")


@dataclass
class TrainConfig:
    """One training run."""

    game: str = _f("tictactoe", "registered game name, module:Class or file.py:Class")
    game_options: dict[str, Any] = _f(None, "game constructor options, e.g. {dice: 3}", factory=dict)
    model: str = _f("tiny", "agent spec of the learner's base model: tiny | smollm2 | hf:PATH")
    weights: str = _f(
        "shared",
        "shared: one model for all roles; lora: one adapter per role; clone: one copy per role",
        choices=WEIGHT_MODES,
    )
    lora_r: int = _f(8, "LoRA rank (weights=lora)", low=1)
    lora_alpha: int = _f(16, "LoRA alpha (weights=lora)", low=1)
    dtype: str = _f(
        "auto",
        "precision of the products: auto is bf16 autocast on CUDA, and on a CPU bf16 products with float32 weights where "
        "the CPU has AMX or AVX512-BF16 (float32 elsewhere, and for models narrower than 256); float32 is exact",
        choices=("auto", "float32", "bfloat16"),
    )
    learner_roles: list[str] | None = _f(
        None,
        "the roles whose samples train (default: every role not in "
        "opponents.seats); other roles are played but not updated",
    )
    sampling: Sampling = field(default_factory=Sampling)
    rollout: Rollout = field(default_factory=Rollout)
    opponents: Opponents = field(default_factory=Opponents)
    curriculum: Curriculum = field(default_factory=Curriculum)
    update: Update = field(default_factory=Update)
    evaluation: Evaluation = field(default_factory=Evaluation)
    run: Run = field(default_factory=Run)


SECTIONS = tuple(
    f.name for f in fields(TrainConfig) if isinstance(f.default_factory, type) and is_dataclass(f.default_factory)
)


def aliases() -> dict[str, str]:
    """Old flat key -> ``section.field`` (a field's declared alias, else its own name)."""
    out: dict[str, str] = {}
    for section in SECTIONS:
        for f in fields(section_type(section)):
            name = f.metadata.get("alias") or f.name
            if name in out:
                raise AssertionError(f"config alias {name!r} names both {out[name]} and {section}.{f.name}")
            out[name] = f"{section}.{f.name}"
    return out


def section_type(name: str) -> type:
    return next(f.default_factory for f in fields(TrainConfig) if f.name == name)


def field_type(key: str) -> str | None:
    """The declared type of a dotted section key (``evaluation.opponents`` -> ``list[str] | None``), or None."""
    *section, name = key.split(".")
    owner = (
        section_type(section[0])
        if len(section) == 1 and section[0] in SECTIONS
        else TrainConfig
        if not section
        else None
    )
    found = [f for f in fields(owner) if f.name == name] if owner else []
    return str(found[0].type) if found else None

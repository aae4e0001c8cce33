"""How an LLM agent samples (``SamplingConfig``), checked without torch: a bad option in an agent spec is refused
before any model loads."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from selfplay.agents.fields import check_fields, documented

OBSERVERS = ("chat", "compact")
BACKENDS = ("native", "vllm")


@dataclass
class SamplingConfig:
    """How an LLM agent samples; every field can be set in an agent spec (``smollm2:temperature=0.7``), and those in
    ``RECIPE_FIELDS`` in a training recipe's ``sampling`` section (the learner's)."""

    temperature: float = documented(1.0, "sampling temperature (0: greedy)", low=0.0)
    top_p: float = documented(1.0, "nucleus sampling", above=0.0, high=1.0)
    max_new_tokens: int = documented(24, "longest completion per turn", low=1)
    stop: list[str] = documented(None, "stop strings (| separated in a spec)", factory=list)
    batch_size: int = documented(256, "most rows per generate call; larger batches are split", low=1)
    seed: int = documented(0, "sampling seed (every call samples afresh from it)")
    constrained: bool = documented(False, "decode only legal actions (games that list them)")
    cache: str = documented(
        "dynamic", "static: a static KV cache and compiled decoding, shapes bucketed", choices=("dynamic", "static")
    )
    observer: str = documented(
        "chat",
        "what the model reads: the game's chat messages, or its one-line compact observation (small models)",
        choices=OBSERVERS,
    )
    graphs: bool = documented(True, "on a GPU, decode steps and prefill forwards replayed as CUDA graphs")
    pack: bool = documented(
        True,
        "on a CPU, multiply by prepacked weights during a play (oneDNN; float32, equal to float32 rounding, or "
        "bfloat16 under bfloat16 products)",
    )
    backend: str = documented(
        "native",
        "who samples: our decoder, or a vLLM engine colocated on the GPU (needs the vllm package; weights "
        "synchronised after every update; log-probs recomputed exactly)",
        choices=BACKENDS,
    )
    vllm_memory: float = documented(
        0.3, "backend=vllm: the share of GPU memory the engine may take", above=0.0, high=0.99
    )

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SamplingConfig:
        """Build from spec options, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown sampling option(s) {sorted(unknown)}: expected {', '.join(sorted(known))}")
        opts = dict(options)
        if "stop" in opts and not isinstance(opts["stop"], list):  # "|"-separated; a spec types "5" as a number
            opts["stop"] = [s for s in str(opts["stop"]).split("|") if s]
        kinds = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,), "list[str]": (list,)}
        for f in fields(cls):
            value = opts.get(f.name)
            wrong = not isinstance(value, kinds[f.type]) or (f.type != "bool" and isinstance(value, bool))
            if f.name in opts and wrong:
                expected = "true or false" if f.type == "bool" else f.type
                raise ValueError(f"sampling option {f.name}={value!r}: expected {expected}")
        config = cls(**opts)
        check_fields(config, what="sampling option")  # choices and ranges, as declared with each field
        if config.backend == "vllm" and (config.constrained or config.cache == "static"):
            raise ValueError(
                "backend=vllm samples free text only: constrained decoding and cache=static are native-only "
                "(vLLM's structured outputs accept any tokenisation of an action, and training needs the "
                "allowed tokens of each step); use backend=native for them"
            )
        return config


# the settings a training recipe's ``sampling`` section sets for the learner (its seed is derived per step and rank)
RECIPE_FIELDS = ("temperature", "top_p", "max_new_tokens", "constrained", "observer", "pack", "backend", "vllm_memory")
RECIPE_DEFAULTS = {"max_new_tokens": 8}  # a move in a game is short


def recipe_section() -> type:
    """The recipe's ``sampling`` section: ``RECIPE_FIELDS`` of :class:`SamplingConfig`, the same types, help, choices
    and ranges (one definition of each setting), with the recipe's defaults."""
    from dataclasses import make_dataclass

    made = []
    for f in fields(SamplingConfig):
        if f.name in RECIPE_FIELDS:
            default = RECIPE_DEFAULTS.get(f.name, f.default)
            made.append((f.name, f.type, field(default=default, metadata=f.metadata)))
    return make_dataclass("Sampling", made, namespace={"__doc__": "How the learner samples its moves in rollouts."})


_WARNED_COMPACT: set[str] = set()


def warn_no_compact(game, agent: str) -> None:
    """Say once per game (a class or an instance) that ``observer=compact`` cannot apply: the game gives no one-line
    observation, so the agent reads the full chat (longer prompts, slower, and not what the recipe meant)."""
    from selfplay.games.core import Game

    if game.name in _WARNED_COMPACT:
        return
    _WARNED_COMPACT.add(game.name)
    cls = game if isinstance(game, type) else type(game)
    defined = cls.compact_observation is not Game.compact_observation
    warnings.warn(
        f"agent {agent!r} has observer=compact, but game {game.name!r} "
        + ("returned no compact observation (None) here" if defined else "defines no compact_observation")
        + ": it reads the game's full chat messages instead (define compact_observation(role) in the game, "
        "or set observer=chat)",
        stacklevel=3,
    )

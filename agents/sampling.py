"""How an LLM agent samples (``SamplingConfig``), checked without torch: a bad option in an agent spec is refused
before any model loads."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class SamplingConfig:
    """How an LLM agent samples; every field can be set in an agent spec (``smollm2:temperature=0.7``)."""

    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 24
    stop: list[str] = field(default_factory=list)  # stop strings ("|" separated in a spec)
    batch_size: int = 256  # most rows per generate call; larger batches are split
    seed: int = 0
    constrained: bool = False  # decode only prefixes of the game's legal actions (when it lists them)
    cache: str = "dynamic"  # dynamic | static (static KV cache, compiled decoding; shapes are bucketed)
    observer: str = "chat"  # chat: the game's chat messages | compact: its one-line observation, where it has one
    graphs: bool = True  # on a GPU, decode steps and prefill forwards replayed as CUDA graphs (agents/graph_step.py)
    pack: bool = True  # on a CPU, prepack float32 linear weights for oneDNN during a play (agents/packing.py)
    backend: str = "native"  # native: our decoder | vllm: a colocated vLLM engine on the GPU (agents/vllm_backend.py)
    vllm_memory: float = 0.3  # backend=vllm: the share of GPU memory the engine may take (weights and KV cache)

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
        if config.cache not in ("dynamic", "static"):
            raise ValueError(f"unknown cache {config.cache!r}: expected dynamic or static")
        if config.observer not in OBSERVERS:
            raise ValueError(f"unknown observer {config.observer!r}: expected one of {', '.join(OBSERVERS)}")
        if config.backend not in BACKENDS:
            raise ValueError(f"unknown backend {config.backend!r}: expected one of {', '.join(BACKENDS)}")
        if config.backend == "vllm" and (config.constrained or config.cache == "static"):
            raise ValueError(
                "backend=vllm samples free text only: constrained decoding and cache=static are native-only "
                "(vLLM's structured outputs accept any tokenisation of an action, and training needs the "
                "allowed tokens of each step); use backend=native for them"
            )
        if not 0 < config.vllm_memory < 1:
            raise ValueError(f"vllm_memory={config.vllm_memory!r}: expected a share of GPU memory between 0 and 1")
        if config.temperature < 0 or not 0 < config.top_p <= 1 or config.max_new_tokens < 1:
            raise ValueError(
                f"bad sampling options {options}: need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1"
            )
        return config


OBSERVERS = ("chat", "compact")
BACKENDS = ("native", "vllm")


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

"""The syntax of agent specs, ``kind[:arg][:key=value,key=value]``: parsing and checking it, without building
anything (``agents.specs`` builds the agents)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPTED_KINDS = ("random", "expert")  # agents.specs builds them
MODEL_KINDS = ("smollm2", "tiny", "hf")


TINY_SIZES = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


MODEL_OPTIONS = ("device", "dtype", *TINY_SIZES)  # spec options that shape the model, not the sampling


SERVED_KINDS = ("openai",)  # served models: openai:MODEL@BASE_URL


@dataclass
class AgentSpec:
    """A parsed agent spec."""

    kind: str
    arg: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def _value(text: str) -> Any:
    """``text`` as an int, a finite float, a boolean or None where it spells one; otherwise the string itself
    (``nan``, ``inf`` and ``infinity`` stay words)."""
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_key_values(pairs: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` (numbers and booleans typed) as a dict; ValueError names a malformed pair."""
    options = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"malformed option {pair!r}: expected key=value")
        options[key] = _value(value)
    return options


def parse_seats(pairs: list[str] | None, roles) -> dict[str, str]:
    """``["role=SPEC", ...]`` as {role: spec}; ValueError names an unknown role or a malformed pair."""
    seats = {}
    for pair in pairs or []:
        role, eq, spec = pair.partition("=")
        if not eq or not spec:
            raise ValueError(f"malformed seat {pair!r}: expected ROLE=SPEC, e.g. {roles[-1]}=expert")
        if role not in roles:
            raise ValueError(f"seat {pair!r}: {role!r} is not a role of this game; roles: {', '.join(roles)}")
        if role in seats:
            raise ValueError(f"seat {role!r} given twice")
        seats[role] = spec
    return seats


def _local_model(arg: str) -> bool:
    """A model directory, a training checkpoint (any weight mode) or its ``policy/``, or a hub id already in the
    local Hugging Face cache."""
    if Path(arg).is_dir():
        from selfplay.agents.checkpoint_paths import checkpoint_policy

        return checkpoint_policy(arg) is not None
    if arg.count("/") != 1 or arg.startswith(("/", ".")):
        return False
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(arg, "config.json"), str)


def parse_spec(text: str) -> AgentSpec:
    """Parse ``kind[:arg][:key=value,...]``; raise ValueError naming the bad part."""
    if not text or not text.strip():
        raise ValueError("empty agent spec: expected e.g. 'random', 'expert', 'smollm2:temperature=0.7'")
    kind, *rest = text.split(":")
    if kind not in SCRIPTED_KINDS and kind not in MODEL_KINDS and kind not in SERVED_KINDS:
        raise ValueError(
            f"unknown agent kind {kind!r} in spec {text!r}: expected one of "
            f"{', '.join([*SCRIPTED_KINDS, *MODEL_KINDS, *SERVED_KINDS])}"
        )
    args, options = [], {}
    for part in rest:
        if "=" not in part:
            args.append(part)
            continue
        for item in part.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"malformed option {item!r} in agent spec {text!r}: expected key=value")
            options[key.strip()] = _value(value.strip())
    arg = ":".join(args) or None
    if kind == "hf" and not arg:
        raise ValueError(f"agent spec {text!r} needs a model path: hf:PATH")
    if kind == "hf" and not _local_model(arg):
        raise ValueError(
            f"agent spec {text!r}: {arg!r} is neither a model directory, a training checkpoint nor a "
            f"model in the local Hugging Face cache (nothing is downloaded)"
        )
    if kind == "openai" and (
        not arg or "@" not in arg or not arg.partition("@")[2].startswith(("http://", "https://"))
    ):
        raise ValueError(
            f"agent spec {text!r}: expected openai:MODEL@BASE_URL, e.g. openai:policy@http://127.0.0.1:8000/v1"
        )
    if kind not in ("hf", "openai") and arg:
        raise ValueError(f"agent spec {text!r}: kind {kind!r} takes no argument {arg!r} (options go as key=value)")
    return AgentSpec(kind, arg, options, text)

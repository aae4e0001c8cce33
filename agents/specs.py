"""Agent specs on the command line: ``kind[:arg][:key=value,key=value]``.

Examples: ``random``, ``expert:seed=3``, ``tiny``, ``smollm2:temperature=0.7,max_new_tokens=16``,
``hf:/path/to/model:temperature=0.5``. Model kinds load lazily, so scripted play never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfplay.agents.base import Agent
from selfplay.agents.scripted import ExpertAgent, RandomAgent

SCRIPTED: dict[str, Callable[..., Agent]] = {"random": RandomAgent, "expert": ExpertAgent}
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
        from selfplay.agents.checkpoints import checkpoint_policy

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
    if kind not in SCRIPTED and kind not in MODEL_KINDS and kind not in SERVED_KINDS:
        raise ValueError(
            f"unknown agent kind {kind!r} in spec {text!r}: expected one of "
            f"{', '.join([*SCRIPTED, *MODEL_KINDS, *SERVED_KINDS])}"
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


def build_agent(spec: str | AgentSpec, seed: int = 0, name: str | None = None) -> Agent:
    """Create the agent a spec describes; ``name`` defaults to the spec text."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    name = name or spec.text or spec.kind
    if spec.kind in SCRIPTED:
        unknown = set(spec.options) - {"seed"}
        if unknown:
            raise ValueError(f"agent {spec.kind!r} takes only the option 'seed', got {sorted(unknown)}")
        return SCRIPTED[spec.kind](seed=int(spec.options.get("seed", seed)), name=name)
    if spec.kind == "openai":
        from selfplay.agents.openai_agent import OpenAIAgent

        model, _, url = spec.arg.partition("@")
        return OpenAIAgent(model, url, name=name, **spec.options)
    from selfplay.agents.llm import build_llm_agent  # torch and transformers load only when a model plays

    return build_llm_agent(spec, seed=seed, name=name)


def check_spec(spec: str | AgentSpec) -> AgentSpec:
    """Parse a spec and check its options without loading anything (a model's sampling options too), so a bad one
    is refused at once rather than after torch has loaded."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind in MODEL_KINDS:
        from selfplay.agents.sampling import SamplingConfig

        SamplingConfig.from_options({k: v for k, v in spec.options.items() if k not in MODEL_OPTIONS})
    return spec


def build_agents(specs: list[str], seed: int = 0) -> dict[str, Agent]:
    """Agents for a list of specs, named by spec; repeated specs get ``#2``, ``#3`` suffixes. Every spec is checked
    before the first is built."""
    for text in specs:
        check_spec(text)
    agents: dict[str, Agent] = {}
    for i, text in enumerate(specs):
        name = text if text not in agents else f"{text}#{sum(n.split('#')[0] == text for n in agents) + 1}"
        agents[name] = build_agent(text, seed=seed + 1000 * i, name=name)
    return agents

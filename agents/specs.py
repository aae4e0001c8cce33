"""Agent specs on the command line: ``kind[:arg][:key=value,key=value]``.

Examples: ``random``, ``expert:seed=3``, ``tiny``, ``smollm2:temperature=0.7,max_new_tokens=16``,
``hf:/path/to/model:temperature=0.5``. Model kinds load lazily, so scripted play never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

from selfplay.agents.base import Agent
from selfplay.agents.scripted import ExpertAgent, RandomAgent
from selfplay.agents.spec_syntax import MODEL_KINDS, MODEL_OPTIONS, SCRIPTED_KINDS, AgentSpec, parse_spec

# the kinds spec_syntax accepts, in its order: a kind added there without an agent here fails at import
SCRIPTED: dict[str, Callable[..., Agent]] = dict(zip(SCRIPTED_KINDS, (RandomAgent, ExpertAgent), strict=True))


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

"""A training checkpoint as an agent, whatever its weight mode: every role plays with the weights it trained.

A checkpoint's ``policy/`` holds one plain model (``weights=shared``), one LoRA adapter per role over a frozen
base (``lora``: ``policy/<role>/adapter_config.json``, the base named by the checkpoint's ``base.json``), or one
full model per role (``clone``: ``policy/<role>/config.json``). ``hf:CHECKPOINT`` or ``hf:CHECKPOINT/policy`` loads
any of them; a LoRA or clone checkpoint becomes a ``RoleAgent`` that answers each request with its role's weights.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfplay.agents.base import Agent, Completion, Request
from selfplay.agents.checkpoint_paths import base_json, model_dir, policy_dir, role_dirs

if TYPE_CHECKING:  # torch loads only with a model: a tournament of scripted agents starts at once
    import torch


class RoleAgent:
    """Answers each request with the agent of its role (the roles of a LoRA or clone checkpoint); requests of a
    role it has no weights for are a ValueError naming the roles it has."""

    def __init__(self, agents: dict[str, Agent], name: str):
        self.agents, self.name = dict(agents), name

    def check_seat(self, game: Any, role: str) -> None:
        """ValueError when it holds no weights for ``role`` (the arena asks before any game)."""
        if role not in self.agents:
            raise ValueError(
                f"agent {self.name!r} holds weights for the roles {', '.join(self.agents)}, not for "
                f"{role!r}: it was trained on another game or seat"
            )

    @contextmanager
    def session(self) -> Iterator[None]:
        """Each role's agent keeps its reuse of shared prompt prefixes across the calls of one ``play``."""
        with ExitStack() as stack:
            for agent in self.agents.values():
                if hasattr(agent, "session"):
                    stack.enter_context(agent.session())
            yield

    def tabular_policy(self, tree: Any, roles: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
        """The exact policy at every information state of ``roles`` (default all), each role's through its own
        weights (``LLMAgent.tabular_policy``); ValueError for a role it has no weights for."""
        out: dict[str, dict[str, float]] = {}
        for role in roles or tree.roles:
            if role not in self.agents:
                raise ValueError(f"agent {self.name!r} has no weights for role {role!r}")
            out.update(self.agents[role].tabular_policy(tree, (role,)))
        return out

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        """Every request answered by its role's agent, one batched call per role, in the order given."""
        answers: list[list[Completion] | None] = [None] * len(requests)
        by_role: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            by_role.setdefault(request.role, []).append(i)
        missing = sorted(set(by_role) - set(self.agents))
        if missing:
            raise ValueError(
                f"agent {self.name!r} has no weights for role(s) {missing}: its checkpoint trained "
                f"{', '.join(self.agents)}"
            )
        for role, rows in by_role.items():  # one batched call per role: a batch never mixes adapters
            for i, answer in zip(rows, self.agents[role].act([requests[i] for i in rows])):
                answers[i] = answer
        return answers


def frozen_sha256(named: Iterable[tuple[str, torch.nn.Parameter]]) -> str:
    """SHA-256 over the frozen parameters' names and values (a LoRA run's base: ``base.json`` keeps it, so a
    checkpoint is only ever resumed or loaded over the base it was trained on)."""
    digest = hashlib.sha256()
    for name, p in sorted(named, key=lambda item: item[0]):
        if not p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def load_role_models(
    path: str | Path, device: str | None = None, dtype: str | None = None, **sizes: int
) -> tuple[dict[str, tuple[torch.nn.Module, str | None]], object]:
    """{role: (module, adapter name or None)} and the tokenizer of a LoRA or clone checkpoint. LoRA: the base is
    rebuilt from ``base.json`` and checked against its ``frozen_sha256``; each role's adapter is loaded by name."""
    if sizes:
        raise ValueError(
            f"model size options {sorted(sizes)} do not apply to a checkpoint: its base.json names the model"
        )
    from peft import PeftModel

    from selfplay.agents.models import load_model
    from selfplay.agents.spec_syntax import parse_spec
    from selfplay.agents.weights import quiet_adapter_names

    policy = policy_dir(path)
    if policy is None:
        raise FileNotFoundError(f"{path} is not a checkpoint with per-role weights (policy/<role>/)")
    roles = role_dirs(policy)
    if all(model_dir(d) for d in roles.values()):  # clones: one full model per role
        models = {role: load_model("hf", str(d), device=device, dtype=dtype) for role, d in roles.items()}
        return {role: (m, None) for role, (m, _) in models.items()}, next(iter(models.values()))[1]
    base = base_json(policy)
    spec = parse_spec(base["model"])
    sizes = {k: v for k, v in spec.options.items() if k != "dtype"}
    # the base as the trainer loaded it (its hash is over those values), cast to ``dtype`` once checked
    module, tokenizer = load_model(
        spec.kind, spec.arg, device=device, dtype=base.get("dtype", "float32"), seed=base["seed"], **sizes
    )
    first, *others = roles
    with warnings.catch_warnings(), quiet_adapter_names():  # PEFT asks transformers a deprecated question
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        module = PeftModel.from_pretrained(module, str(roles[first]), adapter_name=first, is_trainable=False)
        for role in others:
            module.load_adapter(str(roles[role]), adapter_name=role, is_trainable=False)
    expected = base.get("frozen_sha256")
    # the trainer hashes its Policy module, whose PEFT model sits under ``model.``; adapters are trainable there
    frozen = [(f"model.{n}", p) for n, p in module.named_parameters() if "lora_" not in n]
    if expected and frozen_sha256(frozen) != expected:
        raise ValueError(
            f"{policy.parent}: the base model rebuilt from base.json ({base['model']}, seed {base['seed']}) "
            f"is not the one these adapters were trained on (frozen_sha256 differs)"
        )
    from selfplay.agents.models import weights_device_dtype, with_compute_dtype

    if dtype not in (None, "auto"):
        module.to(dtype=weights_device_dtype(device, dtype)[1])
    with_compute_dtype(module, dtype)
    return {role: (module, role) for role in roles}, tokenizer

"""How roles hold weights: one shared model, one LoRA adapter per role on a frozen base, or full clones;
and frozen snapshots of any of them for the opponent pool."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from selfplay.agents.base import WEIGHT_MODES  # noqa: F401 - re-exported


def lora_config(
    r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: Sequence[str] | None = None
) -> LoraConfig:
    """A causal-LM LoRA config on the attention and MLP projections."""
    targets = list(target_modules or ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")


@contextmanager
def quiet_adapter_names() -> Iterator[None]:
    """Silence PEFT's warning that an adapter name inside 'lora_' (a role named a, o or r) "may" reinitialise weights
    on loading: checkpoints of such roles save and load exactly (tests/agents/test_llm.py)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Adapter name .* should not be contained in the prefix", category=UserWarning
        )
        yield


def add_adapters(
    model: torch.nn.Module, names: Sequence[str], config: LoraConfig | None = None, seed: int = 0
) -> PeftModel:
    """Wrap ``model`` (frozen) with one LoRA adapter per name; each adapter is initialised from its own seed."""
    if not names:
        raise ValueError("add_adapters needs at least one adapter name")
    config = config or lora_config()
    torch.manual_seed(seed)
    with quiet_adapter_names():
        peft_model = (
            model
            if isinstance(model, PeftModel)
            else get_peft_model(model, copy.deepcopy(config), adapter_name=names[0])
        )
        for i, name in enumerate(names):
            if name not in peft_model.peft_config:
                torch.manual_seed(seed + i)
                peft_model.add_adapter(name, copy.deepcopy(config))
    for name in names:  # every role's adapter trains, whichever is routed at the moment
        for p in adapter_parameters(peft_model, name):
            p.requires_grad_(True)
    return peft_model


def activate_adapter(model: PeftModel, name: str) -> None:
    """Route the forward pass through adapter ``name`` without touching any ``requires_grad`` flag.

    PEFT's ``set_adapter`` also freezes every other adapter, which would stop the other roles' adapters from
    training (and upsets ZeRO, which registers gradient hooks once); this sets only the routing.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    if name not in model.peft_config:
        raise KeyError(f"no adapter {name!r}: the model has {sorted(model.peft_config)}")
    model.base_model.active_adapter = name
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module._active_adapter = [name]


def adapter_parameters(model: PeftModel, adapter: str) -> list[torch.nn.Parameter]:
    """The parameters of one adapter (what an optimizer for that role updates)."""
    found = [p for n, p in model.named_parameters() if f".{adapter}." in n and "lora_" in n]
    if not found:
        raise KeyError(f"no adapter {adapter!r}: the model has {sorted(model.peft_config)}")
    return found


def snapshot_adapter(model: PeftModel, source: str, name: str) -> str:
    """Copy adapter ``source`` into a new frozen adapter ``name`` on the same base (cheap opponent snapshot)."""
    with quiet_adapter_names():
        model.add_adapter(name, copy.deepcopy(model.peft_config[source]))
    state = get_peft_model_state_dict(model, adapter_name=source)
    set_peft_model_state_dict(model, {k: v.clone() for k, v in state.items()}, adapter_name=name)
    for p in adapter_parameters(model, name):
        p.requires_grad_(False)
    return name


_UPDATES = [0]


def note_update() -> None:
    """Record that an optimizer step changed some weights in this process (copies of weights elsewhere, such as a
    vLLM engine's, are stale from now on; see ``agents.vllm_backend.weights_key``)."""
    _UPDATES[0] += 1


def updates() -> int:
    """How many optimizer steps this process has recorded (``note_update``)."""
    return _UPDATES[0]


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy that no later training changes (a clone for a role, or a full snapshot)."""
    clone = copy.deepcopy(model).eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone

"""The trainable weights of a run, as one module, whatever the weight mode.

``shared``: one model plays every role. ``lora``: one frozen base with one adapter per role. ``clone``: one
full copy per role. Wrapping them in a single module gives DeepSpeed and DDP one engine and one optimizer,
while each role's samples only reach the weights of that role (its adapter, its clone, or the shared model).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from selfplay.agents.scoring import Packed, scored_logprobs
from selfplay.agents.weights import activate_adapter, add_adapters, lora_config


class Policy(nn.Module):
    """Every role's weights; ``forward`` scores completions with each row's own role weights."""

    def __init__(
        self, base: nn.Module, roles: Sequence[str], mode: str, *, lora_r: int = 8, lora_alpha: int = 16, seed: int = 0
    ):
        super().__init__()
        self.roles, self.mode = tuple(roles), mode
        if mode == "shared":
            self.model = base
        elif mode == "lora":
            self.model = add_adapters(base, self.roles, lora_config(lora_r, lora_alpha), seed=seed)
        elif mode == "clone":
            self.clones = nn.ModuleDict({role: copy.deepcopy(base) for role in self.roles})
        else:
            raise ValueError(f"unknown weight mode {mode!r}: expected shared, lora or clone")

    def group(self, role: str) -> str:
        """The name of the weights that ``role`` plays and trains ("policy" when shared)."""
        return "policy" if self.mode == "shared" else role

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(self.group(r) for r in self.roles))

    def generator(self, group: str) -> tuple[nn.Module, str | None]:
        """The module and adapter name that generate for ``group``."""
        if self.mode == "shared":
            return self.model, None
        if self.mode == "lora":
            return self.model, group
        return self.clones[group], None

    def matmul_parameters(self, group: str) -> dict[str, int]:
        """Parameters a token meets in matrix products when ``group`` scores it, for FLOP counts: ``body`` (every layer;
        not the input embedding, a lookup, nor norms and biases) and ``head`` (the output layer), each with its
        ``_trainable`` part."""
        module, adapter = self.generator(group)
        embed = module.get_input_embeddings().weight
        head = module.get_output_embeddings().weight
        counts = dict.fromkeys(("body", "body_trainable", "head", "head_trainable"), 0)
        for name, p in module.named_parameters():
            if "lora_" in name and (adapter is None or f".{adapter}." not in name):
                continue  # another role's adapter
            if (p is embed and p is not head) or len(getattr(p, "ds_shape", p.shape)) < 2:
                continue  # a lookup; norms and biases are not matrix products
            part = "head" if p is head else "body"
            n = getattr(p, "ds_numel", p.numel())  # ZeRO-3 keeps only a shard locally
            counts[part] += n
            if p.requires_grad:
                counts[part + "_trainable"] += n
        return counts

    def update_flops(self, groups: list[str], width: int, scored: Sequence[int], reference: bool = False) -> float:
        """Model FLOPs of one update pass over rows of ``width`` tokens, ``scored[i]`` of row i through the whole
        output layer: forward 2 N per token, backward 2 N for the activations' gradients plus 2 N_trainable for the
        weights' (Kaplan et al. 2020's 6 N for full training), and with ``reference`` the frozen KL reference's
        forward; attention scores, and the few output rows a constrained token meets, are not counted. With frozen
        lower layers (LoRA) autograd skips some input gradients at the bottom of the network, so the count is then
        an upper bound (by ~1/layers)."""
        if not hasattr(self, "_counts"):
            self._counts = {g: self.matmul_parameters(g) for g in self.groups}
        total = 0.0
        for group, head_tokens in zip(groups, scored):
            c = self._counts[group]
            forward = 2 * (c["body"] * width + c["head"] * head_tokens)
            weights = 2 * (c["body_trainable"] * width + c["head_trainable"] * head_tokens)
            total += forward * (3 if reference else 2) + weights
        return total

    def forward(
        self,
        *,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        groups: list[str],
        prompt_width: int,
        temperature: float = 1.0,
        allowed: list | None = None,
        tree: bool | None = None,
    ) -> torch.Tensor:
        """Completion-token log-probs (rows, tokens); rows of each group go through that group's weights
        (``agents.scoring.scored_logprobs``; ``tree`` as there)."""
        batch = Packed(input_ids, attention_mask, position_ids, prompt_width)
        out = torch.zeros(input_ids.shape[0], input_ids.shape[1] - prompt_width, device=input_ids.device)
        for group in dict.fromkeys(groups):
            rows = torch.tensor([i for i, g in enumerate(groups) if g == group], device=input_ids.device)
            module, adapter = self.generator(group)
            if adapter is not None:
                activate_adapter(module, adapter)
            mine = [allowed[i] for i in rows.tolist()] if allowed is not None else None
            out = out.index_put(
                (rows,),
                scored_logprobs(module, batch.rows(rows), temperature=temperature, allowed=mine, tree=tree),
            )
        return out

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """CPU copies of the weights that training changes (adapters only in lora mode): a pool snapshot."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.named_parameters() if v.requires_grad}

    def save_pretrained(self, path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save loadable by plain transformers / peft: the model, the adapters, or one directory per clone.

        ``state_dict`` (this module's keys) is the gathered state under ZeRO-3, where the local one is sharded.
        """
        state_dict = state_dict if state_dict is not None else self.state_dict()

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}

        if self.mode == "clone":
            for role, module in self.clones.items():
                module.save_pretrained(f"{path}/{role}", state_dict=part(f"clones.{role}."))
        elif self.mode == "lora":
            self.model.save_pretrained(path, selected_adapters=list(self.roles))  # one subfolder per role
            if "default" in self.roles:  # PEFT writes the adapter named "default" at the top, not in a subfolder
                Path(path, "default").mkdir(exist_ok=True)
                for name in ("adapter_config.json", "adapter_model.safetensors"):
                    Path(path, name).replace(Path(path, "default", name))
        else:
            self.model.save_pretrained(path, state_dict=part("model."))

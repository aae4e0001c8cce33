"""The learner: the trainable weights of every role wrapped for the launcher, their optimizer and the agents that
play with them. One object, built once, handed to the rollout, update, evaluation and checkpoint phases."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
from accelerate import Accelerator

from selfplay.agents.llm import LLMAgent, SamplingConfig
from selfplay.agents.models import load_model
from selfplay.agents.spec_syntax import parse_spec
from selfplay.agents.weights import frozen_copy
from selfplay.training.config import TrainConfig
from selfplay.training.distributed import zero_stage
from selfplay.training.names import LEARNER, agent_name
from selfplay.training.policy import Policy


@dataclass
class Learner:
    """The prepared model (DDP / DeepSpeed engine), its unwrapped ``Policy``, optimizer and scheduler, the frozen
    KL reference (or None), the tokenizer and one sampling agent per weight group."""

    accelerator: Accelerator
    model: torch.nn.Module
    policy: Policy
    optimizer: torch.optim.Optimizer
    scheduler: object
    reference: Policy | None
    tokenizer: object
    agents: dict[str, LLMAgent]
    schedule: Callable[[int], float]  # training step -> learning-rate multiplier (``lr_multiplier``)
    clock: dict[str, int]  # {"step": the current training step}, read by the scheduler

    def at_step(self, step: int) -> None:
        """Set the learning rate of training step ``step`` (0-based); the scheduler keeps it until the next one."""
        self.clock["step"] = step
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.schedule(step)

    def agents_at(self, temperature: float) -> dict[str, LLMAgent]:
        """The same learner agents (model, adapter, name) sampling at another temperature."""
        return at_temperature(self.agents, temperature)

    def name(self, role: str) -> str:
        """The agent name of the learner in ``role``."""
        return agent_name(LEARNER, self.policy.group(role))

    def move_magnet(self) -> None:
        """MMD: the KL reference (the magnet) becomes a copy of the current trainable weights."""
        if self.reference is not None:
            self.reference.load_state_dict(self.trainable_state(), strict=False)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trainable weights on CPU (gathered from all ranks under ZeRO-3): an opponent-pool snapshot."""
        if zero_stage(self.accelerator) != 3:
            return self.policy.trainable_state()
        trainable = {n for n, p in self.policy.named_parameters() if p.requires_grad}
        return {k: v.detach().cpu() for k, v in self.accelerator.get_state_dict(self.model).items() if k in trainable}


def lr_multiplier(step: int, steps: int, *, warmup: int, schedule: str, floor: float) -> float:
    """The learning rate of training step ``step`` (0-based) of ``steps`` as a share of the peak: linear warm-up over
    ``warmup`` steps, then constant or a linear / cosine (Loshchilov & Hutter 2017) decay reaching ``floor`` at the
    last step."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or steps - 1 <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / (steps - 1 - warmup))
    shape = 1 - t if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * t))
    return floor + (1 - floor) * shape


def at_temperature(agents: dict[str, LLMAgent], temperature: float) -> dict[str, LLMAgent]:
    """The same agents (model, adapter, name) sampling at another temperature. Each shares its original's decoder
    (which holds nothing that depends on the temperature), so CUDA graphs captured for one are replayed by the other."""
    out = {}
    for name, a in agents.items():
        out[name] = LLMAgent(
            a.model,
            a.tokenizer,
            replace(a.sampling, temperature=temperature),
            name=name,
            adapter=a.adapter,
            engine_factory=a.engine_factory,
        )
        out[name].decoder = a._decoder() if a.sampling.backend == "native" else None
    return out


def group_agent(policy: Policy, group: str, tokenizer, *, kind: str, sampling: SamplingConfig) -> LLMAgent:
    """The agent that generates with ``group``'s weights of ``policy`` (a learner or a frozen pool copy)."""
    module, adapter = policy.generator(group)
    return LLMAgent(module, tokenizer, sampling, name=agent_name(kind, group), adapter=adapter)


def sampling_config(cfg: TrainConfig, seed: int | None = None) -> SamplingConfig:
    """The learner's sampling settings: the recipe's ``sampling`` section (``RECIPE_FIELDS``) with ``seed``."""
    return SamplingConfig(**asdict(cfg.sampling), **({"seed": seed} if seed is not None else {}))


def build_learner(cfg: TrainConfig, accelerator: Accelerator, roles: tuple[str, ...]) -> Learner:
    """Load the base model, wrap it into the run's weight mode, and prepare it with AdamW and warm-up."""
    spec = parse_spec(cfg.model)
    # on a GPU the weights stay float32 under accelerate's bf16 autocast; on a CPU ``dtype`` is the products' precision
    dtype = cfg.dtype if accelerator.device.type == "cpu" or cfg.dtype != "auto" else "float32"
    sizes = {k: v for k, v in spec.options.items() if k != "dtype"}
    base, tokenizer = load_model(
        spec.kind, spec.arg, device=str(accelerator.device), dtype=dtype, seed=cfg.run.seed, **sizes
    )
    context = getattr(base.config, "max_position_embeddings", None)
    if context and cfg.sampling.max_new_tokens >= context:  # every attempt would fail: say so before playing
        raise RuntimeError(
            f"config key 'sampling.max_new_tokens' = {cfg.sampling.max_new_tokens} leaves no room for a "
            f"prompt in {cfg.model}'s context of {context} positions"
        )
    policy = Policy(base, roles, cfg.weights, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, seed=cfg.run.seed)
    if cfg.update.gradient_checkpointing:
        for module in {id(m): m for m in (policy.generator(g)[0] for g in policy.groups)}.values():
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            module.config.use_cache = False
    reference = frozen_copy(policy) if cfg.update.kl_coef else None
    u = cfg.update
    optimizer = torch.optim.AdamW(
        [p for p in policy.parameters() if p.requires_grad], lr=u.lr, weight_decay=u.weight_decay
    )
    # the schedule runs in training steps, whatever the optimizer steps per training step (passes, micro-batches,
    # processes: accelerate steps a scheduler once per process)
    clock = {"step": 0}

    def schedule(step: int) -> float:
        return lr_multiplier(step, cfg.run.steps, warmup=u.warmup_steps, schedule=u.lr_schedule, floor=u.lr_floor)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: schedule(clock["step"]))
    model, optimizer, scheduler = accelerator.prepare(policy, optimizer, scheduler)
    policy = accelerator.unwrap_model(model)
    agents = {
        agent_name(LEARNER, g): group_agent(policy, g, tokenizer, kind=LEARNER, sampling=sampling_config(cfg))
        for g in policy.groups
    }
    return Learner(accelerator, model, policy, optimizer, scheduler, reference, tokenizer, agents, schedule, clock)

"""Self-play RL training: play a batch of games, compute per-role advantages, update, snapshot, evaluate.

Run on one process:      selfplay train configs/tictactoe.yaml steps=100 lr=1e-4
Run on several / DeepSpeed: accelerate launch --config_file configs/accelerate/zero2.yaml \
                            -m training.train configs/tictactoe.yaml key=value ...

The loop (SPIRAL, Liu et al. 2025, "SPIRAL: Self-Play on Zero-Sum Games Incentivizes Reasoning"): every rank
plays its own slice of the step's games in the arena (mirror self-play, a frozen snapshot from the pool, or
a scripted opponent); each learner completion gets its sample's reward; advantages are role-conditioned
(one moving-average baseline per (game, role), from before the update) or GRPO-normalised within
``samples=K`` turns; the clipped policy-gradient loss updates each role's weights with that role's samples.
Departures from SPIRAL: invalid attempts are trained on with the game's penalty (SPIRAL drops the
episode); the baseline is per (game, role), not per game only; rewards are the final outcome (no
per-turn shaping).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, gather_object, set_seed
from tqdm.auto import tqdm

from agents.llm import LLMAgent, SamplingConfig, pack
from agents.models import load_model
from agents.specs import build_agent, parse_spec
from agents.weights import frozen_copy
from arena.play import Match, play
from arena.ratings import Result, bootstrap, bradley_terry
from arena.records import open_store
from arena.report import write_training_report
from games.registry import game_class
from games.registry import make_game as registry_make_game
from training import checkpoint as ckpt
from training.config import TrainConfig, describe, load_config
from training.losses import grpo_advantages, policy_loss, rae_advantages
from training.policy import Policy
from training.pool import OpponentPool
from training.curriculum import make_curriculum
from training.rollout import (LEARNER, OPPONENT, POOL, SCRIPTED, agent_name, collect_samples, credit_progress,
                              filter_groups, learner_results, plan_matches, scripted_name)


def main(argv: list[str] | None = None) -> int:
    """``selfplay train [CONFIG.yaml] [key=value ...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print("usage: selfplay train [CONFIG.yaml] [key=value ...]\n\nkeys:\n" + describe())
        return 0
    path = argv.pop(0) if argv and "=" not in argv[0] else None
    try:
        config = load_config(path, argv)
        check_game_options(config)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"selfplay train: error: {exc}", file=sys.stderr)
        return 2
    summary = train(config)
    return 0 if summary is not None else 1


def check_game_options(cfg: TrainConfig) -> None:
    """Build the game once with its options and each curriculum arm (each opponent arm's agent); ValueError names
    what is wrong."""
    if cfg.curriculum_option == OPPONENT:
        for value in cfg.curriculum_arms:
            if str(value) not in ("mirror", POOL):
                build_agent(str(value))
    for value in (cfg.curriculum_arms if cfg.curriculum_option != OPPONENT else []) or [None]:
        registry_make_game(cfg.game, **{**cfg.game_options, **({cfg.curriculum_option: value} if value is not None else {})})


# -- setup helpers ------------------------------------------------------------------------------------------
def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """Accelerator for the launch config in use; DeepSpeed gets the batch sizes it cannot infer (no dataloader)."""
    mixed = "bf16" if torch.cuda.is_available() and cfg.dtype in ("auto", "bfloat16") else "no"
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=cfg.weights != "shared")]
    if not torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        handlers.append(InitProcessGroupKwargs(backend="gloo"))  # DeepSpeed on CPU: accelerate needs the backend named
    accelerator = Accelerator(gradient_accumulation_steps=cfg.micro_batches, mixed_precision=mixed,
                              kwargs_handlers=handlers)
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
        plugin.deepspeed_config["train_batch_size"] = cfg.micro_batches * accelerator.num_processes
        plugin.deepspeed_config["gradient_accumulation_steps"] = cfg.micro_batches
        plugin.deepspeed_config["gradient_clipping"] = cfg.max_grad_norm
    return accelerator


def zero_stage(accelerator: Accelerator) -> int:
    plugin = accelerator.state.deepspeed_plugin
    return int(plugin.zero_stage) if plugin is not None else 0


@contextmanager
def full_parameters(accelerator: Accelerator, model: torch.nn.Module):
    """Under ZeRO-3, gather the parameters once for a whole rollout phase (not once per decoded token).

    ZeRO-3's per-module fetch hooks are taken off while gathered (as TRL does for generation): generation then
    runs no collective at all, so ranks whose games end at different lengths never wait on each other.
    """
    if zero_stage(accelerator) != 3:
        yield
        return
    import deepspeed

    offload = model.optimizer.parameter_offload
    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        for p in offload.module.parameters():
            p.ds_active_sub_modules.clear()
        for hook in offload.forward_hooks + offload.backward_hooks:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)


def rank_slice(total: int, world: int, rank: int) -> tuple[int, int]:
    """(first, count) of this rank's share of ``total`` items."""
    per, extra = divmod(total, world)
    first = rank * per + min(rank, extra)
    return first, per + (1 if rank < extra else 0)


def at_temperature(agents: dict[str, LLMAgent], temperature: float) -> dict[str, LLMAgent]:
    """The same learner agents (model, adapter, name) sampling at another temperature."""
    return {name: LLMAgent(a.model, a.tokenizer, replace(a.sampling, temperature=temperature), name, a.adapter)
            for name, a in agents.items()}


def _eval_temperature(cfg: TrainConfig) -> float:
    return cfg.temperature if cfg.eval_temperature is None else cfg.eval_temperature


def reduced_means(accelerator: Accelerator, keys, pairs) -> dict[str, float | None]:
    """Mean of the values per key over (key, value) pairs of every rank; None for a key no rank saw. ``keys``
    must be the same list on every rank (it fixes the collective's shape)."""
    sums = {f"{k}|{x}": 0.0 for k in keys for x in ("sum", "n")}
    for key, value in pairs:
        sums[f"{key}|sum"] += value
        sums[f"{key}|n"] += 1
    sums = reduce_sums(accelerator, sums)
    return {k: sums[f"{k}|sum"] / sums[f"{k}|n"] if sums[f"{k}|n"] else None for k in keys}


def reduce_sums(accelerator: Accelerator, values: dict[str, float]) -> dict[str, float]:
    """Sum scalar statistics over ranks (same keys on every rank)."""
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        tensor = accelerator.reduce(tensor, reduction="sum")
    return dict(zip(keys, tensor.tolist()))


# -- the loop -----------------------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> dict[str, Any] | None:
    """Run (or resume) a training run; return its final evaluation summary."""
    accelerator = make_accelerator(cfg)
    rank, world = accelerator.process_index, accelerator.num_processes
    set_seed(cfg.seed)
    run_dir = Path(cfg.out)
    game_cls = game_class(cfg.game)
    context: dict[str, Any] = {}  # options a game derives from the last step's episodes (``context_options``)
    make_game = lambda **extra: game_cls(**{**cfg.game_options, **context, **extra})  # noqa: E731 - extra: an arm
    check_game_options(cfg)  # bad game options fail here, naming them, before any model loads
    curriculum = make_curriculum(cfg.curriculum, [str(v) for v in cfg.curriculum_arms], **cfg.curriculum_params) \
        if cfg.curriculum != "none" else None
    arm_values = {str(v): v for v in cfg.curriculum_arms}
    roles = game_cls.roles
    progress = game_cls.learning_progress(dict(cfg.game_options)) if hasattr(game_cls, "learning_progress") else None

    # -- models, optimizer, scheduler ---------------------------------------------------------------------
    spec = parse_spec(cfg.model)
    dtype = None if cfg.dtype == "auto" else cfg.dtype
    sizes = {k: v for k, v in spec.options.items() if k != "dtype"}
    base, tokenizer = load_model(spec.kind, spec.arg, device=str(accelerator.device), dtype=dtype or "float32",
                                 seed=cfg.seed, **sizes)
    policy = Policy(base, roles, cfg.weights, cfg.lora_r, cfg.lora_alpha, seed=cfg.seed)
    if cfg.gradient_checkpointing:
        for module in {id(m): m for m in (policy.generator(g)[0] for g in policy.groups)}.values():
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            module.config.use_cache = False
    reference = frozen_copy(policy) if cfg.kl_coef else None
    pool_arm = cfg.curriculum_option == OPPONENT and POOL in map(str, cfg.curriculum_arms)
    opponent = frozen_copy(policy) if cfg.pool_prob or pool_arm else None
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    model, optimizer, scheduler = accelerator.prepare(policy, optimizer, scheduler)
    policy = accelerator.unwrap_model(model)

    # -- records, pool, state, resume ---------------------------------------------------------------------
    run_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(run_dir)
    pool = OpponentPool(run_dir / "pool", cfg.pool_size, cfg.pool_sampling)
    state: dict[str, Any] = {"step": 0, "baselines": {}, "history": [], "curriculum": None, "curriculum_history": []}
    resume_from = _resume_point(cfg, run_dir)
    if resume_from is not None:
        accelerator.load_state(str(resume_from / "state"))
        state = ckpt.read_trainer_state(resume_from)
        pool.load_state_dict(state.pop("pool"))
        if curriculum is not None and state.get("curriculum") is not None:
            curriculum.load_state_dict(state["curriculum"])
        context.update(state.get("context") or {})
        accelerator.print(f"resumed from {resume_from} at step {state['step']}")
    if accelerator.is_main_process:
        dropped = store.delete_after_step(state["step"])  # rollouts of steps the checkpoint does not include
        if dropped:
            accelerator.print(f"dropped {dropped} episodes recorded after step {state['step']} (replayed now)")
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    accelerator.wait_for_everyone()
    writer = _tensorboard(run_dir) if accelerator.is_main_process else None
    baselines = {tuple(k.split("|")): v for k, v in state["baselines"].items()}

    sampling = dict(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                    constrained=cfg.constrained)
    learners = {agent_name(LEARNER, g): _llm_agent(policy, g, tokenizer, LEARNER, SamplingConfig(**sampling))
                for g in policy.groups}
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="train", unit="step",
               disable=not (cfg.progress and accelerator.is_main_process), dynamic_ncols=True)
    if cfg.eval_before and not state["history"]:  # the starting point of the curves: step 0, before any update
        state["history"].append(_evaluation_entry(cfg, accelerator, model, policy, learners, make_game, roles, store, 0,
                                                  state.get("seconds", 0.0), {}))
    for step in range(state["step"], cfg.steps):
        # -- rollout: this rank's slice of the step's games ------------------------------------------------
        t_start = time.perf_counter()
        agents: dict[str, Any] = dict(learners)
        for i, agent in enumerate(learners.values()):
            agent.sampling.seed, agent.calls = hash((cfg.seed, step, rank, i)) % 2**31, 0
        snapshot = pool.choose(random.Random(f"{cfg.seed}/{step}/pool")) if opponent is not None else None
        if snapshot is not None:
            opponent.load_state_dict(torch.load(snapshot.path, map_location=accelerator.device), strict=False)
            agents.update({agent_name(POOL, g): _llm_agent(opponent, g, tokenizer, POOL, SamplingConfig(**sampling, seed=step))
                           for g in policy.groups})
        if cfg.scripted_prob:
            agents[SCRIPTED] = build_agent(cfg.scripted_opponent, seed=hash((cfg.seed, step, rank)) % 2**31, name=SCRIPTED)
        if cfg.curriculum_option == OPPONENT:
            agents.update({scripted_name(v): build_agent(v, seed=hash((cfg.seed, step, rank, v)) % 2**31, name=scripted_name(v))
                           for v in arm_values if v not in ("mirror", POOL)})
        episodes, samples, kept_groups, rounds = [], [], set(), 0
        filtering = (cfg.filter_low, cfg.filter_high) != (0.0, 1.0)
        model.eval()
        while True:  # one round, plus refill rounds while difficulty filtering left the batch short
            total = cfg.games_per_step * world
            first, count = rank_slice(total, world, rank)
            offset = rounds * total  # refill games continue the step's global list, so their seeds are new
            arms = None
            if curriculum is not None:  # the same global list of categories on every rank
                chosen = curriculum.choose(random.Random(f"{cfg.seed}/{step}/curriculum/{rounds}"), total)
                arms = {offset + i: (cfg.curriculum_option, arm_values[a]) for i, a in enumerate(chosen)}
            matches = plan_matches(roles, policy.group, step, cfg.seed, offset + first, count, cfg.pool_prob,
                                   cfg.scripted_prob, snapshot is not None, arms, cfg.random_opening)
            with torch.no_grad(), full_parameters(accelerator, model):
                new = play(make_game, matches, agents, store=store, concurrency=cfg.concurrency, progress=False,
                           options={**cfg.game_options, **context})
            episodes += new
            fresh = collect_samples(new, policy.group)
            samples += fresh
            rounds += 1
            if not filtering:
                break
            kept_groups |= {s.turn_group for s in filter_groups(fresh, cfg.filter_low, cfg.filter_high)}
            have = reduce_sums(accelerator, {"groups": float(len(kept_groups))})["groups"]
            if have >= total or rounds > cfg.filter_refill:
                break
        t_rollout = time.perf_counter() - t_start

        # -- advantages: baselines from before the update, measured over every rank's samples --------------
        mine = [(s.key, s.reward) for s in samples]
        every = [(tuple(k), r) for k, r in gather_object(mine)] if world > 1 else mine
        _, new_baselines = rae_advantages([r for _, r in every], [k for k, _ in every], baselines, cfg.baseline_decay)
        rae = [s.reward - baselines.get(s.key, 0.0) for s in samples]
        advantages = grpo_advantages([s.reward for s in samples], [s.turn_group for s in samples], rae) \
            if cfg.advantage == "grpo" else rae
        for s, a in zip(samples, advantages):
            s.advantage = a
        baselines = new_baselines
        arm_stats = {f"arm|{a}|{k}": 0.0 for a in arm_values for k in ("absadv", "reward", "n")}
        for s in samples:
            if s.arm is not None:
                arm_stats[f"arm|{s.arm}|absadv"] += abs(s.advantage)
                arm_stats[f"arm|{s.arm}|reward"] += s.reward
                arm_stats[f"arm|{s.arm}|n"] += 1
        kept = filter_groups(samples, cfg.filter_low, cfg.filter_high) if filtering else samples
        filtered, samples = len(samples) - len(kept), kept

        # -- update ----------------------------------------------------------------------------------------
        t_update = time.perf_counter()
        if progress is not None:  # the rewarded role waits for the gain its tasks bought (LearningProgress)
            before = probe_accuracy(progress, accelerator, model, policy, learners, step)
            delayed = [s for s in samples if s.key[1] == progress.role]
            samples = [s for s in samples if s.key[1] != progress.role]
        model.train()
        update_stats = _update(cfg, accelerator, model, reference, optimizer, scheduler, samples, tokenizer.pad_token_id)
        if progress is not None:
            after = probe_accuracy(progress, accelerator, model, policy, learners, step)
            gains = {k: after[k] - before[k] for k in after}
            state.setdefault("progress", []).append({"step": step + 1, "before": before, "after": after})
            credit_progress(delayed, {ep.id: ep.meta.get("info") or {} for ep in episodes}, gains, progress.key)
            mean = reduce_sums(accelerator, {"sum": sum(s.reward for s in delayed), "n": float(len(delayed))})
            for s in delayed:  # a batch baseline: the mean gain over every rank's tasks
                s.advantage = s.reward - mean["sum"] / max(mean["n"], 1.0)
            model.train()
            second = _update(cfg, accelerator, model, reference, optimizer, scheduler, delayed, tokenizer.pad_token_id)
            update_stats.update({k: update_stats[k] + v if k != "grad_norm" else max(update_stats[k], v)
                                 for k, v in second.items()})
            samples += delayed
        t_update = time.perf_counter() - t_update
        state["seconds"] = state.get("seconds", 0.0) + time.perf_counter() - t_start  # training time, evaluation excluded

        if cfg.check_sync:
            _record_weight_hashes(accelerator, model, run_dir, step + 1)

        # -- statistics, snapshot, evaluation, checkpoint, log ----------------------------------------------
        local = _rollout_stats(episodes, samples, roles)
        if snapshot is not None:
            games, wins = learner_results(episodes, POOL)
            local[f"pool|{snapshot.step}|games"], local[f"pool|{snapshot.step}|wins"] = games, wins
        game_stats = game_cls.context_stats(episodes) if hasattr(game_cls, "context_stats") else {}
        totals = reduce_sums(accelerator, {**local, **update_stats, **arm_stats, **{f"game|{k}": v for k, v in
                                                                                   game_stats.items()},
                                           "filtered": float(filtered)})
        if game_stats:  # e.g. the student's results per skill, which the next step's teachers see
            context.clear()
            context.update(game_cls.context_options({k[5:]: v for k, v in totals.items() if k.startswith("game|")}))
        if curriculum is not None:
            measured = {a: totals[f"arm|{a}|n"] for a in arm_values}
            key = "reward" if cfg.curriculum == "adarft" else "absadv"
            probabilities = curriculum.probabilities()
            curriculum.update({a: totals[f"arm|{a}|{key}"] / n for a, n in measured.items() if n})
            state["curriculum_history"].append({
                "step": step + 1, "p": probabilities,
                "absadv": {a: totals[f"arm|{a}|absadv"] / n if n else None for a, n in measured.items()},
                "reward": {a: totals[f"arm|{a}|reward"] / n if n else None for a, n in measured.items()}})
        for key in [k for k in totals if k.startswith("pool|") and k.endswith("|games")]:
            pool.record(int(key.split("|")[1]), int(totals[key]), totals[key.replace("|games", "|wins")])
        metrics = _metrics(totals, roles, t_rollout, t_update, world)
        metrics["filtered_samples"] = totals["filtered"]
        if progress is not None:  # the same on every rank (probes are reduced)
            metrics.update({f"progress/{k}": v for k, v in gains.items()})
        if curriculum is not None:
            last = state["curriculum_history"][-1]
            metrics.update({f"curriculum/p/{a}": p for a, p in last["p"].items()})
            metrics.update({f"curriculum/absadv/{a}": v for a, v in last["absadv"].items() if v is not None})
            metrics.update({f"curriculum/reward/{a}": v for a, v in last["reward"].items() if v is not None})
        done = step + 1
        if cfg.pool_prob and done % cfg.snapshot_every == 0:
            pool.add(done, _snapshot_state(accelerator, model, policy), write=accelerator.is_main_process)
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
            state["history"].append(_evaluation_entry(cfg, accelerator, model, policy, learners, make_game, roles, store,
                                                      done, state["seconds"], metrics))
        state.update(step=done, baselines={"|".join(k): v for k, v in baselines.items()},
                     curriculum=curriculum.state_dict() if curriculum is not None else None, context=dict(context))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_checkpoint(accelerator, model, policy, tokenizer, run_dir, done, {**state, "pool": pool.state_dict()}, cfg)
        if accelerator.is_main_process:
            for name, value in metrics.items():
                writer.add_scalar(name, value, done)
            writer.flush()
            bar.write(_console_line(done, cfg.steps, metrics))
        bar.update(1)
    bar.close()
    summary = state["history"][-1]["evaluation"] if state["history"] else {}
    if accelerator.is_main_process:
        _final_summary(run_dir, state, summary)
        if state["history"]:
            write_training_report(run_dir, state["history"], state.get("curriculum_history"))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _llm_agent(policy: Policy, group: str, tokenizer, kind: str, sampling: SamplingConfig) -> LLMAgent:
    module, adapter = policy.generator(group)
    return LLMAgent(module, tokenizer, sampling, name=agent_name(kind, group), adapter=adapter)


def _snapshot_state(accelerator: Accelerator, model, policy: Policy) -> dict[str, torch.Tensor]:
    """The trainable weights on CPU (gathered from all ranks under ZeRO-3)."""
    if zero_stage(accelerator) != 3:
        return policy.trainable_state()
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu() for k, v in accelerator.get_state_dict(model).items() if k in trainable}


def _resume_point(cfg: TrainConfig, run_dir: Path) -> Path | None:
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        return ckpt.latest_checkpoint(run_dir)
    path = Path(cfg.resume)
    if not (path / ckpt.MARKER).exists():
        raise FileNotFoundError(f"resume={cfg.resume!r} is not a complete checkpoint directory")
    return path


def _update(cfg: TrainConfig, accelerator: Accelerator, model, reference, optimizer, scheduler, samples,
            pad_id: int) -> dict[str, float]:
    """``ppo_epochs`` optimizer steps, each over ``micro_batches`` micro-batches (the same count on every rank).

    Loss = sum of token losses * world * micro_batches / tokens over all ranks, so after accelerate's mean over
    ranks and micro-batches every token weighs the same, however the batch is split.
    """
    world = accelerator.num_processes
    tokens_local = sum(len(s.completion_ids) for s in samples)
    tokens_global = reduce_sums(accelerator, {"t": tokens_local})["t"]
    chunks = [samples[i::cfg.micro_batches] for i in range(cfg.micro_batches)]
    stats = {"loss_sum": 0.0, "clip_sum": 0.0, "kl_sum": 0.0, "logp_sum": 0.0, "tokens": float(tokens_local),
             "grad_norm": 0.0}
    for _ in range(cfg.ppo_epochs):
        for chunk in chunks:
            with accelerator.accumulate(model):
                loss, parts = _chunk_loss(cfg, accelerator, model, reference, chunk, pad_id, tokens_global)
                accelerator.backward(loss * world * cfg.micro_batches)
                if accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    stats["grad_norm"] = float(norm) if norm is not None else 0.0
                optimizer.step()
                scheduler.step() if accelerator.sync_gradients else None
                optimizer.zero_grad()
            for k, v in parts.items():
                stats[k] += v / cfg.ppo_epochs
    return stats


def _chunk_loss(cfg, accelerator, model, reference, chunk, pad_id, tokens_global):
    if not chunk:  # a rank with nothing to learn still joins the collective backward, with a zero loss
        ids = torch.tensor([[pad_id, pad_id]], device=accelerator.device)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.zeros_like(ids),
                    groups=[model_groups(model)[0]], prompt_width=1)
        return out.sum() * 0.0, {}
    batch = {k: v.to(accelerator.device) for k, v in pack([s.prompt_ids for s in chunk],
                                                           [s.completion_ids for s in chunk], pad_id).items()}
    groups = [s.group for s in chunk]
    width = int(batch["prompt_width"])
    allowed = [s.allowed for s in chunk] if any(s.allowed for s in chunk) else None
    logp = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 position_ids=batch["position_ids"], groups=groups, prompt_width=width, temperature=cfg.temperature,
                 allowed=allowed)
    mask = batch["completion_mask"]
    old = torch.zeros_like(logp)
    for i, s in enumerate(chunk):
        old[i, :len(s.logprobs)] = torch.tensor(s.logprobs, device=logp.device)
    ref = None
    if reference is not None:
        with torch.no_grad():
            ref = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            position_ids=batch["position_ids"], groups=groups, prompt_width=width,
                            temperature=cfg.temperature, allowed=allowed)
    adv = torch.tensor([s.advantage for s in chunk], device=logp.device, dtype=logp.dtype)
    loss, extra = policy_loss(logp, old.detach(), adv, mask, cfg.clip, tokens_global, ref, cfg.kl_coef)
    n = float(mask.sum())
    return loss, {"loss_sum": float(loss.detach()) * tokens_global, "clip_sum": extra["clip_frac"] * n,
                  "kl_sum": extra.get("kl", 0.0) * n, "logp_sum": float((logp.detach() * mask).sum())}


def model_groups(model) -> list[str]:
    unwrapped = model.module if hasattr(model, "module") else model
    return unwrapped.groups


def _rollout_stats(episodes, samples, roles) -> dict[str, float]:
    out: dict[str, float] = {"gen_tokens": float(sum(len(s.completion_ids) for s in samples)),
                             "episodes": float(len(episodes))}
    for role in roles:
        mine = [(ep, s) for ep in episodes for s in ep.steps if s.role == role and s.agent.startswith(LEARNER)]
        out[f"attempts|{role}"] = float(len(mine))
        out[f"invalid|{role}"] = float(sum(s.failure is not None for _, s in mine))
        learner_eps = [ep for ep in episodes if ep.rewards and ep.agents[role].startswith(LEARNER)]
        out[f"games|{role}"] = float(len(learner_eps))
        out[f"reward|{role}"] = float(sum(ep.rewards[role] for ep in learner_eps))
    return out


def _metrics(totals: dict[str, float], roles, t_rollout: float, t_update: float, world: int) -> dict[str, float]:
    tokens = max(totals["tokens"], 1.0)
    metrics = {"loss/policy": totals["loss_sum"] / tokens, "clip_frac": totals["clip_sum"] / tokens,
               "kl": totals["kl_sum"] / tokens, "entropy": -totals["logp_sum"] / tokens,
               "grad_norm": totals["grad_norm"] / world,
               "tokens_per_s": totals["gen_tokens"] / max(t_rollout, 1e-9),
               "time/rollout": t_rollout, "time/update": t_update}
    if torch.cuda.is_available():
        metrics["memory/peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    for role in roles:
        metrics[f"reward/{role}"] = totals[f"reward|{role}"] / max(1.0, totals[f"games|{role}"])
        metrics[f"invalid_rate/{role}"] = totals[f"invalid|{role}"] / max(1.0, totals[f"attempts|{role}"])
    return metrics


def evaluate(cfg: TrainConfig, accelerator: Accelerator, model, policy: Policy, learners, make_game, roles, store,
             step: int) -> dict[str, dict[str, float]]:
    """The learner against each scripted baseline, in every seat: win / draw / loss and invalid rates, and its mean
    reward per seat. The games and the baseline's seed are the same at every evaluation: a fixed held-out set."""
    rank, world = accelerator.process_index, accelerator.num_processes
    results = {}
    model.eval()
    learners = at_temperature(learners, _eval_temperature(cfg))
    for opponent in cfg.eval_opponents:
        agents = {**learners, "baseline": build_agent(opponent, seed=10_000 + rank, name="baseline")}
        first, count = rank_slice(cfg.eval_games, world, rank)
        matches = []
        for j in range(first, first + count):
            seat = roles[j % len(roles)]
            matches.append(Match(10_000_000 + j // len(roles), {r: agent_name(LEARNER, policy.group(r)) if r == seat
                                                                 else "baseline" for r in roles},
                                 {"step": step, "eval": opponent}))
        with torch.no_grad(), full_parameters(accelerator, model):
            episodes = play(make_game, matches, agents, store=store, concurrency=cfg.concurrency, progress=False)
        counts = {"win": 0.0, "draw": 0.0, "loss": 0.0, "error": 0.0, "attempts": 0.0, "invalid": 0.0,
                  **{f"{x}|{r}": 0.0 for r in roles for x in ("reward", "games")}}
        for ep in episodes:
            seat = next(r for r, a in ep.agents.items() if a.startswith(LEARNER))
            counts[ep.outcome(seat)] += 1
            if seat in ep.rewards:
                counts[f"reward|{seat}"] += ep.rewards[seat]
                counts[f"games|{seat}"] += 1
            mine = [s for s in ep.steps if s.role == seat]
            counts["attempts"] += len(mine)
            counts["invalid"] += sum(s.failure is not None for s in mine)
        counts = reduce_sums(accelerator, counts)
        n = max(1.0, counts["win"] + counts["draw"] + counts["loss"])
        results[opponent] = {"games": n, "win": counts["win"] / n, "draw": counts["draw"] / n,
                             "loss": counts["loss"] / n, "win_or_draw": (counts["win"] + counts["draw"]) / n,
                             "invalid_rate": counts["invalid"] / max(1.0, counts["attempts"]),
                             # the learner's mean reward per seat (the same seeds and baseline tasks at every evaluation)
                             "reward": {r: counts[f"reward|{r}"] / counts[f"games|{r}"] for r in roles if counts[f"games|{r}"]}}
    elo = gauntlet_elo(results) if results else None
    for opponent in results:
        results[opponent]["learner_elo"] = elo
    return results


def _evaluation_entry(cfg: TrainConfig, accelerator: Accelerator, model, policy: Policy, learners, make_game, roles,
                      store, done: int, seconds: float, metrics: dict[str, float]) -> dict[str, Any]:
    """One history entry: the evaluation against the baselines (and the held-out one); adds their metrics."""
    evaluation = evaluate(cfg, accelerator, model, policy, learners, make_game, roles, store, done)
    metrics.update({f"winrate/vs_{k}": v["win_or_draw"] for k, v in evaluation.items()})
    entry = {"step": done, "seconds": seconds, "evaluation": evaluation}
    if cfg.eval_heldout:
        entry["heldout"] = heldout(cfg, accelerator, model, policy, learners, make_game, roles, store, done)
        metrics.update({f"heldout/{role}/{arm}": v for role, arms in entry["heldout"].items() for arm, v in arms.items()})
    return entry


def probe_accuracy(progress, accelerator: Accelerator, model, policy: Policy, learners, step: int) -> dict[str, float]:
    """``progress.probe_role``'s mean reward per key on the fixed probes, greedy, split over ranks (not recorded)."""
    rank, world = accelerator.process_index, accelerator.num_processes
    name = agent_name(LEARNER, policy.group(progress.probe_role))
    agents = at_temperature({name: learners[name]}, 0.0)
    matches = []
    for key, probes in progress.probes.items():
        first, count = rank_slice(len(probes), world, rank)
        for options, seed in probes[first:first + count]:
            game_role = progress.probe_game(**options).roles[0]
            matches.append(Match(seed, {game_role: name}, {"step": step, "probe": key, "game_options": options}))
    model.eval()
    with torch.no_grad(), full_parameters(accelerator, model):
        episodes = play(progress.probe_game, matches, agents, progress=False)
    means = reduced_means(accelerator, progress.probes, ((ep.meta["probe"], next(iter(ep.rewards.values()), 0.0))
                                                          for ep in episodes))
    return {k: 0.0 if v is None else v for k, v in means.items()}


def heldout(cfg: TrainConfig, accelerator: Accelerator, model, policy: Policy, learners, make_game, roles, store,
            step: int) -> dict[str, dict[str, float]]:
    """Mean reward of the learner in each role on ``eval_games`` fixed seeds (never drawn in training) per
    curriculum arm (opponent arms aside), every role played by the learner: held-out accuracy for task games.
    {role: {arm: mean, "all": mean}}."""
    rank, world = accelerator.process_index, accelerator.num_processes
    agents = at_temperature(learners, _eval_temperature(cfg))
    first, count = rank_slice(cfg.eval_games, world, rank)
    arms = [(cfg.curriculum_option, v) for v in cfg.curriculum_arms if cfg.curriculum_option != OPPONENT] or [(None, None)]
    matches = [Match(20_000_000 + j, {r: agent_name(LEARNER, policy.group(r)) for r in roles},
                     {"step": step, "eval": "heldout", **({"arm": str(v), "game_options": {o: v}} if o else {})})
               for o, v in arms for j in range(first, first + count)]
    model.eval()
    with torch.no_grad(), full_parameters(accelerator, model):
        episodes = play(make_game, matches, agents, store=store, concurrency=cfg.concurrency, progress=False)
    keys = [f"{r}|{a}" for r in roles for a in [str(v) for _, v in arms if v is not None] + ["all"]]
    pairs = ((f"{role}|{arm}", reward) for ep in episodes if ep.status != "error" for role, reward in ep.rewards.items()
             for arm in {ep.meta.get("arm", "all"), "all"})
    out: dict[str, dict[str, float]] = {}
    for key, mean in reduced_means(accelerator, keys, pairs).items():
        if mean is not None:
            role, arm = key.split("|")
            out.setdefault(role, {})[arm] = mean
    return out


def gauntlet_elo(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """The learner's Bradley-Terry Elo from its evaluation games (random = 0 when it is an opponent), with a
    95% interval from a bootstrap over games: the rating history a run accumulates."""
    games = []
    for opponent, r in results.items():
        n = int(round(r["games"]))
        wins, draws = int(round(r["win"] * n)), int(round(r["draw"] * n))
        games += [Result("learner", opponent, score, (opponent, i)) for i, score in
                  enumerate([1.0] * wins + [0.5] * draws + [0.0] * (n - wins - draws))]
    anchor = "random" if "random" in results else None
    fit = bradley_terry(games, anchor)
    low, high = bootstrap(games, anchor, rounds=100)["learner"]
    return {"elo": fit["learner"], "low": low, "high": high, "anchor": anchor or "mean of the opponents"}


def save_checkpoint(accelerator: Accelerator, model, policy: Policy, tokenizer, run_dir: Path, step: int,
                    trainer_state: dict, cfg: TrainConfig) -> None:
    """Write the checkpoint into a staging directory on every rank, then publish it atomically."""
    stage = ckpt.staging_dir(run_dir, step)
    accelerator.save_state(str(stage / "state"))
    # every rank must be done writing (its RNG state, its ZeRO partition) before rank 0 renames the staging folder
    accelerator.wait_for_everyone()
    full = accelerator.get_state_dict(model) if zero_stage(accelerator) == 3 else None
    if accelerator.is_main_process:
        policy.save_pretrained(stage / "policy", state_dict=full)
        for folder in [stage / "policy", *(stage / "policy" / r for r in policy.roles if policy.mode != "shared")]:
            if folder.is_dir():  # each saved model or adapter loads on its own, tokenizer included
                tokenizer.save_pretrained(folder)
        ckpt.finish(run_dir, step, trainer_state, cfg.keep_checkpoints)
    accelerator.wait_for_everyone()


def _record_weight_hashes(accelerator: Accelerator, model, run_dir: Path, step: int) -> None:
    """Append every rank's hash of its full weights to ``RUN/weight_hashes.jsonl`` (equal when ranks agree)."""
    import hashlib

    digest = hashlib.sha256()
    with full_parameters(accelerator, model):
        for name, p in sorted(accelerator.unwrap_model(model).named_parameters()):
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().numpy().tobytes())
    hashes = gather_object([digest.hexdigest()])
    if accelerator.is_main_process:
        with open(run_dir / "weight_hashes.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "hashes": hashes}) + "\n")


def _tensorboard(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))


def _console_line(step: int, steps: int, m: dict[str, float]) -> str:
    rewards = " ".join(f"{k.split('/')[1]}={v:+.2f}" for k, v in m.items() if k.startswith("reward/"))
    invalid = max((v for k, v in m.items() if k.startswith("invalid_rate/")), default=0.0)
    evals = " ".join(f"{k.split('/')[1]}={v:.2f}" for k, v in m.items() if k.startswith("winrate/"))
    return (f"step {step}/{steps} | reward {rewards} | invalid {invalid:.1%} | loss {m['loss/policy']:+.4f} "
            f"| {m['tokens_per_s']:.0f} tok/s | rollout {m['time/rollout']:.1f}s update {m['time/update']:.1f}s"
            + (f" | peak {m['memory/peak_gb']:.1f} GiB" if "memory/peak_gb" in m else "")
            + (f" | eval {evals}" if evals else ""))


def _final_summary(run_dir: Path, state: dict, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps({"step": state["step"], "evaluation": summary,
                                                      "history": state["history"]}, indent=1))
    print(f"\nevaluation after {state['step']} steps:")
    print(f"  {'opponent':<10} {'games':>6} {'win':>6} {'draw':>6} {'loss':>6} {'invalid':>8}")
    for name, r in summary.items():
        print(f"  {name:<10} {int(r['games']):>6} {r['win']:>6.1%} {r['draw']:>6.1%} {r['loss']:>6.1%} {r['invalid_rate']:>8.1%}")
    elo = next(iter(summary.values()), {}).get("learner_elo")
    if elo:
        print(f"  learner Elo {elo['elo']:+.0f} [{elo['low']:+.0f}, {elo['high']:+.0f}] (anchor: {elo['anchor']})")
    print(f"outputs in {run_dir}/ (report.md, progress.png, summary.json, episodes.sqlite, checkpoints/, tensorboard/)")


if __name__ == "__main__":
    sys.exit(main())

"""Self-play RL training: play a batch of games, compute per-role advantages, update, snapshot, evaluate.

Run on one process:         selfplay train configs/tictactoe.yaml steps=100 update.lr=1e-4
Run on several / DeepSpeed: accelerate launch --config_file configs/accelerate/zero2.yaml \
                            -m selfplay.train configs/tictactoe.yaml key=value ...

The loop (SPIRAL, Liu et al. 2025, "SPIRAL: Self-Play on Zero-Sum Games Incentivizes Reasoning"): every rank
plays its own slice of the step's games in the arena (``training.rollout``: mirror self-play, a frozen snapshot
from the pool, or a scripted opponent); each learner completion gets its sample's reward; advantages are
role-conditioned (one moving-average baseline per (game, role), from before the update) or GRPO-normalised within
``samples=K`` turns; the clipped policy-gradient loss updates each role's weights with that role's samples
(``training.update``). Departures from SPIRAL: invalid attempts are trained on with the game's penalty (SPIRAL
drops the episode); the baseline is per (game, role), not per game only; rewards are the final outcome (no
per-turn shaping).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed

from selfplay.agents.heap import settled_heap
from selfplay.arena import rundir
from selfplay.arena.records import open_store
from selfplay.arena.stats import error_summary
from selfplay.training import checkpoint
from selfplay.training.collapse import CollapseMonitor, step_counts, written_tasks
from selfplay.training.config import TrainConfig, bind_game
from selfplay.training.distributed import gather, make_accelerator, record_weight_hashes, reduce_sum, sum_scalar
from selfplay.training.evaluation import Evaluator, infos
from selfplay.training.exploit import ExactTracker
from selfplay.training.interrupt import StopRequest
from selfplay.training.learner import build_learner
from selfplay.training.metrics import Log, cut_note, final_summary, step_metrics
from selfplay.training.report import write_training_report
from selfplay.training.rollout import Rollouts
from selfplay.training.state import TrainerState
from selfplay.training.stats import StepStats
from selfplay.training.update import Baselines, update, update_with_progress


def train(cfg: TrainConfig, stop: StopRequest | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; return its final evaluation summary. ``stop.requested`` (Ctrl-C, SIGTERM)
    ends it at the end of the current step as the last step would: checkpoint, evaluation, report."""
    run, ev, up = cfg.run, cfg.evaluation, cfg.update
    game_cls = bind_game(cfg)  # game-dependent defaults and checks, before any model loads
    accelerator = make_accelerator(
        up.micro_batches,
        up.max_grad_norm,
        cfg.dtype,
        find_unused=cfg.weights != "shared",
        trackers=run.trackers,
        run_dir=run.out,
    )
    set_seed(run.seed)
    run_dir = Path(run.out)
    roles = game_cls.roles
    learner = build_learner(cfg, accelerator, roles)
    checkpoint.install_hooks(accelerator)

    # -- records, rollouts, evaluation, resume -----------------------------------------------------------------
    run_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(run_dir)
    rollouts = Rollouts(cfg, learner, game_cls, store, run_dir)
    evaluator = Evaluator(cfg, learner, rollouts.make_game, roles, store, rollouts.options)
    state = TrainerState()
    resume_from = checkpoint.resume_point(run.resume, run_dir)
    if resume_from is not None:
        state = checkpoint.load(learner, resume_from)
        rollouts.load_state_dict(state.rollouts)
        accelerator.print(f"resumed from {resume_from} at step {state.step}")
    tracker = (
        ExactTracker.create(rollouts.make_game, learner, state.exact, accelerator.print)
        if ev.exact and ExactTracker.applies(game_cls, cfg.sampling.constrained)
        else None
    )
    rollouts.average = tracker.average.policy if tracker is not None else None
    if accelerator.is_main_process:
        if resume_from is None:  # a fresh start: nothing an earlier run left in this directory stays to mix in
            dropped, stale = store.clear(), rundir.list_checkpoints(run_dir)
            for old in stale:
                shutil.rmtree(old)
            if dropped or stale:
                accelerator.print(
                    f"starting over in {run_dir} (run.resume={run.resume}): removed {dropped} episodes "
                    f"and {len(stale)} checkpoints of an earlier run"
                )
        else:
            dropped = store.delete_after_step(state.step)  # rollouts of steps the checkpoint does not include
            if dropped:
                accelerator.print(f"dropped {dropped} episodes recorded after step {state.step} (replayed now)")
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    accelerator.wait_for_everyone()
    baselines = Baselines(up.baseline_decay, state.baselines)
    progress = game_cls.learning_progress(dict(cfg.game_options))  # a role paid by another's measured gain
    log = Log(accelerator, asdict(cfg), run.steps, state.step, run.progress)
    if ev.before and not state.history:  # the starting point of the curves: step 0, before any update
        state.history.append(
            {**evaluator.entry(0, state.seconds, tracker.measure() if tracker else None)[0], "samples": {}}
        )

    noted = cfg.sampling.constrained  # the note on answers cut at max_new_tokens, said once (constrained ones finish)
    monitor = CollapseMonitor(cfg.curriculum.collapse_distinct, cfg.curriculum.collapse_frontier, state.tasks)

    def save(step: int) -> None:  # the base's dtype as build_learner loads it, for hf:CHECKPOINT to rebuild it
        checkpoint.save(
            learner,
            run_dir,
            step,
            state,
            cfg.model,
            run.keep_checkpoints,
            run.seed,
            "float32" if cfg.dtype == "auto" else cfg.dtype,
        )

    with settled_heap():  # the loaded stack stays out of the garbage collector's full passes
        for step in range(state.step, run.steps):
            # -- rollout: this rank's slice of the step's games ----------------------------------------------------
            batch = rollouts.collect(step)
            if not noted:
                note = cut_note(batch.episodes, cfg.sampling.max_new_tokens)
                if note is not None:
                    accelerator.print(note)
                    noted = True
            failed = sum_scalar(accelerator, float(sum(ep.status == "error" for ep in batch.episodes)))
            if failed and failed == sum_scalar(accelerator, float(len(batch.episodes))):
                raise RuntimeError(
                    f"every game of step {step + 1} ended in an error, nothing to train on: "
                    f"{error_summary(batch.episodes) or 'the error is on another rank'}"
                )

            # -- advantages: baselines from before the update, measured over every rank's samples ------------------
            baselines.assign(learner, batch.samples, up.advantage, up.gae_lambda)
            stats = StepStats(gen_tokens=float(sum(len(s.completion_ids) for s in batch.samples)))
            stats.count_episodes(batch.episodes, roles, batch.pool_step)
            for s in batch.samples:
                if s.arm is not None:
                    stats.arms.add(s.arm, s.reward, s.advantage)
            samples = rollouts.keep(batch.samples)
            stats.filtered = len(batch.samples) - len(samples)
            for role in cfg.learner_roles:  # the sample budget: the x-axis of the quiz and of ablations
                state.samples[role] = state.samples.get(role, 0) + int(
                    sum_scalar(accelerator, float(sum(s.key[1] == role for s in samples)))
                )

            # -- update -------------------------------------------------------------------------------------------
            learner.at_step(step)
            t_update = time.perf_counter()
            gains = {}
            if progress is None:
                stats.update = update(up, learner, samples, progress=run.progress)
            else:  # the rewarded role waits for the gain its tasks bought
                stats.update, before, after = update_with_progress(
                    up,
                    learner,
                    samples,
                    progress=progress,
                    probe=lambda: evaluator.probe(progress, step),
                    infos=infos(batch.episodes),
                )
                gains = {k: after[k] - before[k] for k in after}
                state.progress.append({"step": step + 1, "before": before, "after": after})
            store.set_advantages({(s.turn_group[0], s.step_index): s.advantage for s in samples})  # for exports
            if up.magnet_every and (step + 1) % up.magnet_every == 0:
                learner.move_magnet()  # MMD: the KL reference follows the policy every magnet_every steps
            update_seconds = time.perf_counter() - t_update
            state.seconds += batch.seconds + update_seconds  # training time, evaluation excluded
            current = tracker.step() if tracker is not None else None  # the exact policy joins the running average
            if run.check_sync:
                record_weight_hashes(accelerator, learner.model, run_dir, step + 1)

            # -- statistics over ranks, the rollout component moves on, snapshot, evaluation, checkpoint, log -----
            stats.game = game_cls.context_stats([info for info in infos(batch.episodes).values()])
            written = gather(accelerator, written_tasks(game_cls, batch.episodes))  # every rank's, for distinctness
            task_metrics, collapse = monitor.observe(step + 1, step_counts(written))
            stats = reduce_sum(accelerator, stats)
            metrics = step_metrics(stats, accelerator.num_processes, batch.seconds, update_seconds)
            metrics.update(rollouts.observe(step + 1, stats))
            metrics.update({f"progress/{k}": v for k, v in gains.items()})
            metrics.update(task_metrics)
            for line in collapse:  # said once per step in which it holds, beside the step line
                accelerator.print(f"step {step + 1}: warning: {line}")
            metrics["lr"] = learner.optimizer.param_groups[0]["lr"]
            done = step + 1
            state.tasks = monitor.history
            state.training.append(
                {
                    "step": done,
                    "reward": {
                        k.split("/", 1)[1]: v
                        for k, v in metrics.items()
                        if k.startswith("reward/") and k.count("/") == 1 and not k.startswith("reward/vs_")
                    },
                }
            )
            # the time limit or a stop request ends every rank at the same step: any rank's stops them all
            halt = (
                bool(run.max_minutes) and state.seconds >= 60 * run.max_minutes or stop is not None and stop.requested
            )
            early = done < run.steps and sum_scalar(accelerator, float(halt)) > 0
            last = done == run.steps or early
            rollouts.snapshot(done)
            state.step, state.baselines, state.rollouts = done, baselines.state_dict(), rollouts.state_dict()
            state.exact = tracker.state_dict() if tracker is not None else {}
            if early:  # saved before the evaluation too, so a second Ctrl-C during it loses nothing
                save(done)
            if (ev.every and done % ev.every == 0) or last:
                exact = tracker.measure(current) if tracker else None
                entry, eval_metrics = evaluator.entry(done, state.seconds, exact)
                state.history.append({**entry, "samples": dict(state.samples)})
                metrics.update(eval_metrics)
            if done % run.checkpoint_every == 0 or last:
                save(done)
            log.step(done, metrics)
            if last:
                break

    # -- the end: summary and report ---------------------------------------------------------------------------
    log.close()
    summary = state.history[-1]["evaluation"] if state.history else {}
    if accelerator.is_main_process:
        final_summary(run_dir, state.step, state.history)
        if state.history:
            write_training_report(
                run_dir,
                state.history,
                rollouts.curriculum_history,
                state.training,
                state.tasks,
                cfg.evaluation.quiz_role,
            )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary

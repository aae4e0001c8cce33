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
from selfplay.agents.precision import compute_dtype
from selfplay.arena import rundir
from selfplay.arena.records import open_store
from selfplay.arena.stats import error_summary
from selfplay.training import checkpoint
from selfplay.training.binding import bind_game
from selfplay.training.collapse import CollapseMonitor, step_counts, written_tasks
from selfplay.training.config import TrainConfig
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
    trainer = Trainer(cfg, stop)
    with settled_heap():  # the loaded stack stays out of the garbage collector's full passes
        for step in range(trainer.state.step, cfg.run.steps):
            batch = trainer.rollout(step)
            samples, stats = trainer.advantages(batch)
            update_seconds, gains, current = trainer.update(step, batch, samples, stats)
            if trainer.finish_step(step, batch, stats, update_seconds=update_seconds, gains=gains, current=current):
                break
    return trainer.close()


class Trainer:
    """One training run's parts, built (or resumed) once; ``train`` calls them step by step."""

    def __init__(self, cfg: TrainConfig, stop: StopRequest | None = None):
        """Bind the game, build the learner, open the records, resume from the latest checkpoint if any."""
        run, up = cfg.run, cfg.update
        self.cfg, self.stop = cfg, stop
        self.game_cls = bind_game(cfg)  # game-dependent defaults and checks, before any model loads
        self.accelerator = acc = make_accelerator(
            up.micro_batches, up.max_grad_norm, cfg.dtype, find_unused=cfg.weights != "shared",
            trackers=run.trackers, run_dir=run.out,
        )  # fmt: skip
        set_seed(run.seed)
        self.run_dir = Path(run.out)
        self.roles = self.game_cls.roles
        self.learner = build_learner(cfg, acc, self.roles)
        checkpoint.install_hooks(acc)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(self.run_dir)
        self.rollouts = Rollouts(cfg, self.learner, self.game_cls, self.store, self.run_dir)
        self.evaluator = Evaluator(cfg, self.learner, self.rollouts.make_game, self.roles, self.store,
                                   self.rollouts.options)  # fmt: skip
        self.state = TrainerState()
        resume_from = checkpoint.resume_point(run.resume, self.run_dir)
        if resume_from is not None:
            self.state = checkpoint.load(self.learner, resume_from)
            self.rollouts.load_state_dict(self.state.rollouts)
            acc.print(f"resumed from {resume_from} at step {self.state.step}")
        self.tracker = (
            ExactTracker.create(self.rollouts.make_game, self.learner, self.state.exact, acc.print)
            if cfg.evaluation.exact and ExactTracker.applies(self.game_cls, cfg.sampling.constrained)
            else None
        )
        self.rollouts.average = self.tracker.average.policy if self.tracker is not None else None
        if acc.is_main_process:
            self._tidy_records(resume_from)
        acc.wait_for_everyone()
        self.baselines = Baselines(up.baseline_decay, self.state.baselines)
        self.progress = self.game_cls.learning_progress(dict(cfg.game_options))  # a role paid by another's gain
        self.log = Log(acc, asdict(cfg), run.steps, done=self.state.step, progress=run.progress)
        if cfg.evaluation.before and not self.state.history:  # the starting point of the curves: before any update
            entry = self.evaluator.entry(0, self.state.seconds, self.tracker.measure() if self.tracker else None)[0]
            self.state.history.append({**entry, "samples": {}})
        self.noted = cfg.sampling.constrained  # the note on answers cut at max_new_tokens, said once
        self.monitor = CollapseMonitor(cfg.curriculum.collapse_distinct, cfg.curriculum.collapse_frontier,
                                       self.state.tasks)  # fmt: skip

    def _tidy_records(self, resume_from: Path | None) -> None:
        """A fresh start removes what an earlier run left in the directory; a resume drops the episodes recorded
        after its checkpoint (they are replayed). Writes config.json."""
        run, store, say = self.cfg.run, self.store, self.accelerator.print
        if resume_from is None:
            dropped, stale = store.clear(), rundir.list_checkpoints(self.run_dir)
            for old in stale:
                shutil.rmtree(old)
            if dropped or stale:
                say(f"starting over in {self.run_dir} (run.resume={run.resume}): removed {dropped} episodes "
                    f"and {len(stale)} checkpoints of an earlier run")  # fmt: skip
        else:
            dropped = store.delete_after_step(self.state.step)  # rollouts of steps the checkpoint does not include
            if dropped:
                say(f"dropped {dropped} episodes recorded after step {self.state.step} (replayed now)")
        (self.run_dir / "config.json").write_text(json.dumps(asdict(self.cfg), indent=1))

    def rollout(self, step: int):
        """This rank's slice of the step's games; stops the run when every game of every rank ended in an error."""
        acc, batch = self.accelerator, self.rollouts.collect(step)
        if not self.noted:
            note = cut_note(batch.episodes, self.cfg.sampling.max_new_tokens)
            if note is not None:
                acc.print(note)
                self.noted = True
        failed = sum_scalar(acc, float(sum(ep.status == "error" for ep in batch.episodes)))
        if failed and failed == sum_scalar(acc, float(len(batch.episodes))):
            raise RuntimeError(
                f"every game of step {step + 1} ended in an error, nothing to train on: "
                f"{error_summary(batch.episodes) or 'the error is on another rank'}"
            )
        return batch

    def advantages(self, batch) -> tuple[list, StepStats]:
        """Advantages from baselines of before the update, over every rank's samples; the samples kept (difficulty
        filtering) and the step's statistics; the sample budget per learner role."""
        up = self.cfg.update
        self.baselines.assign(self.learner, batch.samples, up.advantage, up.gae_lambda)
        stats = StepStats(gen_tokens=float(sum(len(s.completion_ids) for s in batch.samples)))
        stats.count_episodes(batch.episodes, self.roles, batch.pool_step)
        for s in batch.samples:
            if s.arm is not None:
                stats.arms.add(s.arm, s.reward, s.advantage)
        samples = self.rollouts.keep(batch.samples)
        stats.filtered = len(batch.samples) - len(samples)
        for role in self.cfg.learner_roles:  # the sample budget: the x-axis of the quiz and of ablations
            mine = float(sum(s.game_role[1] == role for s in samples))
            self.state.samples[role] = self.state.samples.get(role, 0) + int(sum_scalar(self.accelerator, mine))
        return samples, stats

    def update(self, step: int, batch, samples, stats: StepStats) -> tuple[float, dict[str, float], Any]:
        """The gradient step (in the learning-progress order when a role is paid by another's gain), the advantages
        written back to the records, the MMD magnet moved; returns its seconds, the gains and the exact policy."""
        up, learner, progress = self.cfg.update, self.learner, self.progress
        learner.at_step(step)
        start, gains = time.perf_counter(), {}
        if progress is None:
            stats.update = update(up, learner, samples, progress=self.cfg.run.progress)
        else:  # the rewarded role waits for the gain its tasks bought
            stats.update, before, after = update_with_progress(
                up, learner, samples, progress=progress, probe=lambda: self.evaluator.probe(progress, step),
                infos=infos(batch.episodes),
            )  # fmt: skip
            gains = {k: after[k] - before[k] for k in after}
            self.state.progress.append({"step": step + 1, "before": before, "after": after})
        self.store.set_advantages({(s.turn[0], s.attempt_index): s.advantage for s in samples})  # for exports
        if up.magnet_every and (step + 1) % up.magnet_every == 0:
            learner.move_magnet()  # MMD: the KL reference follows the policy every magnet_every steps
        seconds = time.perf_counter() - start
        self.state.seconds += batch.seconds + seconds  # training time, evaluation excluded
        current = self.tracker.step() if self.tracker is not None else None  # joins the running average
        if self.cfg.run.check_sync:
            record_weight_hashes(self.accelerator, learner.model, self.run_dir, step + 1)
        return seconds, gains, current

    def finish_step(self, step: int, batch, stats: StepStats, *, update_seconds: float, gains: dict, current) -> bool:
        """Statistics over ranks, the rollout component moves on, snapshot, evaluation, checkpoint, log; returns
        whether this was the last step (the step count, the time limit or a stop request)."""
        cfg, acc, state, done = self.cfg, self.accelerator, self.state, step + 1
        metrics = self._step_metrics(done, batch, stats=stats, update_seconds=update_seconds, gains=gains)
        # the time limit or a stop request ends every rank at the same step: any rank's stops them all
        halt = bool(cfg.run.max_minutes) and state.seconds >= 60 * cfg.run.max_minutes
        halt = halt or (self.stop is not None and self.stop.requested)
        early = done < cfg.run.steps and sum_scalar(acc, float(halt)) > 0
        last = done == cfg.run.steps or early
        self.rollouts.snapshot(done)
        state.step, state.baselines, state.rollouts = done, self.baselines.state_dict(), self.rollouts.state_dict()
        state.exact = self.tracker.state_dict() if self.tracker is not None else {}
        if early:  # saved before the evaluation too, so a second Ctrl-C during it loses nothing
            self._save(done)
        if (cfg.evaluation.every and done % cfg.evaluation.every == 0) or last:
            exact = self.tracker.measure(current) if self.tracker else None
            entry, eval_metrics = self.evaluator.entry(done, state.seconds, exact)
            state.history.append({**entry, "samples": dict(state.samples)})
            metrics.update(eval_metrics)
        if done % cfg.run.checkpoint_every == 0 or last:
            self._save(done)
        self.log.step(done, metrics)
        return last

    def _step_metrics(self, done: int, batch, *, stats: StepStats, update_seconds: float, gains: dict) -> dict:
        """The step's metrics summed over ranks, with the curriculum's and the collapse monitor's; the training
        curve's entry; collapse warnings said beside the step line."""
        acc, game_cls = self.accelerator, self.game_cls
        stats.game = game_cls.context_stats([info for info in infos(batch.episodes).values()])
        written = gather(acc, written_tasks(game_cls, batch.episodes))  # every rank's, for distinctness
        task_metrics, collapse = self.monitor.observe(done, step_counts(written))
        stats = reduce_sum(acc, stats)
        metrics = step_metrics(stats, acc.num_processes, batch.seconds, update_seconds)
        metrics.update(self.rollouts.observe(done, stats))
        metrics.update({f"progress/{k}": v for k, v in gains.items()})
        metrics.update(task_metrics)
        for line in collapse:  # said once per step in which it holds
            acc.print(f"step {done}: warning: {line}")
        metrics["lr"] = self.learner.optimizer.param_groups[0]["lr"]
        self.state.tasks = self.monitor.history
        rewards = {
            k.split("/", 1)[1]: v
            for k, v in metrics.items()
            if k.startswith("reward/") and k.count("/") == 1 and not k.startswith("reward/vs_")
        }
        entry = {"step": done, "reward": rewards, "seconds": {"rollout": batch.seconds, "update": update_seconds}}
        if stats.update.tokens:
            entry["mismatch"] = {
                k.split("/")[1]: metrics[k] for k in ("mismatch/mean", "mismatch/max", "mismatch/capped")
            }
        self.state.training.append(entry)
        return metrics

    def _save(self, step: int) -> None:
        """A checkpoint; the base weights' dtype as build_learner loaded them, for hf:CHECKPOINT to rebuild it."""
        cfg = self.cfg
        checkpoint.save(
            self.learner, self.run_dir, step, self.state, base_spec=cfg.model, keep=cfg.run.keep_checkpoints,
            seed=cfg.run.seed, dtype=str(next(self.learner.policy.parameters()).dtype).removeprefix("torch."),
        )  # fmt: skip

    def precision(self) -> str:
        """The products' precision and the loss's correction, in words, for the report."""
        module = self.learner.policy.generator(self.learner.policy.groups[0])[0]
        u = self.cfg.update
        cap = f" (cap {u.tis_cap:g})" if u.correction == "tis" else ""
        return f"{str(compute_dtype(module)).removeprefix('torch.')} products (dtype={self.cfg.dtype}), correction={u.correction}{cap}"

    def close(self) -> dict[str, Any]:
        """The end: the summary and the report; returns the last evaluation's summary."""
        state, acc = self.state, self.accelerator
        self.log.close()
        summary = state.history[-1]["evaluation"] if state.history else {}
        if acc.is_main_process:
            final_summary(self.run_dir, state.step, state.history)
            if state.history:
                write_training_report(
                    self.run_dir, state.history, curriculum=self.rollouts.curriculum_history, training=state.training, tasks=state.tasks,
                    quiz_role=self.cfg.evaluation.quiz_role, precision=self.precision(),
                )  # fmt: skip
        acc.wait_for_everyone()
        acc.end_training()
        return summary

"""Metrics of a step, the console line, TensorBoard, and the run's final summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from selfplay.training.stats import StepStats


def step_metrics(stats: StepStats, world: int, rollout_seconds: float, update_seconds: float) -> dict[str, float]:
    """Namespaced metrics (``loss/policy``, ``reward/<role>``, ...) from a step's statistics summed over ranks."""
    u = stats.update
    tokens = max(u.tokens, 1.0)
    metrics = {"loss/policy": u.loss_sum / tokens, "clip_frac": u.clip_sum / tokens, "kl": u.kl_sum / tokens,
               "entropy": -u.logp_sum / tokens, "grad_norm": u.grad_norm / world,
               "tokens_per_s": stats.gen_tokens / max(rollout_seconds, 1e-9), "filtered_samples": stats.filtered,
               "time/rollout": rollout_seconds, "time/update": update_seconds}
    if torch.cuda.is_available():
        metrics["memory/peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    for role, tally in stats.learner.items():
        metrics[f"reward/{role}"] = tally.mean_reward
        metrics[f"invalid_rate/{role}"] = tally.invalid_rate
    return metrics


def console_line(step: int, steps: int, m: dict[str, float]) -> str:
    """One line per step: rewards, invalid rate, loss, speed, and the evaluation when there was one."""
    rewards = " ".join(f"{k.split('/')[1]}={v:+.2f}" for k, v in m.items()
                       if k.startswith("reward/") and not k.startswith("reward/vs_"))
    invalid = max((v for k, v in m.items() if k.startswith("invalid_rate/")), default=0.0)
    evals = " ".join([*(f"{k.split('/')[1]}={v:.2f}" for k, v in m.items() if k.startswith("winrate/")),
                      *(f"{k.split('/')[1]}={v:+.3f}" for k, v in m.items() if k.startswith("reward/vs_")),
                      *(f"success {k.split('/')[1]}={v:.2f}" for k, v in m.items() if k.startswith("success/"))])
    if "exploitability" in m:
        evals += f" exploitability={m['exploitability']:.3f}" + (
            f" (average {m['exploitability/average']:.3f})" if "exploitability/average" in m else "")
    return (f"step {step}/{steps} | reward {rewards} | invalid {invalid:.1%} | loss {m['loss/policy']:+.4f} "
            f"| {m['tokens_per_s']:.0f} tok/s | rollout {m['time/rollout']:.1f}s update {m['time/update']:.1f}s"
            + (f" | peak {m['memory/peak_gb']:.1f} GiB" if "memory/peak_gb" in m else "")
            + (f" | eval {evals}" if evals else ""))


class Log:
    """The experiment trackers (accelerate's ``log_with``: TensorBoard by default) and the console line on the main
    process, under a progress bar over steps."""

    def __init__(self, accelerator, config: dict[str, Any], steps: int, done: int, progress: bool):
        self.accelerator, self.steps, self.main = accelerator, steps, accelerator.is_main_process
        if accelerator.log_with:
            accelerator.init_trackers("selfplay", config=_flat(config))
        self.bar = tqdm(total=steps, initial=done, desc="train", unit="step", disable=not (progress and self.main),
                        dynamic_ncols=True)

    def step(self, done: int, metrics: dict[str, float]) -> None:
        if self.accelerator.log_with:
            self.accelerator.log(metrics, step=done)
        if self.main:
            for tracker in self.accelerator.trackers:
                flush = getattr(tracker.tracker, "flush", None)
                if callable(flush):
                    flush()
            self.bar.write(console_line(done, self.steps, metrics))
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as flat ``section.key`` scalars (what every tracker's hyperparameter table accepts)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and key != "game_options":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def final_summary(run_dir: Path, step: int, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``RUN/summary.json`` and print the last evaluation; return it."""
    summary = history[-1]["evaluation"] if history else {}
    (run_dir / "summary.json").write_text(json.dumps({"step": step, "evaluation": summary, "history": history},
                                                     indent=1))
    print(f"\nevaluation after {step} steps:")
    if history and not history[-1].get("win_lose", True):  # amounts (chips): mean reward with its interval
        print(f"  {'opponent':<10} {'games':>6} {'mean reward [95%]':>26}  per seat [95%]")
        for name, r in summary.items():
            lo, hi = r["mean_reward_ci"]
            seats = "  ".join(f"{s} {v:+.3f} [{r['reward_ci'][s][0]:+.3f}, {r['reward_ci'][s][1]:+.3f}]"
                              for s, v in r["reward"].items())
            success = f"  team success {r['success']:.1%}" if "success" in r else ""
            print(f"  {name:<10} {int(r['games']):>6} {r['mean_reward']:>+8.3f} [{lo:+.3f}, {hi:+.3f}]  {seats}{success}")
    else:
        print(f"  {'opponent':<10} {'games':>6} {'win':>6} {'draw':>6} {'loss':>6} {'invalid':>8}")
        for name, r in summary.items():
            print(f"  {name:<10} {int(r['games']):>6} {r['win']:>6.1%} {r['draw']:>6.1%} {r['loss']:>6.1%} "
                  f"{r['invalid_rate']:>8.1%}")
    exact = history[-1].get("exact") if history else None
    if exact:
        print(f"  exploitability {exact['exploitability']:.4f} chips per hand (NashConv / 2)"
              + (f"; average policy {exact['average']:.4f}" if "average" in exact else ""))
    elo = next(iter(summary.values()), {}).get("learner_elo")
    if elo:
        print(f"  learner Elo {elo['elo']:+.0f} [{elo['low']:+.0f}, {elo['high']:+.0f}] (anchor: {elo['anchor']})")
    print(f"outputs in {run_dir}/ (report.md, progress.png, summary.json, episodes.sqlite, checkpoints/, tensorboard/)")
    return summary

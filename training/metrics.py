"""Metrics of a step, the console line, TensorBoard, and the run's final summary."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from selfplay.arena.stats import paired_difference, wilson
from selfplay.training.stats import StepStats


def step_metrics(stats: StepStats, world: int, rollout_seconds: float, update_seconds: float) -> dict[str, float]:
    """Namespaced metrics (``loss/policy``, ``reward/<role>``, ...) from a step's statistics summed over ranks."""
    u = stats.update
    tokens = max(u.tokens, 1.0)
    metrics = {
        "loss/policy": u.loss_sum / tokens,
        "clip_frac": u.clip_sum / tokens,
        "kl": u.kl_sum / tokens,
        "entropy": -u.logp_sum / tokens,
        "grad_norm": u.grad_norm / world,
        "mismatch/mean": u.mismatch_sum / tokens,  # |sampler - learner| log-prob of a sampled token
        "mismatch/max": u.mismatch_max / world,
        "mismatch/capped": u.capped / tokens,  # share of tokens whose importance weight hit update.tis_cap
        "tokens_per_s": stats.gen_tokens / max(rollout_seconds, 1e-9),
        "filtered_samples": stats.filtered,
        "time/rollout": rollout_seconds,
        "time/update": update_seconds,
        "update/micro_batches": u.micro_batches / world,
        "update/tokens_per_s": u.tokens / max(update_seconds, 1e-9),  # completion tokens trained per second
        "update/tflops_per_s": u.flops / max(update_seconds, 1e-9) / 1e12,
    }  # model FLOPs, all ranks
    if torch.cuda.is_available():
        metrics["memory/peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
        peak = peak_flops(torch.cuda.get_device_name())
        if peak:
            metrics["update/mfu"] = u.flops / max(update_seconds, 1e-9) / (world * peak)
    for role, tally in stats.learner.items():
        metrics[f"reward/{role}"] = tally.mean_reward
        metrics[f"invalid_rate/{role}"] = tally.invalid_rate
    return metrics


# dense bf16 tensor-core peaks (vendor data sheets, SXM parts), by a name fragment of torch.cuda.get_device_name()
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "4090": 165.0}


def peak_flops(device_name: str) -> float | None:
    """The card's peak FLOP/s for model FLOP utilisation (``SELFPLAY_PEAK_TFLOPS`` overrides), or None if unknown."""
    if os.environ.get("SELFPLAY_PEAK_TFLOPS"):
        return float(os.environ["SELFPLAY_PEAK_TFLOPS"]) * 1e12
    return next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def console_line(step: int, steps: int, m: dict[str, float]) -> str:
    """One line per step: rewards, invalid rate, loss, speed, and the evaluation when there was one."""
    rewards = " ".join(
        f"{k.split('/')[1]}={v:+z.2f}"
        for k, v in m.items()
        if k.startswith("reward/") and not k.startswith("reward/vs_")
    )
    invalid = " ".join(f"{k.split('/')[1]}={v:.0%}" for k, v in m.items() if k.startswith("invalid_rate/"))
    evals = " ".join(
        [
            *(f"{k.split('/')[1]}={v:.2f}" for k, v in m.items() if k.startswith("winrate/")),
            *(f"{k.split('/')[1]}={v:+z.3f}" for k, v in m.items() if k.startswith("reward/vs_")),
            *(f"success {k.split('/')[1]}={v:.2f}" for k, v in m.items() if k.startswith("success/")),
        ]
    )
    if "exploitability" in m:
        evals += (
            f" exploitability={m['exploitability']:.3f}"
            + (f" (average {m['exploitability/average']:.3f})" if "exploitability/average" in m else "")
            + (f" team_value={m['team_value']:.3f}" if "team_value" in m else "")
        )
    return (
        f"step {step}/{steps} | reward {rewards} | invalid {invalid} | loss {m['loss/policy']:+z.4f} "
        f"| {m['tokens_per_s']:.0f} tok/s | rollout {m['time/rollout']:.1f}s update {m['time/update']:.1f}s"
        + (f" ({m['update/micro_batches']:.0f} micro-batches)" if m.get("update/micro_batches", 1) > 1 else "")
        + (f" | peak {m['memory/peak_gb']:.1f} GiB" if "memory/peak_gb" in m else "")
        + (f" | eval {evals}" if evals else "")
    )


def quiet_libraries() -> None:
    """Silence what the libraries print on every run and every save, which buries the training console: DeepSpeed's
    "Setting accelerator to CPU" (on a machine without an accelerator, named up front instead), transformers'
    "Writing model shards" bars, accelerate's "Removed shared tensor" on saving tied weights, and torch.distributed's
    deprecation notice for a call DeepSpeed makes. Errors and our own warnings still show."""
    import logging
    import os
    import warnings

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and not accelerator.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Removed shared tensor" not in record.getMessage()

    logging.getLogger("accelerate.utils.other").addFilter(_Drop())
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)


class Log:
    """The experiment trackers (accelerate's ``log_with``: TensorBoard by default) and the console line on the main
    process, under a progress bar over steps."""

    def __init__(self, accelerator, config: dict[str, Any], steps: int, *, done: int, progress: bool):
        self.accelerator, self.steps, self.main = accelerator, steps, accelerator.is_main_process
        if accelerator.log_with:
            try:
                # wandb writes its files into the run directory too (its default is the working directory)
                place = {} if os.environ.get("WANDB_DIR") else {"wandb": {"dir": str(config["run"]["out"])}}
                accelerator.init_trackers("selfplay", config=_flat(config), init_kwargs=place)
            except Exception as exc:  # noqa: BLE001 - a tracker's own error (no login, no server), said in one line
                names = ", ".join(str(getattr(t, "value", None) or getattr(t, "name", t)) for t in accelerator.log_with)
                hint = " (wandb: run `wandb login`, or set WANDB_MODE=offline)" if "wandb" in names else ""
                raise RuntimeError(
                    f"config key 'run.trackers' = [{names}]: a tracker could not start: "
                    f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                    f"{hint}"
                ) from exc
        # disable=None: bars only on a terminal (a log file gets the step lines, not carriage-return debris)
        self.bar = tqdm(
            total=steps,
            initial=done,
            desc="train",
            unit="step",
            disable=None if progress and self.main else True,
            dynamic_ncols=True,
        )

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


def cut_note(episodes: list, max_new_tokens: int) -> str | None:
    """A note when most of the learner's answers failed to parse because they ran into ``max_new_tokens`` (the
    usual cause of an invalid rate near 100% with free-text decoding), else None."""
    mine = [s for ep in episodes for s in ep.steps if s.role in ep.learner_roles() and s.completion_ids is not None]
    cut = [s for s in mine if s.failure == "PARSE_ERROR" and len(s.completion_ids) >= max_new_tokens]
    if not mine or len(cut) <= len(mine) / 2:
        return None
    return (
        f"note: {len(cut) / len(mine):.0%} of the learner's answers were cut at sampling.max_new_tokens="
        f"{max_new_tokens} before they parsed (e.g. {cut[0].text[-40:]!r}): raise it, or decode only legal "
        f"actions with sampling.constrained=true"
    )


def final_summary(run_dir: Path, step: int, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``RUN/summary.json`` and print the last evaluation; return it."""
    summary = history[-1]["evaluation"] if history else {}
    (run_dir / "summary.json").write_text(
        json.dumps({"step": step, "evaluation": summary, "history": history}, indent=1)
    )
    print(f"\nevaluation after {step} steps:")
    _print_baselines(summary, history[-1] if history else {})
    heldout = history[-1].get("heldout") if history else None
    for role, accuracy in (heldout or {}).items():
        ordered = sorted(accuracy.items(), key=lambda kv: kv[0] == "all")  # each arm as played, the overall last
        print(f"  held-out accuracy ({role}): " + ", ".join(f"{k} {v:.1%}" for k, v in ordered))
    for key, result in (history[-1].get("quiz") or {}).items() if history else ():
        low, high = wilson(sum(result["outcomes"]), result["n"])
        print(
            f"  quiz {key}: accuracy {result['accuracy']:.3f} [{low:.3f}, {high:.3f}] on {result['n']} held-out problems"
        )
    exact = history[-1].get("exact") if history else None
    if exact:
        print(
            f"  exploitability {exact['exploitability']:.4f} per game (NashConv / {exact.get('players', 2)})"
            + (f"; average policy {exact['average']:.4f}" if "average" in exact else "")
        )
        if "team_value" in exact:
            print(f"  {team_line(exact)}")
    elo = next(iter(summary.values()), {}).get("learner_elo")
    if elo:
        print(f"  learner Elo {elo['elo']:+z.0f} [{elo['low']:+z.0f}, {elo['high']:+z.0f}] (anchor: {elo['anchor']})")
    changes = before_after(history)
    if changes:
        print("\nbefore and after training (the same evaluation seeds; [95% interval]):")
        for line in changes["lines"]:
            print("  " + line)
        summary_path = run_dir / "summary.json"
        data = json.loads(summary_path.read_text())
        data["before_after"] = changes["rows"]
        summary_path.write_text(json.dumps(data, indent=1))
    print(f"outputs in {run_dir}/ (report.md, progress.png, summary.json, episodes.sqlite, checkpoints/, tensorboard/)")
    return summary


def _print_baselines(summary: dict[str, Any], last: dict[str, Any]) -> None:
    """The last evaluation per baseline: mean reward with its interval for amounts (chips), else win/draw/loss."""
    w = max([10, *map(len, summary)])  # served opponents have long names
    if not summary and not last.get("heldout") and not last.get("exact") and not last.get("quiz"):
        print("  nothing was evaluated: evaluation.opponents is empty and evaluation.heldout is false")
    elif not summary:
        pass
    elif not last.get("win_lose", True):  # amounts (chips): mean reward with its interval
        print(f"  {'opponent':<{w}} {'games':>6} {'mean reward [95%]':>26}  per seat [95%]")
        for name, r in summary.items():
            lo, hi = r["mean_reward_ci"]
            seats = "  ".join(
                f"{s} {v:+z.3f} [{r['reward_ci'][s][0]:+z.3f}, {r['reward_ci'][s][1]:+z.3f}]"
                for s, v in r["reward"].items()
            )
            success = f"  team success {r['success']:.1%}" if "success" in r else ""
            print(
                f"  {name:<{w}} {int(r['games']):>6} {r['mean_reward']:>+z8.3f} [{lo:+z.3f}, {hi:+z.3f}]  {seats}{success}"
            )
    else:
        print(f"  {'opponent':<{w}} {'games':>6} {'win':>6} {'draw':>6} {'loss':>6} {'invalid':>8}")
        for name, r in summary.items():
            print(
                f"  {name:<{w}} {int(r['games']):>6} {r['win']:>6.1%} {r['draw']:>6.1%} {r['loss']:>6.1%} "
                f"{r['invalid_rate']:>8.1%}"
            )


def team_line(exact: dict[str, Any]) -> str:
    """A cooperative game's exact team value in self-play, against the best joint policy's where it was found."""
    if "team_optimum" not in exact:
        return f"team value {exact['team_value']:.4f} in self-play (exact; the best joint policy is too costly to find)"
    return (
        f"team value {exact['team_value']:.4f} in self-play, of the best joint policy's {exact['team_optimum']:.4f} "
        f"(exact; a Nash equilibrium can fall short of the best: exploitability 0 is not the optimum)"
    )


def before_after(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The step-0 evaluation against the last one, per opponent: mean reward with its 95% interval at both ends and
    the change with an interval (normal approximation, the two estimates' standard errors combined: conservative
    for the same seeds); win rates for win/lose games; exact exploitability where measured. None without both."""
    if len(history) < 2 or history[0].get("step") != 0 or history[-1].get("step", 0) == 0:
        return None
    first, last = history[0], history[-1]
    rows, lines = {}, []
    _baseline_changes(first, last, rows, lines)
    _exact_changes(first, last, rows, lines)
    _heldout_changes(first, last, rows, lines)
    _quiz_changes(first, last, rows, lines)
    return {"rows": rows, "lines": lines} if lines else None


def _baseline_changes(first: dict, last: dict, rows: dict, lines: list[str]) -> None:
    """Each baseline's mean reward at both ends and the change with its interval (normal approximation, the
    two estimates' standard errors combined: conservative for the same seeds); win and invalid rates."""
    for name, end in last.get("evaluation", {}).items():
        start = first.get("evaluation", {}).get(name)
        if start is None:
            continue
        # the standard errors as evaluated (a clipped interval's width would understate them)
        se = [
            r.get("mean_reward_se", (r["mean_reward_ci"][1] - r["mean_reward_ci"][0]) / (2 * 1.96))
            for r in (start, end)
        ]
        change = end["mean_reward"] - start["mean_reward"]
        half = 1.96 * math.sqrt(se[0] ** 2 + se[1] ** 2)
        rows[name] = {
            "before": start["mean_reward"],
            "before_ci": start["mean_reward_ci"],
            "after": end["mean_reward"],
            "after_ci": end["mean_reward_ci"],
            "change": change,
            "change_ci": [change - half, change + half],
        }
        wins = ""
        if last.get("win_lose", True) and "win" in end:
            rows[name].update(win_before=start["win"], win_after=end["win"])
            wins = f"  win {start['win']:.1%} -> {end['win']:.1%}"
        if "invalid_rate" in end and "invalid_rate" in start:
            rows[name].update(invalid_before=start["invalid_rate"], invalid_after=end["invalid_rate"])
            if start["invalid_rate"] or end["invalid_rate"]:
                wins += f"  invalid moves {start['invalid_rate']:.1%} -> {end['invalid_rate']:.1%}"
        verdict = "better" if change - half > 0 else "worse" if change + half < 0 else "no clear change"
        lines.append(
            f"vs {name:<8} mean reward {start['mean_reward']:+z.3f} [{start['mean_reward_ci'][0]:+z.3f}, "
            f"{start['mean_reward_ci'][1]:+z.3f}] -> {end['mean_reward']:+z.3f} [{end['mean_reward_ci'][0]:+z.3f}, "
            f"{end['mean_reward_ci'][1]:+z.3f}]  change {change:+z.3f} [{change - half:+z.3f}, {change + half:+z.3f}] "
            f"({verdict}){wins}"
        )


def _exact_changes(first: dict, last: dict, rows: dict, lines: list[str]) -> None:
    """Exact exploitability (and a cooperative game's team value) at both ends."""
    if first.get("exact") and last.get("exact"):
        a, b = first["exact"]["exploitability"], last["exact"]["exploitability"]
        rows["exploitability"] = {"before": a, "after": b}
        lines.append(
            f"exploitability (exact, NashConv / {last['exact'].get('players', 2)}; 0 is a Nash equilibrium) "
            f"{a:.4f} -> {b:.4f}"
        )
        if "team_value" in first["exact"] and "team_value" in last["exact"]:
            a, b, optimum = first["exact"]["team_value"], last["exact"]["team_value"], last["exact"].get("team_optimum")
            rows["team_value"] = {"before": a, "after": b, **({"optimum": optimum} if optimum is not None else {})}
            best = f"; the best joint policy's {optimum:.4f}" if optimum is not None else ""
            lines.append(f"team value in self-play (exact{best}) {a:.4f} -> {b:.4f}")


def _heldout_changes(first: dict, last: dict, rows: dict, lines: list[str]) -> None:
    """Held-out accuracy per role at both ends."""
    for role, end in (last.get("heldout") or {}).items():
        start = (first.get("heldout") or {}).get(role)
        if start and "all" in end and "all" in start:
            rows[f"heldout/{role}"] = {"before": start["all"], "after": end["all"]}
            lines.append(f"held-out accuracy ({role}) {start['all']:.1%} -> {end['all']:.1%}")


def _quiz_changes(first: dict, last: dict, rows: dict, lines: list[str]) -> None:
    """Each quiz set's accuracy at both ends, with the paired change and its interval."""
    for key, end in (last.get("quiz") or {}).items():
        start = (first.get("quiz") or {}).get(key)
        if start and start["n"] == end["n"] and end["n"]:
            change, low, high = paired_difference(start["outcomes"], end["outcomes"])
            ci = [wilson(sum(r["outcomes"]), r["n"]) for r in (start, end)]
            rows[f"quiz/{key}"] = {
                "before": start["accuracy"],
                "before_ci": list(ci[0]),
                "after": end["accuracy"],
                "after_ci": list(ci[1]),
                "change": change,
                "change_ci": [low, high],
                "n": end["n"],
            }
            verdict = "better" if low > 0 else "worse" if high < 0 else "no clear change"
            lines.append(
                f"quiz {key:<8} accuracy {start['accuracy']:.3f} [{ci[0][0]:.3f}, {ci[0][1]:.3f}] -> "
                f"{end['accuracy']:.3f} [{ci[1][0]:.3f}, {ci[1][1]:.3f}]  change {change:+z.3f} "
                f"[{low:+z.3f}, {high:+z.3f}] ({verdict}; {end['n']} held-out problems, paired)"
            )

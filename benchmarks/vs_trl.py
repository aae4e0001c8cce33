"""selfplay against TRL's GRPOTrainer on one single-turn GRPO task, alternating in one run.

    pip install trl                                    # the optional extra: pip install -e .[trl]
    python benchmarks/vs_trl.py                        # CPU: SmolLM2, 6 steps of 4 prompts x 8 answers each side
    python benchmarks/vs_trl.py --steps 20 --reps 2 --heldout 300

The task is the built-in ``arithmetic`` game's two-digit addition in the slot format: the assistant turn is pre-filled
with "37 + 45 = " and the answer scores 1 when the number that follows is right. Both sides get the same prompts
(the game's own, rendered by the same chat template), the same reward (the game's parse), the same group size,
prompts per step, completion length, temperature 1 over the full vocabulary, learning rate, no KL term, the whole
model trained (TRL without PEFT; selfplay ``weights=shared``), GRPO's group-normalised advantage and token-level loss,
the same precision (``--dtype``; on a CPU TRL's ``bf16`` is torch's autocast, as ours), training problems only.
Each side starts from the same SmolLM2 weights; after the same number of steps both trained models answer the same
``--heldout`` problems (``split=heldout``, never trained on), greedily, through the same agent: accuracy with a Wilson
95% interval. Per side: seconds per step (median after the first), completions per second, held-out accuracy before
and after. The order alternates per repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import positive  # noqa: E402
from benchmarks.threads import cpu_model  # noqa: E402
from selfplay.agents.llm import LLMAgent, SamplingConfig  # noqa: E402
from selfplay.agents.models import load_model  # noqa: E402
from selfplay.agents.precision import compute_dtype  # noqa: E402
from selfplay.agents.prompts import render_prompt  # noqa: E402
from selfplay.arena.stats import wilson  # noqa: E402
from selfplay.games.core import InvalidAction  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GAME = {"skill": "add", "digits": 2, "answer_format": "slot"}


def problems(n: int, split: str, seed: int) -> list[dict]:
    """``n`` arithmetic games of ``split``, each as its seed, prompt text (chat template + slot) and answer."""
    from selfplay.games.builtin.arithmetic import Arithmetic

    tokenizer = load_model("smollm2")[1]
    rows = []
    for i in range(n):
        game = Arithmetic(**GAME, samples=1, split=split)
        game.reset(seed * 1_000_003 + i)
        text = tokenizer.decode(render_prompt(tokenizer, game.observe("solver"))) + game.answer_slot("solver")
        rows.append({"seed": seed * 1_000_003 + i, "prompt": text, "answer": game.answer})
    return rows


def score(completion: str, answer: int) -> float:
    """1 when the slotted answer is ``answer`` (the game's own parse), else 0."""
    from selfplay.games.builtin.arithmetic import slot_number

    try:
        return float(slot_number(completion) == answer)
    except InvalidAction:
        return 0.0


def accuracy(model, tokenizer, rows: list[dict], new: int) -> tuple[int, int]:
    """Greedy answers to ``rows`` through the same agent for both sides: (right, asked)."""
    agent = LLMAgent(model, tokenizer, SamplingConfig(temperature=0.0, max_new_tokens=new, batch_size=64), name="e")
    prompts = [tokenizer.encode(r["prompt"], add_special_tokens=False) for r in rows]
    right = 0
    with agent.session():
        for start in range(0, len(prompts), 64):
            for c, r in zip(agent.generate(prompts[start : start + 64]), rows[start : start + 64]):
                right += int(score(c.text, r["answer"]))
    return right, len(rows)


def run_trl(args, seed: int, heldout: list[dict]) -> dict:
    """TRL's GRPOTrainer on the training problems; its step times, reward and held-out accuracy."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_model("smollm2", dtype="float32")
    train = problems(args.steps * args.prompts * 2, "train", seed)
    data = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in train])

    def reward(completions, answer, **_):
        return [score(c, a) for c, a in zip(completions, answer)]

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks = [time.perf_counter()]

        def on_step_end(self, *_, **__):
            self.marks.append(time.perf_counter())

    clock = Clock()
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-"), per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group, max_completion_length=args.new, max_steps=args.steps, learning_rate=args.lr,
        bf16=args.dtype == "bfloat16", use_cpu=True, report_to=[], save_strategy="no", use_vllm=False,
        temperature=1.0, top_k=0, top_p=1.0, beta=0.0, seed=seed, logging_steps=1, dataloader_num_workers=0,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward], args=config, train_dataset=data, processing_class=tokenizer,
        callbacks=[clock],
    )  # fmt: skip
    trainer.train()
    steps = [b - a for a, b in zip(clock.marks, clock.marks[1:])]
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    trained = trainer.model.eval()
    trained.to(torch.float32)
    return {"step_s": steps, "train_reward": rewards, "after": accuracy(trained, tokenizer, heldout, args.new)}


def run_selfplay(args, seed: int, heldout: list[dict]) -> dict:
    """selfplay's trainer on the same task; its step times, reward and held-out accuracy."""
    from selfplay.agents.checkpoint_paths import checkpoint_policy
    from selfplay.training.config import load_config
    from selfplay.training.train import train

    out = tempfile.mkdtemp(prefix="selfplay-")
    options = ", ".join(f"{k}: {v}" for k, v in {**GAME, "samples": args.group, "split": "train"}.items())
    cfg = load_config(
        None,
        [
            "game=arithmetic", f"game_options={{{options}}}", "model=smollm2", "weights=shared",
            f"dtype={args.dtype}", "advantage=grpo", f"lr={args.lr}", "kl_coef=0.0", "sampling.temperature=1.0",
            f"sampling.max_new_tokens={args.new}", "sampling.constrained=false", f"games_per_step={args.prompts}",
            f"steps={args.steps}", "evaluation.every=0", "evaluation.before=false", f"checkpoint_every={args.steps}",
            f"run.seed={seed}", f"run.out={out}", "max_grad_norm=1.0", "run.progress=false",
        ],
    )  # fmt: skip
    train(cfg)
    last = sorted(Path(out, "checkpoints").iterdir())[-1]
    training = json.loads((last / "trainer.json").read_text())["training"]  # per step: seconds, reward, mismatch
    steps = [t["seconds"]["rollout"] + t["seconds"]["update"] for t in training]
    rewards = [t["reward"].get("solver") for t in training]
    model, tokenizer = load_model("hf", str(checkpoint_policy(last)), dtype=args.dtype)
    mismatch = [t["mismatch"]["mean"] for t in training if "mismatch" in t]
    return {
        "step_s": steps, "train_reward": rewards, "after": accuracy(model, tokenizer, heldout, args.new),
        "mismatch_mean": statistics.mean(mismatch) if mismatch else None,
    }  # fmt: skip


SIDES = {"trl": run_trl, "selfplay": run_selfplay}


def run_side(name: str, rep: int, argv: list[str]) -> dict:
    """One side's run in its own process (each trainer sets up accelerate's process-wide state its own way)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder, "side.json")
        done = subprocess.run(
            [sys.executable, __file__, *argv, "--side", name, "--rep", str(rep), "--side-out", str(out)]
        )
        if done.returncode:
            raise SystemExit(f"the {name} run failed (exit status {done.returncode})")
        return json.loads(out.read_text())


def summary(name: str, runs: list[dict], completions: int) -> dict:
    """Median seconds per step after the first of every run, completions per second, pooled held-out accuracy."""
    steps = [s for r in runs for s in r["step_s"][1:]] or [s for r in runs for s in r["step_s"]]
    right, asked = sum(r["after"][0] for r in runs), sum(r["after"][1] for r in runs)
    low, high = wilson(right, asked)
    return {
        "side": name,
        "median_step_s": statistics.median(steps),
        "completions_per_s": completions / statistics.median(steps),
        "heldout_accuracy": right / asked,
        "interval": [low, high],
        "train_reward_last": [r["train_reward"][-1] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive, default=6, help="RL steps per side and repetition (default 6)")
    parser.add_argument("--prompts", type=positive, default=4, help="problems per step (default 4)")
    parser.add_argument("--group", type=positive, default=8, help="answers per problem, the GRPO group (default 8)")
    parser.add_argument("--new", type=positive, default=8, help="most completion tokens (default 8)")
    parser.add_argument("--lr", type=float, default=1e-5, help="learning rate, both sides (default 1e-5)")
    parser.add_argument("--heldout", type=positive, default=200, help="held-out problems asked (default 200)")
    parser.add_argument("--reps", type=positive, default=1, help="repetitions, alternating the order (default 1)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"), help="both sides")
    parser.add_argument("--out", help="also write the results here (JSON)")
    parser.add_argument("--side", choices=tuple(SIDES), help=argparse.SUPPRESS)  # one side, in a child process
    parser.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--side-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dtype == "auto":
        args.dtype = str(compute_dtype(load_model("smollm2")[0])).removeprefix("torch.")
    if args.side:
        random.seed(args.rep)
        heldout = problems(args.heldout, "heldout", seed=12345)
        Path(args.side_out).write_text(json.dumps(SIDES[args.side](args, args.rep, heldout)))
        return
    try:
        import trl
    except ImportError:
        parser.error("needs TRL: pip install trl (the optional extra: pip install -e .[trl])")
    heldout = problems(args.heldout, "heldout", seed=12345)
    base, tokenizer = load_model("smollm2", dtype=args.dtype)
    before = accuracy(base, tokenizer, heldout, args.new)
    print(
        f"# cpu ({cpu_model()}), {torch.get_num_threads()} threads; TRL {trl.__version__}; {args.dtype}; "
        f"{args.steps} steps of {args.prompts} problems x {args.group} answers, {args.new} new tokens, lr {args.lr:g}; "
        f"held-out accuracy before {before[0]}/{before[1]}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {k: [] for k in SIDES}
    for rep in range(args.reps):
        for name in list(SIDES) if rep % 2 == 0 else list(reversed(SIDES)):
            result = run_side(name, rep, sys.argv[1:])
            runs[name].append(result)
            print(json.dumps({"side": name, "rep": rep, **result}), flush=True)
    rows = [summary(name, rs, args.prompts * args.group) for name, rs in runs.items()]
    print(
        f"\n{'':<10} {'s/step':>8} {'completions/s':>14} {'held-out accuracy [95%]':>26} (before {before[0]}/{before[1]})"
    )
    for r in rows:
        low, high = r["interval"]
        print(
            f"{r['side']:<10} {r['median_step_s']:>8.2f} {r['completions_per_s']:>14.2f} "
            f"{r['heldout_accuracy']:>10.3f} [{low:.3f}, {high:.3f}]"
        )
    print(f"selfplay / TRL completions per second: {rows[1]['completions_per_s'] / rows[0]['completions_per_s']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "before": before, "sides": rows, "runs": runs}))


if __name__ == "__main__":
    main()

"""End-to-end training runs with a tiny model: single process, two-process DeepSpeed ZeRO-2, kill and resume."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "model=tiny",
    "constrained=true",
    "game_options.compact=true",
    "evaluation.games=8",
    "progress=false",
    "max_new_tokens=4",
    "lr=0.01",
]


def run(args, out, *, launcher=None, check=True, timeout=600, base=TINY, env=None):
    cmd = launcher or [sys.executable, "-m", "selfplay.train"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run(
        [*cmd, str(ROOT / "configs/tictactoe_quick.yaml"), *base, f"out={out}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def accelerate(config):
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs/accelerate" / config),
        "-m",
        "selfplay.train",
    ]


def weights(run_dir, step):
    return load_file(Path(run_dir) / "checkpoints" / f"step_{step:06d}" / "policy" / "model.safetensors")


def test_single_process_run_trains_and_saves_plain_hf_weights(tmp_path):
    out = tmp_path / "run"
    result = run(["steps=2", "checkpoint_every=1", "keep_checkpoints=5", "games_per_step=8"], out)
    assert "evaluation after 2 steps" in result.stdout and str(out) in result.stdout
    first, second = weights(out, 1), weights(out, 2)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # the update changed the weights
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "checkpoints/step_000002/policy")
    assert torch.equal(model.model.embed_tokens.weight, second["model.embed_tokens.weight"])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["evaluation"]) == {"random", "expert"}
    assert any((out / "tensorboard").iterdir())
    assert "| 2 |" in (out / "report.md").read_text() and (out / "progress.png").exists()


def test_lora_run_saves_one_adapter_per_role_and_no_frozen_base(tmp_path):
    out = tmp_path / "run"
    lora = [
        "weights=lora",
        "games_per_step=4",
        "pool_prob=0.5",
        "scripted_prob=0.0",
        "snapshot_every=1",
        "checkpoint_every=1",
        "keep_checkpoints=5",
    ]
    run(["steps=1", *lora], out)
    step1 = out / "checkpoints/step_000001"
    policy = step1 / "policy"
    assert (policy / "player_0" / "adapter_model.safetensors").exists() or (
        policy / "adapter_model.safetensors"
    ).exists()
    assert (policy / "player_1" / "adapter_model.safetensors").exists()
    assert (out / "pool/step_000001.pt").exists()
    state = load_file(step1 / "state" / "model.safetensors")
    assert state and all("lora_" in k for k in state), [k for k in state if "lora_" not in k][:3]  # adapters only
    base = json.loads((step1 / "base.json").read_text())
    assert base["model"] == "tiny" and len(base["frozen_sha256"]) == 64
    # resuming reloads the base from its spec, checks its hash and continues from the saved adapters
    resumed = run(["steps=2", *lora], out)
    assert "resumed from" in resumed.stdout and (out / "checkpoints/step_000002/COMPLETE").exists()
    # a different base under the same adapters is refused, naming the reason
    other = run(["steps=3", *lora, "seed=7"], out, check=False)
    assert other.returncode != 0 and "frozen" in (other.stdout + other.stderr)


@pytest.mark.parametrize("launch", ["cpu_zero2.yaml", "cpu_2proc.yaml"])
def test_two_processes_keep_ranks_identical_and_match_one_process(tmp_path, launch):
    """DeepSpeed ZeRO-2 and plain DDP on two CPU processes: each rank plays other games (random openings, then
    greedy), and their update equals one process's over all the games, and so does the evaluation."""
    common = [
        "steps=2",
        "checkpoint_every=1",
        "keep_checkpoints=5",
        "temperature=0",
        "scripted_prob=0",
        "check_sync=true",
        "evaluation.every=0",
        "rollout.random_opening=4",
    ]
    two, extensions = tmp_path / "two", tmp_path / "torch_extensions"
    # the two ranks also cut their updates into micro-batches of at most 150 padded tokens (gradients synchronised
    # and the optimizer stepped once, after the last), the one process not at all
    result = run(
        [*common, "games_per_step=4", "update.micro_batch_tokens=150"],
        two,
        launcher=accelerate(launch),
        env={"TORCH_EXTENSIONS_DIR": str(extensions)},
    )
    assert not extensions.exists() or not any(extensions.rglob("*.so"))  # DeepSpeed compiled nothing
    assert (result.stdout + result.stderr).count("Setting accelerator to CPU") <= 1  # the launcher's own, no rank's
    hashes = [json.loads(line) for line in (two / "weight_hashes.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hashes] == [1, 2]
    assert all(len(h["hashes"]) == 2 and h["hashes"][0] == h["hashes"][1] for h in hashes)
    import re

    cuts = [int(n) for n in re.findall(r"update [\d.]+s \((\d+) micro-batches\)", result.stdout + result.stderr)]
    assert len(cuts) == 2 and min(cuts) > 1, cuts  # each step's update was cut, the same count on both ranks
    one = tmp_path / "one"
    run([*common, "games_per_step=8"], one)
    # the same update as one process on all 8 games, up to float rounding: the two batches share prompt prefixes
    # differently (agents/tree_forward.py) and sum in another order, and Adam's normalisation magnifies the last bits
    # of near-zero gradients; a real difference (ranks seeing other games, unaveraged gradients) moves weights by
    # about the size of a step
    step_size = max((weights(one, 2)[k] - weights(one, 1)[k]).abs().max().item() for k in weights(one, 1))
    assert step_size > 1e-3  # the update changed the weights
    for step in (1, 2):
        a, b = weights(one, step), weights(two, step)
        gap = max((a[k] - b[k]).abs().max().item() for k in a)
        print(f"step {step}: largest difference {gap:.2e}, step size {step_size:.2e}")
        assert gap < 0.05 * step_size
    # and the evaluation, split over the ranks, is the one process's to the last game (baselines draw per game)
    summaries = [json.loads((d / "summary.json").read_text())["evaluation"] for d in (one, two)]
    assert summaries[0] == summaries[1] and summaries[0]["random"]["games"] == 8


def _episode_steps(run_dir):
    db = sqlite3.connect(Path(run_dir) / "episodes.sqlite")
    return db.execute(
        "SELECT json_extract(meta, '$.step'), json_extract(meta, '$.index'), json_extract(meta, '$.eval') FROM episodes"
    ).fetchall()


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    args = [
        "steps=8",
        "checkpoint_every=4",
        "keep_checkpoints=5",
        "games_per_step=6",
        "evaluation.every=4",
        "pool_prob=0.3",
        "snapshot_every=2",
        "scripted_prob=0.3",
        "curriculum.policy=sec",
        "curriculum.option=compact",
        "curriculum.arms=[true,false]",
    ]
    straight = tmp_path / "straight"
    run(args, straight)
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfplay.train",
            str(ROOT / "configs/tictactoe_quick.yaml"),
            *TINY,
            f"out={killed}",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (killed / "checkpoints/step_000004/COMPLETE").exists() and any(s == 6 for s, _, _ in _episode_steps(killed)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints/step_000008").exists()
    resumed = run(args, killed)
    assert "resumed from" in resumed.stdout and "step 4" in resumed.stdout
    a, b = weights(straight, 8), weights(killed, 8)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    states = [json.loads((d / "checkpoints/step_000008/trainer.json").read_text()) for d in (straight, killed)]
    rollouts = [st["rollouts"] for st in states]
    assert rollouts[0]["curriculum"] == rollouts[1]["curriculum"]  # the curriculum state resumed exactly
    assert rollouts[0]["curriculum_history"] == rollouts[1]["curriculum_history"] and rollouts[0]["curriculum_history"]
    pools = [[{k: v for k, v in snap.items() if k != "path"} for snap in r["pool"]] for r in rollouts]
    assert pools[0] == pools[1] and any(snap["games"] for snap in pools[0])  # the opponent pool and its record
    for run_dir in (straight, killed):
        rows = _episode_steps(run_dir)
        rollouts = [(s, i) for s, i, e in rows if e is None]
        assert len(rollouts) == len(set(rollouts)) == 8 * 6  # none lost, none duplicated
        assert sorted(s for s, _, e in rows if e) == sorted([4] * 16 + [8] * 16)


def test_ctrl_c_stops_at_the_end_of_the_step_with_a_checkpoint_and_the_same_command_resumes(tmp_path):
    """The first SIGINT: the step finishes, a checkpoint and an evaluation are written, status 130; the second run
    of the same command resumes there."""
    out = tmp_path / "run"
    args = ["steps=200", "games_per_step=4", "evaluation.games=4", "evaluation.every=0", "checkpoint_every=1000"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfplay.train",
            str(ROOT / "configs/tictactoe_quick.yaml"),
            *TINY,
            f"out={out}",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # the first step line: the loop is running
        if line.startswith("step 1/"):
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "SIGINT: stopping at the end of this step" in stderr
    [kept] = (out / "checkpoints").iterdir()
    done = int(kept.name.rsplit("_", 1)[1])
    assert 1 <= done < 200 and f"stopped on request at step {done} of 200" in stderr
    assert f"evaluation after {done} steps" in stdout and json.loads((out / "summary.json").read_text())["step"] == done
    resumed = run([*args, f"steps={done + 1}"], out)
    assert f"resumed from {kept} at step {done}" in resumed.stdout


def test_max_new_tokens_beyond_the_models_context_is_refused_before_any_game():
    from selfplay.training.config import load_config
    from selfplay.training.distributed import make_accelerator
    from selfplay.training.learner import build_learner

    cfg = load_config(ROOT / "configs/tictactoe_quick.yaml", [*TINY, "max_new_tokens=4096"])
    with pytest.raises(
        RuntimeError,
        match="'sampling.max_new_tokens' = 4096 leaves no room for a prompt in tiny's context of 2048 positions",
    ):
        build_learner(cfg, make_accelerator(1, 1.0, "float32", find_unused=False), ("player_0", "player_1"))


def test_the_learning_rate_follows_the_schedule_in_training_steps():
    """Warm-up then linear decay, set per training step however many optimizer steps it takes (scheduler steps
    between must not move it)."""
    from selfplay.training.config import load_config
    from selfplay.training.distributed import make_accelerator
    from selfplay.training.learner import build_learner

    cfg = load_config(
        ROOT / "configs/tictactoe_quick.yaml",
        [*TINY, "steps=5", "warmup_steps=1", "lr_schedule=linear", "lr_floor=0.2", "ppo_epochs=3"],
    )
    learner = build_learner(cfg, make_accelerator(1, 1.0, "float32", find_unused=False), ("player_0", "player_1"))
    seen = []
    for step in range(5):
        learner.at_step(step)
        for _ in range(3):  # the optimizer steps of one training step
            seen.append(learner.optimizer.param_groups[0]["lr"])
            learner.scheduler.step()
    expected = [0.01, 0.01, 0.01 * (0.2 + 0.8 * 2 / 3), 0.01 * (0.2 + 0.8 / 3), 0.002]  # step 0 warm-up: 1/1
    assert seen == pytest.approx([e for e in expected for _ in range(3)])


def test_micro_batches_sized_to_a_token_budget_give_the_same_step_as_one_batch():
    """However many micro-batches a token budget cuts an update into, the optimizer steps once, on the same gradient
    (accumulated, each micro-batch's loss scaled as accelerate and DeepSpeed expect)."""
    from selfplay.training.config import load_config
    from selfplay.training.distributed import make_accelerator
    from selfplay.training.learner import build_learner
    from selfplay.training.rollout import Sample
    from selfplay.training.update import update

    rng = torch.Generator().manual_seed(0)
    samples = []
    for i in range(10):
        prompt = torch.randint(3, 200, (int(torch.randint(5, 30, (1,), generator=rng)),), generator=rng).tolist()
        completion = torch.randint(3, 200, (int(torch.randint(1, 6, (1,), generator=rng)),), generator=rng).tolist()
        samples.append(
            Sample(
                "policy",
                ("tictactoe", "player_0"),
                (f"e{i}", 0),
                prompt,
                completion,
                [-1.0] * len(completion),
                float(i % 3 - 1),
                advantage=float(i % 3 - 1),
                temperature=1.0,
            )
        )

    def step(*overrides, accumulation=1):
        cfg = load_config(ROOT / "configs/tictactoe_quick.yaml", [*TINY, "advantage=rae", *overrides])
        learner = build_learner(
            cfg, make_accelerator(accumulation, 1.0, "float32", find_unused=False), ("player_0", "player_1")
        )
        before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
        stats = update(cfg.update, learner, samples)
        steps = {int(state["step"]) for state in learner.optimizer.state_dict()["state"].values()}
        assert steps == {1}  # one optimizer step, whatever the number of micro-batches
        after = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
        return stats, after, max(float((after[n] - before[n]).abs().max()) for n in after)

    one, weights, size = step()
    assert one.micro_batches == 1 and size > 1e-3
    for overrides, accumulation in [
        (["update.micro_batch_tokens=60"], 1),
        (["update.micro_batches=2", "update.micro_batch_tokens=40"], 2),
    ]:
        cut, other, _ = step(*overrides, accumulation=accumulation)
        assert cut.micro_batches > 2
        assert cut.loss_sum == pytest.approx(one.loss_sum, rel=1e-5)
        gap = max(float((weights[n] - p).abs().max()) for n, p in other.items())
        # the same step: Adam divides by |gradient|, so float rounding of another summation order shows on
        # near-zero gradients; a wrong loss scale or a second step would move weights by about a step
        assert gap < 0.01 * size, (gap, size)


def test_a_diverged_update_stops_with_one_line_and_leaves_the_weights_unchanged():
    """A non-finite gradient (weights blown up by a huge learning rate) stops the run naming update.lr, before the
    optimizer writes nan into every weight."""
    from selfplay.training.config import load_config
    from selfplay.training.distributed import make_accelerator
    from selfplay.training.learner import build_learner
    from selfplay.training.rollout import Sample
    from selfplay.training.update import update

    cfg = load_config(ROOT / "configs/tictactoe_quick.yaml", [*TINY, "advantage=rae"])
    learner = build_learner(cfg, make_accelerator(1, 1.0, "float32", find_unused=False), ("player_0", "player_1"))
    samples = [
        Sample(
            "policy",
            ("tictactoe", "player_0"),
            (f"e{i}", 0),
            [5, 6, 7, 8],
            [9, 10],
            [-1.0, -1.0],
            1.0,
            advantage=1.0,
            temperature=1.0,
        )
        for i in range(4)
    ]
    with torch.no_grad():
        next(learner.model.parameters())[0, 0] = float("inf")  # what lr=1e30 does after one step
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    with pytest.raises(RuntimeError, match=r"gradient norm is nan.*update\.lr=0\.01.*lower update\.lr"):
        update(cfg.update, learner, samples)
    assert all(torch.equal(before[n], p) for n, p in learner.model.named_parameters())


def test_answers_cut_at_max_new_tokens_are_named_once_most_fail_to_parse():
    from selfplay.arena.records import Attempt, Episode
    from selfplay.training.metrics import cut_note

    def episode(texts):
        steps = [
            Attempt(
                i,
                "player_0",
                0,
                0,
                "learner",
                [],
                t,
                failure=None if t.endswith("]") else "PARSE_ERROR",
                completion_ids=list(range(len(t))),
            )
            for i, t in enumerate(texts)
        ]
        return Episode("tictactoe", 0, {"player_0": "learner"}, steps, meta={"learners": ["player_0"]})

    cut = episode(["I would play squ", "Let me think ab", "[5]"])
    note = cut_note([cut], max_new_tokens=15)
    assert note.startswith("note: 67% of the learner's answers were cut at sampling.max_new_tokens=15")
    assert cut_note([cut], max_new_tokens=40) is None  # short answers that fail are another problem
    assert cut_note([episode(["[1]", "[2]", "xx long enough answer"])], max_new_tokens=8) is None


def test_resume_never_starts_over_with_nothing_of_the_earlier_run_left(tmp_path):
    """run.resume=never in a directory that holds a run: its checkpoints and episodes are removed (and said so), so
    a later resume cannot pick an old checkpoint and the records hold one run only."""
    out = tmp_path / "run"
    args = ["games_per_step=4", "evaluation.games=4", "evaluation.every=0", "checkpoint_every=1", "keep_checkpoints=5"]
    run([*args, "steps=3"], out)
    again = run([*args, "steps=1", "run.resume=never"], out)
    assert f"starting over in {out} (run.resume=never): removed" in again.stdout and "and 3 checkpoints" in again.stdout
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_000001"]
    steps = [s for s, _, e in _episode_steps(out) if e is None]
    assert len(steps) == 4 and set(steps) == {1}  # the new run's one step of four games, nothing older

"""Every bad input: exit status 2 and one line on stderr naming what is wrong, before any model loads.

Each case runs the command in-process with model loading made to fail loudly, so a case that got as far as loading a
model would not exit 2 with the expected words. (Wall time per case is well under 2 s; see `pytest --durations`.)
"""

import signal

import pytest

from selfplay.cli import main

TINY = "configs/tictactoe_tiny.yaml"
YAML = {  # file name -> content
    "unclosed.yaml": "game: tictactoe\nevaluation:\n  opponents: [random, expert\n",
    "duplicate.yaml": "game: tictactoe\ngame: kuhn_poker\n",
    "tabs.yaml": "game: tictactoe\nupdate:\n\tlr: 1e-3\n",
    "empty.yaml": "",
    "list.yaml": "- game: tictactoe\n",
    "scalar.yaml": "just words\n",
    "unknown_section.yaml": "game: tictactoe\nupdates:\n  lr: 1e-3\n",
}

TRAIN = [  # (arguments after `train`, words the error must contain)
    (["unclosed.yaml"], "unclosed.yaml"),
    (["unclosed.yaml"], "line"),
    (["duplicate.yaml"], "duplicate"),
    (["tabs.yaml"], "tabs.yaml"),
    (["empty.yaml"], "empty"),
    (["list.yaml"], "list.yaml"),
    (["scalar.yaml"], "scalar.yaml"),
    (["unknown_section.yaml"], "updates"),
    (["missing.yaml"], "missing.yaml"),
    ([TINY, "update.lrr=1"], "update.lrr"),
    ([TINY, "nonsense"], "nonsense"),
    ([TINY, "update.lr=-1"], "update.lr"),
    ([TINY, "update.lr=nan"], "update.lr"),
    ([TINY, "update.lr=abc"], "update.lr"),
    ([TINY, "update.lr=0"], "update.lr"),
    ([TINY, "update.clip=-0.2"], "update.clip"),
    ([TINY, "update.baseline_decay=1.5"], "baseline_decay"),
    ([TINY, "update.ppo_epochs=0"], "ppo_epochs"),
    ([TINY, "update.micro_batches=0"], "micro_batches"),
    ([TINY, "update.micro_batch_tokens=-5"], "micro_batch_tokens"),
    ([TINY, "sampling.backend=sglang"], "sampling.backend"),
    ([TINY, "sampling.vllm_memory=0"], "sampling.vllm_memory"),
    ([TINY, "update.max_grad_norm=-1"], "max_grad_norm"),
    ([TINY, "update.kl_coef=-1"], "kl_coef"),
    ([TINY, "update.entropy_coef=-0.1"], "entropy_coef"),
    ([TINY, "update.warmup_steps=-2"], "warmup_steps"),
    ([TINY, "update.advantage=magic"], "advantage"),
    ([TINY, "model=wizard"], "wizard"),
    ([TINY, "model=hf:/no/such/dir"], "/no/such/dir"),
    ([TINY, "weights=split"], "weights"),
    ([TINY, "dtype=float16x"], "float16x"),
    ([TINY, "weights=lora", "lora_r=0"], "lora_r"),
    ([TINY, "weights=lora", "lora_alpha=-1"], "lora_alpha"),
    ([TINY, "game=chess"], "chess"),
    ([TINY, "game_options={size: 4}"], "size"),
    ([TINY, "learner_roles=[nobody]"], "nobody"),
    ([TINY, "sampling.top_p=1.5"], "top_p"),
    ([TINY, "sampling.top_p=0"], "top_p"),
    ([TINY, "sampling.temperature=-1"], "temperature"),
    ([TINY, "sampling.max_new_tokens=0"], "max_new_tokens"),
    ([TINY, "sampling.observer=eyes"], "observer"),
    ([TINY, "rollout.games_per_step=0"], "games_per_step"),
    ([TINY, "rollout.concurrency=0"], "concurrency"),
    ([TINY, "rollout.random_opening=-1"], "random_opening"),
    ([TINY, "opponents.pool_prob=1.5"], "pool_prob"),
    ([TINY, "opponents.scripted_prob=-0.1"], "scripted_prob"),
    ([TINY, "opponents.pool_prob=0.6", "opponents.scripted_prob=0.6"], "pool_prob"),
    ([TINY, "opponents.scripted_prob=0.5", "opponents.scripted_opponent=wizard"], "wizard"),
    ([TINY, "opponents.snapshot_every=0"], "snapshot_every"),
    ([TINY, "opponents.pool_size=0"], "pool_size"),
    ([TINY, "opponents.seats={nobody: expert}"], "nobody"),
    ([TINY, "evaluation.opponents=[wizard]"], "wizard"),
    ([TINY, "evaluation.games=-4"], "evaluation.games"),
    ([TINY, "evaluation.every=-1"], "evaluation.every"),
    ([TINY, "evaluation.temperature=-1"], "temperature"),
    ([TINY, "curriculum.policy=sec", "curriculum.option=size", "curriculum.arms=[1, 2]"], "size"),
    ([TINY, "curriculum.policy=magic"], "magic"),
    (
        [
            TINY,
            "curriculum.policy=sec",
            "curriculum.option=opponent",
            "curriculum.arms=[mirror, random]",
            "curriculum.params={bogus: 1}",
        ],
        "bogus",
    ),
    ([TINY, "curriculum.policy=sec", "curriculum.option=opponent", "curriculum.arms=[]"], "arms"),
    ([TINY, "curriculum.filter_low=0.9", "curriculum.filter_high=0.1"], "filter_low"),
    ([TINY, "curriculum.filter_high=1.5"], "filter_high"),
    ([TINY, "run.steps=0"], "run.steps"),
    ([TINY, "run.steps=-5"], "run.steps"),
    ([TINY, "run.checkpoint_every=0"], "checkpoint_every"),
    ([TINY, "run.keep_checkpoints=0"], "keep_checkpoints"),
    ([TINY, "run.max_minutes=-1"], "max_minutes"),
    ([TINY, "run.resume=/no/such/checkpoint"], "run.resume"),
    ([TINY, "run.out=/dev/null/run"], "run.out"),
    ([TINY, "run.trackers=[carrier_pigeon]"], "carrier_pigeon"),
    ([TINY, "model=random"], "'random' agents have no weights to train"),
    ([TINY, "model=openai:gpt@http://127.0.0.1:9/v1"], "'openai' agents have no weights to train"),
]

PLAY = [
    (["play", "chess", "--agents", "random", "random"], "chess"),
    (["play", "tictactoe", "--agents", "random", "wizard"], "wizard"),
    (["play", "tictactoe", "--agents", "random"], "agent"),
    (["play", "tictactoe", "--agents", "random", "random", "--games", "0"], "--games 0"),
    (["play", "tictactoe", "--agents", "random", "random", "--concurrency", "0"], "--concurrency 0"),
    (["play", "tictactoe", "--agents", "random", "random", "--option", "size=4"], "size"),
    (["play", "tictactoe", "--agents", "random", "random", "--option", "novalue"], "novalue"),
    (["play", "tictactoe", "--agents", "random", "--seats", "dealer=expert"], "dealer"),
    (["play", "tictactoe", "--agents", "random", "random", "--out", "/dev/null/run"], "/dev/null/run"),
    (["play", "tictactoe", "--agents", "random", "tiny:temperature=-1"], "temperature"),
    (["play", "tictactoe", "--agents", "random", "tiny:bogus=1"], "bogus"),
    (["play", "tictactoe", "--agents", "random", "tiny:backend=vllm,vllm_memory=abc"], "vllm_memory"),
    (["play", "tictactoe", "--agents", "random", "tiny:backend=vllm,constrained=true"], "native-only"),
]

TOURNAMENT = [
    (["tournament", "tictactoe", "--agents", "random", "expert", "--bootstrap", "0"], "--bootstrap"),
    (["tournament", "tictactoe", "--agents", "random", "expert", "--anchor", "nobody"], "nobody"),
    (["tournament", "tictactoe", "--agents", "random", "expert", "--concurrency", "0"], "--concurrency"),
    (["tournament", "tictactoe", "--agents", "random", "expert", "--games", "0"], "--games"),
    (["tournament", "chess", "--agents", "random", "expert"], "chess"),
    (["tournament", "tictactoe", "--agents", "random", "wizard"], "wizard"),
    (["tournament", "tictactoe", "--agents", "random"], "two"),
    (["tournament", "tictactoe", "--agents", "random", "expert", "--out", "/dev/null/t"], "/dev/null/t"),
]

CHECK = [
    (["check-game", "tictactoe", "--seeds", "0"], "--seeds 0"),
    (["check-game", "tictactoe", "--seeds", "-1"], "--seeds -1"),
    (["check-game", "kuhn_poker", "--option", "bogus=1"], "bogus"),
    (["check-game", "chess"], "chess"),
    (["check-game", "nowhere/game.py:G"], "does not exist"),
    (["check-game", "tests.fakes:Nope"], "Nope"),
]

SHOW = [
    (["show", "/no/such/run"], "/no/such/run"),
    (["show", "RUN", "--episode", "zzzz"], "zzzz"),
    (["show", "RUN", "--limit", "0"], "--limit"),
    (["show", "NOTDB"], "NOTDB"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """YAML files, a run with one episode, a non-database file; model loading fails loudly."""
    for name, text in YAML.items():
        (tmp_path / name).write_text(text)
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    (tmp_path / "configs").symlink_to(repo / "configs")
    (tmp_path / "tests").symlink_to(repo / "tests")
    assert (
        main(["play", "tictactoe", "--agents", "random", "random", "--games", "2", "--out", str(tmp_path / "run")]) == 0
    )
    (tmp_path / "notdb.sqlite").write_text("not a database")
    monkeypatch.chdir(tmp_path)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    import selfplay.agents.llm  # noqa: F401  (imported first, or it would import the patched name and keep it)

    monkeypatch.setattr("selfplay.agents.llm.load_model", no_model)
    monkeypatch.setattr("selfplay.agents.models.load_model", no_model)
    return tmp_path


def _hang(signum, frame):
    raise TimeoutError("the command hung")


def _case_id(case) -> str:
    return " ".join(case[0])[:60]


CASES = [(["train", *a], w) for a, w in TRAIN] + PLAY + TOURNAMENT + CHECK + SHOW


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize("args, words", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_exits_2_with_one_line(args, words, workdir, capsys):
    args = [{"RUN": str(workdir / "run"), "NOTDB": str(workdir / "notdb.sqlite")}.get(a, a) for a in args]
    words = {"NOTDB": "notdb.sqlite"}.get(words, words)
    capsys.readouterr()
    signal.signal(signal.SIGALRM, _hang)
    signal.alarm(60)  # a hang is a failure, not a stuck suite
    try:
        code = main(args)
    finally:
        signal.alarm(0)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code}; stderr: {err[-500:]}"
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("selfplay ") and "Traceback" not in err
    assert words in lines[0], lines[0]

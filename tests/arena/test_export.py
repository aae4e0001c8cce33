"""Runs exported as datasets (one row per attempt) and loaded back with ``datasets.load_dataset``."""

import json

import pytest

from selfplay.agents.specs import build_agents
from selfplay.arena.export import export
from selfplay.arena.matches import paired_matches
from selfplay.arena.play import play
from selfplay.arena.records import Attempt, Episode, open_store
from selfplay.cli import main as cli
from selfplay.games.tictactoe import TicTacToe

datasets = pytest.importorskip("datasets")  # in requirements.txt, so CI runs these


@pytest.fixture()
def run(tmp_path):
    store = open_store(tmp_path)
    agents = build_agents(["expert", "random"])
    play(TicTacToe, paired_matches(TicTacToe.roles, list(agents), 6), agents, store=store, progress=False)
    trained = Episode(
        "tictactoe",
        99,
        {"player_0": "learner", "player_1": "random"},
        rewards={"player_0": -1.0, "player_1": 1.0},
        status="forfeit",
        num_turns=1,
        meta={"step": 3, "learners": ["player_0"]},
        steps=[
            Attempt(
                0,
                "player_0",
                0,
                0,
                "learner",
                [{"role": "user", "content": "X1.2.3."}],
                "zz",
                failure="PARSE_ERROR",
                error="expected [n]",
                fallback="forfeit",
                reward=-1.0,
            )
        ],
    )
    store.add(trained)
    store.close()
    return tmp_path


@pytest.mark.parametrize("fmt, loader", [("jsonl", "json"), ("parquet", "parquet")])
def test_an_exported_run_loads_with_datasets(run, fmt, loader):
    path, count = export(run, fmt)
    store = open_store(run)
    episodes = list(store.episodes())
    assert count == sum(len(ep.steps) for ep in episodes)
    data = datasets.load_dataset(loader, data_files=str(path))["train"]
    assert data.num_rows == count
    row = next(r for r in data if r["agent"] == "learner")
    assert (row["split"], row["step"], row["learner"], row["failure"], row["action"]) == (
        "train",
        3,
        True,
        "PARSE_ERROR",
        None,
    )
    assert row["prompt"] == [{"role": "user", "content": "X1.2.3."}] and row["reward"] == -1.0
    played = [r for r in data if r["split"] == "play"]
    first = episodes[0]
    mine = [r for r in played if r["episode"] == first.id]
    assert [r["completion"] for r in mine] == [s.text for s in first.steps]
    assert all(r["episode_reward"] == first.rewards[r["role"]] for r in mine)
    assert json.loads(mine[0]["options"]) == first.options


def test_the_command_and_its_errors(run, tmp_path, capsys):
    assert cli(["export", str(run), "--out", str(tmp_path / "x" / "rows.jsonl")]) == 0
    assert "rows written to" in capsys.readouterr().out and (tmp_path / "x" / "rows.jsonl").exists()
    assert cli(["export", str(run), "--format", "csv"]) == 2
    assert "expected one of jsonl, parquet" in capsys.readouterr().err
    assert cli(["export", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_training_run_exports_each_trained_sample_with_its_advantage(tmp_path):
    """Step 1 of RAE starts from zero baselines, so every trained sample's advantage is its reward (by hand)."""
    from tests.training.test_train import run as train

    out = tmp_path / "run"
    train(["steps=1", "games_per_step=6", "evaluation.every=0", "evaluation.opponents=[random]"], out)
    path, _ = export(out, "jsonl")
    data = datasets.load_dataset("json", data_files=str(path))["train"]
    trained = [r for r in data if r["split"] == "train" and r["advantage"] is not None]
    assert trained and all(r["learner"] for r in trained)
    assert all(r["advantage"] == pytest.approx(r["reward"]) for r in trained)
    assert all(r["advantage"] is None for r in data if r["split"] == "eval")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_tokens_export_the_ids_and_logprobs_the_model_sampled(tmp_path, fmt):
    """--tokens: each model sample's prompt and completion ids and its sampling log-probabilities, equal to a
    teacher-forced pass of the same model over those ids; scripted agents' rows have none; without --tokens, no
    such columns."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    import torch

    from selfplay.agents.models import tiny_model
    from selfplay.agents.scoring import token_logprobs

    assert (
        cli(["play", "kuhn_poker", "tiny:max_new_tokens=4", "random", "--games", "4", "--out", str(tmp_path / "run")])
        == 0
    )
    path, _ = export(tmp_path / "run", fmt, tokens=True)
    data = list(datasets.load_dataset("json" if fmt == "jsonl" else "parquet", data_files=str(path))["train"])
    model_rows = [r for r in data if r["agent"].startswith("tiny")]
    assert model_rows and all(r["prompt_ids"] is None and r["logprobs"] is None for r in data if r["agent"] == "random")
    model, tok = tiny_model(seed=0)
    ref = token_logprobs(
        model,
        [r["prompt_ids"] for r in model_rows],
        [r["completion_ids"] for r in model_rows],
        tok.pad_token_id,
        temperature=1.0,
    )
    for r, x in zip(model_rows, ref):
        assert tok.decode(r["completion_ids"], skip_special_tokens=True) == r["completion"]
        assert torch.allclose(torch.tensor(r["logprobs"]), x[: len(r["logprobs"])].float(), atol=1e-4)
    plain, _ = export(tmp_path / "run", "jsonl", tmp_path / "plain.jsonl")
    assert "prompt_ids" not in json.loads(plain.read_text().splitlines()[0])

"""The learner evaluated with itself (mirror) by default in a cooperative game; records and exports hold what the
model read (its compact line) beside the game's chat; evaluation rows name the opponent they faced."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.arena.export import rows
from selfplay.arena.records import open_store
from selfplay.training.binding import bind_game
from selfplay.training.config import load_config


def run(args, out):
    """A training run from defaults and ``args`` alone (no recipe file)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "selfplay.train", *args, f"out={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


ROOT = Path(__file__).resolve().parents[2]
SIGNALLING = [
    "game=signalling",
    "model=tiny",
    "constrained=true",
    "observer=compact",
    "evaluation.games=8",
    "progress=false",
    "max_new_tokens=4",
    "games_per_step=8",
    "steps=1",
    "checkpoint_every=1",
]


def test_cooperative_games_are_evaluated_in_self_play_first_by_default():
    config = load_config(None, ["game=signalling"])
    bind_game(config)
    assert config.evaluation.opponents == ["mirror", "random", "expert"]
    config = load_config(None, ["game=kuhn_poker"])
    bind_game(config)
    assert "mirror" not in config.evaluation.opponents  # available to every game, on by default for cooperative ones
    config = load_config(None, ["game=kuhn_poker", "evaluation.opponents=[mirror,random]"])
    assert bind_game(config) and config.evaluation.opponents == ["mirror", "random"]
    config = load_config(None, ["game=signalling", "evaluation.opponents=[self,expert]"])  # another name for it
    assert bind_game(config) and config.evaluation.opponents == ["mirror", "expert"]


def test_a_bad_evaluation_opponent_names_its_key():
    config = load_config(None, ["game=kuhn_poker", "evaluation.opponents=5"])
    with pytest.raises(ValueError, match="config key 'evaluation.opponents': unknown agent kind '5'"):
        bind_game(config)
    with pytest.raises(ValueError, match="'evaluation.opponents': unknown agent kind 'pool'"):
        bind_game(load_config(None, ["game=kuhn_poker", "evaluation.opponents=pool"]))


def test_compact_observer_on_a_game_without_one_is_warned_once_by_name():
    import warnings

    from selfplay.agents import sampling

    sampling._WARNED_COMPACT.discard("negotiation")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            bind_game(load_config(None, ["game=negotiation", "observer=compact"]))
        bind_game(load_config(None, ["game=debate", "observer=compact"]))  # debate has a compact observation
    texts = [str(w.message) for w in caught]
    assert len(texts) == 1 and "observer=compact, but game 'negotiation' defines no compact_observation" in texts[0]


def test_mirror_evaluation_records_and_exports(tmp_path):
    out = tmp_path / "run"
    result = run(SIGNALLING, out)
    assert "vs mirror" in result.stdout and "success/vs_mirror" not in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    mirror = summary["history"][-1]["evaluation"]["mirror"]
    assert summary["history"][0]["step"] == 0 and "mirror" in summary["history"][0]["evaluation"]  # before, too
    assert mirror["games"] == 8 and set(mirror["reward"]) == {"sender", "receiver"}
    assert mirror["reward"]["sender"] == mirror["reward"]["receiver"]  # one team reward
    store = open_store(out)
    evaluated = [ep for ep in store.episodes() if ep.meta.get("eval") == "mirror"]
    assert len(evaluated) == 16 and all(
        set(ep.learner_roles()) == {"sender", "receiver"} for ep in evaluated
    )  # before, after
    assert all("baseline" not in ep.agents.values() for ep in evaluated)
    # what the model read: the compact line, recorded with the step; the game's chat kept beside it
    step = next(s for ep in evaluated for s in ep.steps if s.role == "receiver")
    assert step.read is not None and step.read[-1]["content"].startswith("R ") and step.messages != step.read
    exported = [r for r in rows(out) if r["split"] == "eval"]
    assert {r["opponent"] for r in exported} == {"mirror", "random", "expert"}
    read = [r for r in exported if r["role"] == "receiver" and r["prompt"] != r["game_messages"]]
    assert read and all(r["learner"] for r in read)  # only the model's rows have a view of their own
    assert read[0]["prompt"][-1]["content"].startswith("R ")
    assert read[0]["game_messages"][-1]["content"].startswith("You are the receiver")


def test_show_names_the_evaluation_opponent_and_what_the_model_read(tmp_path):
    out = tmp_path / "run"
    run(SIGNALLING, out)
    listed = subprocess.run(
        [sys.executable, "-m", "selfplay.cli", "show", str(out), "--limit", "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert "(evaluation vs mirror)" in listed and "(evaluation vs expert)" in listed
    episode = next(ep for ep in open_store(out).episodes() if ep.meta.get("eval") == "random")
    shown = subprocess.run(
        [sys.executable, "-m", "selfplay.cli", "show", str(out), "--episode", episode.id],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert "(evaluation vs random)" in shown and "  reads: " in shown

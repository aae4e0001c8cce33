"""Training beyond two symmetric seats: which roles learn, fixed agents in the others, baselines the game can
supply, and one tiny-model step on a three-player, a simultaneous-move and a cooperative game."""

import json

import pytest

from selfplay.arena.records import open_store
from selfplay.training.binding import bind_game
from selfplay.training.config import Opponents, load_config
from selfplay.training.names import seat_name
from selfplay.training.rollout import plan_matches
from tests.training.test_train import TINY, run

BASE = [o for o in TINY if not o.startswith("game_options")]


def config(**keys):
    return load_config(None, [f"{k}={v}" for k, v in keys.items()])


def test_defaults_follow_the_game():
    cfg = config(game="kuhn_poker_3")
    bind_game(cfg)
    assert cfg.learner_roles == ["player_0", "player_1", "player_2"]
    assert cfg.evaluation.opponents == ["random", "expert"]
    cfg = config(game="tests.fakes:GuessGame")  # no expert: the default baselines leave it out
    bind_game(cfg)
    assert cfg.evaluation.opponents == ["random"]
    cfg = config(game="tests.fakes:FreeGuess")  # free text without random_action: no random baseline either
    bind_game(cfg)
    assert cfg.evaluation.opponents == []


@pytest.mark.parametrize(
    "keys, words",
    [
        ({"game": "tests.fakes:GuessGame", "eval_opponents": "[random,expert]"}, "ships no expert agent"),
        (
            {"game": "tests.fakes:GuessGame", "scripted_prob": 0.5, "scripted_opponent": "expert"},
            "'opponents.scripted_opponent'",
        ),
        (
            {"game": "tests.fakes:FreeGuess", "eval_opponents": "[random]"},
            "names 'random', but game 'free_guess' lists no",
        ),
        ({"game": "tests.fakes:FreeGuess", "scripted_prob": 0.5}, "'opponents.scripted_opponent' names 'random'"),
        ({"game": "kuhn_poker_3", "learner_roles": "[dealer]"}, "'learner_roles': ['dealer'] not role(s)"),
        ({"game": "kuhn_poker_3", "opponents.seats": "{judge: expert}"}, "'opponents.seats': ['judge']"),
        ({"game": "kuhn_poker_3", "learner_roles": "[player_2]", "opponents.seats": "{player_2: expert}"}, "none held"),
    ],
)
def test_bad_seat_keys_are_refused_before_any_model_loads(keys, words):
    with pytest.raises(ValueError) as err:
        bind_game(config(**keys))
    assert words in str(err.value)


def test_evaluation_games_zero_is_refused():
    with pytest.raises(ValueError, match="evaluation.games"):
        config(**{"evaluation.games": 0})


def test_plan_matches_trains_only_the_learner_roles_and_keeps_fixed_seats():
    roles = ("player_0", "player_1", "player_2")
    mirror = plan_matches(
        roles, lambda r: "policy", step=0, seed=0, games=range(12), opponents=Opponents(seats={"player_2": "expert"}),
        pool_ready=False, learner_roles=["player_0", "player_1"],
    )  # fmt: skip
    assert all(m.agents["player_2"] == seat_name("player_2") for m in mirror)
    assert all(m.meta["learners"] == ["player_0", "player_1"] for m in mirror)
    scripted = plan_matches(
        roles, lambda r: "policy", step=0, seed=0, games=range(12), opponents=Opponents(scripted_prob=1.0),
        pool_ready=False, learner_roles=["player_1"],
    )  # fmt: skip
    assert all(m.meta["learners"] == ["player_1"] and m.agents["player_1"] == "learner" for m in scripted)
    assert all(m.agents["player_0"] == m.agents["player_2"] == "scripted" for m in scripted)


@pytest.mark.parametrize(
    "game, extra",
    [
        ("kuhn_poker_3", ["learner_roles=[player_0,player_1]", "opponents.seats={player_2: expert}"]),
        ("goofspiel", []),
        ("signalling", []),
        ("negotiation", ["sampling.constrained=false", "max_new_tokens=12"]),
        (
            "debate",
            [
                "sampling.constrained=false",
                "max_new_tokens=12",
                "learner_roles=[debater_a,debater_b]",
                "opponents.seats={judge: expert}",
            ],
        ),
        ("openspiel:kuhn_poker", []),  # through the adapter, with its CFR+ expert among the default baselines
        ("pettingzoo:classic.tictactoe_v3", ["evaluation.opponents=[random]"]),
    ],
)
def test_one_tiny_step_on_each_new_kind_of_game(tmp_path, game, extra):
    out = tmp_path / game
    run(
        [f"game={game}", "steps=1", "games_per_step=6", "evaluation.games=6", "sampling.observer=compact", *extra],
        out,
        base=BASE,
    )
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["history"][-1]
    if game.startswith(("openspiel:", "pettingzoo:")):  # chips for Kuhn; TicTacToe's results are win/lose
        baselines = ["random", "expert"] if game == "openspiel:kuhn_poker" else ["random"]
        assert list(entry["evaluation"]) == baselines and entry["rates"] == ("win" if "tictactoe" in game else "reward")
        assert ("exact" in entry) == (game == "openspiel:kuhn_poker")  # enumerated with its chance nodes
    store = open_store(out)
    train = [ep for ep in store.episodes() if "eval" not in ep.meta]
    assert len(train) == 6 and all(ep.status in ("done", "forfeit") for ep in train)
    if game == "kuhn_poker_3":
        assert all(ep.agents["player_2"] == "seat/player_2" for ep in train)
        assert all(s.role != "player_2" for ep in train for s in ep.steps if s.agent == "learner")
        assert entry["rates"] == "reward"
        assert set(entry["evaluation"]["random"]["reward"]) == {"player_0", "player_1"}
    if game == "goofspiel":  # simultaneous turns: both bids of a round are recorded under the same turn
        turns = [sorted(s.role for s in ep.steps if s.turn == 0 and s.attempt == 0) for ep in train]
        assert all(t == ["player_0", "player_1"] for t in turns)
        assert entry["rates"] == "win"
    if game == "debate":  # the judge seat is the fixed expert; only debaters' samples train
        assert all(ep.agents["judge"] == "seat/judge" for ep in train)
        assert set(entry["evaluation"]["random"]["reward"]) <= {"debater_a", "debater_b"}
    if game == "signalling":  # cooperative: team success, and it agrees with the recorded evaluation games
        assert entry["rates"] == "success"
        evals = [ep for ep in store.episodes(with_steps=False) if ep.meta.get("eval") == "random"]
        success = sum(ep.rewards["sender"] == 1.0 for ep in evals) / len(evals)
        assert entry["evaluation"]["random"]["success"] == pytest.approx(success)


def test_a_cooperative_learner_that_never_answers_validly_is_reported_as_failing(tmp_path):
    """Two tokens cannot spell '[red]': every learner answer is invalid, the team forfeits, and the evaluation says
    so (team success 0, not a 100% 'win or draw')."""
    out = tmp_path / "coop"
    run(
        [
            "game=signalling",
            "steps=1",
            "games_per_step=4",
            "evaluation.games=8",
            "sampling.constrained=false",
            "max_new_tokens=2",
        ],
        out,
        base=BASE,
    )
    entry = json.loads((out / "summary.json").read_text())["history"][-1]
    for opponent in ("random", "expert"):
        result = entry["evaluation"][opponent]
        assert result["invalid_rate"] == 1.0 and result["success"] == 0.0 and "win_or_draw" not in result
        assert all(set(seat) == {"games", "success"} for seat in result["seats"].values())
        assert result["mean_reward"] == 0.0
    assert "winrate/vs_random" not in (out / "report.md").read_text()


def test_a_learner_without_an_opponent_seat_is_evaluated_once_not_per_baseline(tmp_path):
    """A one-role quiz: "vs random" and "vs expert" would be the same games twice under two names."""
    out = tmp_path / "quiz"
    run(
        [
            "game=arithmetic",
            "game_options={choices: 4}",
            "steps=1",
            "games_per_step=4",
            "evaluation.games=6",
            "evaluation.opponents=[random,expert]",
        ],
        out,
        base=BASE,
    )
    entry = json.loads((out / "summary.json").read_text())["history"][-1]
    assert list(entry["evaluation"]) == ["none"] and entry["evaluation"]["none"]["games"] == 6
    evals = [ep for ep in open_store(out).episodes(with_steps=False) if "eval" in ep.meta]
    assert len(evals) == 6 and {ep.meta["eval"] for ep in evals} == {"none"}


BROKEN = """
from selfplay.games.kuhn_poker import KuhnPoker


class Broken(KuhnPoker):
    name = "broken"

    def info(self):
        raise ValueError("info went wrong")
"""


def test_training_stops_loudly_when_every_game_errors(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    result = run(
        [f"game={path}:Broken", "steps=2", "games_per_step=4", "evaluation.opponents=[random]"],
        tmp_path / "run",
        base=BASE,
        check=False,
    )
    assert result.returncode == 1
    assert "every game of step 1 ended in an error" in result.stderr and "ValueError: info went wrong" in result.stderr


def test_trackers_are_chosen_in_the_config(tmp_path):
    """TensorBoard by default (RUN/tensorboard), none with [], an unknown or missing one refused up front."""
    with pytest.raises(ValueError, match="'comet' is not a tracker"):
        config(**{"run.trackers": "[comet]"})
    out = tmp_path / "quiet"
    run(["game=kuhn_poker", "steps=1", "games_per_step=4", "evaluation.games=4", "run.trackers=[]"], out, base=BASE)
    assert (out / "summary.json").exists() and not (out / "tensorboard").exists()


def test_weights_and_biases_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")  # optional: pip install wandb
    out = tmp_path / "wb"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run(
        [
            "game=kuhn_poker",
            "steps=2",
            "games_per_step=4",
            "evaluation.games=4",
            "evaluation.every=1",
            "run.trackers=[tensorboard,wandb]",
        ],
        out,
        base=BASE,
    )
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")) and any((out / "tensorboard").iterdir())


def test_the_random_baseline_is_probed_with_the_options_that_will_be_played():
    """A game that lists legal actions only under an option: random is refused without it, accepted with it."""
    with pytest.raises(ValueError, match="names 'random'"):
        bind_game(config(game="tests.fakes:OptionalChoices", **{"evaluation.opponents": "[random]"}))
    cfg = config(
        game="tests.fakes:OptionalChoices", **{"evaluation.opponents": "[random]"}, game_options="{choices: true}"
    )
    assert bind_game(cfg) and cfg.evaluation.opponents == ["random"]


def test_curriculum_arms_are_typed_like_game_options():
    cfg = config(
        game="kuhn_poker",
        **{"curriculum.policy": "uniform", "curriculum.option": "alpha", "curriculum.arms": "[0, 1/6, 1/3]"},
    )
    bind_game(cfg)
    assert cfg.curriculum.arms == pytest.approx([0, 1 / 6, 1 / 3])
    with pytest.raises(ValueError, match="option alpha='x': expected a float"):
        bind_game(
            config(
                game="kuhn_poker",
                **{"curriculum.policy": "uniform", "curriculum.option": "alpha", "curriculum.arms": "[0, x]"},
            )
        )

"""Self-play where it is the measure: a tournament plays and reports the diagonal for cooperative and general-sum
games and ranks a cooperative team by its self-play value, checked on a game whose values are known by hand."""

import json
from pathlib import Path

from selfplay.arena.records import open_store
from selfplay.arena.tournament import main

ROOT = Path(__file__).resolve().parents[2]


def test_signalling_ranks_by_self_play_with_hand_derived_values(tmp_path):
    # Signalling with K=3 colours: the expert pair shares the convention (word i for colour i) and always succeeds
    # (self-play value 1). With a random partner, or random with itself, the receiver names the target with
    # probability 1/3 whoever is the expert: cross-play alone ties the expert with random.
    out = tmp_path / "signalling"
    assert (
        main(["signalling", "--agents", "random", "expert", "--games", "120", "--out", str(out), "--bootstrap", "10"])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["agent"]: r for r in summary["ratings"]}
    assert summary["rating"] == "team reward in self-play" and summary["ratings"][0]["agent"] == "expert"
    assert rows["expert"]["self_play"]["mean"] == 1.0 and rows["expert"]["self_play"]["games"] == 120
    for name in ("random", "expert"):
        low, high = rows[name]["cross_play"]["ci"]
        assert low <= 1 / 3 <= high, (name, rows[name]["cross_play"])
    low, high = rows["random"]["self_play"]["ci"]
    assert low <= 1 / 3 <= high and high < 0.5
    assert summary["pairs"]["expert|expert"] == {"score": 120.0, "games": 120}  # the diagonal
    assert "ranked by each agent's team reward in self-play" in summary["ranking"]
    report = (out / "report.md").read_text()
    assert "| team reward in self-play |" in report and "with others" in report and "| expert | 1.00 (120) |" in report
    assert "the diagonal is each agent with itself" in report
    episodes = list(open_store(out).episodes(with_steps=False))
    assert sum(bool(ep.meta.get("selfplay")) for ep in episodes) == 240  # one self-play table per participant


def test_without_self_play_the_report_says_the_ranking_is_cross_play_only(tmp_path):
    out = tmp_path / "cross"
    assert (
        main(
            [
                "signalling",
                "--agents",
                "random",
                "expert",
                "--games",
                "40",
                "--out",
                str(out),
                "--bootstrap",
                "10",
                "--self-play",
                "no",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rating"] == "mean team reward" and "cross-play only" in summary["ranking"]
    assert "expert|expert" not in summary["pairs"]


def test_general_sum_games_show_self_play_beside_the_cross_play_ranking(tmp_path, capsys):
    out = tmp_path / "negotiation"
    assert (
        main(["negotiation", "--agents", "random", "expert", "--games", "20", "--out", str(out), "--bootstrap", "10"])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rating"] == "Elo" and "the self-play column" in summary["ranking"]
    assert all(r["self_play"]["games"] == 20 for r in summary["ratings"])
    assert "expert|expert" in summary["pair_rewards"] and "self-play [95%]" in capsys.readouterr().out
    assert "self-play [95%] (games)" in (out / "report.md").read_text()


def test_zero_sum_games_skip_self_play_unless_asked(tmp_path):
    out = tmp_path / "ttt"
    assert (
        main(["tictactoe", "--agents", "random", "expert", "--games", "4", "--out", str(out), "--bootstrap", "10"]) == 0
    )
    assert "--self-play yes adds it" in json.loads((out / "summary.json").read_text())["ranking"]
    assert (
        main(
            [
                "tictactoe",
                "--agents",
                "random",
                "expert",
                "--games",
                "4",
                "--out",
                str(out),
                "--bootstrap",
                "10",
                "--self-play",
                "yes",
            ]
        )
        == 0
    )
    assert all(r["self_play"] for r in json.loads((out / "summary.json").read_text())["ratings"])


def test_the_example_cooperative_game_ranks_its_expert_first(tmp_path):
    out = tmp_path / "hints"
    assert (
        main(
            [
                str(ROOT / "docs/examples/hints.py"),
                "--agents",
                "random",
                "expert",
                "--games",
                "60",
                "--out",
                str(out),
                "--bootstrap",
                "10",
            ]
        )
        == 0
    )
    rows = {r["agent"]: r for r in json.loads((out / "summary.json").read_text())["ratings"]}
    assert rows["expert"]["self_play"]["ci"][0] > rows["random"]["self_play"]["ci"][1]  # clearly better with itself
    assert rows["expert"]["rank_ub"] == 1


def test_games_round_up_to_the_seatings_with_a_note(tmp_path, capsys):
    out = tmp_path / "three"
    assert (
        main(
            [
                "kuhn_poker_3",
                "--agents",
                "random",
                "expert",
                "e2=expert",
                "--games",
                "20",
                "--out",
                str(out),
                "--bootstrap",
                "5",
            ]
        )
        == 0
    )
    assert "playing 21 games per table, not 20: a multiple of the 3 seatings" in capsys.readouterr().err
    assert open_store(out).count() == 21


def test_checkpoints_trained_on_other_options_are_noted(tmp_path):
    from selfplay.arena.participants import trained_elsewhere

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"game": "kuhn_poker_3", "game_options": {"players": 2}}))
    note = trained_elsewhere(run, "kuhn_poker_3", {"players": 3})
    assert note and "trained on kuhn_poker_3 with options {'players': 2}" in note and "{'players': 3}" in note
    assert trained_elsewhere(run, "kuhn_poker_3", {"players": 2}) is None
    (run / "config.json").write_text(json.dumps({"game": str(ROOT / "docs/examples/hints.py"), "game_options": {}}))
    assert trained_elsewhere(run, "docs/examples/hints.py", {}) is None  # the same file, named otherwise

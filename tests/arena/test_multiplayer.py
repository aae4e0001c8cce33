"""Tournaments and play beyond two zero-sum players: N-player tables, fixed seats, cooperative ranking, record
keys that decide reuse, and non-zero exits when games end in errors."""

import json
import textwrap

import pytest

from selfplay.arena.records import open_store
from selfplay.arena.standings import results_of
from selfplay.arena.tournament import main
from selfplay.cli import main as cli


def test_three_player_tournament_rates_pairwise_with_a_per_seat_breakdown(tmp_path):
    out = tmp_path / "t3"
    assert (
        main(
            [
                "kuhn_poker_3",
                "--agents",
                "random",
                "expert",
                "r2=random",
                "--games",
                "60",
                "--out",
                str(out),
                "--bootstrap",
                "30",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rating"] == "Elo" and summary["outcome"] == "zero_sum"
    episodes = list(open_store(out).episodes(with_steps=False))
    assert len(episodes) == 60  # one table of three, each seed in three rotations
    assert len(results_of(episodes)) == 3 * 60  # three pairwise comparisons per game
    expert = next(r for r in summary["ratings"] if r["agent"] == "expert")
    assert set(expert["reward_per_role"]) == {"player_0", "player_1", "player_2"}
    assert all(v["games"] == 20 for v in expert["reward_per_role"].values())
    # the expert's mean chips agree with the recorded games
    chips = [ep.rewards[r] for ep in episodes for r, a in ep.agents.items() if a == "expert"]
    assert abs(expert["mean_reward"] - sum(chips) / len(chips)) < 1e-9
    md = (out / "report.md").read_text()
    assert "Elo as player_2" in md and "Mean reward per seat" in md


def test_fixed_seat_is_held_and_not_rated(tmp_path):
    out = tmp_path / "seat"
    assert (
        main(
            [
                "kuhn_poker_3",
                "--agents",
                "random",
                "r2=random",
                "--seats",
                "player_2=expert",
                "--games",
                "8",
                "--out",
                str(out),
                "--bootstrap",
                "10",
            ]
        )
        == 0
    )
    episodes = list(open_store(out).episodes(with_steps=False))
    assert len(episodes) == 8 and all(ep.agents["player_2"] == "player_2=expert" for ep in episodes)
    summary = json.loads((out / "summary.json").read_text())
    assert {r["agent"] for r in summary["ratings"]} == {"random", "r2"}


def test_cooperative_tournament_ranks_by_team_reward(tmp_path):
    out = tmp_path / "coop"
    assert (
        main(
            [
                "signalling",
                "--agents",
                "random",
                "expert",
                "e2=expert",
                "--games",
                "40",
                "--out",
                str(out),
                "--bootstrap",
                "10",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rating"] == "team reward in self-play" and "self-play" in summary["ranking"]
    ratings = {r["agent"]: r for r in summary["ratings"]}
    # expert with expert always succeeds; with random a third of the time: the ranking is not a tie
    assert ratings["expert"]["elo"] > ratings["random"]["elo"] and ratings["random"]["elo"] < 0.6
    assert ratings["expert"]["success"] > ratings["random"]["success"]
    assert summary["pairs"]["expert|e2"]["score"] / summary["pairs"]["expert|e2"]["games"] == 1.0


def test_records_are_reused_only_under_the_same_key(tmp_path, capsys):
    out = tmp_path / "reuse"
    base = ["--agents", "random", "expert", "--games", "4", "--out", str(out), "--bootstrap", "10"]
    assert main(["tictactoe", *base]) == 0
    assert main(["tictactoe", *base]) == 0 and open_store(out).count() == 4  # same key: reused
    assert main(["tictactoe", *base, "--seed", "7"]) == 0 and open_store(out).count() == 8  # new seed: new games
    assert main(["tictactoe", *base, "--option", "compact=true"]) == 0 and open_store(out).count() == 12
    capsys.readouterr()
    assert main(["kuhn_poker", *base]) == 2  # another game into the same folder: refused
    assert "holds games of 'tictactoe'" in capsys.readouterr().err and open_store(out).count() == 12


def test_a_participant_spec_change_plays_fresh_games(tmp_path):
    out = tmp_path / "spec"
    assert (
        main(["tictactoe", "--agents", "a=random", "b=expert", "--games", "4", "--out", str(out), "--bootstrap", "10"])
        == 0
    )
    assert (
        main(
            [
                "tictactoe",
                "--agents",
                "a=random:seed=3",
                "b=expert",
                "--games",
                "4",
                "--out",
                str(out),
                "--bootstrap",
                "10",
            ]
        )
        == 0
    )
    assert open_store(out).count() == 8


BROKEN = textwrap.dedent("""
    from selfplay.games.kuhn_poker import KuhnPoker

    class Broken(KuhnPoker):
        name = "broken"

        def info(self):
            raise ValueError("info went wrong")
""")


def test_play_tournament_and_check_game_exit_non_zero_on_errors(tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    spec = f"{path}:Broken"
    assert cli(["play", spec, "--agents", "random", "expert", "--games", "4", "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert "4 episode(s) ended in an error" in err and "ValueError: info went wrong" in err
    assert main([spec, "--agents", "random", "expert", "--games", "2", "--out", str(tmp_path / "t")]) == 1
    assert "info went wrong" in capsys.readouterr().err
    assert cli(["check-game", spec, "--seeds", "3"]) == 1
    assert "info went wrong" in capsys.readouterr().out


def test_play_balances_seats_and_honours_fixed_seats(tmp_path, capsys):
    assert (
        cli(
            [
                "play",
                "kuhn_poker_3",
                "--agents",
                "random",
                "expert",
                "random",
                "--games",
                "10",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    assert "playing 12 games, not 10" in capsys.readouterr().err
    episodes = list(open_store(tmp_path / "p").episodes(with_steps=False))
    seats = [r for ep in episodes for r, a in ep.agents.items() if a == "expert"]
    assert {r: seats.count(r) for r in set(seats)} == {"player_0": 4, "player_1": 4, "player_2": 4}
    assert (
        cli(
            [
                "play",
                "kuhn_poker_3",
                "--agents",
                "random",
                "random",
                "--seats",
                "player_1=expert",
                "--games",
                "6",
                "--out",
                str(tmp_path / "q"),
            ]
        )
        == 0
    )
    assert all(ep.agents["player_1"] == "expert" for ep in open_store(tmp_path / "q").episodes(with_steps=False))
    capsys.readouterr()
    assert cli(["play", "kuhn_poker_3", "--agents", "random", "--seats", "dealer=expert"]) == 2
    assert "'dealer' is not a role" in capsys.readouterr().err
    assert cli(["play", "kuhn_poker_3", "--agents", "random", "random", "random", "--games", "0"]) == 2
    assert "--games 0: expected a number of games >= 1" in capsys.readouterr().err


def test_debate_tournament_rates_debaters_under_a_fixed_judge(tmp_path):
    out = tmp_path / "debate"
    assert (
        main(
            [
                "debate",
                "--agents",
                "random",
                "expert",
                "--seats",
                "judge=expert",
                "--games",
                "20",
                "--out",
                str(out),
                "--bootstrap",
                "20",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    ratings = {r["agent"]: r for r in summary["ratings"]}
    assert set(ratings) == {"random", "expert"} and summary["fixed_seats"] == {"judge": "judge=expert"}
    # the expert judge computes the truth, so the side drawn, not the argument, decides: the debaters tie exactly
    assert ratings["expert"]["elo"] == pytest.approx(ratings["random"]["elo"], abs=1e-6)
    for ep in open_store(out).episodes(with_steps=False):
        assert ep.rewards["judge"] == 1.0 and ep.agents["judge"] == "judge=expert"


@pytest.mark.parametrize("game", ["goofspiel", "negotiation"])
def test_two_player_new_games_are_rated(tmp_path, game):
    out = tmp_path / game
    assert main([game, "--agents", "random", "expert", "--games", "40", "--out", str(out), "--bootstrap", "20"]) == 0
    ratings = {r["agent"]: r for r in json.loads((out / "summary.json").read_text())["ratings"]}
    assert ratings["expert"]["mean_reward"] > ratings["random"]["mean_reward"]


def test_chip_games_report_mean_reward_against_each_opponent(tmp_path):
    """Kuhn chips: each pairing's mean reward with its interval, agreeing with the recorded games."""
    out = tmp_path / "kuhn"
    assert (
        main(["kuhn_poker", "--agents", "random", "expert", "--games", "200", "--out", str(out), "--bootstrap", "10"])
        == 0
    )
    pairs = json.loads((out / "summary.json").read_text())["pair_rewards"]
    episodes = list(open_store(out).episodes(with_steps=False))
    chips = [ep.rewards[r] for ep in episodes for r, a in ep.agents.items() if a == "expert"]
    assert pairs["expert|random"]["mean"] == pytest.approx(sum(chips) / len(chips))
    assert pairs["expert|random"]["mean"] == pytest.approx(-pairs["random|expert"]["mean"])
    low, high = pairs["expert|random"]["ci"]
    assert low < pairs["expert|random"]["mean"] < high and pairs["expert|random"]["games"] == 200
    assert "Mean reward against each opponent" in (out / "report.md").read_text()

"""PettingZoo AEC environments through ``pettingzoo:FAMILY.ENV``."""

import pytest

pytest.importorskip("pettingzoo")  # in requirements.txt, so CI runs these
pytest.importorskip("pygame")

from selfplay.agents.specs import build_agents  # noqa: E402
from selfplay.arena.matches import paired_matches  # noqa: E402
from selfplay.arena.play import play  # noqa: E402
from selfplay.games.conformance import check_game  # noqa: E402
from selfplay.games.registry import game_class  # noqa: E402


@pytest.mark.parametrize("spec", ["classic.tictactoe_v3", "classic.connect_four_v3", "classic.rps_v2"])
def test_pettingzoo_games_pass_check_game(spec):
    report = check_game(f"pettingzoo:{spec}", range(15))
    assert report.ok, str(report)


def test_tictactoe_through_pettingzoo_plays_and_pays_like_tictactoe():
    cls = game_class("pettingzoo:classic.tictactoe_v3")
    assert cls.roles == ("player_1", "player_2")
    game = cls()
    game.reset(0)
    assert game.legal_actions("player_1") == [f"[{i}]" for i in range(9)]
    for cell, role in ((0, "player_1"), (3, "player_2"), (1, "player_1"), (4, "player_2"), (2, "player_1")):
        assert game.turn().role == role
        game.step(role, [game.parse(role, f"[{cell}]")])
    assert game.turn() is None and game.rewards() == {"player_1": 1.0, "player_2": -1.0}
    agents = build_agents(["random", "random"])
    episodes = play(cls, paired_matches(cls.roles, list(agents), 20), agents, progress=False)
    assert all(ep.status == "done" and sum(ep.rewards.values()) == 0 for ep in episodes)


def test_unknown_environment_is_named():
    with pytest.raises(ValueError, match="PettingZoo has no environment 'classic.nothing_v1'"):
        game_class("pettingzoo:classic.nothing_v1")


def test_an_environment_that_fails_to_import_is_one_named_error(monkeypatch):
    import importlib

    real = importlib.import_module

    def moved(name, *args):
        if name == "pettingzoo.mpe.simple_v3":  # as PettingZoo 1.25+ does for the MPE family
            raise ImportError("MPE has been moved into its own package: MPE2")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", moved)
    with pytest.raises(ValueError, match="mpe.simple_v3 cannot be imported: MPE has been moved"):
        game_class("pettingzoo:mpe.simple_v3")

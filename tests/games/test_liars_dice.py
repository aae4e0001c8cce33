import pytest

from selfplay.agents.scripted import ExpertAgent, RandomAgent
from selfplay.arena.matches import paired_matches
from selfplay.arena.play import play
from selfplay.games.core import InvalidAction
from selfplay.games.liars_dice import LiarsDice, bid_rank, p_at_least


def test_bid_order_and_probability():
    assert bid_rank(2, 1) > bid_rank(1, 6) > bid_rank(1, 5)
    assert p_at_least(0, 2) == 1.0
    assert abs(p_at_least(1, 2) - (1 - (5 / 6) ** 2)) < 1e-12


def test_parse_and_showdown():
    game = LiarsDice(dice=2)
    game.reset(0)
    game.hands = [[3, 3], [3, 5]]
    with pytest.raises(InvalidAction, match="no bid to challenge"):
        game.parse("player_0", "[liar]")
    game.step("player_0", [game.parse("player_0", "I say [bid 3 3]")])
    with pytest.raises(InvalidAction, match="does not beat"):
        game.parse("player_1", "[bid 2 6]")
    game.step("player_1", [game.parse("player_1", "[liar]")])
    assert game.turn() is None
    assert game.rewards() == {"player_0": 1.0, "player_1": -1.0}  # three 3s: the bid held


def test_bad_option_is_rejected():
    with pytest.raises(ValueError, match="dice=9"):
        LiarsDice(dice=9)


def test_expert_beats_random():
    agents = {"expert": ExpertAgent(0), "random": RandomAgent(0)}
    episodes = play(LiarsDice, paired_matches(LiarsDice.roles, list(agents), 600), agents, progress=False)
    wins = sum(ep.outcome(r) == "win" for ep in episodes for r, a in ep.agents.items() if a == "expert")
    assert wins / len(episodes) > 0.7

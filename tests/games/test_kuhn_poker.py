from itertools import permutations

from selfplay.agents.scripted import ExpertAgent
from selfplay.arena.matches import Match
from selfplay.arena.play import play
from selfplay.games.kuhn_poker import KuhnPoker, nash_probabilities


def _exact_value(alpha: float) -> float:
    """player_0's expected chips under the equilibrium, by enumerating deals and action sequences."""
    game = KuhnPoker()

    def value(cards, history, prob):
        game.cards, game.history = list(cards), history
        if game.turn() is None:
            return prob * game.rewards()["player_0"]
        probs = nash_probabilities(cards[len(history) % 2], history, alpha)
        letters = {"check": "c", "call": "c", "bet": "b", "fold": "f"}
        return sum(value(cards, history + letters[a], prob * p) for a, p in probs.items() if p > 0)

    deals = list(permutations(range(3), 2))
    return sum(value(deal, "", 1 / len(deals)) for deal in deals)


def test_equilibrium_value_is_minus_one_eighteenth_for_every_alpha():
    for alpha in (0.0, 1 / 6, 1 / 3):
        assert abs(_exact_value(alpha) - (-1 / 18)) < 1e-12


def test_nash_in_both_seats_averages_minus_one_eighteenth():
    agents = {"e1": ExpertAgent(1, "e1"), "e2": ExpertAgent(2, "e2")}
    matches = [Match(seed, {"player_0": "e1", "player_1": "e2"}) for seed in range(20000)]
    episodes = play(KuhnPoker, matches, agents, progress=False, concurrency=2048)
    rewards = [ep.rewards["player_0"] for ep in episodes]
    mean = sum(rewards) / len(rewards)
    sd = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
    assert abs(mean - (-1 / 18)) < 4 * sd / len(rewards) ** 0.5


def test_hidden_cards_and_showdown():
    game = KuhnPoker()
    game.reset(0)
    p0, p1 = (game.observe(r)[1]["content"] for r in game.roles)
    assert game.secrets("player_0")[0] in p0 and game.secrets("player_0")[0] not in p1
    game.cards, game.history = [2, 0], "bc"
    assert game.rewards() == {"player_0": 2.0, "player_1": -2.0}
    game.history = "cbf"
    assert game.rewards() == {"player_0": -1.0, "player_1": 1.0}

from selfplay.agents.scripted import ExpertAgent, RandomAgent
from selfplay.arena.matches import paired_matches
from selfplay.arena.play import play
from selfplay.games.tictactoe import TicTacToe, best_cells, minimax_value, winner


def test_board_logic_from_move_tables():
    assert winner("XXX......") == "X"
    assert winner("O...O...O") == "O"
    assert winner("XOXOXOOXO") is None
    assert minimax_value("." * 9, "X") == 0  # perfect play draws
    assert best_cells("XX.OO....", "X") == [2]  # take the win
    assert best_cells("XX..O....", "O") == [2]  # block the loss


def _play(a, b, games, seed=0):
    agents = {a.name: a, b.name: b}
    return play(TicTacToe, paired_matches(TicTacToe.roles, [a.name, b.name], games, seed=seed), agents, progress=False)


def test_random_play_matches_known_statistics():
    # Exhaustive random play: first mover wins 58.49%, second 28.79%, draws 12.70% (of 255,168 games, weighted).
    episodes = _play(RandomAgent(1, "r1"), RandomAgent(2, "r2"), 4000)
    n = len(episodes)
    first = sum(ep.rewards["player_0"] > 0 for ep in episodes) / n
    second = sum(ep.rewards["player_1"] > 0 for ep in episodes) / n
    draws = sum(ep.rewards["player_0"] == 0 for ep in episodes) / n
    se = lambda p: 4 * (p * (1 - p) / n) ** 0.5  # noqa: E731 - 4 standard errors
    assert abs(first - 0.5849) < se(0.5849)
    assert abs(second - 0.2879) < se(0.2879)
    assert abs(draws - 0.1270) < se(0.1270)


def test_expert_never_loses_and_draws_itself():
    vs_random = _play(ExpertAgent(0), RandomAgent(0), 400)
    assert all(ep.outcome(role) != "loss" for ep in vs_random for role, a in ep.agents.items() if a == "expert")
    assert sum(ep.outcome(r) == "win" for ep in vs_random for r, a in ep.agents.items() if a == "expert") > 300
    mirror = _play(ExpertAgent(1, "e1"), ExpertAgent(2, "e2"), 100)
    assert all(ep.rewards == {"player_0": 0.0, "player_1": 0.0} for ep in mirror)


def test_compact_prompt_numbers_each_cell_and_is_the_players_view():
    game = TicTacToe(compact=True)
    game.reset(0)
    for cell in (5, 1):  # X takes 5, O takes 1 (0-based 4, 0)
        game.step(game.turn().role, [cell - 1])
    (message,) = game.observe("player_0")
    assert message["content"] == "X1O2.3.4.5X6.7.8.9."
    assert game.observe("player_1")[0]["content"].startswith("O1O")

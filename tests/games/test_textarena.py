"""TextArena environments through ``textarena:ENV_ID``: conformance, play with TextArena's prompts, training."""

import random

import pytest

pytest.importorskip("textarena")  # in requirements.txt, so CI runs these

from selfplay.agents.scripted import RandomAgent  # noqa: E402
from selfplay.agents.specs import build_agents  # noqa: E402
from selfplay.arena.matches import Match, paired_matches  # noqa: E402
from selfplay.arena.play import play  # noqa: E402
from selfplay.games.conformance import check_game  # noqa: E402
from selfplay.games.registry import game_class  # noqa: E402
from tests.training.test_train import TINY, run  # noqa: E402

FIVE = [
    "TicTacToe-v0",
    "KuhnPoker-v0",
    "ConnectFour-v0",
    "IteratedPrisonersDilemma-v0",
    "GameOfPureStrategy-v0",
    "LiarsDice-v0",
    "Nim-v0",
]


@pytest.mark.parametrize("env_id", FIVE)
def test_textarena_games_pass_check_game(env_id):
    report = check_game(f"textarena:{env_id}", range(6))
    assert report.ok, str(report)


def test_textarena_prompts_moves_and_rewards():
    cls = game_class("textarena:TicTacToe-v0")
    game = cls()
    game.reset(1)
    view = game.observe("player_0")[0]["content"]
    assert "Tic Tac Toe" in view and "[GAME]" in view and "'[4]'" in view
    with pytest.raises(Exception, match="square brackets"):
        game.parse("player_0", "the middle please")
    game.step("player_0", [game.parse("player_0", "I take [4]")])
    assert game.turn().role == "player_1" and "placed their symbol" in game.observe("player_1")[0]["content"]
    agents = build_agents(["random", "random"])
    episodes = play(cls, paired_matches(cls.roles, list(agents), 8), agents, progress=False)
    assert all(ep.status == "done" and sorted(ep.rewards.values()) in ([-1.0, 1.0], [0.0, 0.0]) for ep in episodes)


def test_side_by_side_games_stay_reproducible():
    """TextArena draws from the global random: each game keeps its own copy, so interleaving changes nothing."""
    cls = game_class("textarena:KuhnPoker-v0")

    def moves(game, rng):
        turn = game.turn()
        if turn is None:
            return False
        game.step(turn.role, [game.parse(turn.role, game.random_action(turn.role, rng))])
        return True

    alone, rng = cls(), random.Random(0)
    alone.reset(5)
    while moves(alone, rng):
        pass
    a, b, rng_a, rng_b = cls(), cls(), random.Random(0), random.Random(1)
    a.reset(5)
    b.reset(6)
    going = True
    while going:  # alternate the two games, and disturb the global random between every move
        going = moves(a, rng_a)
        random.random()
        moves(b, rng_b)
    assert a.observe("player_0") == alone.observe("player_0") and a.rewards() == alone.rewards()


def test_a_bad_environment_is_named():
    with pytest.raises(ValueError, match="TextArena has no environment 'TicTacTwo-v9'"):
        game_class("textarena:TicTacTwo-v9")


def test_the_turn_limit_is_a_setting_of_the_spec():
    short = game_class("textarena:TicTacToe-v0(players=2, max_turns=3)")
    assert short.max_turns == 3 and game_class("textarena:TicTacToe-v0").max_turns == 200
    [ep] = play(short, [Match(0, {"player_0": "r", "player_1": "r"})], {"r": RandomAgent(name="r")}, progress=False)
    assert ep.status == "truncated" and len(ep.steps) == 3
    with pytest.raises(ValueError, match="'max_turn=9' is not a setting; expected players=N or max_turns=N"):
        game_class("textarena:TicTacToe-v0(max_turn=9)")


def test_one_tiny_training_step_on_a_textarena_game(tmp_path):
    base = [o for o in TINY if not o.startswith("game_options")]
    out = tmp_path / "ta"
    run(
        [
            "game=textarena:TicTacToe-v0",
            "steps=1",
            "games_per_step=4",
            "evaluation.games=4",
            "evaluation.opponents=[random]",
            "sampling.constrained=false",
            "max_new_tokens=6",
        ],
        out,
        base=base,
    )
    assert (out / "summary.json").exists()


@pytest.mark.parametrize(
    "env_id, players", [("Sudoku-v0", 1), ("ThreePlayerIPD-v0", 3), ("Taboo-v0", 4), ("TicTacToe-v0", 2)]
)
def test_the_default_number_of_players_is_one_the_environment_accepts(env_id, players):
    before = random.getstate()
    cls = game_class(f"textarena:{env_id}")
    assert random.getstate() == before  # probing the counts leaves the caller's random state alone
    assert cls.roles == tuple(f"player_{i}" for i in range(players))
    assert check_game(cls, range(2)).ok
    assert game_class(f"textarena:{env_id}(players={players})").roles == cls.roles


def test_an_environment_that_cannot_start_is_one_named_error(monkeypatch):
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="TextArena's Debate-v0 cannot start: ValueError: OpenRouter API key"):
        game_class("textarena:Debate-v0")


def test_a_word_game_never_downloads_its_nltk_data():
    """TextArena's word games call nltk.download when they start (a network request on every load here); selfplay
    downloads nothing at run time, so the call is held off and a missing corpus is named with the command to run."""
    nltk = pytest.importorskip("nltk")
    from selfplay.games.textarena_game import textarena_game

    calls = []
    original = nltk.download
    nltk.download = lambda *args, **kwargs: calls.append(args) or True  # what a real download would be
    try:
        textarena_game.cache_clear()
        try:
            cls = game_class("textarena:SpellingBee-v0")
            cls().reset(0)
        except ValueError as exc:  # the usual case: no NLTK data on this machine
            assert "LookupError" in str(exc) and "downloads nothing at run time" in str(exc)
    finally:
        nltk.download = original
        textarena_game.cache_clear()
    assert calls == []

import pytest

from selfplay.agents.scripted import RandomAgent
from selfplay.arena.matches import OPENING, Match, paired_matches
from selfplay.arena.play import play
from selfplay.games.core import InvalidPolicy
from selfplay.games.tictactoe import TicTacToe
from tests.fakes import CrashingAgent, ExplodingTTT, GuessGame, RetryTTT, ScriptAgent


def test_paired_matches_swap_seats_on_the_same_seed():
    matches = paired_matches(("player_0", "player_1"), ["a", "b"], 4, seed=10)
    assert [(m.seed, m.agents["player_0"]) for m in matches] == [(10, "a"), (10, "b"), (11, "a"), (11, "b")]


class CountingRandom(RandomAgent):
    def __init__(self, name):
        super().__init__(0, name)
        self.calls = []

    def act(self, requests):
        self.calls.append(len(requests))
        return super().act(requests)


def test_each_agent_is_called_once_per_round_with_every_pending_turn():
    a, b = CountingRandom("a"), CountingRandom("b")
    play(TicTacToe, paired_matches(TicTacToe.roles, ["a", "b"], 64), {"a": a, "b": b}, progress=False)
    # round 1: "a" is X in the 32 even games, "b" in the 32 odd ones; all 64 games are live at once
    assert a.calls[0] == 32 and b.calls[0] == 32
    assert len(a.calls) <= 9 and len(b.calls) <= 9


def test_concurrency_limit_refills_the_window():
    a, b = CountingRandom("a"), CountingRandom("b")
    episodes = play(
        TicTacToe, paired_matches(TicTacToe.roles, ["a", "b"], 50), {"a": a, "b": b}, concurrency=8, progress=False
    )
    assert len(episodes) == 50 and max(a.calls) <= 8
    assert all(ep.status == "done" for ep in episodes)


def test_retry_shows_the_error_then_forfeits():
    bad = ScriptAgent(["[12]", "hello"], name="bad")
    episodes = play(
        RetryTTT, [Match(0, {"player_0": "bad", "player_1": "r"})], {"bad": bad, "r": RandomAgent()}, progress=False
    )
    ep = episodes[0]
    assert ep.status == "forfeit" and ep.rewards == {"player_0": -1.0, "player_1": 1.0}
    first, second = ep.steps
    assert (first.failure, second.failure) == ("ILLEGAL", "PARSE_ERROR")
    assert second.attempt == 1 and "cell 12 is not free" in second.messages[-1]["content"]
    assert second.fallback == "forfeit" and first.reward == -1.0


def test_random_and_penalty_fallbacks_keep_the_game_going():
    for fallback, expected_penalty in (("random", 0.0), ("penalty", -0.5)):

        class Lenient(TicTacToe):
            invalid_policy = InvalidPolicy(retries=0, fallback=fallback, penalty=-0.5)

        bad = ScriptAgent([], name="bad")  # always answers "nonsense"
        ep = play(Lenient, [Match(1, {"player_0": "bad", "player_1": "bad"})], {"bad": bad}, progress=False)[0]
        assert ep.status == "done" and all(s.failure == "PARSE_ERROR" and s.action for s in ep.steps)
        raw = TicTacToe()
        raw.reset(1)
        for s in ep.steps:
            raw.step(s.role, [raw.parse(s.role, s.action)])
        moves = {r: sum(s.role == r for s in ep.steps) for r in raw.roles}  # every move was a fallback
        assert ep.rewards == {r: v + expected_penalty * moves[r] for r, v in raw.rewards().items()}


def test_samples_turn_is_one_request_and_each_sample_has_its_reward():
    setter = ScriptAgent(["2"], name="setter")
    guesser = ScriptAgent(["2", "0", "2", "zzz"], name="guesser")
    # GuessGame forfeits invalid samples: the 4th sample reaches step() as None
    ep = play(
        GuessGame,
        [Match(0, {"setter": "setter", "guesser": "guesser"})],
        {"setter": setter, "guesser": guesser},
        progress=False,
    )[0]
    assert [len(b) for b in guesser.batches] == [1] and guesser.batches[0][0].samples == 4
    guesses = [s for s in ep.steps if s.role == "guesser"]
    assert [s.reward for s in guesses] == [1.0, 0.0, 1.0, -1.0]
    assert ep.rewards == {"setter": 0.5, "guesser": 0.5}


def test_an_exception_in_one_game_is_recorded_and_the_others_go_on():
    agents = {"a": RandomAgent(1, "a"), "b": RandomAgent(2, "b")}
    episodes = play(
        ExplodingTTT, [Match(s, {"player_0": "a", "player_1": "b"}) for s in range(6)], agents, progress=False
    )
    assert [ep.status for ep in episodes] == ["done"] * 3 + ["error"] + ["done"] * 2
    assert "boom in step" in episodes[3].error


def test_a_crashing_agent_forfeits_and_the_error_is_recorded():
    agents = {"c": CrashingAgent(), "r": RandomAgent()}
    ep = play(TicTacToe, [Match(0, {"player_0": "c", "player_1": "r"})], agents, progress=False)[0]
    assert ep.status == "forfeit" and ep.rewards["player_0"] == -1.0
    assert ep.steps[0].failure == "AGENT_ERROR" and "model server went away" in ep.steps[0].error


def test_opening_moves_are_random_recorded_and_reproducible():
    def game():
        return TicTacToe(compact=True)

    matches = [Match(seed, {"player_0": "a", "player_1": "b"}, opening=3) for seed in range(20)]
    first = play(game, matches, {"a": RandomAgent(1, "a"), "b": RandomAgent(2, "b")}, progress=False)
    again = play(game, matches, {"a": RandomAgent(5, "a"), "b": RandomAgent(6, "b")}, progress=False)
    openings = set()
    for ep, other in zip(first, again):
        opening = [s for s in ep.steps if s.agent == OPENING]
        assert [s.turn for s in opening] == [0, 1, 2] and ep.meta["opening"] == 3
        # the opening comes from the match seed, not from the agents
        assert [s.action for s in opening] == [s.action for s in other.steps if s.agent == OPENING]
        openings.add(tuple(s.action for s in opening))
        first_asked = next(s for s in ep.steps if s.agent != OPENING)
        assert (first_asked.turn, first_asked.role, first_asked.agent) == (3, "player_1", "b")
        board = first_asked.messages[-1]["content"][1:]  # "O1X2.3O..." after the mark to play
        assert (board.count("X"), board.count("O")) == (2, 1)
    assert len(openings) > 10  # different seeds, different openings


def test_a_scripted_baseline_plays_each_game_the_same_whatever_shares_its_batch():
    """A baseline's moves in a game depend on the game's seed alone, not on which games share its calls, their order
    or the concurrency (so an evaluation is the same on one rank or several, and paired before/after comparisons
    meet the same baseline draws)."""
    from selfplay.agents.scripted import ExpertAgent

    def agents():
        return {"r": RandomAgent(seed=3, name="r"), "e": ExpertAgent(seed=4, name="e")}

    matches = paired_matches(TicTacToe.roles, ["r", "e"], 12, seed=100)

    def moves(episodes):
        return {(ep.seed, ep.agents["player_0"]): [s.action for s in ep.steps] for ep in episodes}

    together = moves(play(TicTacToe, matches, agents(), progress=False, concurrency=24))
    assert len(together) == 12 and len(set(map(tuple, together.values()))) > 6  # the games differ
    for m in reversed(matches[:8]):  # each alone, in another order, by fresh agents with the same seeds
        alone = moves(play(TicTacToe, [m], agents(), progress=False, concurrency=1))
        assert alone.items() <= together.items()
    pairs = {}
    for i in range(0, 12, 2):
        pairs.update(moves(play(TicTacToe, matches[i : i + 2], agents(), progress=False)))
    assert pairs == together


class _Broken(TicTacToe):
    """TicTacToe with one bug chosen by ``fault``."""

    def __init__(self, fault: str):
        super().__init__()
        self.fault = fault

    def turn(self):
        turn = super().turn()
        return (
            type(turn)("referee")
            if self.fault == "stranger" and turn is not None and self.board.count(" ") < 8
            else turn
        )

    def observe(self, role):
        return "the board" if self.fault == "string" else super().observe(role)

    def legal_actions(self, role):
        if self.fault == "legal":
            raise RuntimeError("legal_actions exploded")
        return super().legal_actions(role)

    def rewards(self):
        rewards = super().rewards()
        return {
            "nan": {r: float("nan") for r in rewards},
            "missing": {"player_0": rewards["player_0"]},
            "range": {r: 3 * v for r, v in rewards.items()},
        }.get(self.fault, rewards)


@pytest.mark.parametrize(
    "fault, words",
    [
        ("stranger", "turn() named role(s) ['referee']"),
        ("string", "observe('player_0') returned 'the board'"),
        ("legal", "legal_actions exploded"),
        ("nan", "gave player_0 nan"),
        ("missing", "returned ['player_0']: expected a reward for each role"),
        ("range", "within reward_range (-1.0, 1.0)"),
    ],
)
def test_a_broken_game_ends_its_own_episodes_in_a_named_error_and_the_others_play_on(fault, words):
    agents = {"r": RandomAgent(seed=1, name="r"), "r2": RandomAgent(seed=2, name="r2")}
    matches = paired_matches(TicTacToe.roles, ["r", "r2"], 8)
    broken = {m.seed for m in matches[:4]}
    seeds = iter(
        [None, *(m.seed for m in matches)]
    )  # the arena makes a probe (to check seats), then the games in order

    def make():
        return _Broken(fault) if next(seeds) in broken else TicTacToe()

    episodes = play(make, matches, agents, progress=False, concurrency=8)
    errors = [ep for ep in episodes if ep.status == "error"]
    assert errors and all(words in ep.error for ep in errors), [ep.error for ep in errors][:1]
    if fault != "range":  # out of range only where someone won (3 x +-1); a draw's 0s are in range
        assert {ep.seed for ep in errors} == broken
    assert all(ep.status == "done" for ep in episodes if ep.seed not in broken)


def test_a_random_agent_for_a_free_text_game_is_refused_before_any_game():
    from tests.fakes import FreeGuess

    agents = {"r": RandomAgent(name="r"), "r2": RandomAgent(name="r2")}
    with pytest.raises(ValueError, match="agent 'r' plays a uniformly random legal action, but free_guess lists no"):
        play(FreeGuess, paired_matches(FreeGuess.roles, ["r", "r2"], 2), agents, progress=False)


def test_an_expert_for_a_game_without_one_is_refused_before_any_game():
    from selfplay.agents.scripted import ExpertAgent
    from tests.fakes import GuessGame

    agents = {"e": ExpertAgent(name="e"), "r": RandomAgent(name="r")}
    with pytest.raises(ValueError, match="plays the game's expert_action, but guess defines none"):
        play(GuessGame, paired_matches(GuessGame.roles, ["e", "r"], 2), agents, progress=False)

import re

import pytest

from selfplay.games.conformance import check_game
from selfplay.games.core import Game, user, validate_game_class
from selfplay.games.registry import registered_games
from tests.fakes import EndlessTTT, GenerousTTT, GuessGame, GullibleTTT, LeakyTTT, NondeterministicTTT


@pytest.mark.parametrize("name", sorted(registered_games()))
def test_every_registered_game_conforms(name):
    report = check_game(name, range(min(300, registered_games()[name].check_seeds * 3 // 2)))
    assert report.ok, str(report)


def test_samples_game_conforms():
    assert check_game(GuessGame, range(50)).ok


@pytest.mark.parametrize("cls, check, words", [
    (NondeterministicTTT, "determinism", "same seed differ"),
    (LeakyTTT, "secrets", "observation contains player_0's secret"),
    (EndlessTTT, "termination", "max_turns=20"),
    (GenerousTTT, "reward-range", "outside reward_range"),
    (GullibleTTT, "parse", "accepted garbage"),
])
def test_broken_games_fail_with_the_reproducing_seed(cls, check, words):
    report = check_game(cls, range(30))
    assert not report.ok
    failure = next(f for f in report.failures if f.check == check)
    assert words in failure.message
    assert f"seed={failure.seed}" in str(report) and 0 <= failure.seed < 30


def test_a_class_missing_a_method_is_named():
    class Half(Game):
        name, roles = "half", ("a", "b")

        def reset(self, seed):
            pass

    with pytest.raises(TypeError, match="missing required method.*turn.*observe.*parse.*step.*rewards"):
        validate_game_class(Half)


@pytest.mark.parametrize("role, words", [("bob/2", "'/'"), ("a=b", "'='"), ("tab\there", repr("\t")), ("..", "'..'"),
                                         (" x", "start or end with a space"), ("", "non-empty")])
def test_a_role_that_cannot_name_a_folder_or_a_seat_is_refused(role, words):
    """A role names its checkpoint folder (a "bob/2" adapter was saved as bob/2/ and never found again) and is
    written ROLE=SPEC on the command line."""
    from tests.games.test_generality import Race

    class Odd(Race):
        roles = ("a", role)

    with pytest.raises(TypeError, match=f"has the role {re.escape(repr(role))}: .*{re.escape(words)}"):
        validate_game_class(Odd)


def test_a_free_text_game_without_random_action_fails_once_with_the_fix_named():
    from tests.fakes import FreeGuess

    report = check_game(FreeGuess, seeds=range(50))
    assert [f.check for f in report.failures] == ["playouts"] and "define random_action" in str(report)


def test_an_observe_that_fails_for_a_role_not_moving_is_named_as_such():
    from tests.games.test_generality import Race

    class Blind(Race):
        def observe(self, role):
            if role != self.roles[self.mover]:
                raise KeyError("not your turn")
            return super().observe(role)

    report = check_game(Blind, seeds=range(3))
    assert {f.check for f in report.failures} == {"observe"}
    assert "observe('b') raised KeyError" in report.failures[0].message and "does not move" in report.failures[0].message


@pytest.mark.parametrize("legal, words", [
    (["[1]", "[2]", "[1]"], "lists ['[1]'] more than once"),
    (["[1]", "[two]"], "lists '[two]', which parse rejects"),
    ("[1] or [2]", "expected a non-empty list of strings, or None for free text"),
    ([], "expected a non-empty list of strings"),
])
def test_legal_actions_must_be_distinct_strings_that_parse(legal, words):
    """An agent given the list, or constrained to it, can only answer from it: each entry must be an answer."""
    from tests.games.test_generality import Race

    class Listed(Race):
        def legal_actions(self, role):
            return legal

    report = check_game(Listed, seeds=range(3))
    assert {f.check for f in report.failures} == {"legal"} and words in report.failures[0].message


def test_a_simultaneous_move_leak_is_caught_without_resample_hidden():
    """The parsed-answers check of a simultaneous turn does not depend on the game offering resample_hidden."""
    from tests.games.test_generality import RockPaperScissors

    class Peeking(RockPaperScissors):
        def parse(self, role, text):
            self.seen = text  # parsing records the answer where observe shows it to the other mover
            return super().parse(role, text)

        def observe(self, role):
            return [*super().observe(role)[:1], user(f"Your move. ({getattr(self, 'seen', '')})")]

        def resample_hidden(self, role, rng):
            raise NotImplementedError

    report = check_game(Peeking, seeds=range(3))
    assert "simultaneous" in {f.check for f in report.failures}

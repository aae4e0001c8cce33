import re

import pytest

from selfplay.games.conformance import check_game
from selfplay.games.core import Failure, Game, InvalidAction, user, validate_game_class
from selfplay.games.registry import registered_games
from tests.fakes import EndlessTTT, GenerousTTT, GuessGame, GullibleTTT, LeakyTTT, NondeterministicTTT


@pytest.mark.parametrize("name", sorted(registered_games()))
def test_every_registered_game_conforms(name):
    report = check_game(name, range(min(300, registered_games()[name].check_seeds * 3 // 2)))
    assert report.ok, str(report)


def test_samples_game_conforms():
    assert check_game(GuessGame, range(50)).ok


@pytest.mark.parametrize(
    "cls, check, words",
    [
        (NondeterministicTTT, "determinism", "same seed differ"),
        (LeakyTTT, "secrets", "observation contains player_0's secret"),
        (EndlessTTT, "termination", "max_turns=20"),
        (GenerousTTT, "reward-range", "outside reward_range"),
        (GullibleTTT, "parse", "accepted garbage"),
    ],
)
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


def test_a_game_of_simultaneous_turns_only_needs_step_together_not_step():
    """All its turns are Turn.together: step_together stands in for step (it was refused for lacking step); a game
    with neither still names step, and a one-role Turn reaching a game without step says what to implement."""
    from selfplay.games.conformance import check_game
    from selfplay.games.core import Turn

    class Together(Game):
        name, roles, max_turns, reward_range = "together", ("a", "b"), 1, (-1.0, 1.0)

        def reset(self, seed):
            self.seed_rng(seed)
            self.said = None

        def turn(self):
            return Turn.together(*self.roles) if self.said is None else None

        def observe(self, role):
            return [{"role": "user", "content": "Say [0] or [1]."}]

        def legal_actions(self, role):
            return ["[0]", "[1]"]

        def parse(self, role, text):
            if text.strip() not in ("[0]", "[1]"):
                raise InvalidAction(Failure.PARSE_ERROR, "say [0] or [1]")
            return int(text.strip()[1])

        def step_together(self, actions):
            self.said = actions

        def rewards(self):
            match = self.said["a"] == self.said["b"]
            return {"a": 1.0 if match else -1.0, "b": -1.0 if match else 1.0}

    validate_game_class(Together)
    report = check_game(Together, seeds=range(20))
    assert report.ok, report
    with pytest.raises(TypeError, match="missing required method.*: step$"):
        validate_game_class(type("Neither", (Together,), {"step_together": Game.step_together}))
    with pytest.raises(NotImplementedError, match=r"one-role Turn\('a'\) but has no step\(\)"):
        Together().step("a", [0])


@pytest.mark.parametrize(
    "role, words",
    [
        ("bob/2", "'/'"),
        ("a=b", "'='"),
        ("tab\there", repr("\t")),
        ("..", "'..'"),
        (" x", "start or end with a space"),
        ("", "non-empty"),
    ],
)
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
    assert (
        "observe('b') raised KeyError" in report.failures[0].message and "does not move" in report.failures[0].message
    )


@pytest.mark.parametrize(
    "legal, words",
    [
        (["[1]", "[2]", "[1]"], "lists ['[1]'] more than once"),
        (["[1]", "[two]"], "lists '[two]', which parse rejects"),
        ("[1] or [2]", "expected a non-empty list of strings, or None for free text"),
        ([], "expected a non-empty list of strings"),
    ],
)
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

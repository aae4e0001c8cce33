"""check-game never gives a clean bill it did not check: the perturbation leak test's state is said in its own line,
on the example card game (Hints) and on a sealed-bid auction with private values, each tested both ways."""

import random
from dataclasses import dataclass
from pathlib import Path

from selfplay.games import Game, Outcome, Turn, system, user
from selfplay.games.conformance import check_game
from selfplay.games.registry import game_class

ROOT = Path(__file__).resolve().parents[2]
Hints = game_class(str(ROOT / "docs/examples/hints.py"))


class HandPeek(Hints):
    """Leaks a derived fact about the player's own hand (its highest rank) into what it is shown."""

    name = "hints_peek"

    def observe(self, role):
        view = super().observe(role)
        top = max(rank for _, rank in self.hands[role])
        return [view[0], user(view[1]["content"] + f" (your best card is a {top})")]


class HandPeekUnchecked(HandPeek):
    name = "hints_peek_unchecked"
    resample_hidden = Game.resample_hidden  # the same leak, and no way for the checker to find it


class LazyResample(Hints):
    name = "hints_lazy"

    def resample_hidden(self, role, rng):
        pass  # re-draws nothing: the test runs but cannot find anything


@dataclass
class Auction(Game):
    """A sealed-bid first-price auction: each bidder has a private value 1-9 and bids once, simultaneously."""

    name = "auction"
    roles = ("alice", "bob")
    reward_range = (-9.0, 9.0)
    outcome = Outcome("general_sum", win_lose=False)
    leak: bool = False  # show each bidder whether its value is the higher one: a derived leak of the other's value

    def reset(self, seed):
        self.seed_rng(seed)
        self.values = {r: self.rng.randint(1, 9) for r in self.roles}
        self.bids = None

    def turn(self):
        return Turn.together(*self.roles) if self.bids is None else None

    def observe(self, role):
        other = next(r for r in self.roles if r != role)
        hint = f" You value it more than {other} does: {self.values[role] > self.values[other]}." if self.leak else ""
        return [
            system("Sealed-bid auction: bid 0-9; the highest bid wins and pays its bid."),
            user(f"Your value: {self.values[role]}.{hint}"),
        ]

    def parse(self, role, text):
        from selfplay.games import Failure, InvalidAction

        if text.strip() not in [str(b) for b in range(10)]:
            raise InvalidAction(Failure.PARSE_ERROR, "expected a bid 0-9")
        return int(text)

    def legal_actions(self, role):
        return [str(b) for b in range(10)]

    def step_together(self, actions):
        self.bids = actions

    def rewards(self):
        a, b = (self.bids[r] for r in self.roles)
        if a == b:
            return {r: 0.0 for r in self.roles}
        winner = self.roles[0] if a > b else self.roles[1]
        return {r: float(self.values[r] - self.bids[r]) if r == winner else 0.0 for r in self.roles}


class AuctionChecked(Auction):
    name = "auction_checked"

    def resample_hidden(self, role, rng):
        for other in self.roles:
            if other != role:
                self.values[other] = rng.randint(1, 9)


def test_the_example_card_game_passes_with_its_leak_test_run():
    report = check_game(Hints, range(40))
    assert report.ok and report.leak_test == "ran" and "every check passed" in str(report)


def test_a_derived_leak_of_ones_own_cards_is_caught_and_quoted():
    report = check_game(HandPeek, range(20))
    assert not report.ok and {f.check for f in report.failures} == {"hidden"}
    assert "(its observation, message 1 (user): " in str(report) and "your best card is a" in str(report)


def test_without_resample_hidden_the_summary_says_the_leak_test_did_not_run():
    report = check_game(HandPeekUnchecked, range(20))
    assert report.ok and report.leak_test == "not run"  # nothing else fails: the leak is invisible to the other checks
    text = str(report)
    assert "every check passed" not in text and "leak test did not run" in text
    assert "\n  leak test NOT RUN: hints_peek_unchecked defines no resample_hidden(role, rng)" in text
    assert "hidden_information = False" in text  # what to add, either way


def test_a_resample_that_changes_nothing_is_called_vacuous():
    report = check_game(LazyResample, range(10))
    assert report.leak_test == "vacuous" and "leak test VACUOUS" in str(report)
    assert "every check passed" not in str(report)


def test_the_auction_leak_is_found_with_resample_hidden_and_announced_without():
    caught = check_game(AuctionChecked, range(30), {"leak": True})
    assert not caught.ok and {f.check for f in caught.failures} == {"hidden"}
    assert check_game(AuctionChecked, range(30)).ok and check_game(AuctionChecked, range(30)).leak_test == "ran"
    unchecked = check_game(Auction, range(30), {"leak": True})
    assert unchecked.ok and unchecked.leak_test == "not run" and "leak test NOT RUN: auction" in str(unchecked)


def test_a_perfect_information_game_declares_it_and_gets_a_clean_bill():
    nim = game_class(str(ROOT / "docs/examples/my_game.py"))
    report = check_game(nim, range(20))
    assert report.leak_test == "not needed" and "every check passed" in str(report)
    for name in ("tictactoe", "debate", "arithmetic", "teacher_student"):  # built-ins that declare it
        assert game_class(name).hidden_information is False
    for name in ("creator_solver", "sneaky_critic", "kuhn_poker", "goofspiel"):  # built-ins that run the test
        assert check_game(name, range(8)).leak_test == "ran", name


def test_unseeded_randomness_is_one_determinism_line_per_seed_not_crashes():
    class Unseeded(Hints):
        name = "hints_unseeded"

        def reset(self, seed):
            super().reset(seed)
            random.shuffle(self.deck)  # the global random module: not the episode's rng

    report = check_game(Unseeded, range(12))
    checks = [f.check for f in report.failures]
    assert checks and set(checks) == {"determinism"} and len(checks) <= 12, str(report)
    assert str(report).splitlines()[1].startswith("  [determinism]") and "self.rng" in str(report)


def test_a_game_with_fields_but_no_dataclass_is_told_what_to_add():
    import pytest

    from selfplay.games import with_options

    class Options(Game):
        name = "options_no_dataclass"
        roles = ("a", "b")
        size: int = 3

    with pytest.raises(ValueError, match=r"declares size as field\(s\) but is not a dataclass: put @dataclass"):
        with_options(Options, {"size": 4})


def test_strict_check_game_fails_when_the_leak_test_did_not_run(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "coin.py"  # a hidden coin the guesser cannot see, and no resample_hidden
    path.write_text(
        "from selfplay.games import Failure, Game, InvalidAction, Turn, system, user\n"
        "class Coin(Game):\n"
        "    name = 'coin'\n    roles = ('hider', 'guesser')\n    max_turns = 1\n"
        "    def reset(self, seed):\n        self.seed_rng(seed)\n        self.coin, self.guess = self.rng.choice('HT'), None\n"
        "    def turn(self):\n        return None if self.guess else Turn('guesser')\n"
        "    def observe(self, role):\n        return [system('Guess the coin: H or T.'), user('Your guess?')]\n"
        "    def legal_actions(self, role):\n        return ['H', 'T']\n"
        "    def parse(self, role, text):\n"
        "        if text.strip() not in ('H', 'T'):\n            raise InvalidAction(Failure.PARSE_ERROR, 'H or T')\n"
        "        return text.strip()\n"
        "    def step(self, role, actions):\n        self.guess = actions[0]\n"
        "    def rewards(self):\n        w = 1.0 if self.guess == self.coin else -1.0\n"
        "        return {'guesser': w, 'hider': -w}\n"
    )
    base = [sys.executable, "-m", "selfplay.cli", "check-game", str(path), "--seeds", "10"]
    lenient = subprocess.run(base, capture_output=True, text=True)
    assert lenient.returncode == 0 and "leak test NOT RUN" in lenient.stdout, lenient.stdout + lenient.stderr
    strict = subprocess.run([*base, "--strict"], capture_output=True, text=True)
    assert strict.returncode == 1 and "leak test NOT RUN" in strict.stdout

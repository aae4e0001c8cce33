"""Games users write: outcome models, N players, simultaneous moves, the perturbation leak test, loud checks."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from selfplay.agents.scripted import ExpertAgent, RandomAgent
from selfplay.arena.matches import Match, paired_matches, seatings
from selfplay.arena.play import play
from selfplay.arena.records import Episode
from selfplay.arena.stats import error_summary, format_table, summarize
from selfplay.games import exact
from selfplay.games.conformance import check_game
from selfplay.games.core import Failure, Game, InvalidAction, Outcome, Turn, outcome_of, system, user
from selfplay.games.goofspiel import Goofspiel
from selfplay.games.kuhn3 import KuhnPoker3
from selfplay.games.kuhn_poker import KuhnPoker
from selfplay.games.signalling import Signalling
from tests.fakes import ScriptAgent


# -- outcome model ----------------------------------------------------------------------------------------------
def test_outcome_defaults_follow_the_declared_kind():
    assert outcome_of(KuhnPoker).kind == "zero_sum" and outcome_of(KuhnPoker).rates == "reward"
    assert outcome_of(Signalling).rates == "success"

    class Plain(Game):
        roles = ("a", "b")
        zero_sum = False

    assert outcome_of(Plain).kind == "general_sum"


def test_undeclared_outcomes_report_win_rates_only_for_win_lose_ranges():
    class Board(Game):  # two players, -1..1: wins, draws and losses
        roles = ("a", "b")

    class Chips(Game):  # zero-sum chips
        roles = ("a", "b")
        reward_range = (-2.0, 2.0)

    class Tokens(Game):  # three players banking tokens
        roles = ("a", "b", "c")
        zero_sum = False
        reward_range = (0.0, 30.0)

    class Quiz(Game):  # one role: its reward is a score
        roles = ("solver",)
        zero_sum = False
        reward_range = (0.0, 1.0)

    assert (outcome_of(Board).kind, outcome_of(Board).rates) == ("zero_sum", "win")
    assert (outcome_of(Chips).kind, outcome_of(Chips).rates) == ("zero_sum", "reward")
    assert (outcome_of(Tokens).kind, outcome_of(Tokens).rates) == ("general_sum", "reward")
    assert outcome_of(Quiz).rates == "reward"

    class Declared(Tokens):
        outcome = Outcome("general_sum", win_lose=True)

    assert outcome_of(Declared).rates == "win"


class Race(Game):
    """Add 1 or 2; whoever reaches 5 wins 1, the other 0: written as users write it, with no outcome declared."""

    name = "race_01"
    roles = ("a", "b")
    reward_range = (0.0, 1.0)
    max_turns = 10

    def reset(self, seed):
        self.seed_rng(seed)
        self.total, self.mover = 0, 0

    def turn(self):
        return None if self.total >= 5 else Turn(self.roles[self.mover])

    def observe(self, role):
        return [system("Add [1] or [2]; reach 5 to win."), user(f"Total {self.total}.")]

    def parse(self, role, text):
        if text.strip() not in ("[1]", "[2]"):
            raise InvalidAction(Failure.PARSE_ERROR, f"expected [1] or [2], got {text!r}")
        return int(text.strip()[1])

    def step(self, role, actions):
        self.total += actions[0]
        self.mover ^= 1

    def rewards(self):
        return {r: float(r == self.roles[self.mover ^ 1]) for r in self.roles}

    def legal_actions(self, role):
        return ["[1]", "[2]"]


BEATS = {"[rock]": "[scissors]", "[paper]": "[rock]", "[scissors]": "[paper]"}


class RockPaperScissors(Game):
    """One simultaneous round; its single deal is listed, so it is evaluated exactly."""

    name = "rps_test"
    roles = ("p0", "p1")
    max_turns = 1

    def reset(self, seed):
        self.seed_rng(seed)
        self.moves = None

    def deals(self):
        return [(1.0, None)]

    def reset_deal(self, deal):
        self.moves = None

    def turn(self):
        return Turn.together(*self.roles) if self.moves is None else None

    def observe(self, role):
        return [system("Rock, paper, scissors: answer [rock], [paper] or [scissors]."), user("Your move.")]

    def parse(self, role, text):
        if text.strip().lower() not in BEATS:
            raise InvalidAction(Failure.PARSE_ERROR, "expected [rock], [paper] or [scissors]")
        return text.strip().lower()

    def step(self, role, actions):
        raise InvalidAction(Failure.ILLEGAL, "simultaneous only")

    def step_together(self, actions):
        self.moves = actions

    def rewards(self):
        a, b = self.moves["p0"], self.moves["p1"]
        score = 0.0 if a == b else 1.0 if BEATS[a] == b else -1.0
        return {"p0": score, "p1": -score}

    def legal_actions(self, role):
        return list(BEATS)

    def resample_hidden(self, role, rng):
        pass  # nothing hidden but the other's pending move, which observations never show


def test_a_win_paying_1_and_a_loss_0_is_read_as_constant_sum():
    outcome = outcome_of(Race)
    assert (outcome.kind, outcome.total, outcome.rates, outcome.competitive) == ("constant_sum", 1.0, "win", True)
    game = Race()
    assert game.forfeit_rewards("a") == {"a": 0.0, "b": 1.0} and game.truncation_rewards() == {"a": 0.5, "b": 0.5}
    report = check_game(Race, seeds=range(30))
    assert report.ok and "read as constant-sum" in str(report)
    # a model that never answers legally forfeits inside the range, and loses
    agents = {"bad": ScriptAgent([]), "random": RandomAgent()}
    episodes = play(Race, [Match(s, {"a": "bad", "b": "random"}) for s in range(4)], agents, progress=False)
    assert all(e.rewards == {"a": 0.0, "b": 1.0} and e.outcome("a") == "loss" for e in episodes)

    class Scores(Race):  # a non-negative range other than 0..1: amounts, so general-sum
        reward_range = (0.0, 5.0)

    assert outcome_of(Scores).kind == "general_sum"


def test_a_declared_zero_sum_game_paying_1_and_0_fails_with_the_fix_named():
    class Declared(Race):
        zero_sum = True

    report = check_game(Declared, seeds=range(5))
    assert not report.ok and {f.check for f in report.failures} == {"zero-sum"}
    assert "Outcome('constant_sum', total=1)" in report.failures[0].message
    assert str(report).count("[zero-sum]") == 4  # three shown, then one line counting the rest


def test_a_general_sum_declaration_is_not_evaluated_as_zero_sum():
    class Shifted(KuhnPoker):  # Kuhn's chips, declared general-sum (zero_sum left at its default)
        outcome = Outcome("general_sum", win_lose=False)

    assert exact.is_two_player_zero_sum(KuhnPoker) and not exact.is_two_player_zero_sum(Shifted)


def test_constant_sum_kuhn_has_a_quarter_of_kuhns_exploitability():
    class KuhnShare(KuhnPoker):  # the winner's share of a pot of 4: chips c -> (c + 2) / 4, summing to 1
        name = "kuhn_share"
        reward_range = (0.0, 1.0)
        outcome = Outcome("constant_sum", win_lose=False, total=1.0)

        def rewards(self):
            return {r: (v + 2) / 4 for r, v in super().rewards().items()}

    assert exact.is_two_player_zero_sum(KuhnShare) and check_game(KuhnShare, seeds=range(20)).ok
    tree = exact.build_tree(KuhnShare)
    result = exact.exploitability(tree, exact.uniform_policy(tree))
    assert result.nash_conv == pytest.approx(11 / 12 / 4)  # Kuhn's uniform NashConv 11/12 (OpenSpiel), scaled
    assert exact.exploitability(tree, exact.cfr(tree, 200)).exploitability < 1e-3 / 4


@dataclass
class SplitPot(Game):
    """Two players; the higher of two private draws takes a pot of 1 or 2 chips from the other (amounts)."""

    name = "split_pot"
    roles = ("a", "b")
    outcome = Outcome("zero_sum", win_lose=True)  # wrongly: a win of one chip and of two are not the same
    reward_range = (-2.0, 2.0)
    max_turns = 1

    def reset(self, seed):
        self.seed_rng(seed)
        self.cards, self.pot, self.done = [self.rng.random(), self.rng.random()], self.rng.choice([1.0, 2.0]), False

    def turn(self):
        return None if self.done else Turn("a")

    def observe(self, role):
        return [system("split pot"), user("Say [go].")]

    def parse(self, role, text):
        if "[go]" not in text:
            raise InvalidAction(Failure.PARSE_ERROR, "say [go]")
        return "go"

    def step(self, role, actions):
        self.done = True

    def rewards(self):
        sign = 1.0 if self.cards[0] > self.cards[1] else -1.0
        return {"a": sign * self.pot, "b": -sign * self.pot}

    def legal_actions(self, role):
        return ["[go]"]

    def resample_hidden(self, role, rng):
        pass


def test_check_game_fails_a_declared_win_lose_game_whose_rewards_are_amounts():
    report = check_game(SplitPot, range(40))
    assert [f.check for f in report.failures] == ["outcome"], str(report)  # once, not once per seed
    assert "win_lose=False" in str(report) and f"seed={report.failures[0].seed}" in str(report)

    class Declared(SplitPot):
        outcome = Outcome("zero_sum", win_lose=False)

    assert check_game(Declared, range(40)).ok

    class Inferred(SplitPot):  # undeclared with a -1..1 range: still reported as wins, so the checker notes it
        outcome = Game.outcome
        reward_range = (-1.0, 1.0)

        def rewards(self):
            return {r: v / 2 for r, v in super().rewards().items()}

    report = check_game(Inferred, range(40))
    assert report.ok and [n.check for n in report.notes] == ["outcome"] and "note:" in str(report)


def test_the_play_table_of_an_amounts_game_shows_no_win_rates():
    class Tokens(SplitPot):
        outcome = Game.outcome
        zero_sum = False

    agents = {"x": ScriptAgent(["[go]"] * 6), "y": ScriptAgent([])}
    episodes = play(Tokens, paired_matches(Tokens.roles, ["x", "y"], 6), agents, progress=False)
    assert {ep.meta["outcome"]["win_lose"] for ep in episodes} == {False}
    table = format_table(summarize(episodes), outcome_of(Tokens).rates)
    assert "reward" in table and "win" not in table and "loss" not in table


def test_cooperative_forfeit_costs_the_whole_team():
    game = Signalling()
    assert game.forfeit_rewards("sender") == {"sender": 0.0, "receiver": 0.0}
    assert game.forfeit_rewards("receiver") == {"sender": 0.0, "receiver": 0.0}


def test_zero_sum_forfeit_of_three_players_sums_to_zero():
    rewards = KuhnPoker3().forfeit_rewards("player_1")
    assert rewards["player_1"] == -2.0 and sum(rewards.values()) == pytest.approx(0.0)
    assert rewards["player_0"] == rewards["player_2"] == 1.0


def test_a_cooperative_team_of_invalid_movers_is_reported_as_failing():
    """Every answer is garbage: the team forfeits every game, and the table shows 0% success, not a draw."""
    agents = {"bad": ScriptAgent([], name="bad"), "bad2": ScriptAgent([], name="bad2")}
    episodes = play(Signalling, paired_matches(Signalling.roles, ["bad", "bad2"], 20), agents, progress=False)
    assert all(ep.status == "forfeit" and ep.rewards == {"sender": 0.0, "receiver": 0.0} for ep in episodes)
    assert {ep.outcome(r) for ep in episodes for r in ep.rewards} == {"loss"}
    rows = summarize(episodes)
    assert all(r.tally.wins == 0 and r.tally.draws == 0 for r in rows)
    table = format_table(rows, "success")
    assert "success" in table and "draw" not in table and " 0.0%" in table


def test_cooperative_success_counts_team_wins():
    agents = {"expert": ExpertAgent(seed=1), "expert2": ExpertAgent(seed=2)}
    episodes = play(Signalling, paired_matches(Signalling.roles, ["expert", "expert2"], 10), agents, progress=False)
    assert all(ep.outcome("sender") == "win" == ep.outcome("receiver") for ep in episodes)


def test_check_game_rejects_a_cooperative_forfeit_that_pays_the_partner():
    class Generous(Signalling):
        name = "generous"

        def forfeit_rewards(self, offender):
            return {r: 0.0 if r == offender else 1.0 for r in self.roles}

    report = check_game(Generous, range(3))
    assert not report.ok and any(f.check == "endings" for f in report.failures), str(report)


# -- N players --------------------------------------------------------------------------------------------------
def test_three_agents_rotate_through_three_seats_equally():
    matches = paired_matches(KuhnPoker3.roles, ["a", "b", "c"], 30, seed=0)
    for name in "abc":
        seats = [r for m in matches for r, a in m.agents.items() if a == name]
        assert {s: seats.count(s) for s in KuhnPoker3.roles} == {r: 10 for r in KuhnPoker3.roles}
    assert len({m.seed for m in matches}) == 10  # each seed once per rotation


def test_fixed_seats_stay_and_the_others_rotate():
    seats = seatings(KuhnPoker3.roles, ["a", "b"], {"player_2": "judge"})
    assert seats == [
        {"player_0": "a", "player_1": "b", "player_2": "judge"},
        {"player_0": "b", "player_1": "a", "player_2": "judge"},
    ]
    with pytest.raises(ValueError, match="not roles of this game"):
        seatings(KuhnPoker3.roles, ["a", "b"], {"nobody": "x"})


def test_three_player_chips_are_zero_sum_and_follow_the_rules():
    game = KuhnPoker3()
    game.reset(0)
    game.cards = [3, 0, 1]  # Ace, Jack, Queen
    for role, action in (("player_0", "bet"), ("player_1", "fold"), ("player_2", "call")):
        assert game.turn().role == role
        game.step(role, [action])
    assert game.turn() is None
    assert game.rewards() == {"player_0": 3.0, "player_1": -1.0, "player_2": -2.0}  # pot 2 + 1 + 2


def test_pairwise_results_of_a_three_player_game():
    ep = Episode(
        "kuhn_poker_3",
        0,
        {"player_0": "a", "player_1": "b", "player_2": "c"},
        rewards={"player_0": 2.0, "player_1": -1.0, "player_2": -1.0},
    )
    assert ep.pairwise("player_0", "player_1") == 1.0 and ep.pairwise("player_1", "player_2") == 0.5
    assert ep.pairwise("player_2", "player_0") == 0.0


# -- simultaneous moves -----------------------------------------------------------------------------------------
class Recorder:
    """Plays the lowest legal card and records every request it is given, per call."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def act(self, requests):
        from selfplay.agents.base import Completion

        self.calls.append([(r.role, r.messages[-1]["content"]) for r in requests])
        return [[Completion(r.legal_actions[0])] for r in requests]


def test_simultaneous_moves_are_batched_and_observed_before_either_moves():
    agent = Recorder()
    [ep] = play(Goofspiel, [Match(3, {"player_0": "r", "player_1": "r"})], {"r": agent}, progress=False)
    assert ep.status == "done" and ep.num_turns == 4
    assert all(len(call) == 2 and {role for role, _ in call} == {"player_0", "player_1"} for call in agent.calls)
    # round 1: neither view mentions a bid of this round; both bid 1 (the lowest card)
    assert all("Rounds so far: none yet" in view for _, view in agent.calls[0])
    turn0 = [s for s in ep.steps if s.turn == 0]
    assert sorted(s.role for s in turn0) == ["player_0", "player_1"] and all(s.action == "[1]" for s in turn0)


def test_goofspiel_scores_by_hand():
    game = Goofspiel(cards=3)
    game.reset(0)
    game.prizes = [3, 1, 2]
    for b0, b1 in ((1, 3), (2, 1), (3, 2)):
        assert game.turn().roles == ("player_0", "player_1")
        game.step_together({"player_0": b0, "player_1": b1})
    assert game.points == [3, 3] and game.rewards() == {"player_0": 0.0, "player_1": 0.0}


@dataclass
class LeakyBids(Goofspiel):
    """Simultaneous bids written as two sequential turns, showing the second bidder the first one's pending bid."""

    name = "leaky_bids"

    def reset(self, seed):
        super().reset(seed)
        self.pending = None

    def turn(self):
        if len(self.bids) == self.cards:
            return None
        return Turn("player_0" if self.pending is None else "player_1")

    def observe(self, role):
        view = super().observe(role)
        if role == "player_1" and self.pending is not None:
            view[-1] = user(view[-1]["content"] + f" (The other player is thinking about card {self.pending}.)")
        return view

    def step(self, role, actions):
        if role == "player_0":
            self.pending = actions[0]
            return
        self.step_together({"player_0": self.pending, "player_1": actions[0]})
        self.pending = None

    def resample_hidden(self, role, rng):
        super().resample_hidden(role, rng)
        if role == "player_1" and self.pending is not None:  # player_0's bid is not player_1's to see
            self.pending = rng.choice(self.hands[0])


def test_check_game_catches_a_leaky_simultaneous_game_with_its_seed():
    assert check_game(Goofspiel, range(30)).ok
    report = check_game(LeakyBids, range(30))
    assert not report.ok
    failure = next(f for f in report.failures if f.check == "hidden")
    assert "player_1" in failure.message
    # the seed reproduces it on its own
    assert not check_game(LeakyBids, [failure.seed]).ok


# -- perturbation leak test -------------------------------------------------------------------------------------
@dataclass
class HintingKuhn(KuhnPoker):
    """Never names the opponent's card, but says whether it is higher: a derived leak no secret string catches."""

    name = "hinting_kuhn"

    def observe(self, role):
        view = super().observe(role)
        seat = self.roles.index(role)
        hint = "higher" if self.cards[1 - seat] > self.cards[seat] else "lower"
        return [view[0], user(view[1]["content"] + f" Your opponent's card is {hint} than yours.")]


def test_derived_leak_is_caught_by_perturbation_not_by_secrets():
    report = check_game(HintingKuhn, range(20))
    assert not report.ok and {f.check for f in report.failures} == {"hidden"}, str(report)
    assert check_game(KuhnPoker, range(20)).ok


def _higher(game, role) -> bool:
    seat = game.roles.index(role)
    return game.cards[1 - seat] > game.cards[seat]


class CompactHint(KuhnPoker):
    """The chat observation is clean; the one-line observation a small model reads says who holds more."""

    name = "compact_hint"

    def compact_observation(self, role):
        return super().compact_observation(role) + ("+" if _higher(self, role) else "-")


class OrderHint(KuhnPoker):
    """The legal actions come in an order that depends on the opponent's card."""

    name = "order_hint"

    def legal_actions(self, role):
        actions = super().legal_actions(role)
        return actions[::-1] if _higher(self, role) else actions


class RepromptHint(KuhnPoker):
    """A re-prompt after an unusable answer tells the player whether its opponent's card is higher."""

    name = "reprompt_hint"

    def parse(self, role, text):
        try:
            return super().parse(role, text)
        except InvalidAction as exc:
            raise InvalidAction(exc.code, f"{exc} (you are {'behind' if _higher(self, role) else 'ahead'})") from None


@pytest.mark.parametrize(
    "cls, what",
    [(CompactHint, "compact observation"), (OrderHint, "legal actions"), (RepromptHint, "re-prompt message")],
)
def test_leaks_through_every_channel_a_player_reads_are_caught(cls, what):
    report = check_game(cls, range(20))
    assert not report.ok and {f.check for f in report.failures} == {"hidden"}, str(report)
    # the failure names the channel and quotes where it changed
    assert "changes when what it cannot see is re-sampled" in str(report) and f"(its {what}" in str(report)
    assert " became " in str(report)


@dataclass
class WalkAway(Game):
    """Two roles whose private values are stated in the same words: equal values are not a leak."""

    name = "walk_away"
    roles = ("buyer", "seller")
    zero_sum = False
    reward_range = (0.0, 5.0)
    max_turns = 2

    def reset(self, seed):
        self.seed_rng(seed)
        self.values = [self.rng.randint(1, 2), self.rng.randint(1, 2)]
        self.done = 0

    def turn(self):
        return None if self.done == 2 else Turn(self.roles[self.done])

    def observe(self, role):
        v = self.values[self.roles.index(role)]
        return [system("walk away"), user(f"Your private walk-away value is {v} coins. Say [ok].")]

    def parse(self, role, text):
        if "[ok]" not in text:
            raise InvalidAction(Failure.PARSE_ERROR, "say [ok]")
        return "ok"

    def step(self, role, actions):
        self.done += 1

    def rewards(self):
        return {r: float(v) for r, v in zip(self.roles, self.values)}

    def legal_actions(self, role):
        return ["[ok]"]

    def secrets(self, role):
        return [f"Your private walk-away value is {self.values[self.roles.index(role)]} coins"]

    def resample_hidden(self, role, rng):
        other = 1 - self.roles.index(role)
        self.values[other] = rng.randint(1, 2)


def test_shared_secret_phrases_are_not_false_leaks():
    assert check_game(WalkAway, range(40)).ok


# -- loud failures ----------------------------------------------------------------------------------------------
class BrokenInfo(KuhnPoker):
    name = "broken_info"

    def info(self):
        raise KeyError("missing")


class BadTruncation(KuhnPoker):
    name = "bad_truncation"

    def truncation_rewards(self):
        return {"player_0": 0.0}


class MidgameInfo(KuhnPoker):
    """info() works once the hand is over but breaks while it is running (as a truncated game would call it)."""

    name = "midgame_info"

    def info(self):
        return {"cards": self.cards} if self.turn() is None else {"pending": object()}


def test_check_game_exercises_info_forfeit_and_truncation():
    report = check_game(BrokenInfo, range(2))
    assert not report.ok and report.failures[0].check == "crash" and "KeyError" in report.failures[0].message
    report = check_game(BadTruncation, range(2))
    assert not report.ok and "truncation_rewards" in report.failures[0].message
    report = check_game(MidgameInfo, range(4))
    assert not report.ok and "info() mid-game" in report.failures[0].message


def test_error_summary_counts_and_quotes_the_last_traceback_line():
    episodes = play(
        BrokenInfo,
        paired_matches(KuhnPoker.roles, ["r", "r2"], 4),
        {"r": RandomAgent(seed=0, name="r"), "r2": RandomAgent(seed=1, name="r2")},
        progress=False,
    )
    summary = error_summary(episodes)
    assert summary.startswith("4 episode(s) ended in an error") and "KeyError: 'missing'" in summary
    assert error_summary([]) is None


def test_every_new_builtin_game_passes_check_game():
    from selfplay.games.debate import Debate
    from selfplay.games.negotiation import Negotiation

    for cls in (Goofspiel, Signalling, KuhnPoker3, Negotiation, Debate):
        assert check_game(cls, range(60)).ok, str(check_game(cls, range(60)))
        assert cls.expert_action is not Game.expert_action


def test_experts_beat_random_in_the_new_games():
    rng_agents = lambda: {"expert": ExpertAgent(seed=1), "random": RandomAgent(seed=2)}  # noqa: E731
    goof = play(Goofspiel, paired_matches(Goofspiel.roles, ["expert", "random"], 200), rng_agents(), progress=False)
    expert = [ep.rewards[r] for ep in goof for r, a in ep.agents.items() if a == "expert"]
    assert sum(expert) / len(expert) > 0.5
    kuhn3 = play(
        KuhnPoker3, paired_matches(KuhnPoker3.roles, ["expert", "random", "random"], 600), rng_agents(), progress=False
    )
    chips = [ep.rewards[r] for ep in kuhn3 for r, a in ep.agents.items() if a == "expert"]
    assert sum(chips) / len(chips) > 0.2


# -- free-text games: negotiation (general-sum) and debate with a judge -------------------------------------------
def test_negotiation_trade_is_valued_by_hand():
    from selfplay.games.negotiation import Negotiation

    game = Negotiation(rounds=2)
    game.reset(0)
    game.inventory = [{"Wood": 5, "Gold": 2}, {"Wood": 1, "Gold": 4}]
    game.values = [{"Wood": 8.0, "Gold": 33.0}, {"Wood": 12.0, "Gold": 27.0}]
    game.start = [5 * 8 + 2 * 33, 12 + 4 * 27]  # 106 and 120
    offer = game.parse("player_0", "Take my wood. [Offer: 3 Wood -> 1 Gold]")
    game.step("player_0", [offer])
    assert game.observe("player_1")[-1]["content"].count("Pending offer to you") == 1
    with pytest.raises(Exception, match="needs an offer pending"):
        game.parse("player_0", "[Accept]")
    game.step("player_1", [game.parse("player_1", "Fine. [Accept]")])
    assert game.inventory == [{"Wood": 2, "Gold": 3}, {"Wood": 4, "Gold": 3}]
    rewards = game.rewards()  # player_0: 2*8 + 3*33 = 115 (+9 of 106); player_1: 4*12 + 3*27 = 129 (+9 of 120)
    assert rewards["player_0"] == pytest.approx(9 / 106) and rewards["player_1"] == pytest.approx(9 / 120)
    assert outcome_of(Negotiation).kind == "general_sum"
    for bad in ("no action here", "[Offer: 9 Wood -> 1 Gold]", "[Offer: banana -> 1 Gold]", "[Pass] [Pass]"):
        game.reset(0)
        with pytest.raises(InvalidAction):
            game.parse("player_0", bad)


def test_negotiation_values_stay_private():
    from selfplay.games.negotiation import Negotiation

    assert check_game(Negotiation, range(50)).ok

    class Boastful(Negotiation):
        name = "boastful"

        def observe(self, role):
            view = super().observe(role)
            other = self.values[1 - self.roles.index(role)]["Gold"]
            hint = "above" if other > 30 else "below"
            return [view[0], user(view[1]["content"] + f" (They value Gold {hint} 30.)")]

    report = check_game(Boastful, range(20))
    assert not report.ok and report.failures[0].check == "hidden"


def test_debate_rewards_follow_the_judge_and_the_truth():
    from selfplay.games.debate import Debate

    game = Debate()
    game.reset(4)
    product = game.x * game.y
    truthful = "debater_a" if (game.side("debater_a") == "yes") == (product > game.threshold) else "debater_b"
    for role in ("debater_a", "debater_b"):
        game.step(role, [game.parse(role, game.expert_action(role, random.Random(0)))])
    verdict = game.parse("judge", game.expert_action("judge", random.Random(0)))
    game.step("judge", [verdict])
    rewards = game.rewards()
    assert rewards[truthful] == 1.0 and rewards["judge"] == 1.0 and sum(rewards.values()) == 1.0
    assert Debate().forfeit_rewards("judge") == {"debater_a": 0.0, "debater_b": 0.0, "judge": 0.0}


# -- roles set by an option -------------------------------------------------------------------------------------
@dataclass
class SealedBids(Game):
    """``players`` bidders (roles from the option) bid 0-3 at once for a prize worth 3; the top bid pays and wins."""

    name = "sealed_bids"
    outcome = Outcome("general_sum", win_lose=False)
    reward_range = (-3.0, 3.0)
    max_turns = 1
    players: int = 3

    def __post_init__(self):
        if self.players < 2:
            raise ValueError(f"players={self.players}: expected >= 2")
        self.roles = tuple(f"bidder_{i}" for i in range(self.players))

    def reset(self, seed):
        self.seed_rng(seed)
        self.bids = None

    def turn(self):
        return None if self.bids is not None else Turn.together(*self.roles)

    def observe(self, role):
        return [system("Bid 0-3 for a prize worth 3."), user("Your bid?")]

    def parse(self, role, text):
        if text.strip() not in ("0", "1", "2", "3"):
            raise InvalidAction(Failure.PARSE_ERROR, f"expected 0-3, got {text!r}")
        return int(text)

    def step_together(self, actions):
        self.bids = actions

    def step(self, role, actions):
        raise NotImplementedError

    def rewards(self):
        winner = max(self.roles, key=lambda r: (self.bids[r], -self.roles.index(r)))
        return {r: 3.0 - self.bids[r] if r == winner else 0.0 for r in self.roles}

    def legal_actions(self, role):
        return ["0", "1", "2", "3"]

    def resample_hidden(self, role, rng):
        pass


def test_a_game_whose_roles_follow_an_option_is_checked_and_played_with_those_roles():
    from selfplay.games.core import validate_game_class, with_options

    validate_game_class(SealedBids)  # no class attribute roles: read off a default instance
    assert with_options(SealedBids, {}).roles == ("bidder_0", "bidder_1", "bidder_2")
    five = with_options(SealedBids, {"players": 5})
    assert five.roles == tuple(f"bidder_{i}" for i in range(5)) and issubclass(five, SealedBids)
    assert check_game(five, range(20), {"players": 5}).ok
    with pytest.raises(ValueError, match="bad options .*players"):
        with_options(SealedBids, {"players": "many"})
    agents = {f"r{i}": RandomAgent(seed=i, name=f"r{i}") for i in range(5)}
    episodes = play(lambda: five(players=5), paired_matches(five.roles, list(agents), 10), agents, progress=False)
    assert all(set(ep.rewards) == set(five.roles) for ep in episodes)
    assert {ep.agents["bidder_4"] for ep in episodes} == set(agents)  # every agent sat in the fifth seat


def test_a_game_without_roles_is_refused_by_name():
    from selfplay.games.core import validate_game_class

    class NoRoles(SealedBids):
        def __post_init__(self):
            pass

    with pytest.raises(TypeError, match="must set the class attribute 'roles'"):
        validate_game_class(NoRoles)


def test_check_game_names_a_turn_for_a_stranger_and_an_observation_that_is_not_messages():
    from tests.arena.test_play import _Broken

    class Stranger(_Broken):
        def __init__(self):
            super().__init__("stranger")

    class Text(_Broken):
        def __init__(self):
            super().__init__("string")

    stranger, text = check_game(Stranger, range(3)), check_game(Text, range(3))
    assert {f.check for f in stranger.failures} == {"turn"} and "['referee']" in str(stranger)
    assert {f.check for f in text.failures} == {"observe"} and "chat messages" in str(text)


def test_option_values_nan_and_inf_stay_words():
    from selfplay.agents.spec_syntax import parse_key_values

    assert parse_key_values(["mode=nan", "x=inf", "n=3", "p=0.5", "flag=true"]) == {
        "mode": "nan",
        "x": "inf",
        "n": 3,
        "p": 0.5,
        "flag": True,
    }


class MissingDeal(KuhnPoker):
    """Lists five of Kuhn's six deals: exact figures would be computed over 5/6 of the hands."""

    name = "missing_deal"

    def deals(self):
        return super().deals()[:5]


class ForgetfulDeal(KuhnPoker):
    """Starts a deal with one card dealt: play from a seed works, exact enumeration cannot."""

    name = "forgetful_deal"

    def reset_deal(self, deal):
        super().reset_deal(deal)
        self.cards = self.cards[:1]


@pytest.mark.parametrize(
    "cls, words",
    [
        (MissingDeal, "deal probabilities sum to 0.8333333333333333, not 1"),
        (ForgetfulDeal, "enumerating the deals: IndexError"),
    ],
)
def test_check_game_enumerates_the_deals_as_exact_evaluation_will(cls, words):
    report = check_game(cls, range(5))
    deals = [f for f in report.failures if f.check == "deals"]
    assert len(deals) == 1 and words in str(deals[0]) and "seed=" not in str(deals[0]), str(report)
    assert check_game(KuhnPoker, range(5)).ok


def test_game_options_are_checked_against_the_dataclass_fields_and_fractions_are_numbers():
    from selfplay.games.core import with_options

    with pytest.raises(ValueError, match="option cards='x': expected an int"):
        with_options(Goofspiel, {"cards": "x"})
    with pytest.raises(ValueError, match="no option 'card'; goofspiel takes cards"):
        with_options(Goofspiel, {"card": 3})
    options = {"alpha": "1/12"}
    with_options(KuhnPoker, options)
    assert options == {"alpha": pytest.approx(1 / 12)} and KuhnPoker(**options).alpha == pytest.approx(1 / 12)
    with pytest.raises(ValueError, match="option alpha='a lot': expected a float"):
        with_options(KuhnPoker, {"alpha": "a lot"})

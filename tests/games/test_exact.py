"""Exact exploitability against known values: OpenSpiel's NashConv for uniform Kuhn and Leduc, the Kuhn
equilibrium family, and a policy worked out by hand."""

from dataclasses import dataclass
from itertools import permutations

import pytest

from selfplay.games import Game, Outcome, Turn, bracket_word, exact, system, user
from selfplay.games.kuhn_poker import KuhnPoker
from selfplay.games.leduc_poker import LeducPoker


@pytest.fixture(scope="module")
def kuhn():
    return exact.build_tree(KuhnPoker)


@pytest.fixture(scope="module")
def leduc():
    return exact.build_tree(LeducPoker)


def _always(tree, preferred):
    """At each state, the first of ``preferred`` that is legal, with probability 1."""
    out = {}
    for key, info in tree.infostates().items():
        choice = next(a for a in preferred if a in info.legal)
        out[key] = {a: float(a == choice) for a in info.legal}
    return out


def test_kuhn_tree_has_twelve_information_states(kuhn):
    assert len(kuhn.infostates()) == 12 and exact.is_enumerable(KuhnPoker)


def test_uniform_kuhn_matches_openspiel(kuhn):
    result = exact.exploitability(kuhn, exact.uniform_policy(kuhn))
    assert result.nash_conv == pytest.approx(11 / 12) and result.exploitability == pytest.approx(0.458333333)
    assert result.best_response == pytest.approx((1 / 2, 5 / 12))


@pytest.mark.parametrize("alpha", [0.0, 1 / 12, 1 / 6, 1 / 3])
def test_every_kuhn_equilibrium_of_the_alpha_family_is_unexploitable(kuhn, alpha):
    result = exact.exploitability(kuhn, exact.expert_policy(kuhn, lambda: KuhnPoker(alpha=alpha)))
    assert result.exploitability == pytest.approx(0.0, abs=1e-12)
    assert result.value[0] == pytest.approx(-1 / 18)  # the game value


def test_always_bet_or_call_is_exploitable_by_one_third(kuhn):
    # By hand: against a player that always bets and calls, the best response calls only with the King and bets
    # or calls with the Queen (worth 0), and gives up the Jack (fold or check-fold, -1): (2 + 0 - 1) / 3 = 1/3 for
    # either seat, while the policy against itself is worth 0 to each; NashConv 2/3, exploitability 1/3.
    result = exact.exploitability(kuhn, _always(kuhn, ["[bet]", "[call]"]))
    assert result.best_response == pytest.approx((1 / 3, 1 / 3)) and result.exploitability == pytest.approx(1 / 3)


def test_always_check_or_fold_matches_openspiel_first_action_policy(kuhn):
    assert exact.exploitability(kuhn, _always(kuhn, ["[check]", "[fold]"])).nash_conv == pytest.approx(2.0)


def test_uniform_leduc_matches_openspiel(leduc):
    result = exact.exploitability(leduc, exact.uniform_policy(leduc))
    assert result.nash_conv == pytest.approx(4.747222222222222)
    assert result.value[0] == pytest.approx(-0.078125)


def test_the_leduc_expert_is_a_close_equilibrium(leduc):
    result = exact.exploitability(leduc, exact.expert_policy(leduc, LeducPoker))
    assert result.exploitability < 0.01 and result.value[0] == pytest.approx(-0.0856, abs=0.002)


def test_cfr_plus_converges_on_kuhn(kuhn):
    assert exact.exploitability(kuhn, exact.cfr(kuhn, 200)).exploitability < 1e-3
    assert exact.exploitability(kuhn, exact.cfr(kuhn, 200, plus=False)).exploitability < 0.01


def test_the_reach_weighted_average_of_two_equilibria_is_an_equilibrium(kuhn):
    ends = [exact.expert_policy(kuhn, lambda: KuhnPoker(alpha=a)) for a in (0.0, 1 / 3)]
    mixed = exact.average_policy(kuhn, ends)
    assert exact.exploitability(kuhn, mixed).exploitability == pytest.approx(0.0, abs=1e-12)
    # a plain per-state mean of a best response and the uniform policy is not the same as the reach-weighted one
    rushed = [_always(kuhn, ["[bet]", "[call]"]), exact.uniform_policy(kuhn)]
    assert exact.average_policy(kuhn, rushed) != {
        k: {a: (rushed[0][k][a] + rushed[1][k][a]) / 2 for a in v} for k, v in rushed[0].items()
    }


def test_a_policy_missing_states_is_refused(kuhn):
    partial = dict(list(exact.uniform_policy(kuhn).items())[:5])
    with pytest.raises(ValueError, match="no probabilities for 7 information state"):
        exact.exploitability(kuhn, partial)


# -- a game written outside the package, checked against a hand computation ----------------------------------------
@dataclass
class HighCard(Game):
    name = "high_card_outsider"
    roles = ("p0", "p1")
    outcome = Outcome("zero_sum", win_lose=False)
    reward_range = (-2.0, 2.0)
    max_turns = 2

    def deals(self):
        return [(1 / 6, (a, b)) for a, b in permutations((1, 2, 3), 2)]

    def reset_deal(self, deal):
        self.cards, self.history = list(deal), []

    def reset(self, seed):
        self.seed_rng(seed)
        deal = self.rng.choice([d for _, d in self.deals()])
        self.reset_deal(deal)

    def turn(self):
        if not self.history:
            return Turn("p0")
        if self.history == ["bet"]:
            return Turn("p1")
        return None

    def observe(self, role):
        me = self.roles.index(role)
        return [system("High card."), user(f"Your card: {self.cards[me]}. History: {' '.join(self.history) or '-'}")]

    def legal_actions(self, role):
        return ["[bet]", "[check]"] if role == "p0" else ["[call]", "[fold]"]

    def parse(self, role, text):
        words = ["bet", "check"] if role == "p0" else ["call", "fold"]
        return bracket_word(text, words, words, "[word]")

    def step(self, role, actions):
        self.history.append(actions[0])

    def rewards(self):
        s = 1.0 if self.cards[0] > self.cards[1] else -1.0
        h = self.history
        v = s if h == ["check"] else 1.0 if h == ["bet", "fold"] else 2 * s
        return {"p0": v, "p1": -v}

    def resample_hidden(self, role, rng):
        me = self.roles.index(role)
        self.cards[1 - me] = rng.choice([c for c in (1, 2, 3) if c != self.cards[me]])


def test_exploitability_of_a_new_game_matches_a_hand_computation():
    """High card, deck {1, 2, 3}: p0 checks (showdown for 1) or bets; p1 calls (showdown for 2) or folds (p0 +1).
    Uniform play: p0 wins s + 1/4 on average, s = +-1 the showdown, so u0 = 1/4. p0's best response bets always:
    s + 1/2 -> 1/2. p1's, after a bet: fold with 1 (-1), call with 2 (0) and with 3 (+2), 1/3 on average, and
    0 after a check: 1/6. NashConv = (1/2 - 1/4) + (1/6 + 1/4) = 2/3; exploitability 1/3."""
    from selfplay.games.conformance import check_game

    assert check_game(HighCard, range(30)).ok and exact.is_enumerable(HighCard)
    tree = exact.build_tree(HighCard)
    result = exact.exploitability(tree, exact.uniform_policy(tree))
    assert result.value == pytest.approx((0.25, -0.25))
    assert result.best_response == pytest.approx((0.5, 1 / 6))
    assert result.exploitability == pytest.approx(1 / 3)


def test_deals_in_the_wrong_order_are_named():
    class Flipped(HighCard):
        def deals(self):
            return [(deal, p) for p, deal in super().deals()]

    with pytest.raises(ValueError, match=r"deals\(\) must list \(probability, deal\) pairs"):
        exact.build_tree(Flipped)


def test_a_simultaneous_move_is_enumerated_without_the_second_mover_seeing_the_first():
    """Rock-paper-scissors as one Turn.together: by hand, uniform play is the equilibrium (0), always-rock lets
    the other gain 1 (NashConv 1), and CFR+ finds the equilibrium."""
    from tests.games.test_generality import RockPaperScissors

    tree = exact.build_tree(RockPaperScissors)
    assert len(tree.infostates()) == 2  # one per player: the second mover's state is the same after any first move
    assert exact.exploitability(tree, exact.uniform_policy(tree)).nash_conv == pytest.approx(0.0)
    rock = exact.uniform_policy(tree)
    first = next(k for k, i in tree.infostates().items() if i.role == "p0")
    rock[first] = {"[rock]": 1.0, "[paper]": 0.0, "[scissors]": 0.0}
    result = exact.exploitability(tree, rock)
    assert result.nash_conv == pytest.approx(1.0) and result.best_response == pytest.approx((0.0, 1.0))
    assert exact.exploitability(tree, exact.cfr(tree, 300)).nash_conv < 1e-2


def test_several_samples_at_one_decision_are_not_enumerated_and_not_a_conformance_failure():
    """A GRPO-style turn (K answers on one observation) has no single-action tree: exact evaluation declines with
    TooLarge, and check-game does not fail the game's listed deals for it."""
    from selfplay.games.conformance import check_game
    from tests.fakes import GuessGame

    class Dealt(GuessGame):
        def deals(self):
            return [(1.0, None)]

        def reset_deal(self, deal):
            self.reset(0)

    with pytest.raises(exact.TooLarge, match="asks 'guesser' for 4 samples at once"):
        exact.build_tree(Dealt)
    assert check_game(Dealt, seeds=range(5)).ok

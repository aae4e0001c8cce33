"""Exact exploitability against known values: OpenSpiel's NashConv for uniform Kuhn and Leduc, the Kuhn
equilibrium family, and a policy worked out by hand."""

import pytest

from selfplay.games import exact
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
    assert exact.average_policy(kuhn, rushed) != {k: {a: (rushed[0][k][a] + rushed[1][k][a]) / 2 for a in v}
                                                  for k, v in rushed[0].items()}


def test_a_policy_missing_states_is_refused(kuhn):
    partial = dict(list(exact.uniform_policy(kuhn).items())[:5])
    with pytest.raises(ValueError, match="no probabilities for 7 information state"):
        exact.exploitability(kuhn, partial)

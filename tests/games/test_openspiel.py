"""OpenSpiel games through ``openspiel:GAME``, and our exact exploitability checked against OpenSpiel's."""

import sys

import pytest

pyspiel = pytest.importorskip("pyspiel")  # in requirements.txt, so CI runs these

from open_spiel.python import policy as os_policy  # noqa: E402
from open_spiel.python.algorithms import exploitability as os_exploitability  # noqa: E402

from selfplay.agents.specs import build_agents  # noqa: E402
from selfplay.arena.matches import Match, paired_matches  # noqa: E402
from selfplay.arena.play import play  # noqa: E402
from selfplay.games import exact  # noqa: E402
from selfplay.games.conformance import check_game  # noqa: E402
from selfplay.games.core import outcome_of  # noqa: E402
from selfplay.games.kuhn_poker import KuhnPoker  # noqa: E402
from selfplay.games.registry import game_class  # noqa: E402


@pytest.mark.parametrize(
    "spec",
    ["kuhn_poker", "leduc_poker", "tic_tac_toe", "goofspiel(num_cards=4)", "kuhn_poker(players=3)", "liars_dice"],
)
def test_openspiel_games_pass_check_game(spec):
    report = check_game(f"openspiel:{spec}", range(40))
    assert report.ok, str(report)


def test_roles_outcomes_and_moves_map_over():
    ttt = game_class("openspiel:tic_tac_toe")
    assert ttt.roles == ("player_0", "player_1") and outcome_of(ttt).win_lose
    kuhn3 = game_class("openspiel:kuhn_poker(players=3)")
    assert kuhn3.roles == ("player_0", "player_1", "player_2") and outcome_of(kuhn3).rates == "reward"
    game = game_class("openspiel:kuhn_poker")()
    game.reset(3)
    assert game.legal_actions("player_0") == ["[Pass]", "[Bet]"]
    assert game.parse("player_0", "I will [Bet]") == 1
    with pytest.raises(Exception, match="not legal"):
        game.parse("player_0", "[Fold]")
    game.step("player_0", [1])
    game.step("player_1", [1])
    assert game.turn() is None and sorted(game.rewards().values()) == [-2.0, 2.0]


def test_play_and_simultaneous_turns_through_the_adapter():
    cls = game_class("openspiel:goofspiel(num_cards=4)")
    agents = build_agents(["random", "random"])
    episodes = play(cls, paired_matches(cls.roles, list(agents), 20), agents, progress=False)
    assert all(ep.status == "done" and sum(ep.rewards.values()) == 0 for ep in episodes)
    first = [s for s in episodes[0].steps if s.turn == 0]
    assert sorted(s.role for s in first) == ["player_0", "player_1"]  # a simultaneous turn: both bid at turn 0
    ttt = game_class("openspiel:tic_tac_toe")
    with pytest.raises(ValueError, match="defines none"):  # OpenSpiel games ship no expert: refused before playing
        play(
            ttt,
            [Match(0, {"player_0": "expert", "player_1": "random"})],
            build_agents(["expert", "random"]),
            progress=False,
        )


def test_missing_extra_names_the_install(monkeypatch):
    from selfplay.games import openspiel

    monkeypatch.setitem(sys.modules, "pyspiel", None)
    openspiel.openspiel_game.cache_clear()
    with pytest.raises(ValueError, match=r"pip install -e \.\[openspiel\]"):
        game_class("openspiel:kuhn_poker(players=2)")
    openspiel.openspiel_game.cache_clear()


def aggressive(card: int, history: str) -> float:
    """A lopsided policy to compare on: P(bet or call) by card and history length."""
    return min(0.95, 0.1 + 0.3 * card + 0.15 * len(history))


def our_policy(tree, p_aggressive=aggressive):
    out = {}
    for game, info in exact.decision_games(tree, KuhnPoker):
        if info.key in out:
            continue
        p = p_aggressive(game.cards[game.roles.index(info.role)], game.history)
        facing = game.history.endswith("b")
        out[info.key] = {"[call]": p, "[fold]": 1 - p} if facing else {"[bet]": p, "[check]": 1 - p}
    return out


def openspiel_policy(game, p_aggressive=aggressive):
    tabular = os_policy.TabularPolicy(game)
    for state_key, row in tabular.state_lookup.items():
        card, moves = int(state_key[0]), state_key[1:]
        history, facing = "", False
        for m in moves:  # OpenSpiel's p(ass)/b(et) as our c(heck)/b(et)/c(all)/f(old)
            history += ("f" if facing else "c") if m == "p" else ("c" if facing else "b")
            facing = facing or m == "b"
        p = p_aggressive(card, history)
        tabular.action_probability_array[row] = [1 - p, p]  # actions: 0 Pass, 1 Bet
    return tabular


@pytest.mark.parametrize("p_aggressive", [aggressive, lambda card, history: 0.5])
def test_our_exact_exploitability_agrees_with_openspiel(p_aggressive):
    tree = exact.build_tree(KuhnPoker)
    ours = exact.exploitability(tree, our_policy(tree, p_aggressive)).exploitability
    game = pyspiel.load_game("kuhn_poker")
    theirs = os_exploitability.exploitability(game, openspiel_policy(game, p_aggressive))
    assert ours == pytest.approx(theirs, abs=1e-9)
    assert theirs > 0.05


def test_leduc_uniform_matches_openspiel():
    from selfplay.games.leduc_poker import LeducPoker

    ours = exact.exploitability(exact.build_tree(LeducPoker), exact.uniform_policy(exact.build_tree(LeducPoker)))
    game = pyspiel.load_game("leduc_poker")
    assert ours.exploitability == pytest.approx(
        os_exploitability.exploitability(game, os_policy.UniformRandomPolicy(game))
    )


SEQUENCES = ["pp", "pbp", "pbb", "bp", "bb"]  # OpenSpiel's five Kuhn betting sequences (p pass, b bet)


def test_openspiel_kuhn_and_ours_pay_the_same_for_every_deal_and_sequence():
    """6 deals x 5 betting sequences: the adapter's returns equal the built-in game's."""
    adapter = game_class("openspiel:kuhn_poker")
    for a in range(3):
        for b in range(3):
            if a == b:
                continue
            for sequence in SEQUENCES:
                theirs = adapter()
                theirs.reset(0)
                theirs.state = pyspiel.load_game("kuhn_poker").new_initial_state()
                theirs.state.apply_action(a)
                theirs.state.apply_action(b)
                ours = KuhnPoker()
                ours.reset_deal((a, b))
                for i, move in enumerate(sequence):
                    role = ours.roles[i % 2]
                    theirs.step(role, [0 if move == "p" else 1])
                    word = {
                        "p": "fold" if ours.history.endswith("b") else "check",
                        "b": "call" if ours.history.endswith("b") else "bet",
                    }[move]
                    ours.step(role, [word])
                assert theirs.turn() is None and ours.turn() is None
                assert theirs.rewards() == ours.rewards(), (a, b, sequence)


def test_the_builtin_kuhn_expert_scores_the_game_value_through_openspiel():
    """Our Kuhn equilibrium (alpha = 1/6), as an OpenSpiel policy: player 0 wins -1/18 per hand, exactly."""
    from open_spiel.python.algorithms import expected_game_score

    from selfplay.games.kuhn_poker import nash_probabilities

    def expert(card, history):
        probs = nash_probabilities(card, history)
        return probs.get("bet", probs.get("call", 0.0))

    game = pyspiel.load_game("kuhn_poker")
    tabular = openspiel_policy(game, expert)
    values = expected_game_score.policy_value(game.new_initial_state(), [tabular, tabular])
    assert values[0] == pytest.approx(-1 / 18) and values[1] == pytest.approx(1 / 18)
    assert os_exploitability.exploitability(game, tabular) == pytest.approx(0.0, abs=1e-12)


TEN = [
    "kuhn_poker",
    "leduc_poker",
    "tic_tac_toe",
    "goofspiel(num_cards=4)",
    "kuhn_poker(players=3)",
    "liars_dice",
    "connect_four",
    "matrix_rps",
    "first_sealed_auction",
    "blotto",
    "oshi_zumo",
    "pig(players=3,winscore=10)",
]


@pytest.mark.parametrize("spec", TEN[6:])
def test_more_openspiel_games_pass_check_game(spec):
    report = check_game(f"openspiel:{spec}", range(15))
    assert report.ok, str(report)


def test_an_openspiel_game_in_a_tournament(tmp_path):
    import json

    from selfplay.arena.tournament import main as tournament

    out = tmp_path / "tour"
    assert (
        tournament(
            [
                "openspiel:tic_tac_toe",
                "--agents",
                "random",
                "r2=random",
                "--games",
                "10",
                "--out",
                str(out),
                "--bootstrap",
                "10",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["game"] == "openspiel:tic_tac_toe" and {r["agent"] for r in summary["ratings"]} == {"random", "r2"}


def test_an_unknown_or_misparametrised_game_is_one_line_with_a_suggestion():
    with pytest.raises(ValueError, match=r"^OpenSpiel has no game 'kuhn_pokr'; did you mean kuhn_poker") as unknown:
        game_class("openspiel:kuhn_pokr")
    assert "\n" not in str(unknown.value)
    with pytest.raises(ValueError, match=r"cannot load 'kuhn_poker\(players=x\)': Wrong type") as bad:
        game_class("openspiel:kuhn_poker(players=x)")
    assert "\n" not in str(bad.value)


def test_labels_that_differ_only_in_case_are_told_apart():
    game = game_class("openspiel:chess")()
    game.reset(0)
    game._actions = lambda role: {"Bxc4": 1, "bxc4": 2, "Nf3": 3}  # chess: bishop and pawn captures
    assert [game.parse("player_0", t) for t in ("[Bxc4]", "I play [bxc4].", "[nf3]")] == [1, 2, 3]


def test_games_that_draw_chance_inside_them_are_seeded_per_episode():
    # negotiation draws its item pool with its own rng_seed, not at chance nodes: the episode seed must reach it
    cls = game_class("openspiel:negotiation")

    def pool(seed):
        game = cls()
        game.reset(seed)
        return str(game.state).split("Item pool:")[1].splitlines()[0]

    pools = [pool(s) for s in range(6)]
    assert [pool(s) for s in range(6)] == pools and len(set(pools)) > 1  # reproducible, and the seed matters
    assert check_game(cls, range(4)).ok


def test_truncation_pays_the_running_returns_within_range_and_action_structs_are_refused():
    cls = game_class("openspiel:cliff_walking")  # every reward negative: a 0 at truncation would be out of range
    game = cls()
    game.reset(0)
    low, high = cls.reward_range
    assert all(low <= v <= high for v in game.truncation_rewards().values())
    assert check_game(cls, range(4)).ok
    with pytest.raises(ValueError, match="'crossword' is not supported: .*action structs"):
        game_class("openspiel:crossword")
    with pytest.raises(ValueError, match="'mfg_crowd_modelling' is not supported: its dynamics are mean_field"):
        game_class("openspiel:mfg_crowd_modelling")  # it crashed at every turn (a mean-field node has no player)


class _ThroughAdapter(os_policy.Policy):
    """An OpenSpiel policy that answers from a selfplay exact policy, looking each OpenSpiel state up by the
    adapter's own observation of it (so the mapping is the one the learner is scored on)."""

    def __init__(self, game, cls, ours):
        super().__init__(game, list(range(game.num_players())))
        self.cls, self.ours = cls, ours

    def action_probabilities(self, state, player_id=None):
        adapter = self.cls()
        adapter.state = state
        role = adapter.roles[state.current_player()]
        key = exact.InfoState(role, tuple((m["role"], m["content"]) for m in adapter.observe(role)), ()).key
        labels = adapter._actions(role)
        return {labels[a.strip("[]")]: p for a, p in self.ours[key].items()}


@pytest.mark.parametrize("name", ["kuhn_poker", "leduc_poker", "kuhn_poker(players=3)"])
def test_openspiel_games_with_chance_inside_the_hand_are_evaluated_exactly(name):
    """An OpenSpiel game is enumerated with its chance nodes (Leduc's public card turns mid-hand): for random
    policies, our NashConv and each seat's best-response gain equal OpenSpiel's own, computed from the same numbers;
    three players too."""
    import random

    cls = game_class(f"openspiel:{name}")
    tree = exact.build_tree(cls)
    assert any(n.player == exact.CHANCE for n in tree.nodes) and exact.is_enumerable(cls)
    rng = random.Random(7)
    for _ in range(3):
        ours = {}
        for key, info in tree.infostates().items():
            weights = [rng.random() ** 3 for _ in info.legal]
            ours[key] = {a: w / sum(weights) for a, w in zip(info.legal, weights)}
        mine = exact.exploitability(tree, ours)
        game = pyspiel.load_game(name)
        theirs = os_exploitability.nash_conv(game, _ThroughAdapter(game, cls, ours), return_only_nash_conv=False)
        assert mine.nash_conv == pytest.approx(theirs.nash_conv, abs=1e-9)
        gains = [b - v for b, v in zip(mine.best_response, mine.value)]  # each seat's gain from best-responding
        assert gains == pytest.approx(list(theirs.player_improvements), abs=1e-9)
    assert not exact.is_enumerable(game_class("openspiel:tic_tac_toe"))  # 549,946 histories: too large
    assert exact.is_enumerable(game_class("openspiel:goofspiel(num_cards=3)"))  # simultaneous moves too


def test_three_player_kuhn_nash_conv_matches_openspiel():
    """The built-in three-player Kuhn lists its 24 deals; its uniform policy's NashConv is OpenSpiel's for the same
    game (kuhn_poker(players=3), an independent implementation), and exploitability is NashConv / 3."""
    from selfplay.games.kuhn3 import KuhnPoker3

    tree = exact.build_tree(KuhnPoker3)
    mine = exact.exploitability(tree, exact.uniform_policy(tree))
    game = pyspiel.load_game("kuhn_poker(players=3)")
    theirs = os_exploitability.nash_conv(game, os_policy.UniformRandomPolicy(game))
    assert mine.nash_conv == pytest.approx(theirs, abs=1e-12) and mine.exploitability == pytest.approx(theirs / 3)
    assert len(tree.infostates()) == 48 and exact.is_enumerable(KuhnPoker3)
    assert not exact.is_two_player_zero_sum(KuhnPoker3)  # no fictitious-play opponent for three players


def test_small_two_player_zero_sum_openspiel_games_get_a_cfr_expert(capsys):
    """openspiel:kuhn_poker's expert is CFR+'s average strategy, computed once on first use: exact exploitability near
    0 (uniform 0.4583), and it beats random; games it cannot solve (three players, too large) still have none."""
    cls = game_class("openspiel:kuhn_poker")
    tree = exact.build_tree(cls)
    assert exact.exploitability(tree, exact.expert_policy(tree, cls)).exploitability < 1e-3
    assert "expert = CFR+ average strategy after 1000 iterations" in capsys.readouterr().err
    agents = build_agents(["expert", "random"], seed=0)
    episodes = play(cls, paired_matches(cls.roles, list(agents), 400), agents, progress=False)
    expert = [v for ep in episodes for r, v in ep.rewards.items() if ep.agents[r] == "expert"]
    assert sum(expert) / len(expert) > 0.05 and capsys.readouterr().err == ""  # computed once
    from selfplay.games.core import Game

    for spec in ("openspiel:kuhn_poker(players=3)", "openspiel:tic_tac_toe"):
        assert game_class(spec).expert_action is Game.expert_action  # none


def test_the_team_optimum_of_tiny_hanabi_is_the_best_of_every_joint_pure_policy():
    """Tiny Hanabi (Foerster et al. 2019, OpenSpiel's default payoffs): the best joint policy scores 10, while
    uniform play is a near-babbling 3.72; checked against a brute force over all 3^2 x 3^6 joint pure policies."""
    import itertools

    tree = exact.build_tree(game_class("openspiel:tiny_hanabi"))
    infos = tree.infostates()
    keys = list(infos)
    brute = max(
        exact.policy_value(tree, {k: {a: 1.0} for k, a in zip(keys, choice)})[0]
        for choice in itertools.product(*(infos[k].legal for k in keys))
    )
    assert exact.team_optimum(tree) == pytest.approx(brute) == pytest.approx(10.0)
    assert exact.policy_value(tree, exact.uniform_policy(tree))[0] == pytest.approx(3.7222222)
    assert exact.team_optimum(tree, work=10) is None  # too large a search for its budget: no figure, not a guess


def test_openspiels_python_games_load_by_name():
    """``python_*`` games register only when ``open_spiel.python.games`` is imported: the adapter does it."""
    cls = game_class("openspiel:python_kuhn_poker")
    tree = exact.build_tree(cls)
    assert exact.exploitability(tree, exact.uniform_policy(tree)).exploitability == pytest.approx(0.458333333)


@pytest.mark.parametrize("cards, nash_conv", [(3, 4 / 3), (4, 1.4930555555555556)])
def test_simultaneous_goofspiel_enumerates_to_openspiels_nash_conv(cards, nash_conv):
    """Goofspiel's sealed bids are simultaneous turns: the tree makes them a chain of decisions in which a later
    bidder cannot see the earlier bid. Uniform play's NashConv equals OpenSpiel's on its turn-based conversion of
    goofspiel (random prize order, win/loss returns), computed here, not copied."""
    from selfplay.games.goofspiel import Goofspiel

    spiel = pyspiel.convert_to_turn_based(
        pyspiel.load_game("goofspiel", {"num_cards": cards, "points_order": "random", "returns_type": "win_loss"})
    )
    theirs = os_exploitability.nash_conv(spiel, os_policy.UniformRandomPolicy(spiel))
    tree = exact.build_tree(lambda: Goofspiel(cards=cards))
    ours = exact.exploitability(tree, exact.uniform_policy(tree)).nash_conv
    assert ours == pytest.approx(theirs, abs=1e-9) and theirs == pytest.approx(nash_conv, abs=1e-9)


@pytest.mark.parametrize(
    "spec",
    [
        "matrix_rps",
        "matrix_pd",
        "goofspiel(num_cards=3)",
        "blotto(coins=4,fields=2)",
        "first_sealed_auction(max_value=3)",
    ],
)  # the last is sequential with hidden bids
def test_small_simultaneous_openspiel_games_are_evaluated_exactly_as_openspiel_does(spec):
    """Simultaneous-move OpenSpiel games enumerate too (their joint moves as Turn.together plays them); uniform
    play's NashConv equals OpenSpiel's on its turn-based conversion (first_sealed_auction: 0.29938...)."""
    tree = exact.build_tree(game_class(f"openspiel:{spec}"))
    spiel = pyspiel.load_game(spec)
    if spiel.get_type().dynamics == pyspiel.GameType.Dynamics.SIMULTANEOUS:
        spiel = pyspiel.convert_to_turn_based(spiel)
    theirs = os_exploitability.nash_conv(spiel, os_policy.UniformRandomPolicy(spiel))
    assert exact.exploitability(tree, exact.uniform_policy(tree)).nash_conv == pytest.approx(theirs, abs=1e-9)


def test_a_simultaneous_zero_sum_openspiel_game_gets_the_cfr_expert():
    cls = game_class("openspiel:matrix_rps")
    tree = exact.build_tree(cls)
    assert exact.exploitability(tree, exact.expert_policy(tree, cls)).exploitability < 1e-3


def test_an_option_for_an_openspiel_game_says_where_parameters_go():
    from selfplay.games.core import with_options

    with pytest.raises(
        ValueError,
        match=r"takes no arguments; OpenSpiel parameters go in the name, e.g. "
        r"openspiel:kuhn_poker\(players=3\)",
    ):
        with_options(game_class("openspiel:kuhn_poker"), {"players": 3})

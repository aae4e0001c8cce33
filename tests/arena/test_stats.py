import pytest

from selfplay.arena.matches import OPENING, paired_matches
from selfplay.arena.records import Attempt, Episode
from selfplay.arena.stats import Tally, summarize


def _ep(rewards, status="done", steps=()):
    ep = Episode(game="g", seed=0, agents={"a": "x", "b": "y"}, rewards=rewards, status=status, num_turns=len(steps))
    ep.steps = [
        Attempt(turn=i, role=r, sample=0, attempt=0, agent=agent, messages=[], text="", failure=fail)
        for i, (r, agent, fail) in enumerate(steps)
    ]
    return ep


def test_one_tally_counts_results_score_reward_and_invalid_attempts():
    episodes = [
        _ep({"a": 1, "b": -1}, steps=[("a", OPENING, None), ("a", "x", "ILLEGAL"), ("a", "x", None)]),
        _ep({"a": 0, "b": 0}),
        _ep({"a": -1, "b": 1}),
        _ep({}, status="error", steps=[("a", "x", None)]),
    ]
    t = Tally()
    for ep in episodes:
        t.add(ep, "a")
    assert (t.games, t.wins, t.draws, t.losses, t.errors) == (4, 1, 1, 1, 1)
    assert t.score == 1.5 and [ep.score("a") for ep in episodes[:3]] == [1.0, 0.5, 0.0]
    assert t.mean_reward == 0.0 and t.rate(t.wins) == 1 / 3
    assert (t.attempts, t.invalid) == (3, 1)  # the arena's opening move is nobody's attempt
    rows = {(r.agent, r.role): r.tally for r in summarize(episodes)}
    assert rows[("x", "a")] == t and rows[("y", "b")].wins == 1


def test_seat_rotation_puts_every_agent_in_every_seat_equally():
    roles = ("r0", "r1", "r2")
    matches = paired_matches(roles, ["L", "B1", "B2"], 12, seed=5)
    for name in ("L", "B1", "B2"):
        seats = [next(r for r, a in m.agents.items() if a == name) for m in matches]
        assert {s: seats.count(s) for s in roles} == {"r0": 4, "r1": 4, "r2": 4}
    # one lineup with a repeated name (the evaluation's learner against one baseline in the others)
    evaluation = paired_matches(roles, ["L", "B", "B"], 6, seed=100)
    assert [next(r for r, a in m.agents.items() if a == "L") for m in evaluation] == ["r0", "r1", "r2"] * 2
    assert [m.seed for m in evaluation] == [100, 100, 100, 101, 101, 101]


def test_a_mean_reward_interval_stays_in_the_range_and_is_never_zero_width_for_lack_of_spread():
    """20 games that all paid the range's minimum: Wilson's interval for 0 of 20, [0, 0.161] on a 0..1 range, not
    [0, 0]; an interval that would cross the range's end is clipped; records without a range keep the normal one."""
    from selfplay.arena.ratings import wilson

    def tally(rewards, reward_range=(0.0, 1.0)):
        t = Tally()
        for r in rewards:
            ep = _ep({"a": r, "b": r})
            if reward_range:
                ep.meta["outcome"] = {"kind": "cooperative", "win_lose": True, "range": list(reward_range)}
            t.add(ep, "a")
        return t

    low, high = tally([0.0] * 20).reward_interval()
    assert low == 0.0 and high == pytest.approx(wilson(0, 20)[1]) and high == pytest.approx(0.1611, abs=1e-4)
    low, high = tally([-1.0] * 5, (-1.0, 1.0)).reward_interval()  # 5 losses on -1..1: scaled, then mapped back
    assert low == -1.0 and high == pytest.approx(-1 + 2 * wilson(0, 5)[1])
    low, high = tally([0.0] * 8, (-1.0, 1.0)).reward_interval()  # 8 draws: as wide as a coin's mean
    assert (low, high) == pytest.approx((-1 + 2 * wilson(4, 8)[0], -1 + 2 * wilson(4, 8)[1]))
    low, high = tally([1.0] * 9 + [0.0]).reward_interval()  # mean 0.9: normal interval clipped at 1
    assert high == 1.0 and low == pytest.approx(0.9 - 1.96 * (0.1 / 10) ** 0.5)
    assert tally([0.0] * 20, None).reward_interval() == (0.0, 0.0)  # a record without its range: as before

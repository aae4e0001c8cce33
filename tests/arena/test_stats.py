from selfplay.arena.play import OPENING, paired_matches
from selfplay.arena.records import Episode, Step
from selfplay.arena.stats import Tally, summarize


def _ep(rewards, status="done", steps=()):
    ep = Episode(game="g", seed=0, agents={"a": "x", "b": "y"}, rewards=rewards, status=status, num_turns=len(steps))
    ep.steps = [Step(turn=i, role=r, sample=0, attempt=0, agent=agent, messages=[], text="", failure=fail)
                for i, (r, agent, fail) in enumerate(steps)]
    return ep


def test_one_tally_counts_results_score_reward_and_invalid_attempts():
    episodes = [_ep({"a": 1, "b": -1}, steps=[("a", OPENING, None), ("a", "x", "ILLEGAL"), ("a", "x", None)]),
                _ep({"a": 0, "b": 0}), _ep({"a": -1, "b": 1}), _ep({}, status="error", steps=[("a", "x", None)])]
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

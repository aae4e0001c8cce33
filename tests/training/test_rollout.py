from selfplay.training.config import Opponents
from selfplay.training.rollout import plan_matches

ROLES = ("player_0", "player_1")


def _plan(first=0, count=64, opening=0):
    return plan_matches(
        ROLES, lambda role: "policy", step=3, seed=0, games=range(first, first + count),
        opponents=Opponents(scripted_prob=0.5), pool_ready=False, opening=opening,
    )  # fmt: skip


def test_random_openings_are_drawn_per_game_and_leave_the_rest_of_the_plan_alone():
    plain, opened = _plan(), _plan(opening=4)
    assert all(m.opening == 0 for m in plain)
    assert [(m.seed, m.agents, m.meta) for m in plain] == [(m.seed, m.agents, m.meta) for m in opened]
    assert {m.opening for m in opened} == {0, 1, 2, 3, 4}
    # each game's opening is its own: a rank's slice plans the same games as the whole list
    assert [m.opening for m in _plan(32, 32, opening=4)] == [m.opening for m in opened[32:]]

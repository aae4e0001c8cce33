import random

import pytest

from selfplay.arena.matches import Match
from selfplay.arena.play import play
from selfplay.games.arithmetic import SKILLS, Arithmetic, make_task
from tests.fakes import ScriptAgent


@pytest.mark.parametrize("skill", SKILLS)
def test_tasks_have_the_right_answers_and_sizes(skill):
    rng = random.Random(1)
    for digits in (1, 2, 3):
        question, answer = make_task(skill, digits, rng)
        assert eval(question) == answer  # noqa: S307 - our own arithmetic strings
        assert max(len(t) for t in question.replace("(", " ").replace(")", " ").split() if t.isdigit()) <= digits
    assert all(make_task("sub", 2, rng)[1] >= 0 for _ in range(50))


def test_quiz_rewards_hand_checked():
    game = Arithmetic(skill="add", digits=2, samples=3)
    game.reset(5)
    right = game.answer
    solver = ScriptAgent([f"ANSWER: {right}", f"ANSWER: {right + 1}", "I think 12"], "s")
    ep = play(
        lambda: Arithmetic(skill="add", digits=2, samples=3), [Match(5, {"solver": "s"})], {"s": solver}, progress=False
    )[0]
    assert [s.reward for s in ep.steps] == [1.0, 0.0, -1.0]  # the unparsable answer carries the penalty
    assert ep.rewards == {"solver": pytest.approx(1 / 3)} and ep.meta["info"]["answer"] == right


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="skill='div'"):
        Arithmetic(skill="div")


def test_multiple_choice_lists_the_answer_among_distinct_near_misses():
    for seed in range(200):
        game = Arithmetic(skill="sub", digits=1, choices=4)
        game.reset(seed)
        legal = game.legal_actions("solver")
        values = [int(a.split()[-1]) for a in legal]
        assert len(values) == len(set(values)) == 4 and game.answer in values and min(values) >= 0
        assert all(abs(v - game.answer) in (0, 1, 2, 10, 11, 20) for v in values)
        assert ", ".join(map(str, values)) in game.observe("solver")[-1]["content"]
        assert game.random_action("solver", random.Random(seed)) in legal
    free = Arithmetic(choices=0)
    free.reset(0)
    assert free.legal_actions("solver") is None  # free answers by default
    with pytest.raises(ValueError, match="choices=9"):
        Arithmetic(choices=9)

import pytest

from selfplay.arena.matches import Match
from selfplay.arena.play import play
from selfplay.games.creator_solver import CreatorSolver, learnability
from tests.fakes import ScriptAgent


def task(code: str, field: str, given: str) -> str:
    return f"Here is my task.\n```python\n{code}\n```\n{field}: {given}"


def run(texts_creator, texts_solver, **options):
    creator, solver = ScriptAgent(texts_creator, "c"), ScriptAgent(texts_solver, "s")
    game = lambda: CreatorSolver(**options)  # noqa: E731
    return play(game, [Match(0, {"creator": "c", "solver": "s"})], {"c": creator, "s": solver}, progress=False)[
        0
    ], solver


def test_learnability_rewards():
    assert [learnability(p) for p in (0.0, 0.25, 1.0)] == [0.0, 0.75, 0.0]
    assert [learnability(p, "rzero") for p in (0.0, 0.5, 0.75)] == [0.0, 1.0, 0.5]


def test_puzzle_rewards_hand_checked():
    puzzle = task("def f(x):\n    return x * x == 49 and x < 0", "SOLUTION", "-7")
    ep, solver = run([puzzle], ["ANSWER: -7", "ANSWER: 7", "no idea", "ANSWER: -7"])
    assert solver.batches[0][0].samples == 4 and "SOLUTION" not in solver.batches[0][0].messages[-1]["content"]
    answers = [s for s in ep.steps if s.role == "solver"]
    assert [s.reward for s in answers] == [1.0, 0.0, -1.0, 1.0]  # the unparsable answer carries the penalty
    assert ep.rewards == {"creator": 0.5, "solver": 0.5}  # p = 2/4 -> AZR 1 - p
    ep, _ = run([puzzle], ["ANSWER: -7", "ANSWER: 7", "ANSWER: 1", "ANSWER: -7"], creator_reward="rzero")
    assert ep.rewards["creator"] == 1.0  # R-Zero: 1 - 2|0.5 - 0.5|


@pytest.mark.parametrize(
    "text, reason",
    [
        (task("def f(x):\n    return x > 0", "SOLUTION", "-1"), "not True"),
        (task("def f(x):\n    return 1 / 0", "SOLUTION", "1"), "EXCEPTION"),
        (task("def f(x):\n    while True:\n        pass", "SOLUTION", "1"), "TIMEOUT"),
        (task("import os\ndef f(x):\n    return os.system('true') == 0", "SOLUTION", "1"), "FORBIDDEN"),
        (task("def f(x):\n    return True", "SOLUTION", "not a literal"), "not a Python literal"),
    ],
)
def test_malformed_tasks_are_penalised_and_end_the_game(text, reason):
    ep, solver = run([text], [])
    assert ep.rewards == {"creator": -1.0, "solver": 0.0} and not solver.batches
    assert reason in ep.meta["info"]["malformed"]


def test_nondeterministic_programs_are_rejected():
    ep, _ = run([task("import random\ndef f(x):\n    return random.random()", "INPUT", "1")], [], task="output")
    assert ep.meta["info"]["malformed"] == "f is not deterministic" and ep.rewards["creator"] == -1.0


def test_output_and_input_tasks_hand_checked():
    ep, solver = run(
        [task("def f(x):\n    return x * 3", "INPUT", "4")],
        ["ANSWER: 12", "ANSWER: 13", "ANSWER: 12", "ANSWER: 12"],
        task="output",
    )
    assert "f(4)" in solver.batches[0][0].messages[-1]["content"]
    assert ep.rewards == {"creator": 0.25, "solver": 0.75}
    ep, solver = run(
        [task("def f(x):\n    return x % 5", "INPUT", "7")],
        ["ANSWER: 2", "ANSWER: 12", "ANSWER: 3", "ANSWER: 'a'"],
        task="input",
    )
    assert "f(x) == 2" in solver.batches[0][0].messages[-1]["content"]
    assert [s.reward for s in ep.steps if s.role == "solver"] == [1.0, 1.0, 0.0, 0.0]


def test_majority_vote_pseudo_label_is_recorded():
    ep, _ = run(
        [task("def f(x):\n    return x + 1", "INPUT", "1")],
        ["ANSWER: 3", "ANSWER: 3", "ANSWER: 2", "ANSWER: 5"],
        task="output",
        pseudo_label=True,
    )
    assert [s.reward for s in ep.steps if s.role == "solver"] == [1.0, 1.0, 0.0, 0.0]  # the (wrong) majority wins
    assert ep.meta["info"]["label_source"] == "majority vote"


def test_repeated_tasks_are_penalised():
    CreatorSolver.recent.clear()
    puzzle = task("def f(x):\n    return x == 3", "SOLUTION", "3")
    answers = ["ANSWER: 3", "ANSWER: 1", "ANSWER: 1", "ANSWER: 1"]
    first, _ = run([puzzle], answers, repeat_penalty=0.5)
    second, _ = run([puzzle], answers, repeat_penalty=0.5)
    assert first.rewards["creator"] == 0.75 and second.rewards["creator"] == 0.25


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="task='riddle'"):
        CreatorSolver(task="riddle")
    with pytest.raises(ValueError, match="pseudo_label"):
        CreatorSolver(task="puzzle", pseudo_label=True)

"""The structured formats of the role families: held-out problems stay held out, the creator's grammar and the
random creator over it, the solver and the student read the quiz's words, the critic's quiz."""

import random
from collections import Counter

import pytest

from selfplay.games.arithmetic import HELDOUT_SHARE, Arithmetic, is_heldout, make_task
from selfplay.games.conformance import check_game
from selfplay.games.creator_solver import CreatorSolver, creatable, eval_problem
from selfplay.games.sneaky_critic import CriticQuiz, SneakyCritic
from selfplay.games.teacher_student import TeacherStudent


@pytest.mark.parametrize("skill,digits", [("add", 1), ("add", 2), ("sub", 2), ("mul", 2), ("paren", 1)])
def test_splits_partition_the_problems(skill, digits):
    rng = random.Random(0)
    train = [make_task(skill, digits, rng, "train")[0] for _ in range(300)]
    held = [make_task(skill, digits, rng, "heldout")[0] for _ in range(300)]
    assert not any(is_heldout(q) for q in train) and all(is_heldout(q) for q in held)
    share = sum(is_heldout(make_task(skill, digits, rng)[0]) for _ in range(4000)) / 4000
    assert abs(share - 1 / HELDOUT_SHARE) < 0.05  # about one problem in five, drawn with split=all
    with pytest.raises(ValueError, match="split='test'"):
        Arithmetic(split="test")


def test_creator_grammar_is_every_two_digit_sum_and_difference_but_the_held_out_ones():
    grammar = creatable(2)
    # by hand: 90 x 90 sums and 90 x 91 / 2 differences with a >= b, less the held-out fifth
    every = [f"{a} + {b}" for a in range(10, 100) for b in range(10, 100)] + [
        f"{a} - {b}" for a in range(10, 100) for b in range(10, a + 1)
    ]
    assert len(every) == 8100 + 4095
    assert set(grammar) == {q for q in every if not is_heldout(q)}
    assert 0.75 < len(grammar) / len(every) < 0.85
    game = CreatorSolver(task="arithmetic")
    game.reset(0)
    held = next(q for q in every if is_heldout(q))
    with pytest.raises(Exception, match="listed problems"):
        game.parse("creator", held)  # a free-text creator cannot write a held-out problem either
    assert all(eval_problem(q) >= 0 for q in grammar)


def test_random_creator_is_uniform_over_the_grammar_and_the_solver_reads_the_quiz():
    game, rng = CreatorSolver(task="arithmetic", samples=4), random.Random(1)
    picks = Counter()
    for seed in range(3000):
        game.reset(seed)
        picks["+" if "+" in game.random_action("creator", rng) else "-"] += 1
    grammar = creatable(2)
    plus = sum("+" in q for q in grammar) / len(grammar)
    assert abs(picks["+"] / 3000 - plus) < 0.03  # uniform over problems, so + about two thirds of the time
    game.reset(5)
    question = game.parse("creator", "12 + 34")
    game.step("creator", [question])
    quiz = Arithmetic(answer_format="slot", samples=1)
    quiz.reset(0)
    quiz.question = "12 + 34"
    assert game.observe("solver") == quiz.observe("solver") and game.answer_slot("solver") == "12 + 34 = "
    assert "46" in game.legal_actions("solver") and game.legal_actions("creator") == list(creatable(2))
    assert game.step("solver", [46, 45, None, 46]) == [1.0, 0.0, 0.0, 1.0]
    rewards = game.rewards()
    assert rewards["solver"] == 0.5 and rewards["creator"] == pytest.approx(0.5)  # AZR: 1 - p
    game.creator_reward = "rzero"
    assert game.rewards()["creator"] == pytest.approx(1.0)  # R-Zero: 1 - 2|p - 1/2|, its peak at p = 1/2
    assert game.info()["question"] == "12 + 34"


def test_structured_student_reads_the_quiz_and_never_gets_a_held_out_exercise():
    game = TeacherStudent(formats="structured", samples=2)
    for seed in range(200):
        game.reset(seed)
        game.step("teacher", [game.parse("teacher", "SKILL: add DIGITS: 1")])
        assert not is_heldout(game.exercise[1])
    quiz = Arithmetic(answer_format="slot", samples=1)
    quiz.reset(0)
    quiz.question = game.exercise[1]
    assert game.observe("student") == quiz.observe("solver")
    probes = TeacherStudent.learning_progress({"formats": "structured", "teacher_reward": "progress"}).probes
    assert all(options["split"] == "heldout" for keyed in probes.values() for options, _ in keyed)


def test_critic_quiz_shows_the_critic_one_slipped_step_and_scores_naming_it():
    quiz, game = CriticQuiz(), SneakyCritic(formats="structured")
    assert check_game(CriticQuiz, seeds=range(50)).ok
    targets = Counter()
    for seed in range(400):
        quiz.reset(seed)
        wrong = [i for i, (s, c) in enumerate(zip(quiz.shown, quiz.chain)) if s != c]
        assert wrong == [quiz.target]
        assert quiz.shown[quiz.target][3] - quiz.chain[quiz.target][3] in (-10, -2, -1, 1, 2, 10)
        targets[quiz.target] += 1
        game.reset(seed)
        game.step("generator", [(quiz.target, quiz.shown[quiz.target][3])])
        game.chain = quiz.chain
        assert game.observe("critic") == quiz.observe("critic")  # the words the critic trains on
    assert min(targets.values()) > 60  # every step is slipped, about a quarter of the time each
    quiz.reset(3)
    quiz.step("critic", [quiz.target])
    assert quiz.rewards() == {"critic": 1.0} and quiz.turn() is None
    quiz.reset(3)
    quiz.step("critic", [(quiz.target + 1) % 4])
    assert quiz.rewards() == {"critic": 0.0}


def test_arithmetic_kind_declares_nothing_hidden_and_passes_check_game():
    report = check_game(CreatorSolver, seeds=range(6), options={"task": "arithmetic", "samples": 2})
    assert report.ok and report.leak_test == "not needed"
    assert check_game(CreatorSolver, seeds=range(3)).leak_test == "ran"  # the code kinds keep their leak test


def test_the_collapse_monitor_reads_the_creators_problem():
    info = {
        "task": "arithmetic",
        "code": None,
        "given": "None",
        "question": "12 + 34",
        "malformed": None,
        "solve_rate": 0.25,
    }
    assert CreatorSolver.written_task(info) == ("creator", "arithmetic | 12 + 34", 0.25)

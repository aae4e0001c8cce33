import pytest

from selfplay.arena.matches import Match
from selfplay.arena.play import play
from selfplay.games.teacher_student import TeacherStudent, evaluate
from tests.fakes import ScriptAgent


def run(teacher_text, student_texts, **options):
    t, s = ScriptAgent([teacher_text], "t"), ScriptAgent(student_texts, "s")
    ep = play(
        lambda: TeacherStudent(**options),
        [Match(0, {"teacher": "t", "student": "s"})],
        {"t": t, "s": s},
        progress=False,
    )[0]
    return ep, t, s


def test_safe_evaluation():
    assert evaluate("(12 + 3) * 4 - -2") == 62
    for bad in ("__import__('os')", "2 ** 10", "1 / 2", "x + 1", "1 +"):
        with pytest.raises(ValueError):
            evaluate(bad)


def test_rewards_hand_checked_and_the_teacher_sees_the_results():
    exercise = "SKILL: mul\nQUESTION: 12 * 7\nANSWER: 84"
    ep, teacher, student = run(
        exercise,
        ["ANSWER: 84", "ANSWER: 74", "ANSWER: 84", "ANSWER: 94"],
        student_results={"mul": [1, 8], "add": [7, 8]},
    )
    assert "add 7/8 solved, mul 1/8 solved" in teacher.batches[0][0].messages[-1]["content"]
    assert student.batches[0][0].samples == 4 and "12 * 7" in student.batches[0][0].messages[-1]["content"]
    assert [s.reward for s in ep.steps if s.role == "student"] == [1.0, 0.0, 1.0, 0.0]
    assert ep.rewards == {"teacher": 1.0, "student": 0.5}  # solved half the time: the proxy's best
    ep, _, _ = run(exercise, ["ANSWER: 84"] * 4)
    assert ep.rewards == {"teacher": 0.0, "student": 1.0}  # too easy teaches nothing


@pytest.mark.parametrize(
    "text, reason",
    [
        ("SKILL: mul\nQUESTION: 12 * 7\nANSWER: 85", "is wrong"),
        ("SKILL: poetry\nQUESTION: 1 + 1\nANSWER: 2", "unknown skill"),
        ("SKILL: add\nQUESTION: __import__('os')\nANSWER: 0", "only integers"),
    ],
)
def test_malformed_exercises_are_penalised(text, reason):
    ep, _, student = run(text, [])
    assert ep.rewards == {"teacher": -1.0, "student": 0.0} and not student.batches
    assert reason in ep.meta["info"]["malformed"]


def test_context_hook_sums_student_results_per_skill():
    exercise = "SKILL: add\nQUESTION: 2 + 2\nANSWER: 4"
    episodes = [run(exercise, ["ANSWER: 4", "ANSWER: 5", "ANSWER: 4", "ANSWER: 4"])[0] for _ in range(2)]
    stats = TeacherStudent.context_stats([ep.meta["info"] for ep in episodes])
    assert stats["solved|add"] == 6 and stats["tried|add"] == 8 and stats["tried|mul"] == 0
    assert TeacherStudent.context_options(stats) == {"student_results": {"add": [6, 8]}}

"""The proposer-collapse monitor: distinct and near-duplicate shares and the solve-rate bins of the tasks a role
writes, with a warning when they fall below the thresholds; a forced repeat warns, a healthy run does not."""

import json
import os
import subprocess
import sys
from pathlib import Path

from selfplay.games.creator_solver import CreatorSolver
from selfplay.games.teacher_student import TeacherStudent
from selfplay.training.collapse import CollapseMonitor, near_duplicates, step_counts

ROOT = Path(__file__).resolve().parents[2]


def test_shares_and_bins_by_hand():
    written = [
        ("teacher", "add | 3 + 4", 1.0),
        ("teacher", "add | 3 + 4", 0.5),
        ("teacher", "mul | 6 * 7", 0.0),
        ("teacher", None, None),
        ("teacher", "add | 3 + 5", 0.25),
    ]
    counts = step_counts(written)["teacher"]
    shares = counts.shares()
    assert counts.tasks == 5 and counts.distinct == 3 and shares["distinct"] == 3 / 4
    assert counts.bins == {"malformed": 1, "too_easy": 1, "frontier": 2, "too_hard": 1}
    assert near_duplicates(["add | 3 + 4", "add | 3 + 5", "mul | 6 * 7", "mul | 6 * 7"]) == 2  # the two adds


def test_a_repeated_task_warns_and_a_varied_frontier_does_not():
    monitor = CollapseMonitor(distinct_min=0.5, frontier_min=0.1)
    _, warnings = monitor.observe(1, step_counts([("creator", "same", 0.5)] * 8))
    assert any("creator wrote 1 distinct tasks of 8" in w for w in warnings)
    _, warnings = monitor.observe(2, step_counts([("creator", f"task {i} " * 3, 0.5) for i in range(8)]))
    assert warnings == []
    metrics, warnings = monitor.observe(3, step_counts([("creator", f"task {i}", 1.0) for i in range(8)]))
    assert metrics["tasks/creator/too_easy"] == 1.0 and any("at the frontier" in w for w in warnings)
    assert [len(h["warnings"]) for h in monitor.history] == [1, 0, 1]


def test_the_task_writing_games_name_their_tasks():
    assert TeacherStudent.written_task({"skill": "add", "question": "3 + 4", "malformed": None, "solve_rate": 0.5}) == (
        "teacher",
        "add | 3 + 4",
        0.5,
    )
    assert CreatorSolver.written_task(
        {"task": "output", "code": "def f(x): ...", "given": "3", "malformed": "bad", "solve_rate": None}
    ) == ("creator", None, None)


def _train(out, game):
    args = [
        f"game={game}",
        "model=tiny",
        "weights=shared",
        "observer=chat",
        "constrained=false",
        "scripted_prob=0",
        "opponents.seats={teacher: expert}",
        "learner_roles=[student]",
        "steps=2",
        "games_per_step=8",
        "evaluation.games=4",
        "evaluation.every=0",
        "progress=false",
        "max_new_tokens=4",
        "curriculum.collapse_frontier=0",
        f"out={out}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "selfplay.train", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_a_forced_repeat_warns_in_training_and_a_healthy_teacher_does_not(tmp_path):
    forced = _train(tmp_path / "forced", "tests.fakes:OneTaskTeacher")
    assert "warning: proposer collapse? teacher wrote 1 distinct tasks of 8" in forced
    state = json.loads(sorted((tmp_path / "forced" / "checkpoints").glob("*/trainer.json"))[-1].read_text())
    assert state["tasks"][-1]["roles"]["teacher"]["distinct"] == 1 / 8
    report = (tmp_path / "forced" / "report.md").read_text()
    assert "## Tasks written (proposer-collapse monitor)" in report and (tmp_path / "forced" / "tasks.png").exists()
    healthy = _train(tmp_path / "healthy", "teacher_student")
    assert "proposer collapse" not in healthy

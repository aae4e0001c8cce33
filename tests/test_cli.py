import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.cli import main

ROOT = Path(__file__).resolve().parents[1]

USER_GAME = (ROOT / "docs/examples/my_game.py").read_text()  # written to a temporary folder outside the project


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "selfplay.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_games_lists_builtins_with_roles():
    out = run_cli("games").stdout
    for name in ("tictactoe", "kuhn_poker", "liars_dice"):
        assert name in out
    assert "player_0, player_1" in out


def test_user_game_in_a_file_is_checked_and_played(tmp_path):
    path = tmp_path / "nim.py"
    path.write_text(USER_GAME)
    check = run_cli("check-game", f"{path}:Nim", "--seeds", "50")
    assert check.returncode == 0 and "OK (50 seeds" in check.stdout
    played = run_cli("play", str(path), "--agents", "random", "random", "--games", "40", "--out", str(tmp_path / "run"))
    assert played.returncode == 0, played.stderr
    assert "random#2" in played.stdout and "40 games" in played.stdout
    shown = run_cli("show", str(tmp_path / "run"))
    assert "40 episodes" in shown.stdout
    episode_id = shown.stdout.splitlines()[1].split()[0]
    transcript = run_cli("show", str(tmp_path / "run"), "--episode", episode_id).stdout
    assert "stones left" in transcript and "rewards:" in transcript


def test_a_game_file_imports_its_sibling_modules(tmp_path):
    """A game split over files (rules in a sibling module) loads as a script would, from any working directory."""
    (tmp_path / "nim_rules.py").write_text("START = 9\n")
    (tmp_path / "split.py").write_text(
        USER_GAME.replace("from dataclasses", "from nim_rules import START\nfrom dataclasses", 1)
    )
    check = subprocess.run(
        [sys.executable, "-m", "selfplay.cli", "check-game", str(tmp_path / "split.py"), "--seeds", "5"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0 and "OK (5 seeds" in check.stdout, check.stderr


def test_check_game_exits_nonzero_on_a_broken_game():
    result = run_cli("check-game", "tests.fakes:LeakyTTT", "--seeds", "5")
    assert result.returncode == 1 and "FAILED" in result.stdout and "seed=0" in result.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["play", "chess", "--agents", "random", "random"], "unknown game 'chess'"),
        (["play", "tictactoe", "--agents", "random", "wizard"], "unknown agent kind 'wizard'"),
        (["play", "tictactoe", "--agents", "random", "expert:seed"], "kind 'expert' takes no argument 'seed'"),
        (["play", "tictactoe", "--agents", "random", "expert:seed=1,x"], "malformed option 'x'"),
        (["play", "tictactoe", "--agents", "random"], "1 agent(s) for 2 free role(s)"),
        (["play", "liars_dice", "--agents", "random", "random", "--option", "dice=9"], "dice=9"),
        (["check-game", "tests.fakes:Nope"], "has no class 'Nope'"),
        (["check-game", "tictactoe", "--seeds", "0"], "--seeds 0: expected a number of playouts >= 1"),
        (["check-game", "kuhn_poker", "--option", "bogus=1"], "no option 'bogus'; kuhn_poker takes alpha"),
        (["play", "tictactoe", "--agents", "random", "random", "--games", "-3"], "--games -3"),
        (
            ["play", "kuhn_poker_3", "--agents", "random", "random", "--seats", "dealer=expert"],
            "'dealer' is not a role",
        ),
        (["export", "nowhere"], "does not exist"),
        (["check-game", "nowhere/game.py:G"], "does not exist"),
        (["check-game", "nowhere/game.py"], "game file 'nowhere/game.py' does not exist"),
        (["play", "tictactoe", "--games", "2", "random", "expert"], "unrecognized arguments: random expert (agents go"),
        (["doctor", "--bogus"], "selfplay doctor: error: unrecognized arguments: --bogus"),
        (["serve", "random"], "'random': a random agent answers from a game's state, not from chat messages"),
        (["check-game", "tests/fakes.py"], "defines several games ("),
    ],
)
def test_bad_input_gets_a_clear_error(args, words, capsys):
    assert main(args) == 2
    assert words in capsys.readouterr().err


def test_a_game_class_missing_a_method_is_rejected(tmp_path, capsys):
    path = tmp_path / "half.py"
    path.write_text("from selfplay.games import Game\nclass Half(Game):\n    name = 'half'\n    roles = ('a', 'b')\n")
    assert main(["check-game", f"{path}:Half"]) == 2
    assert "missing required method(s): reset, turn, observe, parse, step, rewards" in capsys.readouterr().err


def test_a_game_file_that_does_not_import_is_named(tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text("def broken(:\n")
    assert main(["check-game", f"{path}:Game"]) == 2
    assert f"cannot load game file '{path}': SyntaxError" in capsys.readouterr().err


def test_doctor_reports_the_sandbox_isolation(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert "[ok] sandbox for model-written code: isolation works" in out and "[ok] torch" in out
    assert code == (1 if "[no]" in out else 0)  # e.g. the test machine may lack the embedded model's package


def test_a_reader_that_leaves_early_is_no_error(tmp_path):
    """`selfplay show RUN | head -1` (more than a pipe buffer of output): the broken pipe ends it quietly, status 0."""
    assert main(["play", "tictactoe", "--agents", "random", "random", "--games", "1000", "--out", str(tmp_path)]) == 0
    result = subprocess.run(
        f"{sys.executable} -m selfplay.cli show {tmp_path} --limit 1000 | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr and result.stdout.count("\n") == 1


def test_agents_may_follow_the_game_directly(tmp_path, capsys):
    assert main(["play", "tictactoe", "expert", "random", "--games", "2", "--out", str(tmp_path)]) == 0
    assert "expert" in capsys.readouterr().out


def test_train_without_a_config_is_the_quickstart(capsys):
    from selfplay.train import main as train

    assert train(["game_options.compact=true"]) == 2  # compact is TicTacToe's option, not Kuhn poker's
    err = capsys.readouterr().err
    assert "no config given: the quickstart recipe" in err and "for game 'kuhn_poker'" in err


def test_no_command_lists_the_commands_and_version_answers():
    bare = run_cli()
    assert bare.returncode == 2 and "check-game" in bare.stderr and "tournament" in bare.stderr
    assert "configs/quickstart.yaml" in bare.stderr
    from selfplay import __version__

    assert run_cli("--version").stdout.strip() == f"selfplay {__version__}"


def test_show_and_export_read_runs_and_create_nothing(tmp_path, capsys):
    """A folder without records, a text file or a foreign SQLite file is named as not a run; none gets a database."""
    import sqlite3

    empty, text, foreign = tmp_path / "empty", tmp_path / "notes.txt", tmp_path / "other.sqlite"
    empty.mkdir()
    text.write_text("root:x:0:0\n")
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    for command in ("show", "export"):
        assert main([command, str(empty)]) == 2
        assert "empty/episodes.sqlite' does not exist" in capsys.readouterr().err
        for path in (text, foreign):
            assert main([command, str(path)]) == 2
            assert f"{str(path)!r} is not an episode database" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty", "notes.txt", "other.sqlite"]
    assert [r[0] for r in sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master")] == ["t"]
    assert sqlite3.connect(foreign).execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL


def test_serve_on_a_taken_port_says_so_before_loading_a_model(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "tiny", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err


def test_a_second_training_into_a_busy_run_directory_is_refused(tmp_path, capsys):
    import fcntl

    from selfplay.train import main as train

    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242")
        held.flush()
        assert train([str(ROOT / "configs/tictactoe_tiny.yaml"), f"out={tmp_path}"]) == 2
    assert f"{str(tmp_path)!r} is in use by another training (pid 4242)" in capsys.readouterr().err


def test_ctrl_c_during_play_keeps_the_finished_games(tmp_path):
    import signal
    import sqlite3
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfplay.cli",
            "play",
            "tictactoe",
            "random",
            "random",
            "--games",
            "200000",
            "--concurrency",
            "64",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if sqlite3.connect(tmp_path / "episodes.sqlite").execute("SELECT COUNT(*) FROM episodes").fetchone()[0]:
                break
        except sqlite3.OperationalError:  # not created yet
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted (every game finished" in err
    shown = run_cli("show", str(tmp_path), "--limit", "1")
    assert int(shown.stdout.split()[0]) > 0


LOADED = (
    "import sys; from selfplay.cli import main; code = main({args!r}); "
    "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules); print('HEAVY', heavy); sys.exit(code)"
)


@pytest.mark.parametrize(
    "args",
    [
        ["play", "tictactoe", "random", "expert", "--games", "4"],
        ["tournament", "kuhn_poker", "--agents", "random", "expert", "--games", "4", "--bootstrap", "5"],
        ["check-game", "hints_file", "--seeds", "3"],
        ["play", "tictactoe", "tiny:temperature=-1", "random"],  # a bad model option: refused before torch loads
        ["tournament", "tictactoe", "--agents", "random", "tiny:bogus=1"],
    ],
    ids=["play", "tournament", "check-game", "bad model option in play", "bad model option in a tournament"],
)
def test_scripted_commands_and_bad_model_options_never_import_torch(args, tmp_path):
    args = [str(ROOT / "docs/examples/hints.py") if a == "hints_file" else a for a in args]
    if args[0] in ("play", "tournament"):
        args += ["--out", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-c", LOADED.format(args=args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_recipes_are_listed_and_run_by_name(tmp_path):
    listed = run_cli("recipes")
    assert listed.returncode == 0 and "kuhn_poker_tiny" in listed.stdout and "your_game_tiny" in listed.stdout
    missing = run_cli("train", "kuhn_poker_tny")
    assert missing.returncode == 2 and "names no recipe" in missing.stderr and "kuhn_poker_tiny" in missing.stderr
    # by name from another folder; the recipe's game file is found next to its configs/ and stored absolute
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfplay.cli",
            "train",
            "your_game_tiny",
            "run.steps=1",
            "evaluation.games=4",
            "evaluation.before=false",
            "progress=false",
            f"out={tmp_path / 'r'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    import json

    game = json.loads((tmp_path / "r" / "config.json").read_text())["game"]
    assert game == str(ROOT / "docs/examples/hints.py")


def test_a_compact_observer_the_game_cannot_serve_is_warned_once(tmp_path):
    result = run_cli(
        "play",
        "negotiation",
        "tiny:observer=compact,max_new_tokens=2",
        "random",
        "--games",
        "4",
        "--out",
        str(tmp_path / "p"),
    )
    assert result.stderr.count("observer=compact, but game 'negotiation' defines no compact_observation") == 1

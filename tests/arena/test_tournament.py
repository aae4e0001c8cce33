import json
from pathlib import Path

import pytest

from selfplay.agents.models import tiny_model
from selfplay.arena.participants import Participant, checkpoint_participants
from selfplay.arena.records import open_store
from selfplay.arena.tournament import main, run_tournament


def fake_run(root: Path, steps=(2, 4)) -> Path:
    """A run directory with complete checkpoints whose policy/ holds a plain tiny model and tokenizer."""
    for step in steps:
        model, tok = tiny_model(seed=step)
        policy = root / "checkpoints" / f"step_{step:06d}" / "policy"
        model.save_pretrained(policy)
        tok.save_pretrained(policy)
        (policy.parent / "COMPLETE").write_text("ok\n")
    (root / "checkpoints" / ".step_000006.tmp").mkdir()  # an unfinished save is not a participant
    return root


def test_tournament_with_checkpoints_writes_the_report_and_resumes(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "tour"
    args = [
        "tictactoe",
        "--agents",
        "random",
        "expert",
        "--run",
        str(run),
        "--games",
        "4",
        "--out",
        str(out),
        "--bootstrap",
        "30",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    names = {r["agent"] for r in summary["ratings"]}
    assert names == {"random", "expert", "step_2", "step_4"}
    assert summary["anchor"] == "random"
    expert = next(r for r in summary["ratings"] if r["agent"] == "expert")
    assert expert["rank_ub"] == 1 and expert["elo"] > 0 and expert["low"] < expert["elo"] < expert["high"]
    for name in ("report.md", "report.html", "matches.csv", "ratings.png", "winrate.png", "progress.png"):
        assert (out / name).exists(), name
    assert "data:image/png;base64" in (out / "report.html").read_text()
    assert len(list((out / "transcripts").glob("*.md"))) == 6
    assert open_store(out).count() == 6 * 4
    capsys.readouterr()
    assert main(args) == 0  # a re-run plays nothing new
    assert "playing" not in capsys.readouterr().out and open_store(out).count() == 24
    assert main([*args[:-4], "--games", "6", "--out", str(out), "--bootstrap", "30"]) == 0
    assert open_store(out).count() == 6 * 6  # only the missing games were played


def test_a_crashing_agent_forfeits_and_the_tournament_completes(tmp_path):
    summary = run_tournament(
        "tests.fakes:ExpertCrashTTT",
        [Participant("expert", "expert"), Participant("random", "random")],
        games=10,
        out=tmp_path,
        bootstrap_rounds=20,
        progress=False,
    )
    expert = next(r for r in summary["ratings"] if r["agent"] == "expert")
    assert expert["invalid_rate"] > 0
    errors = [s for ep in open_store(tmp_path).episodes() for s in ep.steps if s.failure == "AGENT_ERROR"]
    assert errors and "expert lost its marbles" in errors[0].error


@pytest.mark.parametrize(
    "args, words",
    [
        (["--agents", "random", "wizard"], "unknown agent kind 'wizard'"),
        (["--agents", "random", "--run", "nowhere"], "run directory 'nowhere' does not exist"),
        (["--agents", "random"], "at least two participants"),
        (["--agents", "random", "expert", "--bootstrap", "0"], "--bootstrap 0"),
        (["--agents", "random", "expert", "--anchor", "nobody"], "--anchor 'nobody' is not a participant"),
        (["--agents", "random", "expert", "--schedule", "gauntlet", "--candidates", "ghost"], "unknown: ['ghost']"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, capsys, args, words):
    assert main(["tictactoe", *args, "--out", str(tmp_path)]) == 2
    assert words in capsys.readouterr().err


def test_a_run_without_checkpoints_is_named(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint_participants(tmp_path)


def test_poker_tournaments_state_exact_exploitability(tmp_path):
    participants = [
        Participant("random", "random"),
        Participant("expert", "expert"),
        Participant("model", "tiny:constrained=true,observer=compact"),
        Participant("free", "tiny"),
    ]
    summary = run_tournament("kuhn_poker", participants, games=4, out=tmp_path, progress=False)
    exploit = {r["agent"]: r["exploitability"] for r in summary["ratings"]}
    assert abs(exploit["random"] - 0.458333) < 1e-5 and abs(exploit["expert"]) < 1e-9
    assert exploit["free"] is None  # free decoding has no exact policy
    from selfplay.agents.specs import build_agent
    from selfplay.games import exact
    from selfplay.games.kuhn_poker import KuhnPoker

    tree = exact.build_tree(KuhnPoker)
    own = build_agent("tiny:constrained=true,observer=compact", seed=2, name="model").tabular_policy(tree)
    assert exploit["model"] == pytest.approx(exact.exploitability(tree, own).exploitability, abs=1e-9)
    assert exploit["model"] > 0.05  # its own policy, not the participant's before it (the expert's 0)
    assert "## Exact exploitability" in (tmp_path / "report.md").read_text()


def test_the_rating_plot_draws_an_interval_that_misses_its_estimate():
    from selfplay.arena.report_pages import draw_plots
    from selfplay.arena.standings import Rated

    # a few games: the bootstrap's percentile interval need not contain the maximum-likelihood rating
    rated = Rated(
        ratings={"a": 40.0, "b": -40.0},
        intervals={"a": (55.0, 90.0), "b": (-90.0, -55.0)},
        skill={},
        scores={("a", "b"): (3.0, 4.0), ("b", "a"): (1.0, 4.0)},
        graph=None,
    )
    plots = draw_plots(["a", "b"], rated, {})
    assert plots["ratings.png"].startswith(b"\x89PNG")


def test_checkpoints_play_as_their_run_evaluated_unless_told_otherwise(tmp_path):
    """A run trained with constrained decoding enters the tournament constrained: played free, the same weights
    would answer invalidly and be rated as a different policy."""
    policy = fake_run(tmp_path, steps=(2,)) / "checkpoints" / "step_000002" / "policy"
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "sampling": {
                    "temperature": 1.0,
                    "top_p": 0.9,
                    "max_new_tokens": 6,
                    "constrained": True,
                    "observer": "compact",
                },
                "evaluation": {"temperature": 0.0},
            }
        )
    )
    [p] = checkpoint_participants(tmp_path)
    assert p.spec == f"hf:{policy}:constrained=true,observer=compact,max_new_tokens=6,top_p=0.9,temperature=0.0"
    [p] = checkpoint_participants(tmp_path, "constrained=false,temperature=1")
    assert p.spec == f"hf:{policy}:observer=compact,max_new_tokens=6,top_p=0.9,constrained=false,temperature=1"


def test_a_cooperative_tournament_states_team_values_against_the_best_joint_policy(tmp_path):
    """Tiny Hanabi: exploitability alone does not say how far a team is from its best; uniform play scores 3.72 of
    the best joint policy's 10."""
    pytest.importorskip("pyspiel")
    participants = [Participant("random", "random"), Participant("model", "tiny:constrained=true")]
    summary = run_tournament("openspiel:tiny_hanabi", participants, games=4, out=tmp_path, progress=False)
    rows = {r["agent"]: r for r in summary["ratings"]}
    assert summary["team_optimum"] == pytest.approx(10.0)
    assert rows["random"]["team_value"] == pytest.approx(3.7222222) and 0 < rows["model"]["team_value"] <= 10
    report = (tmp_path / "report.md").read_text()
    assert "team value in self-play" in report and "whose team value is 10.0000" in report
    assert "team value" in summary["table"]


def test_repeated_participants_are_numbered_as_play_numbers_them(tmp_path):
    """--agents random random (a three-seat game needs three) seats two random agents, random and random#2, each with
    its own seed, instead of refusing the names as duplicates after suggesting one more random."""
    assert main(["kuhn_poker_3", "--agents", "random", "random", "expert", "--games", "3", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(r["agent"] for r in summary["ratings"]) == ["expert", "random", "random#2"]

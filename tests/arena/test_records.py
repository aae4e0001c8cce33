import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from selfplay.agents.scripted import RandomAgent
from selfplay.arena.matches import paired_matches
from selfplay.arena.play import play
from selfplay.arena.records import open_store
from selfplay.games.kuhn_poker import KuhnPoker

ROOT = Path(__file__).resolve().parents[2]


def test_episodes_round_trip_with_every_step(tmp_path):
    store = open_store(tmp_path)
    agents = {"a": RandomAgent(1, "a"), "b": RandomAgent(2, "b")}
    played = play(KuhnPoker, paired_matches(KuhnPoker.roles, ["a", "b"], 20), agents, store=store, progress=False)
    loaded = {ep.id: ep for ep in store.episodes()}  # stored in the order they finished
    assert sorted(loaded) == sorted(ep.id for ep in played)
    for ep in played:
        assert loaded[ep.id].steps == ep.steps and loaded[ep.id].rewards == ep.rewards
    assert store.count(game="kuhn_poker") == 20 and store.integrity() == []
    assert store.episode(played[3].id[:10]).seed == played[3].seed


def test_sigkill_mid_run_leaves_only_whole_episodes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfplay.cli",
            "play",
            "tictactoe",
            "--agents",
            "random",
            "random",
            "--games",
            "1000000",
            "--concurrency",
            "64",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = out / "episodes.sqlite"
    deadline = time.time() + 60
    count = 0
    while time.time() < deadline and count < 300:
        time.sleep(0.2)
        if db.exists():
            try:
                count = sqlite3.connect(db).execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
            except sqlite3.OperationalError:
                count = 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert count >= 300, "the run recorded too little before the kill"
    store = open_store(out)
    assert store.integrity() == []
    episodes = list(store.episodes())
    assert len(episodes) >= count
    for ep in episodes:
        assert ep.status == "done"
        assert len(ep.steps) == ep.num_turns and sorted(ep.rewards) == ["player_0", "player_1"]

import subprocess
import sys

from selfplay.training import seeds
from selfplay.training.config import Opponents
from selfplay.training.rollout import plan_matches

ROLES = ("player_0", "player_1")

PROBE = """
from selfplay.agents.base import Request
from selfplay.agents.specs import build_agent
from selfplay.games.tictactoe import TicTacToe
from selfplay.training import seeds
from selfplay.training.config import Opponents
from selfplay.training.rollout import plan_matches
game = TicTacToe()
game.reset(0)
values = [seeds.opponent(0, 3, 1, "random"), seeds.learner_sampling(0, 3, 1, 0), seeds.pool_sampling(3),
          seeds.rng(0, 3, "curriculum", 0).random()]
moves = [build_agent("random", seed=seeds.opponent(0, s, 0, "random")).act([Request(game, "player_0", [], 3)])[0][0].text
         for s in range(8)]
plan = [(m.seed, m.agents, m.opening) for m in plan_matches(("player_0", "player_1"), lambda r: "policy", step=3, seed=0,
    games=range(16), opponents=Opponents(pool_prob=0.3, scripted_prob=0.3), pool_ready=True, opening=2)]
print(repr((values, moves, plan)))
"""


def _probe(hash_seed: str) -> str:
    env = {"PYTHONHASHSEED": hash_seed, "PATH": ""}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env).stdout


def test_two_processes_derive_the_same_seeds_and_opponents():
    # string hashing differs between these processes; every derived seed and opponent move must not
    assert _probe("1") == _probe("2")


def test_seeds_are_spread_and_depend_on_every_part():
    assert seeds.derive(0, "opponent", 1, 0, "random") != seeds.derive(0, "opponent", 1, 0, "expert")
    assert len({seeds.derive(0, step) for step in range(1000)}) == 1000
    assert all(0 <= seeds.derive("x", i) < 2**31 for i in range(100))


def test_plans_name_the_learner_roles_as_data():
    for m in plan_matches(
        ROLES,
        lambda role: "policy",
        step=0,
        seed=0,
        games=range(64),
        opponents=Opponents(scripted_prob=0.5),
        pool_ready=False,
    ):
        learners = m.meta["learners"]
        assert learners and all(m.agents[r] == "learner" for r in learners)
        assert all(m.agents[r] != "learner" for r in set(ROLES) - set(learners))

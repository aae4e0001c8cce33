"""The answer slot: a game pre-fills the start of the model's turn ("37 + 45 = "), the model writes only the number
(constrained to the numbers the skill can produce), and what it read, its prompt ids and its training samples all
include the slot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.agents.specs import build_agent
from selfplay.arena.play import Match, play
from selfplay.games.arithmetic import Arithmetic, answer_bounds, make_task
from selfplay.games.conformance import check_game

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("skill", ["add", "sub", "mul", "paren"])
def test_the_bounds_hold_every_result_and_the_slot_format_conforms(skill):
    import random

    low, high = answer_bounds(skill, 2)
    rng = random.Random(0)
    results = [make_task(skill, 2, rng)[1] for _ in range(2000)]
    assert low <= min(results) and max(results) <= high
    assert check_game(Arithmetic, range(20), {"skill": skill, "digits": 2, "answer_format": "slot"}).ok


def test_the_slot_game_asks_for_the_number_alone():
    game = Arithmetic(digits=2, answer_format="slot")
    game.reset(3)
    assert game.answer_slot("solver") == f"{game.question} = "
    legal = game.legal_actions("solver")
    assert str(game.answer) in legal and legal == [str(v) for v in range(20, 199)]
    assert game.parse("solver", "82") == 82 and game.parse("solver", " 82 is the sum") == 82
    assert Arithmetic(digits=2).answer_slot("solver") is None  # the line format keeps 'ANSWER: <integer>'
    with pytest.raises(ValueError, match="answer_format='box'"):
        Arithmetic(answer_format="box")


def test_a_model_continues_the_slot_and_records_it(tmp_path):
    agent = build_agent("tiny:constrained=true,max_new_tokens=4", seed=0)
    game = lambda: Arithmetic(digits=2, answer_format="slot", samples=2)  # noqa: E731
    [episode] = play(game, [Match(5, {"solver": "m"})], {"m": agent}, progress=False)
    probe = game()
    probe.reset(5)
    slot_ids = agent.tokenizer.encode(probe.answer_slot("solver"), add_special_tokens=False)
    for step in episode.steps:
        assert step.failure is None and step.text.strip().isdigit()  # constrained: a number, every time
        assert step.prompt_ids[-len(slot_ids):] == slot_ids  # the slot ends the prompt the model continued
        assert step.read[-1] == {"role": "assistant", "content": probe.answer_slot("solver")}


def test_training_on_the_slot_format(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "selfplay.train", "game=arithmetic", "model=tiny", "weights=shared",
                             "observer=chat", "constrained=true", "max_new_tokens=4", "scripted_prob=0",
                             "game_options={digits: 2, answer_format: slot}", "steps=2", "games_per_step=8",
                             "eval_games=4", "progress=false", "update.advantage=grpo", f"out={tmp_path / 'run'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "invalid solver=0%" in result.stdout

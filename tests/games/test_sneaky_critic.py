import random

import pytest

from selfplay.arena.matches import Match
from selfplay.arena.play import play
from selfplay.games.sneaky_critic import SneakyCritic, make_chain, step_is_correct
from tests.fakes import ScriptAgent


def test_chains_are_correct_step_by_step():
    chain = make_chain(random.Random(3), 6)
    previous = None
    for step in chain:
        assert step_is_correct(step, previous)
        previous = step[3]
    assert not step_is_correct((chain[1][0] + 1, *chain[1][1:]), chain[0][3])  # a wrong carry-in operand


def _episode(generator_text, critic_text, seed=0):
    g, c = ScriptAgent([generator_text], "g"), ScriptAgent([critic_text], "c")
    return play(SneakyCritic, [Match(seed, {"generator": "g", "critic": "c"})], {"g": g, "c": c}, progress=False)[0], c


def test_rewards_hand_checked():
    game = SneakyCritic()
    game.reset(0)
    a, op, b, c = game.chain[game.target]
    k = game.target + 1
    wrong = f"STEP: {a} {op} {b} = {c + 1}"
    ep, critic = _episode(wrong, f"[step {k}]")
    assert ep.rewards == {"generator": -1.0, "critic": 1.0}  # caught
    assert f"{a} {op} {b} = {c + 1}" in critic.batches[0][0].messages[-1]["content"]
    ep, _ = _episode(wrong, f"[step {k % game.steps + 1}]")
    assert ep.rewards == {"generator": 1.0, "critic": -1.0}  # slipped through
    ep, critic = _episode(f"STEP: {a} {op} {b} = {c}", f"[step {k % game.steps + 1}]")
    assert ep.rewards == {"generator": -1.0, "critic": 1.0} and not critic.batches  # not wrong: the generator loses
    assert ep.meta["info"]["sneaky_step_was_correct"] is True


def test_expert_critic_always_catches_and_expert_generator_beats_random_critic():
    from selfplay.agents.scripted import ExpertAgent, RandomAgent

    agents = {"expert": ExpertAgent(0), "random": RandomAgent(0)}
    episodes = play(
        SneakyCritic,
        [Match(s, {"generator": "random", "critic": "expert"}) for s in range(100)]
        + [Match(s, {"generator": "expert", "critic": "random"}) for s in range(100)],
        agents,
        progress=False,
    )
    assert all(ep.rewards["critic"] == 1.0 for ep in episodes[:100])
    assert sum(ep.rewards["generator"] == 1.0 for ep in episodes[100:]) > 60  # random critic guesses 1 in 4


def test_bad_option_is_named():
    with pytest.raises(ValueError, match="steps=1"):
        SneakyCritic(steps=1)

"""The temperature travels with each sample and is checked where the loss uses it."""

import math

import pytest
import torch

from selfplay.agents.models import load_model
from selfplay.agents.scoring import token_logprobs
from selfplay.training.policy import Policy
from selfplay.training.rollout import Sample
from selfplay.training.scoring import sample_temperature, score_batch, sequence_logprobs


def _sample(temperature, completion=(9, 10), logprobs=(-1.0, -1.0)):
    return Sample(
        "policy", ("g", "player_0"), ("e", 0), [5, 6, 7], list(completion), list(logprobs), 1.0, temperature=temperature
    )


def test_one_temperature_per_batch_is_read_off_the_samples():
    assert sample_temperature([_sample(0.7), _sample(0.7)]) == 0.7


def test_samples_drawn_at_different_temperatures_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"temperatures \[0\.7, 1\.0\]"):
        sample_temperature([_sample(0.7), _sample(1.0)])


def test_a_sample_without_its_temperature_is_refused():
    with pytest.raises(ValueError, match="no sampling temperature"):
        sample_temperature([_sample(None)])


def test_the_batch_is_scored_at_the_samples_temperature():
    """sequence_logprobs equals a teacher-forced pass at the temperature the samples carry, not at 1."""
    torch.manual_seed(0)
    model, tok = load_model("tiny", device="cpu", dtype="float32")
    policy = Policy(model, ["player_0"], "shared")
    samples = [
        _sample(0.5, completion=(40, 41, 42), logprobs=(0.0, 0.0, 0.0)),
        _sample(0.5, completion=(43,), logprobs=(0.0,)),
    ]
    batch = score_batch(samples, pad_id=tok.pad_token_id, device=torch.device("cpu"))
    with torch.no_grad():
        ours = sequence_logprobs(policy, batch)
        for tree in (True, False):  # the prefix-tree pass, forced on and off, gives the same numbers
            assert torch.allclose(sequence_logprobs(policy, batch, tree=tree), ours, atol=1e-5)
        ref = token_logprobs(
            model,
            [s.prompt_ids for s in samples],
            [s.completion_ids for s in samples],
            tok.pad_token_id,
            temperature=0.5,
        )
        at_one = token_logprobs(
            model,
            [s.prompt_ids for s in samples],
            [s.completion_ids for s in samples],
            tok.pad_token_id,
            temperature=1.0,
        )
    for i, s in enumerate(samples):
        assert torch.allclose(ours[i, : len(s.completion_ids)], ref[i], atol=1e-5)
        assert not torch.allclose(ours[i, : len(s.completion_ids)], at_one[i], atol=1e-3)
    assert batch.completion_mask.sum().item() == 4 and math.isclose(batch.inputs["temperature"], 0.5)

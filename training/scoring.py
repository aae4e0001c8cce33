"""Training-side scoring: the current weights' log-probabilities of a batch of samples, at the temperature each
sample was drawn with.

The sampled log-probabilities are ``log softmax(logits / T)`` at the sampling temperature T, and the clipped ratio of
the loss compares them with a teacher-forced pass at the same T. T travels with each sample (``Sample.temperature``,
from the agent's completion); a batch whose samples disagree on it, or one that has lost it, is refused here, where
the loss uses it, instead of being scored at a temperature the sampler never used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from selfplay.agents.scoring import constrained_positions, pack
from selfplay.training.rollout import Sample


def sample_temperature(samples: Sequence[Sample]) -> float:
    """The one temperature ``samples`` were drawn with; ValueError naming the values when they differ or are unknown."""
    found = sorted({s.temperature for s in samples}, key=repr)
    if None in found:
        raise ValueError(
            "a training sample has no sampling temperature recorded (its agent did not report one): "
            "the loss cannot score it at the temperature it was drawn with"
        )
    if len(found) > 1:
        raise ValueError(
            f"one update batch holds samples drawn at temperatures {found}: the loss scores each batch at "
            f"one temperature; sample the learner's roles at one sampling.temperature"
        )
    return float(found[0]) if found else 1.0


@dataclass
class ScoreBatch:
    """A padded batch of samples, ready for :func:`sequence_logprobs`."""

    inputs: dict[str, Any]  # the policy's keyword arguments: ids, masks, groups, prompt width, temperature, allowed
    completion_mask: torch.Tensor
    old_logprobs: torch.Tensor  # the sampling log-probabilities, (rows, completion tokens), 0 at padding

    def output_rows(self) -> list[int]:
        """Per row, the completion tokens scored against the whole output layer (constrained ones meet only their
        allowed rows): what the update's FLOP count needs."""
        scored = self.completion_mask.sum(1)
        for i, _, _ in constrained_positions(self.completion_mask, self.inputs["allowed"]):
            scored[i] -= 1
        return scored.tolist()


def score_batch(samples: Sequence[Sample], *, pad_id: int, device: torch.device) -> ScoreBatch:
    """Pack ``samples`` (prompt left-padded, completion right-padded) with their weight groups and temperature."""
    packed = {
        k: v.to(device)
        for k, v in pack([s.prompt_ids for s in samples], [s.completion_ids for s in samples], pad_id).items()
    }
    inputs = dict(
        input_ids=packed["input_ids"],
        attention_mask=packed["attention_mask"],
        position_ids=packed["position_ids"],
        groups=[s.weight_group for s in samples],
        prompt_width=int(packed["prompt_width"]),
        temperature=sample_temperature(samples),
        allowed=[s.allowed for s in samples] if any(s.allowed for s in samples) else None,
    )
    old = torch.zeros(packed["completion_mask"].shape, dtype=torch.float32, device=device)
    for i, s in enumerate(samples):
        old[i, : len(s.logprobs)] = torch.tensor(s.logprobs, device=device)
    return ScoreBatch(inputs, packed["completion_mask"], old)


def sequence_logprobs(policy: torch.nn.Module, batch: ScoreBatch, *, tree: bool | None = None) -> torch.Tensor:
    """(rows, completion tokens) teacher-forced log-probabilities of ``batch`` under ``policy`` (a ``Policy``, or the
    engine wrapping one), 0 at padding; ``tree``: the prefix-tree pass forced on or off (None: where it pays)."""
    return policy(**batch.inputs, **({} if tree is None else {"tree": tree}))

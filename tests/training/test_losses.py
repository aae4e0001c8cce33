import math

import pytest
import torch

from selfplay.training.losses import grpo_advantages, policy_loss, rae_advantages


def test_rae_uses_the_baseline_from_before_the_update():
    adv, b = rae_advantages([1.0, -1.0, 1.0], [("ttt", "x"), ("ttt", "x"), ("ttt", "o")],
                            {("ttt", "x"): 0.5}, decay=0.9)
    assert adv == [0.5, -1.5, 1.0]  # "o" has no baseline yet: 0
    assert b[("ttt", "x")] == pytest.approx(0.9 * 0.5 + 0.1 * 0.0)
    assert b[("ttt", "o")] == 1.0  # first batch initialises the baseline to its mean


def test_grpo_normalises_within_groups_and_falls_back_for_singletons():
    adv = grpo_advantages([1.0, 0.0, 0.0, 1.0, 5.0], ["a", "a", "a", "a", "b"], fallback=[9, 9, 9, 9, 0.25])
    std = 0.5
    assert adv[:4] == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std], rel=1e-5)
    assert adv[4] == 0.25
    assert grpo_advantages([1.0, 1.0], ["g", "g"]) == [0.0, 0.0]


def test_policy_loss_hand_computed():
    logp = torch.tensor([[math.log(0.5), math.log(0.25)], [math.log(0.9), 0.0]])
    old = torch.tensor([[math.log(0.25), math.log(0.25)], [math.log(0.9), 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    adv = torch.tensor([2.0, -1.0])
    loss, stats = policy_loss(logp, old, adv, mask, clip=0.2, token_count=3)
    # token 1: ratio 2 -> clipped to 1.2 -> -min(4, 2.4) = -2.4; token 2: ratio 1 -> -2; token 3: ratio 1 -> +1
    assert float(loss) == pytest.approx((-2.4 - 2.0 + 1.0) / 3)
    assert stats["clip_frac"] == pytest.approx(1 / 3)


def test_policy_loss_gradient_is_reinforce_at_ratio_one_and_kl_is_k3():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = policy_loss(logp, logp.detach(), torch.tensor([3.0]), torch.ones(1, 2), 0.2, token_count=2)
    loss.backward()
    assert logp.grad.tolist() == [[-1.5, -1.5]]  # -A / tokens
    ref = torch.tensor([[-1.5, -2.0]])
    _, stats = policy_loss(logp.detach(), logp.detach(), torch.tensor([0.0]), torch.ones(1, 2), 0.2, 2, ref, 0.1)
    assert stats["kl"] == pytest.approx((math.exp(-0.5) + 0.5 - 1) / 2)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shapes differ"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3), 0.2, 1)

"""The sampler/learner mismatch: measured per update, and corrected in the loss (truncated importance sampling)."""

from pathlib import Path

import pytest
import torch

from selfplay.training.losses import mismatch_weights, policy_loss

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model=tiny", "games_per_step=4", "steps=1", "evaluation.every=0"]


def _expected_gradient(correction: str, theta: torch.Tensor, shift: torch.Tensor, reward: torch.Tensor):
    """The exact expectation, over tokens drawn by the sampler q = softmax(theta + shift), of the gradient of the
    loss with ``correction``: one row per token, its advantage scaled by K q(a) (the clipped loss is positively
    homogeneous in the advantage, so the row sum over K tokens is E_q of the per-token loss)."""
    theta = theta.clone().requires_grad_(True)
    k = len(theta)
    logp = torch.log_softmax(theta, 0).unsqueeze(1)  # (K rows, 1 token): the learner's log-prob of each token
    sampler = torch.log_softmax(theta + shift, 0).unsqueeze(1).detach()
    q = sampler.exp().squeeze(1)
    old = sampler if correction == "none" else logp.detach()
    weights = mismatch_weights(logp, sampler, cap=10.0) if correction == "tis" else None
    loss, _ = policy_loss(logp, old, reward * k * q, torch.ones(k, 1), clip=0.2, tokens=float(k), weights=weights)
    (grad,) = torch.autograd.grad(loss, theta)
    return grad


def test_truncated_importance_weights_remove_a_mismatch_injected_by_hand():
    """The learner's policy pi = softmax(theta); the sampler draws from q, shifted by hand by up to 0.5 in the logits
    (a mismatch larger than the clip range). The policy gradient of E_pi[R] is the target. Weighting each token by
    pi / q (TIS, cap above every weight) recovers it exactly; the learner's own log-probs unweighted (recompute)
    estimate E_q's gradient instead, and the sampler's as the old ones (none) clip away the tokens whose mismatch
    exceeds the clip range: both miss it."""
    torch.manual_seed(0)
    theta = torch.randn(6)
    shift = torch.tensor([0.5, -0.5, 0.3, 0.0, -0.4, 0.2])
    reward = torch.tensor([1.0, 0.0, 0.5, -1.0, 2.0, 0.3])
    t = theta.clone().requires_grad_(True)
    (target,) = torch.autograd.grad(-(torch.softmax(t, 0) * reward).sum(), t)  # d/dtheta of -E_pi[R]
    errors = {c: float((_expected_gradient(c, theta, shift, reward) - target).norm() / target.norm()) for c in
              ("tis", "recompute", "none")}  # fmt: skip
    assert errors["tis"] < 1e-5
    assert errors["recompute"] > 0.1 and errors["none"] > 0.1, errors
    no_shift = {c: float((_expected_gradient(c, theta, torch.zeros(6), reward) - target).norm()) for c in errors}
    assert max(no_shift.values()) < 1e-5  # without a mismatch all three are the same exact gradient


def test_weights_are_truncated_at_the_cap():
    learner = torch.tensor([[0.0, -1.0, -3.0]])
    sampler = torch.tensor([[-2.0, -1.0, -1.0]])
    w = mismatch_weights(learner, sampler, cap=2.0)
    assert w[0].tolist() == pytest.approx([2.0, 1.0, torch.exp(torch.tensor(-2.0)).item()])


@pytest.mark.parametrize("correction", ["tis", "recompute", "none"])
def test_an_update_measures_the_mismatch_it_is_handed(correction):
    """Samples whose recorded log-probs sit 0.25 below the learner's own (a mismatch made by hand) are measured as
    0.25 mean and max; with tis_cap 1.2 every token's weight exp(0.25) = 1.28 is capped."""
    from selfplay.training.config import load_config
    from selfplay.training.distributed import make_accelerator
    from selfplay.training.learner import build_learner
    from selfplay.training.rollout import Sample
    from selfplay.training.update import update

    cfg = load_config(
        ROOT / "configs/tictactoe_quick.yaml",
        [*TINY, "advantage=rae", "dtype=float32", f"correction={correction}", "tis_cap=1.2", "ppo_epochs=2"],
    )
    learner = build_learner(cfg, make_accelerator(1, 1.0, "float32", find_unused=False), ("player_0", "player_1"))
    prompts, completions = [[5, 6, 7, 8], [5, 9]], [[9, 10, 11], [12]]
    from selfplay.agents.scoring import token_logprobs

    module, _ = learner.policy.generator("policy")
    with torch.no_grad():
        exact = token_logprobs(module, prompts, completions, learner.tokenizer.pad_token_id)
    samples = [
        Sample(
            "policy",
            ("tictactoe", "player_0"),
            (f"e{i}", 0),
            p,
            c,
            (lp - 0.25).tolist(),
            1.0,
            advantage=1.0,
            temperature=1.0,
        )  # fmt: skip
        for i, (p, c, lp) in enumerate(zip(prompts, completions, exact))
    ]
    stats = update(cfg.update, learner, samples)
    assert stats.tokens == 4
    assert stats.mismatch_sum / stats.tokens == pytest.approx(0.25, abs=1e-4)  # first pass only, not per epoch
    assert stats.mismatch_max == pytest.approx(0.25, abs=1e-4)
    assert stats.capped == (4 if correction == "tis" else 0)

"""The update rules on a zero-sum matrix game, with the trainer's own loss function (``policy_loss``) on exact
expectations: plain policy gradient's last iterate cycles, its average converges (no-regret self-play), and magnetic
mirror descent's last iterate converges (Sokota et al. 2023)."""

import torch

from selfplay.training.losses import policy_loss

# biased rock-paper-scissors, the row player's payoff: its equilibrium is not uniform, and exploitability below is
# measured directly from best responses, without knowing the equilibrium
PAYOFF = torch.tensor([[0.0, -1.0, 2.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], dtype=torch.float64)


def exploitability(x: torch.Tensor, y: torch.Tensor) -> float:
    """NashConv / 2 of the strategy pair: (best row payoff against y - worst column payoff against x) / 2."""
    return float((PAYOFF @ y).max() - (x @ PAYOFF).min()) / 2


def expected_loss(logits, opponent, payoff, magnet, kl_coef, entropy_coef):
    """E_{a ~ pi}[per-sample loss]: one row per action, weighted by pi(a) through the token mask."""
    logp = torch.log_softmax(logits, -1)
    pi = logp.exp().detach()
    q = payoff @ opponent  # the value of each action against the opponent's mixed strategy
    advantages = q - (pi * q).sum()
    loss, _ = policy_loss(
        logp.unsqueeze(-1),
        logp.detach().unsqueeze(-1),
        advantages,
        pi.unsqueeze(-1),
        clip=10.0,
        tokens=1.0,
        ref_logp=torch.log_softmax(magnet, -1).unsqueeze(-1),
        kl_coef=kl_coef,
        entropy_coef=entropy_coef,
    )
    return loss


def self_play(steps=3000, lr=0.1, kl_coef=0.0, entropy_coef=0.0, magnet_every=0):
    """Both players update simultaneously; returns the last iterates and the running average strategies."""
    rows = torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64, requires_grad=True)
    cols = torch.tensor([0.0, 1.0, 0.3], dtype=torch.float64, requires_grad=True)
    magnets = [rows.detach().clone(), cols.detach().clone()]
    total = [torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)]
    for t in range(steps):
        x, y = torch.softmax(rows, -1), torch.softmax(cols, -1)
        loss = expected_loss(rows, y.detach(), PAYOFF, magnets[0], kl_coef, entropy_coef) + expected_loss(
            cols, x.detach(), -PAYOFF.T, magnets[1], kl_coef, entropy_coef
        )
        rows.grad = cols.grad = None
        loss.backward()
        with torch.no_grad():
            rows -= lr * rows.grad
            cols -= lr * cols.grad
        total[0] += x.detach()
        total[1] += y.detach()
        if magnet_every and (t + 1) % magnet_every == 0:
            magnets = [rows.detach().clone(), cols.detach().clone()]
    last = (torch.softmax(rows, -1).detach(), torch.softmax(cols, -1).detach())
    return last, (total[0] / steps, total[1] / steps)


def test_plain_policy_gradient_cycles_but_its_average_converges():
    (x, y), (ax, ay) = self_play()
    assert exploitability(x, y) > 0.15  # the last iterate keeps circling the equilibrium
    assert exploitability(ax, ay) < 0.05  # the time average approaches it


def test_magnetic_mirror_descent_last_iterate_converges():
    (x, y), _ = self_play(kl_coef=0.5, entropy_coef=0.02, magnet_every=50)
    assert exploitability(x, y) < 0.01
    start = exploitability(
        torch.softmax(torch.tensor([1.0, 0.0, -0.5]), -1).double(),
        torch.softmax(torch.tensor([0.0, 1.0, 0.3]), -1).double(),
    )
    assert start > 0.3


def test_entropy_and_kl_terms_match_hand_values():
    logp = torch.tensor([[-0.5, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.0, -1.0]])
    mask = torch.ones(1, 2)
    loss, stats = policy_loss(
        logp,
        logp.detach(),
        torch.tensor([0.0]),
        mask,
        clip=0.2,
        tokens=2.0,
        ref_logp=ref,
        kl_coef=0.5,
        entropy_coef=0.1,
    )
    # per token: kl3 = exp(ref - logp) - (ref - logp) - 1; entropy term 0.1 * logp^2 (value), 0.1 * logp (gradient)
    kl = [torch.exp(torch.tensor(-0.5)) + 0.5 - 1, torch.exp(torch.tensor(1.0)) - 1.0 - 1]
    expected = (0.5 * (kl[0] + kl[1]) + 0.1 * (0.25 + 4.0)) / 2.0
    assert torch.isclose(loss, expected) and abs(stats["kl"] - float(sum(kl) / 2)) < 1e-6
    loss.backward()
    # d/dlogp: 0.5 * (1 - exp(ref - logp)) + 0.1 * logp, divided by the token count
    grads = [(0.5 * (1 - torch.exp(torch.tensor(r - lp))) + 0.1 * lp) / 2.0 for r, lp in ((-1.0, -0.5), (-1.0, -2.0))]
    assert torch.allclose(logp.grad, torch.tensor([[float(g) for g in grads]]), atol=1e-6)

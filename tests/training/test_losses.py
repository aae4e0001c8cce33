import math

import pytest
import torch

from selfplay.training.losses import grpo_advantages, policy_loss, rae_advantages


def test_rae_uses_the_baseline_from_before_the_update():
    adv, b = rae_advantages(
        [1.0, -1.0, 1.0], [("ttt", "x"), ("ttt", "x"), ("ttt", "o")], {("ttt", "x"): 0.5}, decay=0.9
    )
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
    loss, stats = policy_loss(logp, old, adv, mask, clip=0.2, tokens=3)
    # token 1: ratio 2 -> clipped to 1.2 -> -min(4, 2.4) = -2.4; token 2: ratio 1 -> -2; token 3: ratio 1 -> +1
    assert float(loss) == pytest.approx((-2.4 - 2.0 + 1.0) / 3)
    assert stats["clip_frac"] == pytest.approx(1 / 3)


def test_policy_loss_gradient_is_reinforce_at_ratio_one_and_kl_is_k3():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = policy_loss(logp, logp.detach(), torch.tensor([3.0]), torch.ones(1, 2), clip=0.2, tokens=2)
    loss.backward()
    assert logp.grad.tolist() == [[-1.5, -1.5]]  # -A / tokens
    ref = torch.tensor([[-1.5, -2.0]])
    _, stats = policy_loss(
        logp.detach(),
        logp.detach(),
        torch.tensor([0.0]),
        torch.ones(1, 2),
        clip=0.2,
        tokens=2,
        ref_logp=ref,
        kl_coef=0.1,
    )
    assert stats["kl"] == pytest.approx((math.exp(-0.5) + 0.5 - 1) / 2)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shapes differ"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3), clip=0.2, tokens=1)


def test_lambda_returns_blend_the_next_states_value_with_the_return_by_hand():
    from selfplay.training.rollout import Sample
    from selfplay.training.update import baseline_key, lambda_returns

    def move(episode, turn, prompt, reward, role="player_0", arm="random"):
        return Sample("policy", ("tictactoe", role), (episode, turn), prompt, [9], [0.0], reward, arm=arm)

    # one episode: player_0 moves at turns 0, 2, 4 (states a, b, c), wins (+1); player_1 at turn 1 (state d), loses
    samples = [
        move("e", 4, [3], 1.0),
        move("e", 0, [1], 1.0),
        move("e", 2, [2], 1.0),
        move("e", 1, [4], -1.0, role="player_1"),
    ]
    keys = [baseline_key(s, "state") for s in samples]
    values = {keys[0]: 0.5, keys[2]: 0.2}  # V(c) = 0.5, V(b) = 0.2; V(a) unknown
    lam = 0.25
    g_c = 1.0  # the last move: the reward
    g_b = (1 - lam) * 0.5 + lam * g_c  # 0.625
    g_a = (1 - lam) * 0.2 + lam * g_b  # 0.30625
    assert lambda_returns(samples, keys, values, lam) == pytest.approx([g_c, g_a, g_b, -1.0])
    assert lambda_returns(samples, keys, values, 1.0) == [1.0, 1.0, 1.0, -1.0]  # lambda 1: Monte Carlo
    assert lambda_returns(samples, keys, {}, 0.0) == [1.0, 1.0, 1.0, -1.0]  # no estimates yet: the return
    # the opponent arm is part of the state: the same board against the expert is another state
    assert baseline_key(move("e", 0, [1], 1.0, arm="expert"), "state") != keys[1]
    # a samples=K turn (two samples at turn 0) has no single next state: Monte Carlo for that role's moves
    branched = samples + [move("e", 0, [1], -1.0)]
    assert lambda_returns(branched, [baseline_key(s, "state") for s in branched], values, lam)[:3] == [1.0, 1.0, 1.0]
    # moves paid their own rewards (a solver's per-turn correctness) are not returns to bootstrap: unchanged
    paid = [move("e", 0, [1], 0.0), move("e", 2, [2], 1.0)]
    assert lambda_returns(paid, [baseline_key(s, "state") for s in paid], values, lam) == [0.0, 1.0]


def test_learning_rate_schedules_by_hand():
    from selfplay.training.learner import lr_multiplier

    assert [lr_multiplier(s, 10, warmup=0, schedule="constant", floor=0.1) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert [lr_multiplier(s, 10, warmup=4, schedule="constant", floor=0.1) for s in (0, 1, 3, 4)] == [
        0.25,
        0.5,
        1.0,
        1.0,
    ]
    # linear from step 2 (after 2 warm-up steps) to step 9: t = (s - 2) / 7, floor 0.3
    assert lr_multiplier(2, 10, warmup=2, schedule="linear", floor=0.3) == 1.0
    assert lr_multiplier(9, 10, warmup=2, schedule="linear", floor=0.3) == pytest.approx(0.3)
    assert lr_multiplier(5, 10, warmup=2, schedule="linear", floor=0.3) == pytest.approx(0.3 + 0.7 * (1 - 3 / 7))
    # cosine: halfway is halfway between peak and floor
    assert lr_multiplier(5, 11, warmup=0, schedule="cosine", floor=0.0) == pytest.approx(0.5)
    assert lr_multiplier(10, 11, warmup=0, schedule="cosine", floor=0.2) == pytest.approx(0.2)
    assert lr_multiplier(20, 11, warmup=0, schedule="cosine", floor=0.2) == pytest.approx(
        0.2
    )  # past the end (a resumed, longer run)


def test_micro_batches_are_cut_where_the_largest_padded_batch_is_smallest():
    import itertools
    import random

    from selfplay.training.update import balanced_runs

    def cost(lengths, a, b):
        return (b - a) * (max(p for p, _ in lengths[a:b]) + max(c for _, c in lengths[a:b])) if b > a else 0

    rng = random.Random(0)
    for _ in range(60):
        n, parts = rng.randrange(1, 9), rng.randrange(1, 5)
        lengths = sorted(((rng.randrange(1, 40), rng.randrange(1, 12)) for _ in range(n)), key=sum)
        runs = balanced_runs(lengths, parts)
        assert len(runs) == parts and runs[0][0] == 0 and runs[-1][1] == n
        assert all(a <= b for a, b in runs) and all(r[1] == s[0] for r, s in zip(runs, runs[1:]))
        assert all(b > a for a, b in runs[: min(parts, n)])  # empty runs only when samples run out
        best = min(
            max(cost(lengths, a, b) for a, b in zip((0,) + cuts, cuts + (n,)))
            for cuts in itertools.combinations(range(1, n), min(parts, n) - 1)
        )
        assert max(cost(lengths, a, b) for a, b in runs) == best, (lengths, parts, runs)
    # by hand: four short samples and two long ones in two micro-batches: the long pair alone (2 x 48 = 96), not
    # three samples each (3 x 38 = 114 for the second half, as equal counts would cut)
    assert balanced_runs([(5, 1), (5, 1), (6, 1), (6, 2), (30, 8), (40, 8)], 2) == [(0, 4), (4, 6)]


def test_the_fewest_micro_batches_within_a_token_budget():
    import itertools
    import random

    from selfplay.training.update import runs_within

    def cost(lengths, a, b):
        return (b - a) * (max(p for p, _ in lengths[a:b]) + max(c for _, c in lengths[a:b]))

    rng = random.Random(1)
    for _ in range(80):
        n, budget = rng.randrange(1, 9), rng.randrange(10, 200)
        lengths = sorted(((rng.randrange(1, 40), rng.randrange(1, 12)) for _ in range(n)), key=sum)
        fewest = n  # brute force: the fewest cuts whose runs fit (a sample above the budget alone)
        for k in range(1, n + 1):
            if any(
                all(cost(lengths, a, b) <= budget or b - a == 1 for a, b in zip((0,) + cuts, cuts + (n,)))
                for cuts in itertools.combinations(range(1, n), k - 1)
            ):
                fewest = k
                break
        assert runs_within(lengths, budget) == fewest, (lengths, budget)
    assert runs_within([(10, 2)] * 6, 36) == 2 and runs_within([(10, 2)] * 6, 35) == 3  # 3 x 12 = 36 fits
    assert runs_within([(100, 20)], 8) == 1  # too long for any budget: alone

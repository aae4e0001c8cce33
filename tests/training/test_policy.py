import pytest
import torch

from selfplay.agents.models import tiny_model
from selfplay.agents.scoring import pack
from selfplay.training.policy import Policy

ROLES = ("creator", "solver")


def _batch():
    return pack([[1, 40, 41, 42], [1, 50, 51]], [[60, 61, 2], [70, 2]], pad_id=0)


@pytest.mark.parametrize("mode", ["lora", "clone"])
def test_each_role_trains_only_its_own_weights(mode):
    base, _ = tiny_model(seed=0)
    policy = Policy(base, ROLES, mode, seed=1)
    b = _batch()
    logp = policy(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        position_ids=b["position_ids"],
        groups=["solver", "solver"],
        prompt_width=int(b["prompt_width"]),
    )
    (logp * b["completion_mask"]).sum().backward()
    grads = {n: p.grad for n, p in policy.named_parameters() if p.requires_grad}
    solver = [g for n, g in grads.items() if "solver" in n]
    creator = [g for n, g in grads.items() if "creator" in n]
    assert solver and creator
    assert any(g is not None and g.abs().sum() > 0 for g in solver)
    assert all(g is None or g.abs().sum() == 0 for g in creator)


def test_rows_of_different_roles_use_their_own_weights():
    base, _ = tiny_model(seed=0)
    policy = Policy(base, ROLES, "clone")
    with torch.no_grad():
        for p in policy.clones["creator"].parameters():
            p.add_(0.05)
    b = _batch()
    args = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"], "position_ids": b["position_ids"]}
    mixed = policy(**args, groups=["creator", "solver"], prompt_width=int(b["prompt_width"]))
    as_solver = policy(**args, groups=["solver", "solver"], prompt_width=int(b["prompt_width"]))
    as_creator = policy(**args, groups=["creator", "creator"], prompt_width=int(b["prompt_width"]))
    assert torch.allclose(mixed[1], as_solver[1], atol=1e-6) and torch.allclose(mixed[0], as_creator[0], atol=1e-6)
    assert not torch.equal(as_solver[0], as_creator[0])


@pytest.mark.parametrize("mode", ["shared", "lora"])
def test_update_flops_match_torch_flop_counter_on_the_matrix_products(mode):
    """The model-FLOP count of an update pass against torch's own count of every matmul run (forward, backward);
    torch may also count attention's products, which the model-FLOP convention leaves out."""
    from torch.utils.flop_counter import FlopCounterMode

    base, _ = tiny_model(seed=0)
    policy = Policy(base, ROLES, mode, seed=1)
    b = _batch()
    width, groups = b["input_ids"].shape[1], ["solver", "solver"] if mode == "lora" else ["policy", "policy"]
    with FlopCounterMode(display=False) as counter:
        logp = policy(
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            position_ids=b["position_ids"],
            groups=groups,
            prompt_width=int(b["prompt_width"]),
        )
        (logp * b["completion_mask"]).sum().backward()
    measured = counter.get_total_flops()
    ours = policy.update_flops(groups, width, b["completion_mask"].sum(1).tolist())
    config = base.config
    # attention scores and weighted sums: 2 products of 2 * width^2 * hidden per layer and row, 3x with backward
    attention = 3 * 2 * 2 * width * width * config.hidden_size * config.num_hidden_layers * len(groups)
    if mode == "shared":
        assert ours <= measured <= ours + attention
    else:  # autograd skips the first layer's input gradients (nothing trainable below): 2 layers, ~5% here
        assert 0.9 * ours <= measured <= ours
    counts = policy.matmul_parameters(groups[0])
    if mode == "lora":  # only the adapter trains: no weight gradients through the frozen base
        assert 0 < counts["body_trainable"] < counts["body"] / 5 and counts["head_trainable"] == 0
    else:
        assert counts["body_trainable"] == counts["body"]

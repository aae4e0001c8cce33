import pytest
import torch

from selfplay.agents.llm import pack
from selfplay.agents.models import tiny_model
from selfplay.training.policy import Policy

ROLES = ("creator", "solver")


def _batch():
    return pack([[1, 40, 41, 42], [1, 50, 51]], [[60, 61, 2], [70, 2]], pad_id=0)


@pytest.mark.parametrize("mode", ["lora", "clone"])
def test_each_role_trains_only_its_own_weights(mode):
    base, _ = tiny_model(seed=0)
    policy = Policy(base, ROLES, mode, seed=1)
    b = _batch()
    logp = policy(b["input_ids"], b["attention_mask"], b["position_ids"], ["solver", "solver"], int(b["prompt_width"]))
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
    args = (b["input_ids"], b["attention_mask"], b["position_ids"])
    mixed = policy(*args, ["creator", "solver"], int(b["prompt_width"]))
    as_solver = policy(*args, ["solver", "solver"], int(b["prompt_width"]))
    as_creator = policy(*args, ["creator", "creator"], int(b["prompt_width"]))
    assert torch.allclose(mixed[1], as_solver[1], atol=1e-6) and torch.allclose(mixed[0], as_creator[0], atol=1e-6)
    assert not torch.equal(as_solver[0], as_creator[0])

import random

import torch

from selfplay.agents.decode import radix_tree
from selfplay.agents.models import tiny_model
from selfplay.agents.scoring import Packed, completion_states, pack, scored_logprobs
from selfplay.agents.tree_forward import tree_states


def _whole(model, b):
    """Hidden states predicting each completion token from one plain pass over whole rows."""
    w = int(b["prompt_width"])
    return model.model(
        input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=b["position_ids"]
    ).last_hidden_state[:, w - 1 : -1]


def test_tree_states_equal_a_plain_pass_and_compute_each_shared_run_once():
    model, tok = tiny_model(seed=9)
    rng = random.Random(3)
    system = [rng.randrange(3, 250) for _ in range(40)]
    prompts = [system + [rng.randrange(3, 250) for _ in range(rng.randrange(1, 12))] for _ in range(9)]
    prompts += [prompts[2], prompts[2], system[:25] + [7, 8], [9, 10, 11]]  # a repeated prompt, a shorter share, none
    completions = [[rng.randrange(3, 250) for _ in range(rng.randrange(1, 5))] for _ in prompts]
    completions[10] = list(completions[9])  # two identical samples
    b = pack(prompts, completions, tok.pad_token_id)
    computed = []

    def count(module, args, kwargs):  # real tokens of the segment each forward computes
        computed.append(int(kwargs["attention_mask"][:, -kwargs["input_ids"].shape[1] :].sum()))

    hook = model.model.register_forward_pre_hook(count, with_kwargs=True)
    w = int(b["prompt_width"])
    states = completion_states(
        model.model, Packed(b["input_ids"], b["attention_mask"], b["position_ids"], w), tree=True
    )
    hook.remove()
    sequences = [p + c for p, c in zip(prompts, completions)]
    distinct = len({tuple(s[: i + 1]) for s in sequences for i in range(len(s))})
    assert len(computed) > 1  # the tree path ran, level by level
    assert distinct <= sum(computed) < distinct + 64 * len(computed)  # shared runs once (short ones may repeat)
    assert sum(computed) < sum(map(len, sequences)) // 2
    mask = b["completion_mask"].bool()
    assert torch.allclose(states[mask], _whole(model, b)[mask], atol=1e-5)


def test_gradients_through_the_tree_equal_those_of_a_plain_pass():
    model, tok = tiny_model(seed=10)
    rng = random.Random(4)
    stems = [[rng.randrange(3, 250) for _ in range(rng.randrange(20, 50))] for _ in range(3)]
    prompts = [
        rng.choice(stems)[: rng.randrange(10, 20)] + [rng.randrange(3, 9) for _ in range(rng.randrange(0, 6))]
        for _ in range(16)
    ]
    completions = [[rng.randrange(3, 250) for _ in range(rng.randrange(1, 4))] for _ in prompts]
    allowed = [[[c[0], 3, 4], None] if i % 3 == 0 else None for i, c in enumerate(completions)]
    b = pack(prompts, completions, tok.pad_token_id)
    args = (b["input_ids"], b["attention_mask"], b["position_ids"], int(b["prompt_width"]))
    nodes = radix_tree([p + c for p, c in zip(prompts, completions)], 64)
    assert sum(len(n.tokens) for n in nodes) < 0.75 * args[0].numel()  # there is something to share

    def grads_of(logp):
        model.zero_grad()
        (logp * b["completion_mask"]).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    tree = scored_logprobs(
        model, Packed(*args), temperature=0.8, allowed=allowed, tree=True
    )  # too cheap to pay on the tiny model
    mine = grads_of(tree)
    model.model.gradient_checkpointing = True  # the plain pass (the flag is only read, nothing is checkpointed
    try:  # outside training mode)
        plain = scored_logprobs(model, Packed(*args), temperature=0.8, allowed=allowed)
    finally:
        model.model.gradient_checkpointing = False
    theirs = grads_of(plain)
    assert torch.allclose(tree, plain, atol=1e-5)
    for a, c in zip(mine, theirs):
        assert torch.allclose(a, c, atol=1e-5)


def test_tree_states_pick_positions_anywhere_on_a_path():
    model, _ = tiny_model(seed=11)
    sequences = [[5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7, 8, 20, 21], [5, 6, 7, 8, 9, 10, 11, 12]]
    wanted = [[0, 3, 7], [2, 4, 5], [6]]
    with torch.no_grad():
        states = tree_states(model.model, sequences, wanted, min_saving=1)
        for r, (s, positions) in enumerate(zip(sequences, wanted)):
            alone = model.model(input_ids=torch.tensor([s])).last_hidden_state[0]
            assert torch.allclose(states[r, : len(positions)], alone[positions], atol=1e-5)
        assert torch.equal(states[2, 1:], torch.zeros_like(states[2, 1:]))


def test_the_tree_is_taken_where_the_tokens_it_saves_cost_more_than_its_extra_forwards():
    from transformers import LlamaConfig, LlamaForCausalLM

    from selfplay.agents.tree_forward import forward_plan, tree_may_pay, tree_pays

    system = list(range(100, 160))  # a 60-token system prompt, then 40 rows of their own 10 tokens
    sequences = [system + [200 + i] * 10 for i in range(40)]
    nodes = radix_tree(sequences, 64)
    plan = forward_plan(nodes, 64)
    assert len(plan) == 2 and sum(len(n.tokens) for n in nodes) == 60 + 400
    tiny, _ = tiny_model(seed=0)
    assert not tree_pays(tiny.model, 40 * 70, nodes, plan)  # 90k parameters: a token costs nanoseconds
    with torch.device("meta"):  # SmolLM2's shape, without its memory
        smol = LlamaForCausalLM(
            LlamaConfig(
                hidden_size=576,
                intermediate_size=1536,
                num_hidden_layers=30,
                num_attention_heads=9,
                num_key_value_heads=3,
                vocab_size=49152,
            )
        )
    assert tree_pays(smol.model, 40 * 70, nodes, plan)
    alone = radix_tree([[i] * 70 for i in range(40)], 64)  # nothing shared: never
    assert not tree_pays(smol.model, 40 * 70, alone, forward_plan(alone, 64))
    # before building any tree (a TicTacToe update's 580 distinct samples of 30 tokens): on the tiny model one segment
    # each costs more than every token would, so the tree is not even built; on SmolLM2 it may pay
    assert not tree_may_pay(tiny.model, 580 * 30, 580) and tree_may_pay(smol.model, 580 * 30, 580)

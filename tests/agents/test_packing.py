import pytest
import torch

from selfplay.agents.decode import Decoder
from selfplay.agents.llm import token_logprobs
from selfplay.agents.models import tiny_model
from selfplay.agents.packing import _Packed, can_pack, packed_linears

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


def _packed(model):
    return [m for m in model.modules() if isinstance(m.__dict__.get("forward"), _Packed)]


def test_packed_layers_compute_what_plain_layers_do_and_are_restored_on_leaving():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 80, bias=False),
                                torch.nn.Linear(80, 8).double())
    x = torch.randn(5, 7, 64)
    with torch.no_grad():
        plain = model[:3](x)
        with packed_linears(model) as n:
            assert n == 2 and _packed(model) == [model[0], model[2]]  # float64 is left alone
            assert not can_pack(model[3])
            with packed_linears(model) as inner:  # a second agent on the same model: already packed
                assert inner == 0
            assert len(_packed(model)) == 2  # the inner exit did not unpack the outer's layers
            fast = model[:3](x)
    assert fast.shape == plain.shape
    assert torch.allclose(fast, plain, rtol=1e-5, atol=1e-5)
    assert _packed(model) == [] and all("forward" not in m.__dict__ for m in model.modules())


def test_a_packed_layer_falls_back_to_the_plain_product_for_gradients_and_changed_weights():
    torch.manual_seed(1)
    layer = torch.nn.Linear(32, 16)
    x = torch.randn(4, 32, requires_grad=True)
    with packed_linears(layer):
        y = layer(x)  # autograd needed: the plain product, differentiable
        y.sum().backward()
        assert y.grad_fn is not None and layer.weight.grad is not None
        with torch.no_grad():
            layer.weight.mul_(-2.0)  # an in-place update: the packed copy is stale
            assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
            layer.weight = torch.nn.Parameter(torch.randn(16, 32))  # a new tensor altogether
            assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_a_decoder_session_packs_its_model_and_stays_exact():
    model, tok = tiny_model(seed=3)
    eos = tok.eos_token_id
    prompts = [tok.encode(s, add_special_tokens=False) for s in ("a board", "another board, longer", "a")]
    decoder = Decoder(model, eos, {eos})
    seen = []
    hook = model.lm_head.register_forward_pre_hook(lambda m, a: seen.append(len(_packed(model))))
    with decoder.session():
        out = decoder.decode(prompts, max_new=6, temperature=1.0, seed=2)
    hook.remove()
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert seen and set(seen) == {linears}  # every forward inside ran on packed layers
    assert _packed(model) == []
    with torch.no_grad():
        ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, 1.0)
    for o, r in zip(out, ref):
        assert torch.allclose(torch.tensor(o.logprobs), r[:len(o.tokens)], atol=1e-5)
    unpacked = Decoder(model, eos, {eos}, pack=False)
    with unpacked.session():
        again = unpacked.decode(prompts, max_new=6, temperature=1.0, seed=2)
    for a, b in zip(out, again):  # same seed, same sampled tokens (the tiny model's logits are well separated)
        assert a.tokens == b.tokens
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)


def test_nothing_is_packed_when_the_copies_would_crowd_memory(monkeypatch):
    import selfplay.agents.packing as packing

    layer = torch.nn.Linear(64, 64)  # 16 KiB of weights
    monkeypatch.setattr(packing, "available_memory", lambda: 4 * 16384 - 4)
    with packed_linears(layer) as n:
        assert n == 0 and _packed(layer) == []
    monkeypatch.setattr(packing, "available_memory", lambda: 4 * 16384)
    with packed_linears(layer) as n:
        assert n == 1

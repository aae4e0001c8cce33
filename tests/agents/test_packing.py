import pytest
import torch

from selfplay.agents.decode import Decoder
from selfplay.agents.models import tiny_model
from selfplay.agents.packing import _Packed, can_pack, packed_linears
from selfplay.agents.scoring import token_logprobs

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


def _packed(model):
    return [m for m in model.modules() if isinstance(m.__dict__.get("forward"), _Packed)]


def test_packed_layers_compute_what_plain_layers_do_and_are_restored_on_leaving():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 80, bias=False), torch.nn.Linear(80, 8).double()
    )
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
        ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=1.0)
    for o, r in zip(out, ref):
        assert torch.allclose(torch.tensor(o.logprobs), r[: len(o.tokens)], atol=1e-5)
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


def test_lora_layers_multiply_by_a_packed_merged_weight_per_adapter_and_stay_exact():
    """Inside a session each LoRA layer computes ``x (W + s B A)^T`` with its active adapter merged in, one packed copy
    per adapter; two adapters alternating on one base model sample the log-probabilities of a teacher-forced pass
    under their own adapter, and PEFT's own forward serves gradients and changed weights."""
    from selfplay.agents.packing import _MergedLoRA
    from selfplay.agents.weights import activate_adapter, add_adapters

    base, tok = tiny_model(seed=5)
    model = add_adapters(base, ["a", "b"], seed=2)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:  # B starts at zero, which would make every adapter the base model
                p.normal_(0, 0.3)
    model.eval()
    eos = tok.eos_token_id
    prompts = [tok.encode(s, add_special_tokens=False) for s in ("a board", "another board, longer", "a")]
    decoders = {a: Decoder(model, eos, {eos}) for a in ("a", "b")}  # one per adapter, as each role's agent has
    merged = lambda: [m for m in model.modules() if isinstance(m.__dict__.get("forward"), _MergedLoRA)]  # noqa: E731
    with decoders["a"].session(), decoders["b"].session():  # as a play opens its agents' sessions
        assert len(merged()) == 7 * model.config.num_hidden_layers
        outs = {}
        for call, adapter in enumerate(["a", "b", "a", "b"]):
            activate_adapter(model, adapter)
            with torch.no_grad():  # as agents sample
                outs[call] = adapter, decoders[adapter].decode(prompts, max_new=5, temperature=1.0, seed=call)
        assert {tuple(a for a, _ in f.merged) for f in (m.__dict__["forward"] for m in merged())} == {("a", "b")}
        layer = merged()[0]
        x = torch.randn(3, layer.in_features, requires_grad=True)
        layer(x).sum().backward()  # autograd: PEFT's forward, differentiable
        assert x.grad is not None
        with torch.no_grad():
            want = layer.base_layer(x) + layer.lora_B["b"](layer.lora_A["b"](x)) * layer.scaling["b"]
            assert torch.allclose(layer(x), want, atol=1e-5)
            layer.lora_B["b"].weight.mul_(-1.0)  # changed in place: merged again
            want = layer.base_layer(x) + layer.lora_B["b"](layer.lora_A["b"](x)) * layer.scaling["b"]
            assert torch.allclose(layer(x), want, atol=1e-5)
            layer.lora_B["b"].weight.mul_(-1.0)
    assert merged() == [] and _packed(model) == []
    for adapter, out in outs.values():
        activate_adapter(model, adapter)
        ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=1.0)
        for o, r in zip(out, ref):
            assert torch.allclose(torch.tensor(o.logprobs), r[: len(o.tokens)], atol=1e-4)
    assert outs[0][1][0].tokens != outs[1][1][0].tokens or outs[0][1][1].tokens != outs[1][1][1].tokens

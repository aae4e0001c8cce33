"""dtype=auto's choice of the products' precision, and the packed bfloat16 product against autocast's."""

import pytest
import torch

import selfplay.agents.precision as precision
from selfplay.agents.models import tiny_model
from selfplay.agents.packing import packed_linears


def _wide() -> torch.nn.Module:
    return tiny_model(hidden_size=256, intermediate_size=512)[0]


def test_auto_picks_bfloat16_only_on_a_cpu_that_has_it_and_a_model_wide_enough(monkeypatch, capsys):
    monkeypatch.setattr(precision, "_SAID", set())
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: "AMX")
    assert precision.choose("auto", _wide()) == torch.bfloat16
    assert precision.choose("auto", tiny_model()[0]) == torch.float32  # 64 wide: the casts would cost more
    assert precision.choose("float32", _wide()) == torch.float32
    assert "this CPU has AMX" in capsys.readouterr().err
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: None)
    assert precision.choose("auto", _wide()) == torch.float32
    assert precision.choose("bfloat16", _wide()) == torch.bfloat16  # forced
    assert "neither AMX nor AVX512-BF16" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown dtype 'half'"):
        precision.choose("half", _wide())


@pytest.mark.skipif(precision.cpu_bf16_feature() is None, reason="this CPU has no bfloat16 arithmetic")
def test_a_packed_layer_under_bfloat16_autocast_computes_what_autocast_computes():
    """Inside a play a layer multiplies by its bfloat16 packed copy: the same bfloat16 product as autocast's F.linear
    (input and weight rounded to bfloat16, float32 accumulation), within one bfloat16 rounding of the output."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 512)
    x = torch.randn(8, 256)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = layer(x)
        with packed_linears(layer) as n:
            packed = layer(x)
    assert n == 1 and packed.dtype == plain.dtype == torch.bfloat16
    assert torch.allclose(packed.float(), plain.float(), rtol=2**-7, atol=1e-2)
    exact = torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert not torch.equal(packed.float(), exact)  # it is the bfloat16 path, not float32

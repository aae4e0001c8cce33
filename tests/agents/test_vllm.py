"""The optional vLLM rollout backend.

Without vLLM and a GPU (CI), the backend's side is checked against ``vllm_stand_in.StandInLLM`` (vLLM's offline
interface on a plain transformers model): the merged weights, when they are synchronised, what the agent makes of
the answers. ``test_real_vllm_*`` run the real engine and are skipped, with the reason, where it cannot run.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfplay.agents import vllm_backend
from selfplay.agents.base import Request
from selfplay.agents.llm import LLMAgent, SamplingConfig
from selfplay.agents.models import tiny_model
from selfplay.agents.scoring import token_logprobs
from selfplay.agents.specs import build_agent
from selfplay.agents.weights import activate_adapter, adapter_parameters, add_adapters, note_update
from selfplay.games.tictactoe import TicTacToe
from tests.agents.vllm_stand_in import StandInLLM

ROOT = Path(__file__).resolve().parents[2]


def _requests(n=3, samples=2):
    game = TicTacToe()
    game.reset(0)
    return [Request(game, "player_0", game.observe("player_0"), samples=samples) for _ in range(n)]


def _agent(model, tok, adapter=None, **options):
    sampling = SamplingConfig(**{"temperature": 1.0, "max_new_tokens": 6, "backend": "vllm", "seed": 3, **options})
    return LLMAgent(model, tok, sampling, name=adapter or "m", adapter=adapter, engine_factory=StandInLLM)


def _check_exact(agent, completions, temperature=1.0):
    flat = [c for cs in completions for c in cs]
    with torch.no_grad():
        if agent.adapter:
            activate_adapter(agent.model, agent.adapter)
        ref = token_logprobs(
            agent.model,
            [c.prompt_ids for c in flat],
            [c.completion_ids for c in flat],
            agent.tokenizer.pad_token_id,
            temperature=temperature,
        )
    for c, r in zip(flat, ref):
        assert len(c.logprobs) == len(c.completion_ids) > 0
        assert torch.allclose(torch.tensor(c.logprobs), r, atol=1e-5)  # what training uses: teacher-forced
        # the engine sampled with the agent's weights (its own dummy weights would give other values)
        assert torch.allclose(torch.tensor(c.meta["engine_logprobs"]), r, atol=1e-4)
    return flat


@pytest.fixture(autouse=True)
def _fresh_engines():
    vllm_backend._ENGINES.clear()
    StandInLLM.built.clear()
    yield
    vllm_backend._ENGINES.clear()


def test_merged_weights_are_the_weights_each_adapter_generates_with():
    base, _ = tiny_model(seed=0)
    model = add_adapters(base, ["a", "b"], seed=1)
    for name in ("a", "b"):
        for p in adapter_parameters(model, name):
            torch.nn.init.normal_(p, std=0.05)  # LoRA B starts at zero: make both adapters matter
    ids = torch.tensor([[1, 40, 50, 60, 70, 80]])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for adapter in ("a", "b"):
        plain, _ = tiny_model(seed=9)
        merged = dict(vllm_backend.merged_weights(model, adapter))
        assert set(merged) == {n for n, _ in plain.named_parameters()}  # plain HF names, tied head once
        plain.load_state_dict(merged, strict=False)
        activate_adapter(model, adapter)
        with torch.no_grad():
            assert torch.allclose(plain(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    a, b = dict(vllm_backend.merged_weights(model, "a")), dict(vllm_backend.merged_weights(model, "b"))
    assert not torch.equal(a["model.layers.0.self_attn.q_proj.weight"], b["model.layers.0.self_attn.q_proj.weight"])
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # nothing merged in place


def test_a_plain_model_exports_its_own_parameters():
    model, _ = tiny_model(seed=2)
    exported = dict(vllm_backend.merged_weights(model))
    assert exported.keys() == dict(model.named_parameters()).keys()
    assert all(torch.equal(exported[n], p) for n, p in model.named_parameters())


def test_the_agent_samples_with_its_current_weights_and_reports_exact_logprobs():
    model, tok = tiny_model(seed=4)
    agent = _agent(model, tok)
    first = agent.act(_requests())
    engine = vllm_backend._ENGINES[next(iter(vllm_backend._ENGINES))]
    assert [len(cs) for cs in first] == [2, 2, 2] and engine.syncs == 1
    _check_exact(agent, first)
    (llm,) = StandInLLM.built
    prompts, params = llm.requests[-1]
    assert len({p.seed for p in params}) == 6  # every row its own seed
    assert all(p.stop_token_ids == sorted(agent.stop_ids) and p.max_tokens == 6 for p in params)
    assert [p["prompt_token_ids"] for p in prompts] == [c.prompt_ids for cs in first for c in cs]

    agent.act(_requests())
    assert engine.syncs == 1  # nothing changed: no reload

    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # a training step, as the trainer takes it
    batch = torch.tensor([[1, 30, 40, 50]])
    model(input_ids=batch, labels=batch).loss.backward()
    opt.step()
    note_update()
    after = agent.act(_requests())
    assert engine.syncs == 2 and llm.resets == 2  # reloaded, prefix cache dropped
    _check_exact(agent, after)

    with torch.no_grad():  # an in-place change outside any optimizer is seen too
        model.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    _check_exact(agent, agent.act(_requests()))
    assert engine.syncs == 3


def test_lora_roles_share_one_engine_and_each_samples_with_its_own_adapter():
    base, tok = tiny_model(seed=5)
    model = add_adapters(base, ["x", "o"], seed=2)
    for name in ("x", "o"):
        for p in adapter_parameters(model, name):
            torch.nn.init.normal_(p, std=0.1)
    x, o = _agent(model, tok, adapter="x"), _agent(model, tok, adapter="o")
    _check_exact(x, x.act(_requests(2, 1)))
    _check_exact(o, o.act(_requests(2, 1)))
    _check_exact(x, x.act(_requests(2, 1)))
    assert len(vllm_backend._ENGINES) == 1 and len(StandInLLM.built) == 1
    engine = next(iter(vllm_backend._ENGINES.values()))
    assert engine.syncs == 3  # the engine holds one set of weights: each switch of adapter reloads


def test_greedy_and_temperature_are_passed_and_scored_at_that_temperature():
    model, tok = tiny_model(seed=6)
    agent = _agent(model, tok, temperature=0.7)
    _check_exact(agent, agent.act(_requests(2, 1)), temperature=0.7)
    greedy = _agent(model, tok, temperature=0.0)
    out = [c for cs in greedy.act(_requests(2, 2)) for c in cs]
    assert len({tuple(c.completion_ids) for c in out}) == 1  # one prompt, greedy: one answer


def test_stop_strings_and_stop_tokens_end_completions_where_the_native_decoder_does(monkeypatch):
    model, tok = tiny_model(seed=7)
    agent = _agent(model, tok, stop=["ab"])
    ids = tok.encode("xxab yy", add_special_tokens=False)
    assert agent._until_stop(ids) == tok.encode("xxab", add_special_tokens=False)
    assert agent._until_stop([*tok.encode("zz", add_special_tokens=False), tok.eos_token_id, 50]) == [
        *tok.encode("zz", add_special_tokens=False),
        tok.eos_token_id,
    ]
    # an engine that leaves the stop token out of token_ids: the token the policy sampled is put back
    monkeypatch.setattr(StandInLLM, "drop_stop_token", True)
    plain = _agent(model, tok, max_new_tokens=40)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id].add_(3.0)  # make the end token likely
    flat = [c for cs in plain.act(_requests(4, 2)) for c in cs]
    ended = [c for c in flat if c.completion_ids[-1] == tok.eos_token_id]
    assert ended and all(len(c.logprobs) == len(c.completion_ids) for c in flat)


def test_bad_vllm_options_are_refused_by_name():
    with pytest.raises(ValueError, match="backend=vllm samples free text only"):
        build_agent("tiny:backend=vllm,constrained=true")
    with pytest.raises(ValueError, match="sampling option 'backend': 'sglang' is not one of native, vllm"):
        build_agent("tiny:backend=sglang")
    with pytest.raises(ValueError, match="sampling option 'vllm_memory': 1.5 is out of range"):
        build_agent("tiny:backend=vllm,vllm_memory=1.5")
    reason = vllm_backend.unavailable()
    if reason:  # here the real engine cannot run: the agent says why instead of failing later
        with pytest.raises(ValueError, match="backend=vllm, but " + reason.split(" (")[0]):
            build_agent("tiny:backend=vllm")
        from selfplay.training.config import load_config

        with pytest.raises(ValueError, match="sampling.backend' = vllm"):
            load_config(ROOT / "configs/tictactoe_tiny.yaml", ["sampling.backend=vllm"])
    with pytest.raises(ValueError, match="constrained decoding is native-only"):
        from selfplay.training.config import load_config

        load_config(ROOT / "configs/tictactoe_tiny.yaml", ["sampling.backend=vllm", "sampling.constrained=true"])


TRAIN = """
import json, sys
sys.path.insert(0, {root!r})
from tests.agents.vllm_stand_in import StandInLLM
import selfplay.agents.vllm_backend as vb
vb.unavailable = lambda: None  # the stand-in in place of vllm.LLM
vb._vllm = lambda: (StandInLLM, StandInLLM.SamplingParams, {{}})
from selfplay.training.config import load_config
from selfplay.training.train import train
cfg = load_config({config!r}, ["sampling.backend=vllm", "sampling.constrained=false", "run.steps=2",
                               "run.out={out}", "run.progress=false", "evaluation.games=4", "rollout.games_per_step=8",
                               "run.checkpoint_every=1"])
train(cfg)
(engine,) = vb._ENGINES.values()
(llm,) = StandInLLM.built
json.dump({{"syncs": engine.syncs, "weights": {{n: p.tolist() for n, p in llm.model.named_parameters()}}}},
          open({result!r}, "w"))
"""


def test_training_with_the_vllm_backend_pushes_every_update_to_the_engine(tmp_path):
    result, out = tmp_path / "result.json", tmp_path / "run"
    code = TRAIN.format(
        root=str(ROOT), config=str(ROOT / "configs/tictactoe_tiny.yaml"), out=str(out), result=str(result)
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(result.read_text())
    assert found["syncs"] >= 3  # before the first step's games, after each update (the evaluation plays last)
    from safetensors.torch import load_file

    final = load_file(out / "checkpoints/step_000002/policy/model.safetensors")
    for name, values in found["weights"].items():  # the engine ended with the trained weights
        assert torch.allclose(torch.tensor(values), final[name].float(), atol=1e-6), name


needs_vllm = pytest.mark.skipif(
    vllm_backend.unavailable() is not None, reason=f"real vLLM test: {vllm_backend.unavailable()}"
)


@needs_vllm
def test_real_vllm_samples_with_the_synchronised_weights():
    model, tok = tiny_model(
        seed=0, hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2
    )  # head size 64: what vLLM's attention kernels take
    model = model.to("cuda", torch.bfloat16)
    agent = LLMAgent(model, tok, SamplingConfig(temperature=1.0, max_new_tokens=8, backend="vllm", vllm_memory=0.2))
    flat = [c for cs in agent.act(_requests(8, 4)) for c in cs]
    gaps = [abs(a - b) for c in flat for a, b in zip(c.logprobs, c.meta["engine_logprobs"])]
    assert sum(gaps) / len(gaps) < 0.05, max(gaps)  # bf16 kernels differ a little; other weights would differ a lot
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.down_proj.weight.mul_(3.0)
    engine = next(iter(vllm_backend._ENGINES.values()))
    flat = [c for cs in agent.act(_requests(8, 4)) for c in cs]
    assert engine.syncs == 2
    gaps = [abs(a - b) for c in flat for a, b in zip(c.logprobs, c.meta["engine_logprobs"])]
    assert sum(gaps) / len(gaps) < 0.05, max(gaps)

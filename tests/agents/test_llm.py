import random
import re

import torch

from selfplay.agents.base import Request
from selfplay.agents.llm import LLMAgent, SamplingConfig
from selfplay.agents.models import tiny_model
from selfplay.agents.prompts import render_prompt, render_prompts
from selfplay.agents.scoring import Packed, token_logprobs
from selfplay.agents.specs import build_agent
from selfplay.agents.weights import activate_adapter, adapter_parameters, add_adapters, frozen_copy, snapshot_adapter
from selfplay.arena.matches import Match
from selfplay.arena.play import play
from selfplay.games.tictactoe import TicTacToe


def _requests(game_messages):
    game = TicTacToe()
    return [Request(game, "player_0", m, samples=s) for m, s in game_messages]


def test_sampling_logprobs_equal_a_teacher_forced_pass_with_padding():
    model, tok = tiny_model(seed=3)
    agent = LLMAgent(model, tok, SamplingConfig(temperature=0.8, max_new_tokens=12, seed=1))
    short = [{"role": "user", "content": "hi"}]
    long = [
        {"role": "system", "content": "You play a long game with many rules."},
        {"role": "user", "content": "go " * 9},
    ]
    out = agent.act(_requests([(short, 2), (long, 1)]))
    flat = [c for cs in out for c in cs]
    assert [len(cs) for cs in out] == [2, 1]
    assert len({len(c.prompt_ids) for c in flat}) == 2  # prompts of different lengths were left-padded together
    ref = token_logprobs(
        model, [c.prompt_ids for c in flat], [c.completion_ids for c in flat], tok.pad_token_id, temperature=0.8
    )
    for c, r in zip(flat, ref):
        assert len(c.logprobs) == len(c.completion_ids) > 0
        assert torch.allclose(torch.tensor(c.logprobs), r, atol=1e-4)
    for c in flat:  # and each row alone, without any padding
        alone = token_logprobs(model, [c.prompt_ids], [c.completion_ids], tok.pad_token_id, temperature=0.8)[0]
        assert torch.allclose(torch.tensor(c.logprobs), alone, atol=1e-4)


def test_two_lora_adapters_stay_apart():
    base, tok = tiny_model(seed=0)
    model = add_adapters(base, ["creator", "solver"], seed=1)
    for name in ("creator", "solver"):  # make both adapters non-trivial (LoRA B starts at zero)
        for p in adapter_parameters(model, name):
            torch.nn.init.normal_(p, std=0.05)
    ids = torch.tensor([[1, 50, 60, 70, 80]])
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}

    def logits(adapter):
        activate_adapter(model, adapter)
        with torch.no_grad():
            return model(input_ids=ids).logits.clone()

    solver_before, creator_before = logits("solver"), logits("creator")
    assert not torch.equal(solver_before, creator_before)
    opt = torch.optim.SGD(adapter_parameters(model, "creator"), lr=0.1)
    activate_adapter(model, "creator")
    model(input_ids=ids).logits.sum().backward()
    opt.step()
    assert not torch.equal(logits("creator"), creator_before)
    assert torch.equal(logits("solver"), solver_before)
    assert all(torch.equal(p, base_before[n]) for n, p in model.named_parameters() if "lora_" not in n)


def test_snapshots_are_frozen():
    base, _ = tiny_model(seed=0)
    model = add_adapters(base, ["player"], seed=1)
    for p in adapter_parameters(model, "player"):
        torch.nn.init.normal_(p, std=0.05)
    snapshot_adapter(model, "player", "player_step0")
    frozen = frozen_copy(base)
    ids = torch.tensor([[1, 5, 9]])
    activate_adapter(model, "player_step0")
    before = model(input_ids=ids).logits.detach().clone()
    for p in adapter_parameters(model, "player"):
        p.data += 1.0
    activate_adapter(model, "player_step0")
    assert torch.equal(model(input_ids=ids).logits, before)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_llm_agent_plays_through_the_arena_and_records_tokens():
    agent = build_agent("tiny:max_new_tokens=6,temperature=1.0", name="tiny")
    ep = play(TicTacToe, [Match(0, {"player_0": "tiny", "player_1": "tiny"})], {"tiny": agent}, progress=False)[0]
    first = ep.steps[0]
    assert first.completion_ids and len(first.logprobs) == len(first.completion_ids)
    assert first.failure in (None, "PARSE_ERROR", "ILLEGAL")


def test_sampling_options_are_checked():
    import pytest

    with pytest.raises(ValueError, match="unknown sampling option.*'temprature'"):
        build_agent("tiny:temprature=0.5")
    with pytest.raises(ValueError, match="top_p"):
        build_agent("tiny:top_p=0")
    for spec, expected in [
        ("tiny:pack=maybe", "pack='maybe': expected true or false"),
        ("tiny:constrained=1", "constrained=1: expected true or false"),
        ("tiny:temperature=warm", "temperature='warm': expected float"),
        ("tiny:max_new_tokens=2.5", "max_new_tokens=2.5: expected int"),
        ("tiny:seed=true", "seed=True: expected int"),
        ("tiny:observer=3", "observer=3: expected str"),
    ]:
        with pytest.raises(ValueError, match=re.escape(expected)):
            build_agent(spec)
    assert build_agent("tiny:pack=false:temperature=1:stop=a|b").sampling.temperature == 1


def test_constrained_decoding_plays_legal_moves_and_reports_the_constrained_policy():
    model, tok = tiny_model(seed=4)
    agent = LLMAgent(model, tok, SamplingConfig(temperature=1.0, max_new_tokens=6, constrained=True, seed=2))
    game = TicTacToe()
    game.reset(0)
    game.step("player_0", [4])
    request = Request(
        game, "player_1", game.observe("player_1"), samples=6, legal_actions=game.legal_actions("player_1")
    )
    out = agent.act([request])[0]
    assert all(c.text in request.legal_actions for c in out)
    for c in out:
        digit = [len(a) for a in c.allowed]
        assert digit == [1, 8, 1, 1]  # "[" forced, one of 8 free cells, "]" and end forced
        assert c.logprobs[0] == 0.0 and c.logprobs[2] == 0.0 and c.logprobs[1] < 0  # forced tokens: probability 1
    ref = token_logprobs(
        model,
        [c.prompt_ids for c in out],
        [c.completion_ids for c in out],
        tok.pad_token_id,
        temperature=1.0,
        allowed=[c.allowed for c in out],
    )
    for c, r in zip(out, ref):
        assert torch.allclose(torch.tensor(c.logprobs), r, atol=1e-4)


def test_a_constrained_answer_longer_than_max_new_tokens_is_still_finished():
    """A legal action needs more tokens than max_new_tokens (a recipe moved to a game with longer actions): the
    constrained decoder finishes it rather than cutting it into an invalid answer."""
    from selfplay.games.liars_dice import LiarsDice

    model, tok = tiny_model(seed=4)
    game = LiarsDice()
    game.reset(0)
    legal = game.legal_actions(game.turn().role)
    assert max(len(tok.encode(a, add_special_tokens=False)) for a in legal) > 2
    agent = LLMAgent(model, tok, SamplingConfig(temperature=1.0, max_new_tokens=2, constrained=True, seed=2))
    out = agent.act([Request(game, game.turn().role, game.observe(game.turn().role), samples=8, legal_actions=legal)])[
        0
    ]
    assert all(c.text in legal for c in out) and max(len(c.completion_ids) for c in out) > 2


def test_scoring_only_the_needed_output_rows_equals_the_full_logits_and_their_gradients():
    """scored_logprobs (the decoder's hidden states through the output layer at completion positions only, and a
    constrained position through its allowed rows only) against completion_logprobs on the model's full logits,
    values and gradients, on rows mixing constrained, unconstrained and padded completions."""
    import random

    from selfplay.agents.scoring import completion_logprobs, pack, scored_logprobs

    model, tok = tiny_model(seed=4)
    model.get_output_embeddings().bias = torch.nn.Parameter(torch.randn(model.config.vocab_size) * 0.1)
    rng = random.Random(0)
    prompts = [[rng.randrange(3, 200) for _ in range(rng.randrange(2, 9))] for _ in range(5)]
    completions = [[rng.randrange(3, 200) for _ in range(n)] for n in (4, 1, 3, 4, 2)]
    allowed = [[[c[0], 7, 9], None, [c[2], 11]] if len(c) > 2 else None for c in completions]  # rows 0, 2, 3
    allowed[3][1] = [5, 6]  # a token outside its allowed set: -inf either way
    allowed[3][2] = None
    b = pack(prompts, completions, tok.pad_token_id)
    args = (b["input_ids"], b["attention_mask"], b["position_ids"], int(b["prompt_width"]))

    def grads(value):
        model.zero_grad()
        value.backward()
        return [p.grad.clone() for p in model.parameters()]

    mask = b["completion_mask"].bool()
    ours = scored_logprobs(model, Packed(*args), temperature=0.7, allowed=allowed)
    logits = model(input_ids=args[0], attention_mask=args[1], position_ids=args[2]).logits
    full = completion_logprobs(logits, args[0], args[3], temperature=0.7, allowed=allowed)
    assert ours.shape == full.shape and torch.equal(ours[~mask], torch.zeros_like(ours[~mask]))
    assert torch.isneginf(ours[3, 1]) and torch.isneginf(full[3, 1])
    finite = mask & torch.isfinite(full)
    assert torch.allclose(ours[finite], full[finite], atol=1e-5)
    assert finite.sum() == mask.sum() - 1
    ours = scored_logprobs(model, Packed(*args), temperature=0.7, allowed=allowed)  # again, for a fresh graph
    mine, theirs = grads(ours[finite].sum()), grads(full[finite].sum())
    for a, c in zip(mine, theirs):
        assert torch.allclose(a, c, atol=1e-5)
    assert any(a.abs().sum() > 0 for a in mine)


def test_rows_with_the_same_prompt_share_one_pass_over_it_with_the_same_values_and_gradients():
    from selfplay.agents.scoring import completion_states, pack, scored_logprobs

    model, tok = tiny_model(seed=6)
    model.train()  # dropout-free tiny model: training mode changes nothing but is where this runs
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [5, 6, 7, 8, 9, 10], [13, 14, 15]] * 3
    completions = [[20 + i % 5, 30 + i % 3, 40][: 1 + i % 3] for i in range(len(prompts))]
    b = pack(prompts, completions, tok.pad_token_id)
    args = (b["input_ids"], b["attention_mask"], b["position_ids"], int(b["prompt_width"]))
    computed = []
    hook = model.model.register_forward_pre_hook(
        lambda m, a, kw: computed.append(kw["input_ids"].numel()), with_kwargs=True
    )
    shared = scored_logprobs(
        model, Packed(*args), temperature=0.9, tree=True
    )  # the tiny model's tokens are too cheap to pay
    hook.remove()
    assert sum(computed) == 3 * args[3] + len(prompts) * (args[0].shape[1] - args[3])  # 3 distinct prompts once
    whole = model.model(input_ids=args[0], attention_mask=args[1], position_ids=args[2]).last_hidden_state
    ref_states = whole[:, args[3] - 1 : -1]
    states = completion_states(model.model, Packed(*args), tree=True)
    mask = b["completion_mask"].bool()
    assert torch.allclose(states[mask], ref_states[mask], atol=1e-5)
    model.zero_grad()
    (shared * b["completion_mask"]).sum().backward()
    mine = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model.lm_head(ref_states).float() / 0.9
    ref = logits.log_softmax(-1).gather(-1, args[0][:, args[3] :, None]).squeeze(-1)
    assert torch.allclose(shared[mask], ref[mask], atol=1e-5)
    (ref * b["completion_mask"]).sum().backward()
    for a, c in zip(mine, (p.grad for p in model.parameters())):
        assert torch.allclose(a, c, atol=1e-5)


def test_a_prompt_beyond_the_models_context_is_a_failed_attempt_and_the_rest_of_the_batch_plays():
    from selfplay.games.core import system, user

    model, tok = tiny_model()
    model.config.max_position_embeddings = 120
    agent = LLMAgent(model, tok, SamplingConfig(max_new_tokens=8, temperature=0.0))
    game = TicTacToe()
    game.reset(0)
    short = Request(game, "player_0", [system("play"), user("x" * 20)], samples=2)
    long = Request(game, "player_1", [system("play"), user("x" * 200)], samples=2)
    answers = agent.act([short, long, short])
    assert [len(a) for a in answers] == [2, 2, 2]
    assert all(c.completion_ids and "failure" not in c.meta for c in answers[0] + answers[2])
    for c in answers[1]:
        assert c.meta["failure"] == "AGENT_ERROR" and not c.completion_ids
        assert (
            "exceeds the model's context of 120 positions" in c.meta["error"] and "max_new_tokens=8" in c.meta["error"]
        )


def test_prompts_rendered_in_one_batch_are_the_ids_rendered_one_by_one():
    _, tok = tiny_model(seed=0)
    conversations = [
        [{"role": "user", "content": "x"}],
        [{"role": "system", "content": "rules  with  spaces\n\n"}, {"role": "user", "content": ""}],
        [
            {"role": "system", "content": "é ü 漢字 <|im_end|> {{ x }}"},
            {"role": "user", "content": "b2"},
            {"role": "assistant", "content": "c3"},
            {"role": "user", "content": "Invalid answer. Again."},
        ],
    ]
    one_by_one = [render_prompt(tok, c) for c in conversations]
    assert render_prompts(tok, conversations) == one_by_one  # the fast tokenizer's ids read directly

    class Slow:  # a tokenizer without a fast backend takes the generic batch call
        is_fast = False

        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, *args, **kwargs):
            return tok(*args, **kwargs)

    assert render_prompts(Slow(), conversations) == one_by_one
    assert render_prompts(tok, []) == []
    repeated = render_prompts(tok, [conversations[2], conversations[0], conversations[2]])  # rendered once each
    assert repeated == [one_by_one[2], one_by_one[0], one_by_one[2]]
    repeated[0].append(-1)  # each row its own list
    assert repeated[2] == one_by_one[2]
    # a call elsewhere with padding and truncation leaves them on in the fast backend: prompts must stay unpadded
    tok(["a", "a much longer text than that"], padding=True, truncation=True, max_length=4)
    assert tok.backend_tokenizer.padding is not None and tok.backend_tokenizer.truncation is not None
    assert render_prompts(tok, conversations) == one_by_one
    assert render_prompts(tok, conversations) == one_by_one  # and the next call takes the fast path again
    assert tok.backend_tokenizer.padding is None


def test_completions_decoded_in_one_batch_are_the_rows_decoded_one_by_one():
    from selfplay.agents.prompts import decode_texts

    _, tok = tiny_model(seed=0)
    rng = random.Random(0)
    rows = [[rng.randrange(len(tok)) for _ in range(rng.randrange(0, 12))] for _ in range(50)]
    rows.append([tok.eos_token_id, tok.encode("é", add_special_tokens=False)[0]])  # a special token, half a character
    one_by_one = [tok.decode(r, skip_special_tokens=True) for r in rows]
    assert decode_texts(tok, rows) == one_by_one
    tok.clean_up_tokenization_spaces = True  # only the Python side cleans up: it decodes row by row
    assert decode_texts(tok, rows) == [tok.decode(r, skip_special_tokens=True) for r in rows]


def test_a_prompt_memo_renders_each_conversation_once_and_forgets_on_a_new_template(monkeypatch):
    import selfplay.agents.prompts as prompts_module

    _, tok = tiny_model(seed=0)
    conversations = [[{"role": "user", "content": f"board {i}"}] for i in range(5)]
    one_by_one = [render_prompt(tok, c) for c in conversations]
    rendered = []
    real = prompts_module._render
    monkeypatch.setattr(prompts_module, "_render", lambda t, cs: rendered.append(len(cs)) or real(t, cs))
    memo = prompts_module.PromptMemo(limit=4)
    assert render_prompts(tok, conversations[:3], memo) == one_by_one[:3]
    assert render_prompts(tok, conversations[1:], memo) == one_by_one[1:]  # only boards 3 and 4 are new
    assert rendered == [3, 2] and len(memo.ids) == 4  # board 0 was the oldest: out
    got = render_prompts(tok, conversations[2:], memo)
    assert rendered == [3, 2] and got == one_by_one[2:]
    got[0].append(-1)  # callers get their own lists
    assert render_prompts(tok, conversations[2:3], memo) == one_by_one[2:3]
    tok.chat_template = "{% for m in messages %}<{{ m['content'] }}>{% endfor %}"  # a new template: all forgotten
    new = render_prompts(tok, conversations[2:], memo)
    assert rendered == [3, 2, 3] and new == [render_prompt(tok, c) for c in conversations[2:]] != one_by_one[2:]


def test_adapters_named_inside_lora_prefix_save_and_load_exactly_without_peft_warnings(tmp_path):
    """PEFT warns that an adapter name contained in 'lora_' "may" be reinitialised on loading; selfplay silences that
    warning for role names such as a or r, so here their weights must survive a save and a load bit for bit."""
    import warnings

    from peft import PeftModel, get_peft_model_state_dict

    names = ["a", "lora_A", "r"]
    model, _ = tiny_model(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the adapter-name warning is silenced
        saved = add_adapters(model, names, seed=4)
    with torch.no_grad():
        for n, p in saved.named_parameters():
            if "lora_B" in n:  # B starts at zero; a trained one does not
                p.normal_()
    saved.save_pretrained(tmp_path, selected_adapters=names)
    loaded = PeftModel.from_pretrained(tiny_model(seed=0)[0], str(tmp_path / names[0]), adapter_name=names[0])
    for name in names[1:]:
        loaded.load_adapter(str(tmp_path / name), adapter_name=name)
    for name in names:
        mine, theirs = (
            get_peft_model_state_dict(saved, adapter_name=name),
            get_peft_model_state_dict(loaded, adapter_name=name),
        )
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_agents_at_another_temperature_share_the_decoder_and_sample_at_theirs():
    from selfplay.training.learner import at_temperature

    model, tok = tiny_model(seed=3)
    agent = LLMAgent(model, tok, SamplingConfig(temperature=1.0, max_new_tokens=6, seed=1), name="m")
    cooler = at_temperature({"m": agent}, 0.5)["m"]
    assert cooler.decoder is agent.decoder is not None  # CUDA graphs captured by one are replayed by the other
    assert (cooler.sampling.temperature, agent.sampling.temperature) == (0.5, 1.0)
    flat = [c for cs in cooler.act(_requests([([{"role": "user", "content": "go"}], 3)])) for c in cs]
    ref = token_logprobs(
        model, [c.prompt_ids for c in flat], [c.completion_ids for c in flat], tok.pad_token_id, temperature=0.5
    )
    for c, r in zip(flat, ref):
        assert torch.allclose(torch.tensor(c.logprobs), r, atol=1e-4)


def test_the_static_cache_backend_reports_the_log_probabilities_of_a_teacher_forced_pass():
    """``cache=static`` (transformers' generate on a static cache), free and constrained: each completion carries its
    sampling temperature and log-probabilities equal to a teacher-forced pass (the constrained policy renormalised)."""
    model, tok = tiny_model(seed=4)
    messages = [{"role": "user", "content": "pick one"}]
    for constrained in (False, True):
        agent = LLMAgent(
            model,
            tok,
            SamplingConfig(temperature=0.7, max_new_tokens=6, seed=2, cache="static", constrained=constrained),
        )
        game = TicTacToe()
        game.reset(0)
        legal = ["[1]", "[5]", "[9]"] if constrained else None
        out = agent.act([Request(game, "player_0", messages, samples=3, legal_actions=legal)])[0]
        allowed = [c.allowed for c in out] if constrained else None
        ref = token_logprobs(
            model,
            [c.prompt_ids for c in out],
            [c.completion_ids for c in out],
            tok.pad_token_id,
            temperature=0.7,
            allowed=allowed,
        )
        for c, r in zip(out, ref):
            assert c.temperature == 0.7 and len(c.logprobs) == len(c.completion_ids) > 0
            assert torch.allclose(torch.tensor(c.logprobs), r, atol=1e-4)
            if constrained:
                assert c.text in legal
